//! The lifecycle of people's workspaces (DESIGN §5.4): the executor's tick
//! (autostart, autostop, failure TTL, dormancy, dormant auto-delete, the
//! "will stop soon" notice), the activity bump, and a person's own schedule
//! (extend). The rules are the pure ones of `warmspace_prebuilds::lifecycle`;
//! unclaimed prebuilds are never selected (the store leaves them out in its
//! statements) and their schedules cannot be edited.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use uuid::Uuid;
use warmspace_prebuilds::lifecycle::{self as rules, Autostart, AutostopRequirement, LifecycleAction, WorkspaceState};
use warmspace_sdk::Workspace;
use warmspace_states::{BuildReason, Transition};
use warmspace_store::TemplateRow;
use warmspace_store::lifecycle::{LIFECYCLE_USER_ID, LifecycleChange, LifecycleRow, OwnerNotice};
use warmspace_store::workspaces::NewBuild;
use warmspace_template::{ParameterInput, resolve_parameters};

use super::{Actor, Domain, Error, Found, Result};

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Workspaces looked at (those for which some rule could be due).
    pub candidates: usize,
    pub autostarted: usize,
    pub autostopped: usize,
    pub failure_stopped: usize,
    pub dormant: usize,
    pub deleted: usize,
    pub notices: usize,
    /// Transitions not carried out because the workspace moved on meanwhile, or failed.
    pub skipped: usize,
}

/// A template's autostop requirement.
pub(super) fn requirement_of(template: &TemplateRow) -> AutostopRequirement {
    AutostopRequirement {
        days_of_week: (template.autostop_requirement_days_of_week & 0x7f) as u8,
        weeks: u32::try_from(template.autostop_requirement_weeks).unwrap_or(1),
        hour: u32::try_from(template.autostop_requirement_hour).unwrap_or(0),
    }
}

