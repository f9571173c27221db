//! Prebuild pools: what they look like (derived from the database by
//! whichever replica asks), pausing and invalidating them, claim
//! statistics, and the actions the reconciler takes on them: creating and
//! deleting prebuilds as builds by the prebuilds user.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use rand::RngExt;
use rand::distr::Alphanumeric;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_prebuilds::insights;
use warmspace_prebuilds::reconcile::{self, Decision, PresetState, Settings, Snapshot, Status};
use warmspace_sdk::{
    ClaimStats, ClaimStatsQuery, InvalidatePresetsRequest, InvalidatePresetsResponse, PrebuildInsights,
    PrebuildInsightsQuery, PrebuildSettings, PrebuildsStatus, PresetDriftCheck, PresetInsight, PresetPoolStatus,
};
use warmspace_states::{BuildReason, DeletionReason, JobStatus, MissReason, PrebuildEvent, Transition};
use warmspace_store::StoreError;
use warmspace_store::prebuilds::{LockSession, NewPrebuilds, PrebuildsSnapshot, PresetSnapshotRow, ReconcilerLock};
use warmspace_store::pubsub::Subscription;
use warmspace_store::workspaces::{NewBuild, PREBUILDS_USER_ID};
use warmspace_template::{ParameterInput, resolve_parameters};

use super::{Actor, Domain, Error, Found, RECONCILE_CHANNEL, Result, Trigger};

/// The window pool insight looks at when none is given.
const DEFAULT_INSIGHT_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// One preset's decision in a cycle, with its row (names, for logs).
pub struct PrebuildPlan<'a> {
    pub row: &'a PresetSnapshotRow,
    pub state: &'a PresetState,
    pub decision: Decision,
    /// The instant the decision was made for (the snapshot's).
    pub now: chrono::DateTime<chrono::Utc>,
}

/// What a cycle (or the part of one spent on a preset) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub presets_total: usize,
    /// Presets that needed any work looked at (the others were skipped).
    pub presets_reconciled: usize,
    pub actions: usize,
    pub created: usize,
    pub deleted: usize,
    pub canceled: usize,
    pub snapshot: std::time::Duration,
    pub elapsed: std::time::Duration,
}

impl CycleStats {
    pub fn add(&mut self, done: &CycleStats) {
        self.actions += done.actions;
        self.created += done.created;
        self.deleted += done.deleted;
        self.canceled += done.canceled;
    }
}

impl Domain {
    /// The reconciliation knobs, with the site-wide paused flag.
    fn reconcile_settings(&self, paused: bool) -> Settings {
        let config = &self.config.reconciler;
        Settings {
            paused,
            backoff_interval: config.backoff_interval,
            backoff_lookback: config.backoff_lookback,
            failure_hard_limit: config.failure_hard_limit,
            replacement_grace: config.replacement_grace,
        }
    }

    /// How much build history a snapshot reads: enough of each preset's latest
    /// builds to see the hard limit, and failures since the backoff lookback.
    fn history(&self) -> (i64, chrono::DateTime<chrono::Utc>) {
        let config = &self.config.reconciler;
        (i64::from(config.failure_hard_limit.max(1)), self.now() - config.backoff_lookback)
    }

    /// What reconciliation decides from: every prebuild-configured preset
    /// and its prebuilds, as rows and as the pure logic reads them.
    pub async fn prebuilds_snapshot(&self) -> Result<(PrebuildsSnapshot, Snapshot)> {
        self.read_snapshot(None).await
    }

    /// The snapshot of some presets alone, reading only their rows.
    pub async fn presets_snapshot(&self, preset_ids: &[Uuid]) -> Result<(PrebuildsSnapshot, Snapshot)> {
        self.read_snapshot(Some(preset_ids)).await
    }

    /// The snapshot of every preset, or of `only` those.
    async fn read_snapshot(&self, only: Option<&[Uuid]>) -> Result<(PrebuildsSnapshot, Snapshot)> {
        let (history, since) = self.history();
        let raw = match only {
            None => self.store.prebuilds_snapshot(history, since).await?,
            Some(preset_ids) => self.store.presets_snapshot(preset_ids, history, since).await?,
        };
        let snapshot = raw.to_snapshot(self.reconcile_settings(raw.paused));
        Ok((raw, snapshot))
    }

    /// The presets whose pools the ends of these jobs concern.
    pub async fn presets_of_jobs(&self, job_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        Ok(self.store.presets_of_jobs(job_ids).await?)
    }

    /// Why a preset has no claimable prebuild now: paused, hard-limited,
    /// backing off, or simply nothing eligible.
    pub(super) async fn miss_reason(&self, preset_id: Uuid) -> Result<MissReason> {
        let (_, snapshot) = self.read_snapshot(Some(&[preset_id])).await?;
        if snapshot.settings.paused {
            return Ok(MissReason::Paused);
        }
        let Some(preset) = snapshot.presets.first() else { return Ok(MissReason::NoEligible) };
        Ok(match reconcile::decide(preset, snapshot.now, &snapshot.settings).status {
            Status::HardLimited | Status::ValidationFailed => MissReason::HardLimited,
            Status::Backoff { .. } => MissReason::Backoff,
            Status::Normal => MissReason::NoEligible,
        })
    }

    /// Every prebuild-configured preset's pool: desired, running, eligible,
    /// in progress, and its status.
    pub async fn prebuilds_status(&self, actor: &Actor) -> Result<PrebuildsStatus> {
        actor.authorize_to("read prebuild status", Action::Read, Object::any(Resource::Workspace))?;
        let (raw, snapshot) = self.prebuilds_snapshot().await?;
        let paused = raw.paused;
        let drift = self.drift_checks(&preset_ids(&raw)).await?;
        Ok(PrebuildsStatus { reconciliation_paused: paused, presets: pool_statuses(raw, &snapshot, drift) })
    }

    /// The pools of a template's active version, as [`Self::prebuilds_status`] shows them.
    pub async fn template_pools(&self, actor: &Actor, template_id: Uuid) -> Result<Vec<PresetPoolStatus>> {
        actor.authorize_to("read prebuild status", Action::Read, Object::any(Resource::Workspace))?;
        let template = self.store.template(template_id).await.found("Template")?;
        self.version_pools(template.active_version_id).await
    }

    /// The pools of a template version's prebuild-configured presets,
    /// reading only their rows.
    async fn version_pools(&self, version_id: Uuid) -> Result<Vec<PresetPoolStatus>> {
        let pooled: Vec<Uuid> = self
            .store
            .version_presets(version_id)
            .await?
            .into_iter()
            .filter(|p| p.desired_instances.is_some())
            .map(|p| p.id)
            .collect();
        if pooled.is_empty() {
            return Ok(Vec::new());
        }
        let (raw, snapshot) = self.presets_snapshot(&pooled).await?;
        let drift = self.drift_checks(&pooled).await?;
        Ok(pool_statuses(raw, &snapshot, drift))
    }