/// A stored zone name, read as a zone (UTC if it names none).
pub(super) fn zone_of(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// A start build's deadline and max deadline, from `start` on.
pub(super) fn start_deadlines(
    start: DateTime<Utc>,
    ttl_ms: Option<i64>,
    requirement: &AutostopRequirement,
    zone: Tz,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let max = rules::max_deadline(start, requirement, zone);
    (rules::deadline(start, ttl_ms.map(Duration::milliseconds), max), max)
}

fn state_of(row: &LifecycleRow) -> WorkspaceState {
    let ms = |ms: i64| Duration::milliseconds(ms.max(0));
    WorkspaceState {
        transition: row.transition,
        job_status: row.job_status,
        build_created_at: row.build_created_at,
        job_completed_at: row.job_completed_at,
        deadline: row.deadline,
        stop_notice_for: row.stop_notice_for,
        autostart: row
            .autostart_schedule
            .as_deref()
            .filter(|_| row.allow_user_autostart)
            .and_then(|s| Autostart::parse(s).ok()),
        owner_zone: zone_of(&row.owner_timezone),
        last_used_at: row.last_used_at,
        dormant_at: row.dormant_at,
        deleting_at: row.deleting_at,
        failure_ttl: ms(row.failure_ttl_ms),
        time_til_dormant: ms(row.time_til_dormant_ms),
        dormant_autodelete: ms(row.time_til_dormant_autodelete_ms),
    }
}

fn when(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string()
}

impl Domain {
    /// One tick of the lifecycle executor, if this replica gets the lock
    /// (`None` when another replica's tick holds it).
    pub async fn lifecycle_tick(&self) -> Result<Option<TickStats>> {
        let Some(lock) = self.store.try_lock_lifecycle().await? else {
            return Ok(None);
        };
        let stats = self.lifecycle_pass().await;
        lock.release().await;
        stats.map(Some)
    }

    async fn lifecycle_pass(&self) -> Result<TickStats> {
        let now = self.now();
        let interval = Duration::from_std(self.config.lifecycle.interval).unwrap_or(Duration::minutes(1));
        let last_tick = self.store.last_lifecycle_tick().await?.unwrap_or(now - interval).min(now);
        let rows = self.store.lifecycle_candidates(now).await?;
        let mut stats = TickStats { candidates: rows.len(), ..Default::default() };
        for row in &rows {
            let Some(action) = rules::decide(&state_of(row), last_tick, now) else { continue };
            match self.carry_out_lifecycle(row, action, now).await {
                Ok(true) => match action {
                    LifecycleAction::Autostart(_) => stats.autostarted += 1,
                    LifecycleAction::Autostop => stats.autostopped += 1,
                    LifecycleAction::FailureTtl => stats.failure_stopped += 1,
                    LifecycleAction::Dormant { .. } => stats.dormant += 1,
                    LifecycleAction::DormantDelete => stats.deleted += 1,
                    LifecycleAction::StopNotice(_) => stats.notices += 1,
                },
                Ok(false) => stats.skipped += 1,
                Err(err) => {
                    stats.skipped += 1;
                    tracing::warn!(workspace = %row.workspace_name, ?action, error = %err, "lifecycle action failed");
                }
            }
        }
        self.store.set_lifecycle_tick(now).await?;
        if stats != (TickStats { candidates: stats.candidates, ..Default::default() }) {
            tracing::info!(?stats, "lifecycle tick");
        }
        Ok(stats)
    }

    /// Carries out one decided action; false when the workspace moved on.
    async fn carry_out_lifecycle(
        &self,
        row: &LifecycleRow,
        action: LifecycleAction,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let zone = zone_of(&row.owner_timezone);
        let name = &row.workspace_name;
        let notice = |kind: &'static str, title: String, content: String| OwnerNotice { kind, title, content };
        let mut change = LifecycleChange {
            workspace_id: row.workspace_id,
            expected_build_number: row.build_number,
            build: None,
            mark_dormant: false,
            mark_deleting: false,
            notices: Vec::new(),
        };
        match action {
            LifecycleAction::StopNotice(deadline) => {
                let told = notice(
                    "workspace_autostop_soon",
                    format!("Your workspace {name} will stop in 30 minutes"),
                    format!(
                        "It stops at {} unless it is used. To keep it longer: warmspace schedule extend {name} 2h",
                        when(deadline, zone)
                    ),
                );
                let notified = self.store.send_stop_notice(row.workspace_id, row.build_id, deadline, &told).await?;
                let sent = notified.is_some();
                self.announce(notified.into_iter().collect()).await;
                return Ok(sent);
            }
            LifecycleAction::Autostart(_) => {
                let requirement = AutostopRequirement {
                    days_of_week: (row.autostop_requirement_days_of_week & 0x7f) as u8,
                    weeks: u32::try_from(row.autostop_requirement_weeks).unwrap_or(1),
                    hour: u32::try_from(row.autostop_requirement_hour).unwrap_or(0),
                };
                let (deadline, max_deadline) = start_deadlines(now, row.ttl_ms, &requirement, zone);
                // On the active version when the template requires it.
                let version = if row.require_active_version { row.active_version_id } else { row.template_version_id };
                let build = self.lifecycle_build(row, version, Transition::Start, BuildReason::Autostart).await?;
                change.build = Some(NewBuild { deadline, max_deadline, ..build });
            }
            LifecycleAction::Autostop => {
                change.build = Some(
                    self.lifecycle_build(row, row.template_version_id, Transition::Stop, BuildReason::Autostop).await?,
                );
                change.notices.push(notice(
                    "workspace_autostopped",
                    format!("Your workspace {name} was stopped for inactivity"),
                    format!("It reached its deadline. Start it again with: warmspace start {name}"),
                ));
            }
            LifecycleAction::FailureTtl => {
                change.build = Some(
                    self.lifecycle_build(row, row.template_version_id, Transition::Stop, BuildReason::FailureTtl)
                        .await?,
                );
            }
            LifecycleAction::Dormant { stop } => {
                if stop {
                    change.build = Some(
                        self.lifecycle_build(row, row.template_version_id, Transition::Stop, BuildReason::Dormancy)
                            .await?,
                    );
                }
                change.mark_dormant = true;
                change.notices.push(notice(
                    "workspace_dormant",
                    format!("Your workspace {name} was marked dormant"),
                    format!(
                        "It was last used {}. It cannot start until it is woken (warmspace schedule wake {name}).",
                        when(row.last_used_at, zone)
                    ),
                ));
                if row.time_til_dormant_autodelete_ms > 0 {
                    let on = now + Duration::milliseconds(row.time_til_dormant_autodelete_ms);
                    change.notices.push(notice(
                        "workspace_deletion_scheduled",
                        format!("Your workspace {name} will be deleted on {}", when(on, zone)),
                        "It is dormant; wake it before then to keep it.".to_owned(),
                    ));
                }
            }
            LifecycleAction::DormantDelete => {
                change.build = Some(
                    self.lifecycle_build(row, row.template_version_id, Transition::Delete, BuildReason::Dormancy)
                        .await?,
                );
                change.mark_deleting = true;
            }
        }
        let Some(done) = self.store.apply_lifecycle_change(&change).await? else {
            return Ok(false);
        };
        // Committed: now tell the owner's open inboxes.
        self.announce(done.notified).await;
        tracing::info!(workspace = %name, template = %row.template_name, ?action, "lifecycle transition");
        Ok(true)
    }

    /// A build the executor queues: by the lifecycle system user, on
    /// `version` with the values of the workspace's latest build (checked
    /// against that version, as an update would), and no deadline.
    async fn lifecycle_build(
        &self,
        row: &LifecycleRow,
        version: Uuid,
        transition: Transition,
        reason: BuildReason,
    ) -> Result<NewBuild> {
        let latest = self.store.build(row.build_id).await?;
        let parameters = self.store.version_parameters(version).await?;
        let values = resolve_parameters(&ParameterInput {
            parameters: &parameters,
            previous: Some(&latest.parameters.0),
            preset: None,
            requested: &Default::default(),
            transition,
        })
        .map_err(|problems| {
            Error::conflict("The workspace's parameters no longer resolve.").detail(
                problems.into_iter().map(|p| format!("{}: {}", p.parameter, p.message)).collect::<Vec<_>>().join("; "),
            )
        })?;
        Ok(NewBuild {
            transition,
            initiator_id: LIFECYCLE_USER_ID,
            reason,
            template_version_id: version,
            preset_id: None,
            parameters: values,
            deadline: None,
            max_deadline: None,
        })
    }

    /// Activity in a workspace (an agent heartbeat with open sessions):
    /// records the use and bumps a running build's deadline, never past its
    /// max deadline. Unclaimed prebuilds are left alone.
    pub(super) async fn record_agent_activity(&self, agent_id: Uuid) -> Result<()> {
        let Some(target) = self.store.activity_target(agent_id).await? else { return Ok(()) };
        let running =
            target.transition == Transition::Start && target.job_status == warmspace_states::JobStatus::Succeeded;
        let bump = running
            .then(|| {
                rules::bumped_deadline(
                    target.deadline,
                    target.max_deadline,
                    target.ttl_ms.map(Duration::milliseconds),
                    self.now(),
                )
            })
            .flatten()
            .zip(target.deadline)
            .map(|(new, old)| (target.build_id, old, new));
        self.store.record_activity(target.workspace_id, bump).await?;
        Ok(())
    }

    /// Moves the deadline of the actor's running workspace to `by` from
    /// now (Coder's `schedule extend`), within its max deadline.
    pub async fn extend_workspace(&self, actor: &Actor, id: Uuid, by_ms: i64) -> Result<Workspace> {
        let workspace = self.lifecycle_target(actor, id).await?;
        if by_ms <= 0 {
            return Err(Error::field("duration_ms", "must be positive"));
        }
        let build = self.store.build(workspace.latest_build_id).await?;
        if workspace.status() != warmspace_states::WorkspaceStatus::Running {
            return Err(Error::conflict("The workspace is not running: there is no deadline to extend."));
        }
        let deadline = rules::extended_deadline(self.now(), Duration::milliseconds(by_ms), build.max_deadline)
            .map_err(|e| Error::field("duration_ms", e.to_string()))?;
        if !self.store.set_build_deadline(workspace.id, build.id, Some(deadline)).await? {
            return Err(Error::conflict("The workspace has a newer build; try again."));
        }
        self.workspace_view(self.store.workspace(id).await.found("Workspace")?).await
    }

    /// Wakes a dormant workspace so that it can start again (its owner, or an admin).
    pub async fn set_workspace_dormant(&self, actor: &Actor, id: Uuid, dormant: bool) -> Result<Workspace> {
        let workspace = self.lifecycle_target(actor, id).await?;
        self.store.set_workspace_dormant(workspace.id, dormant).await?;
        self.workspace_view(self.store.workspace(id).await.found("Workspace")?).await
    }
}