    /// Every pool's status now and whenever it changes, for as long as the
    /// stream is read. It looks again whenever anything that may change a
    /// pool is announced to the reconcilers (a claim, a build's end, an
    /// agent becoming ready, settings; a burst of them is one read), and
    /// every [`POOLS_REFRESH`] besides (what changes with time alone: expiry,
    /// the end of a backoff); an unchanged status is not sent again.
    pub async fn watch_prebuilds_status(
        &self,
        actor: &Actor,
    ) -> Result<impl Stream<Item = PrebuildsStatus> + Send + 'static> {
        // Subscribe first: whatever is announced after the first read is then seen.
        let announcements = self.events.subscribe(RECONCILE_CHANNEL).await.map_err(Error::internal)?;
        let first = self.prebuilds_status(actor).await?;
        let watch = PoolWatch { domain: self.clone(), actor: actor.clone(), announcements, last: first.clone() };
        let changes = futures::stream::unfold(watch, |mut watch| async move {
            let status = watch.next_change().await?;
            Some((status, watch))
        });
        Ok(futures::stream::once(std::future::ready(first)).chain(changes))
    }

    /// Whether the actor may see every pool (what [`Self::prebuilds_status`] requires).
    pub fn may_see_pools(&self, actor: &Actor) -> bool {
        actor.authorize(Action::Read, Object::any(Resource::Workspace)).is_ok()
    }

    /// How many prebuilds are eligible right now in each pooled preset of a
    /// template's active version: what anyone who may read the template
    /// sees when choosing a preset to create a workspace from.
    pub async fn warm_presets(&self, actor: &Actor, template_id: Uuid) -> Result<BTreeMap<Uuid, u32>> {
        let template = self.template(actor, template_id).await?;
        let pools = self.version_pools(template.active_version_id).await?;
        Ok(pools.into_iter().map(|p| (p.preset_id, p.eligible)).collect())
    }

    pub async fn prebuild_settings(&self, actor: &Actor) -> Result<PrebuildSettings> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        Ok(PrebuildSettings { reconciliation_paused: self.store.reconciliation_paused().await? })
    }

    /// Pauses or resumes reconciliation site-wide; while paused nothing is
    /// created, deleted or canceled.
    pub async fn set_prebuild_settings(&self, actor: &Actor, settings: PrebuildSettings) -> Result<PrebuildSettings> {
        actor.authorize_to("pause or resume prebuilds", Action::Update, Object::any(Resource::Template))?;
        self.store.set_reconciliation_paused(settings.reconciliation_paused).await?;
        tracing::info!(paused = settings.reconciliation_paused, by = %actor.user.username, "prebuild reconciliation settings changed");
        self.events.reconcile(Trigger::All("settings")).await;
        Ok(settings)
    }

    /// Invalidates a template's presets (of its active version): their
    /// prebuilds count as expired and are replaced.
    pub async fn invalidate_presets(
        &self,
        actor: &Actor,
        template_id: Uuid,
        req: InvalidatePresetsRequest,
    ) -> Result<InvalidatePresetsResponse> {
        actor.authorize_to("invalidate presets", Action::Update, Object::any(Resource::Template))?;
        let template = self.store.template(template_id).await.found("Template")?;
        let presets: Vec<_> = self
            .store
            .version_presets(template.active_version_id)
            .await?
            .into_iter()
            .filter(|p| p.desired_instances.is_some())
            .filter(|p| req.preset.as_ref().is_none_or(|name| &p.name == name))
            .collect();
        if let Some(name) = &req.preset
            && presets.is_empty()
        {
            return Err(Error::field(
                "preset",
                format!("the active version has no prebuild-configured preset {name:?}"),
            ));
        }
        let ids: Vec<Uuid> = presets.iter().map(|p| p.id).collect();
        self.store.invalidate_presets(&ids).await?;
        tracing::info!(template = %template.name, presets = ids.len(), by = %actor.user.username, "presets invalidated");
        self.events.reconcile(Trigger::All("invalidated")).await;
        Ok(InvalidatePresetsResponse { invalidated: presets.into_iter().map(|p| p.name).collect() })
    }

    /// Hits and misses of create requests, per preset, over a window. They
    /// count everyone's requests, so only those who may read every workspace
    /// (template admins, owners) may read them.
    pub async fn claim_stats(&self, actor: &Actor, query: ClaimStatsQuery) -> Result<Vec<ClaimStats>> {
        actor.authorize_to("read prebuild claims", Action::Read, Object::any(Resource::Workspace))?;
        let window = query.window_seconds.unwrap_or(86_400);
        if !(1..=i64::from(i32::MAX)).contains(&window) {
            return Err(Error::field("window_seconds", format!("must be between 1 and {}", i32::MAX)));
        }
        let since = self.now() - chrono::Duration::seconds(window);
        Ok(self
            .store
            .claim_stats(since)
            .await?
            .into_iter()
            .map(|r| ClaimStats {
                template_name: r.template_name,
                preset_id: r.preset_id,
                preset_name: r.preset_name,
                hits: r.hits,
                misses: r.misses,
                misses_by_reason: r.misses_by_reason.0,
                hit_p50_ms: r.hit_p50_ms,
                hit_p99_ms: r.hit_p99_ms,
            })
            .collect())
    }

    /// What each pool gave and cost over a window ending now (default 7
    /// days, at most 90): per preset, claims, hits, misses by reason, the
    /// hand-over, cold and claim ready times, the time saved and the idle
    /// instance-hours (see `warmspace_prebuilds::insights`). Like the claim
    /// statistics it counts everyone's requests: template admins and owners only.
    pub async fn prebuild_insights(&self, actor: &Actor, query: PrebuildInsightsQuery) -> Result<PrebuildInsights> {
        actor.authorize_to("read prebuild insights", Action::Read, Object::any(Resource::Workspace))?;
        let length = match query.window.as_deref() {
            None => DEFAULT_INSIGHT_WINDOW,
            Some(text) => insights::parse_window(text).map_err(|e| Error::field("window", e.to_string()))?,
        };
        let window = insights::Window::ending(self.now(), length);
        let claims = self.store.insight_claims(window.start, window.end).await?;
        let lives = self.store.insight_lives(window.start, window.end).await?;
        let mut preset_ids: Vec<Uuid> = claims.iter().filter_map(|c| c.preset_id).collect();
        preset_ids.extend(lives.iter().map(|l| l.preset_id));
        preset_ids.sort_unstable();
        preset_ids.dedup();
        let presets = self.store.insight_presets(&preset_ids).await?;
        let mut template_ids: Vec<Uuid> =
            claims.iter().filter(|c| c.preset_id.is_none()).map(|c| c.template_id).collect();
        template_ids.sort_unstable();
        template_ids.dedup();
        let templates: BTreeMap<Uuid, _> =
            self.store.insight_templates(&template_ids).await?.into_iter().map(|t| (t.template_id, t)).collect();
        let named: BTreeMap<Uuid, _> = presets.iter().map(|p| (p.preset_id, p)).collect();
        let keys: Vec<(Uuid, Uuid)> = presets.iter().map(|p| (p.template_id, p.preset_id)).collect();
        let mut out: Vec<PresetInsight> = insights::insights(&window, &keys, &claims, &lives)
            .into_iter()
            .filter_map(|i| {
                let (organization_name, template_name, version, preset) = match i.preset_id {
                    Some(id) => {
                        let p = named.get(&id)?;
                        (
                            p.organization_name.clone(),
                            p.template_name.clone(),
                            Some((p.template_version_id, p.template_version_name.clone(), p.version_active)),
                            Some(p.preset_name.clone()),
                        )
                    }
                    None => {
                        let t = templates.get(&i.template_id)?;
                        (t.organization_name.clone(), t.template_name.clone(), None, None)
                    }
                };
                Some(PresetInsight {
                    organization_name,
                    template_id: i.template_id,
                    template_name,
                    template_version_id: version.as_ref().map(|v| v.0),
                    template_version_name: version.as_ref().map(|v| v.1.clone()),
                    version_active: version.as_ref().is_some_and(|v| v.2),
                    preset_id: i.preset_id,
                    preset_name: preset,
                    claims: i.claims,
                    hits: i.hits,
                    misses: i.misses,
                    misses_by_reason: i.misses_by_reason,
                    hit_rate: i.hit_rate,
                    hand_over_p50_ms: i.hand_over_p50_ms,
                    hand_over_p95_ms: i.hand_over_p95_ms,
                    cold_ready_seconds: i.cold_ready_seconds,
                    cold_ready_samples: i.cold_ready_samples,
                    claim_ready_seconds: i.claim_ready_seconds,
                    claim_ready_samples: i.claim_ready_samples,
                    time_saved_seconds: i.time_saved_seconds,
                    prebuilds: i.prebuilds,
                    idle_instance_hours: i.idle_instance_hours,
                    instance_hours_per_hit: i.instance_hours_per_hit,
                })
            })
            .collect();
        // A template's presets (newest version first, as listed), then its requests no preset applied to.
        out.sort_by(|a, b| {
            (&a.template_name, a.template_id, a.preset_id.is_none()).cmp(&(
                &b.template_name,
                b.template_id,
                b.preset_id.is_none(),
            ))
        });
        Ok(PrebuildInsights {
            window_seconds: i64::try_from(length.as_secs()).unwrap_or(i64::MAX),
            since: window.start,
            until: window.end,
            presets: out,
        })
    }

    /// The reconciliation lock, unless another replica holds it.
    pub async fn try_lock_reconciler(&self) -> Result<Option<ReconcilerLock>> {
        Ok(self.store.try_lock_reconciler().await?)
    }

    /// A connection to hold reconciliation locks on (the global one, presets').
    pub async fn lock_session(&self) -> Result<LockSession> {
        Ok(self.store.lock_session().await?)
    }

    /// Records when prebuilds became claimable (once per prebuild; the
    /// store skips those already recorded), and queues the drift check of
    /// their presets that have none yet (Terraform templates only).
    pub async fn record_eligible(&self, prebuilds: &[(Uuid, Uuid)]) -> Result<()> {
        self.store.record_eligible(prebuilds).await?;
        let queued = self.store.queue_drift_checks(prebuilds).await?;
        if queued > 0 {
            tracing::info!(queued, "drift checks queued for presets whose prebuilds became eligible");
        }
        Ok(())
    }

    /// Carries out one preset's actions. Failures of single actions are
    /// logged and counted out; the next cycle sees what is left to do.
    pub async fn carry_out(&self, plan: &PrebuildPlan<'_>) -> CycleStats {
        let mut done = CycleStats::default();
        let (row, state, now) = (plan.row, plan.state, plan.now);
        for action in &plan.decision.actions {
            match action {
                reconcile::Action::CancelPending(jobs) => match self.store.cancel_pending_jobs(jobs).await {
                    Ok(canceled) => {
                        for job in &canceled {
                            self.events.job_done(*job).await;
                        }
                        done.canceled += canceled.len();
                        done.actions += 1;
                        // Canceled creations are deleted by the next cycle: ask for it now.
                        if !canceled.is_empty() {
                            self.events.reconcile(Trigger::Preset(state.preset_id)).await;
                        }
                    }
                    Err(err) => tracing::warn!(preset = %row.preset_name, error = %err, "cannot cancel creations"),
                },
                reconcile::Action::Delete(workspaces) => {
                    for id in workspaces {
                        let reason = deletion_reason(state, *id, now);
                        match self.delete_prebuild(*id).await {
                            Ok(()) => {
                                done.deleted += 1;
                                if reason == DeletionReason::AgentsNotReady {
                                    tracing::warn!(preset = %row.preset_name, workspace = %id,
                                        "prebuild replaced: its agents were not ready within the template's agent_ready_timeout");
                                }
                                let mut events = vec![(*id, state.preset_id, PrebuildEvent::Deleted, Some(reason))];
                                if reason == DeletionReason::Expired {
                                    events.push((*id, state.preset_id, PrebuildEvent::Expired, None));
                                }
                                self.record_events(&events).await;
                            }
                            // Someone else (a claim, a user) got there first: the next cycle sees it.
                            Err(StoreError::InProgress(_) | StoreError::NotFound) => {}
                            Err(err) => tracing::warn!(workspace = %id, error = %err, "cannot delete a prebuild"),
                        }
                    }
                    done.actions += 1;
                }
                reconcile::Action::Create(count) => {
                    let values = match self.preset_values(state).await {
                        Ok(values) => values,
                        Err(problem) => {
                            tracing::warn!(preset = %row.preset_name, template = %row.template_name, %problem,
                                "preset parameters do not validate; its prebuilds will not be created");
                            if let Err(err) = self.store.set_preset_validation_error(state.preset_id, &problem).await {
                                tracing::warn!(preset = %row.preset_name, error = %err, "cannot record the validation failure");
                            }
                            break;
                        }
                    };
                    match self.create_prebuilds(row, state, &values, *count).await {
                        Ok(ids) => done.created += ids.len(),
                        Err(err) => tracing::warn!(preset = %row.preset_name, error = %err, "cannot create prebuilds"),
                    }
                    done.actions += 1;
                }
            }
        }
        done
    }

    /// The history of prebuilds' lives is for insight, not for correctness:
    /// failing to record it is logged, never fatal.
    async fn record_events(&self, events: &[(Uuid, Uuid, PrebuildEvent, Option<DeletionReason>)]) {
        if let Err(err) = self.store.record_prebuild_events(events).await {
            tracing::warn!(error = %err, "cannot record prebuild events");
        }
    }

    /// The preset's parameter values for a new prebuild, validated as any
    /// build's are; an error is a validation failure (not retried).
    async fn preset_values(&self, state: &PresetState) -> std::result::Result<BTreeMap<String, String>, String> {
        let parameters = self.store.version_parameters(state.template_version_id).await.map_err(|e| e.to_string())?;
        let presets = self.store.version_presets(state.template_version_id).await.map_err(|e| e.to_string())?;
        let preset = presets.iter().find(|p| p.id == state.preset_id).ok_or("the preset is gone")?;
        resolve_parameters(&ParameterInput {
            parameters: &parameters,
            previous: None,
            preset: Some((&preset.name, &preset.parameters.0)),
            requested: &BTreeMap::new(),
            transition: Transition::Start,
        })
        .map_err(|problems| problems.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; "))
    }

    /// Queues `count` prebuilds of a preset at once (their `created` events with them).
    async fn create_prebuilds(
        &self,
        row: &PresetSnapshotRow,
        state: &PresetState,
        values: &BTreeMap<String, String>,
        count: u32,
    ) -> std::result::Result<Vec<Uuid>, StoreError> {
        let names = (0..count)
            .map(|_| {
                let suffix: String = rand::rng().sample_iter(Alphanumeric).take(8).map(char::from).collect();
                format!("prebuild-{}", suffix.to_lowercase())
            })
            .collect();
        // Prebuilds get no lifecycle fields: no TTL, deadline or autostart until claimed.
        let ids = self
            .store
            .create_prebuilds(&NewPrebuilds {
                organization_id: row.organization_id,
                template_id: state.template_id,
                template_version_id: state.template_version_id,
                preset_id: state.preset_id,
                parameters: values,
                names,
            })
            .await?;
        tracing::debug!(preset = %row.preset_name, count = ids.len(), "prebuilds queued");
        Ok(ids)
    }

    /// Removes a prebuild: at once if nothing was ever built for it, else by
    /// a delete build initiated by the prebuilds user, on the version and
    /// with the values of the prebuild's latest build — only while it is
    /// still unclaimed: a claim landing meanwhile keeps its workspace.
    async fn delete_prebuild(&self, workspace_id: Uuid) -> std::result::Result<(), StoreError> {
        // A creation canceled before any daemon took it left nothing to tear down.
        if self.store.remove_never_built(workspace_id, PREBUILDS_USER_ID).await? {
            return Ok(());
        }
        let workspace = self.store.workspace(workspace_id).await?;
        if workspace.owner_id != PREBUILDS_USER_ID {
            return Err(StoreError::NotFound);
        }
        let latest = self.store.build(workspace.latest_build_id).await?;
        self.store
            .create_build_for_owner(
                workspace_id,
                PREBUILDS_USER_ID,
                &NewBuild {
                    transition: Transition::Delete,
                    initiator_id: PREBUILDS_USER_ID,
                    reason: BuildReason::Prebuild,
                    template_version_id: latest.template_version_id,
                    preset_id: None,
                    parameters: latest.parameters.0,
                    deadline: None,
                    max_deadline: None,
                },
            )
            .await?;
        Ok(())
    }
}

fn preset_ids(raw: &PrebuildsSnapshot) -> Vec<Uuid> {
    raw.presets.iter().map(|p| p.preset_id).collect()
}

/// Each preset's pool in a snapshot: its counts and status as decided now,
/// and its latest drift check (`drift`, by preset).
fn pool_statuses(
    raw: PrebuildsSnapshot,
    snapshot: &Snapshot,
    mut drift: std::collections::HashMap<Uuid, PresetDriftCheck>,
) -> Vec<PresetPoolStatus> {
    raw.presets
        .into_iter()
        .zip(&snapshot.presets)
        .map(|(row, preset)| {
            let decision = reconcile::decide(preset, snapshot.now, &snapshot.settings);
            let c = decision.counts;
            PresetPoolStatus {
                organization_name: row.organization_name,
                template_id: row.template_id,
                template_name: row.template_name,
                template_version_id: row.template_version_id,
                version_active: row.version_active,
                preset_id: row.preset_id,
                preset_name: row.preset_name,
                desired: c.desired,
                running: c.running,
                eligible: c.eligible,
                expired: c.expired,
                agents_not_ready: c.agents_not_ready,
                starting: c.starting,
                stopping: c.stopping,
                deleting: c.deleting,
                failed: c.failed,
                status: decision.status.kind(),
                backoff_until: match decision.status {
                    Status::Backoff { until } => Some(until),
                    _ => None,
                },
                validation_error: row.validation_error,
                last_invalidated_at: row.last_invalidated_at,
                drift_check: drift.remove(&row.preset_id),
            }
        })
        .collect()
}

fn deletion_reason(state: &PresetState, workspace: Uuid, now: chrono::DateTime<chrono::Utc>) -> DeletionReason {
    let prebuild = state.prebuilds.iter().find(|b| b.workspace_id == workspace);
    if !state.keeps_pool() {
        DeletionReason::Inactive
    } else if prebuild.is_some_and(|b| b.latest.status != JobStatus::Succeeded) {
        DeletionReason::Failed
    } else if prebuild.is_some_and(|b| reconcile::agents_timed_out(state, b, now)) {
        DeletionReason::AgentsNotReady
    } else if prebuild.is_some_and(|b| reconcile::is_due_for_replacement(state, b, now)) {
        DeletionReason::Expired
    } else {
        DeletionReason::Surplus
    }
}

/// How often a pool watch looks again when nothing was announced.
const POOLS_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// One open [`Domain::watch_prebuilds_status`] stream.
struct PoolWatch {
    domain: Domain,
    actor: Actor,
    announcements: Subscription,
    /// What was sent last.
    last: PrebuildsStatus,
}

impl PoolWatch {
    /// The pools' next changed status; `None` ends the stream.
    async fn next_change(&mut self) -> Option<PrebuildsStatus> {
        loop {
            tokio::select! {
                event = self.announcements.recv() => {
                    event?;
                }
                () = tokio::time::sleep(POOLS_REFRESH) => {}
            }
            // Announcements already waiting are answered by the one read below.
            while self.announcements.try_recv().is_some() {}
            let status = match self.domain.prebuilds_status(&self.actor).await {
                Ok(status) => status,
                Err(err) => {
                    tracing::warn!(error = %err, "a pool watch cannot read the pools");
                    return None;
                }
            };
            if status != self.last {
                self.last = status.clone();
                return Some(status);
            }
        }
    }
}
