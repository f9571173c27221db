//! Stored rows as the API shows them. Listings are assembled from a fixed
//! number of set-based reads, whatever their length: rows first, then every
//! row's builds, jobs and agents in one query each.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_sdk::{
    AgentConnection, BuildParameter, Notification, PrebuildPolicy, PrebuildSchedule, PrebuildScheduling, Preset,
    PresetParameter, ProvisionerDaemon, ProvisionerJob, ProvisionerJobLog, ProvisionerJobMetadata, ProvisionerKey,
    Template, TemplateSettings, TemplateVersion, TemplateVersionParameter, TemplateVersionParameterOption, User,
    Workspace, WorkspaceAgent, WorkspaceBuild, WorkspaceResource,
};
use warmspace_store::agents::AgentRow;
use warmspace_store::claims::Claimed;
use warmspace_store::daemons::DaemonRow;
use warmspace_store::jobs::{JobRow, LogRow};
use warmspace_store::notifications::NotificationRow;
use warmspace_store::workspaces::{BuildRow, WorkspaceRow};
use warmspace_store::{PresetRow, ProvisionerKeyRow, TemplateRow, TemplateVersionRow, UserRow};
use warmspace_template::Parameter;

use super::actor::subject_of;
use super::{Domain, Error, Result};

/// Agents heartbeat every 10 s; three missed ones mean disconnected.
const CONNECTED_WITHIN: chrono::Duration = chrono::Duration::seconds(30);
/// An agent that has not connected this long after its token was issued has timed out.
const CONNECTION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

pub const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl Domain {
    /// Workspaces as shown, in the order given: their latest builds, those
    /// builds' jobs and their agents are read in one query each.
    pub(super) async fn workspace_views(&self, rows: Vec<WorkspaceRow>) -> Result<Vec<Workspace>> {
        let build_ids: Vec<Uuid> = rows.iter().map(|w| w.latest_build_id).collect();
        let workspace_ids: Vec<Uuid> = rows.iter().map(|w| w.id).collect();
        let builds = self.build_views(self.store.builds_by_ids(&build_ids).await?).await?;
        let mut agents: HashMap<Uuid, Vec<WorkspaceAgent>> = HashMap::new();
        let now = self.now();
        for agent in self.store.agents_of(&workspace_ids).await? {
            agents.entry(agent.workspace_id).or_default().push(agent_view(agent, now));
        }
        let mut by_id: HashMap<Uuid, WorkspaceBuild> = builds.into_iter().map(|b| (b.id, b)).collect();
        rows.into_iter()
            .map(|w| {
                let latest = by_id.remove(&w.latest_build_id).ok_or_else(|| {
                    Error::internal(format!("workspace {} lost its latest build {}", w.id, w.latest_build_id))
                })?;
                let agents = agents.remove(&w.id).unwrap_or_default();
                Ok(workspace_view(w, latest, agents))
            })
            .collect()
    }

    /// A claimed workspace as shown, from what the claim's statement returned.
    pub(super) fn claimed_view(&self, claimed: Claimed) -> Workspace {
        let now = self.now();
        let agents = claimed.agents.into_iter().map(|a| agent_view(a, now)).collect();
        workspace_view(claimed.workspace, build_view(claimed.job, claimed.build), agents)
    }

    pub(super) async fn workspace_view(&self, row: WorkspaceRow) -> Result<Workspace> {
        Ok(self.workspace_views(vec![row]).await?.remove(0))
    }

    /// Builds as shown, in the order given, with their jobs read in one query.
    pub(super) async fn build_views(&self, rows: Vec<BuildRow>) -> Result<Vec<WorkspaceBuild>> {
        let mut jobs = self.jobs_of(rows.iter().map(|b| b.job_id)).await?;
        rows.into_iter().map(|b| Ok(build_view(take_job(&mut jobs, b.job_id)?, b))).collect()
    }

    /// The jobs with these ids, in one query, to be taken out by id.
    async fn jobs_of(&self, ids: impl Iterator<Item = Uuid>) -> Result<HashMap<Uuid, JobRow>> {
        let ids: Vec<Uuid> = ids.collect();
        Ok(self.store.jobs_by_ids(&ids).await?.into_iter().map(|j| (j.id, j)).collect())
    }

    pub(super) async fn build_view(&self, row: BuildRow) -> Result<WorkspaceBuild> {
        Ok(self.build_views(vec![row]).await?.remove(0))
    }

    /// Template versions as shown, with their import jobs read in one query.
    pub(super) async fn version_views(&self, rows: Vec<TemplateVersionRow>) -> Result<Vec<TemplateVersion>> {
        let mut jobs = self.jobs_of(rows.iter().map(|v| v.job_id)).await?;
        rows.into_iter().map(|v| Ok(version_view(take_job(&mut jobs, v.job_id)?, v))).collect()
    }

    pub(super) async fn version_view(&self, row: TemplateVersionRow) -> Result<TemplateVersion> {
        Ok(self.version_views(vec![row]).await?.remove(0))
    }
}

/// A job every build and version has: missing, the database is inconsistent.
fn take_job(jobs: &mut HashMap<Uuid, JobRow>, id: Uuid) -> Result<JobRow> {
    jobs.remove(&id).ok_or_else(|| Error::internal(format!("job {id} is missing")))
}

fn workspace_view(w: WorkspaceRow, latest_build: WorkspaceBuild, agents: Vec<WorkspaceAgent>) -> Workspace {
    let status = w.status();
    Workspace {
        id: w.id,
        organization_id: w.organization_id,
        owner_id: w.owner_id,
        owner_name: w.owner_name,
        template_id: w.template_id,
        template_name: w.template_name,
        template_active_version_id: w.template_active_version_id,
        name: w.name,
        preset_id: w.preset_id,
        preset_name: w.preset_name,
        created_at: w.created_at,
        updated_at: w.updated_at,
        ttl_ms: w.ttl_ms,
        autostart_schedule: w.autostart_schedule,
        last_used_at: w.last_used_at,
        dormant_at: w.dormant_at,
        deleting_at: w.deleting_at,
        outdated: w.latest_version_id != w.template_active_version_id,
        status,
        latest_build,
        agents,
        claim_hand_over_ms: None,
    }
}

fn build_view(job: JobRow, b: BuildRow) -> WorkspaceBuild {
    let status = b.status();
    WorkspaceBuild {
        id: b.id,
        workspace_id: b.workspace_id,
        build_number: b.build_number,
        transition: b.transition,
        initiator_id: b.initiator_id,
        initiator_name: b.initiator_name,
        reason: b.reason,
        template_version_id: b.template_version_id,
        template_version_name: b.template_version_name,
        template_version_preset_id: b.template_version_preset_id,
        status,
        job: job_view(job),
        deadline: b.deadline,
        max_deadline: b.max_deadline,
        created_at: b.created_at,
        updated_at: b.updated_at,
        parameters: b.parameters.0.into_iter().map(|(name, value)| BuildParameter { name, value }).collect(),
        resources: b
            .resources
            .0
            .into_iter()
            .map(|r| WorkspaceResource { address: r.address, kind: r.kind, replaced: r.replaced })
            .collect(),
    }
}

pub fn job_view(row: JobRow) -> ProvisionerJob {
    ProvisionerJob {
        id: row.id,
        organization_id: row.organization_id,
        kind: row.kind,
        status: row.status,
        initiator_id: row.initiator_id,
        priority: row.priority,
        tags: row.tags.0,
        worker_id: row.worker_id,
        worker_name: row.worker_name,
        error: row.error,
        created_at: row.created_at,
        started_at: row.started_at,
        completed_at: row.completed_at,
        canceled_at: row.canceled_at,
        queue_position: row.queue_position,
        logs_overflowed: row.logs_overflowed,
        metadata: ProvisionerJobMetadata {
            template_version_id: row.target.template_version_id,
            template_version_name: row.target.template_version_name,
            template_id: row.target.template_id,
            template_name: row.target.template_name,
            workspace_id: row.target.workspace_id,
            workspace_name: row.target.workspace_name,
            workspace_build_id: row.target.build_id,
            build_number: row.target.build_number,
            transition: row.target.transition,
        },
    }
}

pub fn log_view(row: LogRow) -> ProvisionerJobLog {
    ProvisionerJobLog {
        id: row.id,
        created_at: row.created_at,
        source: row.source,
        level: row.level,
        stage: row.stage,
        output: row.output,
    }
}

/// An agent as shown, its connection judged at `now`.
pub fn agent_view(a: AgentRow, now: DateTime<Utc>) -> WorkspaceAgent {
    let connection = match (a.last_connected_at, a.disconnected_at) {
        (Some(_), Some(_)) => AgentConnection::Disconnected,
        (Some(seen), None) if now - seen <= CONNECTED_WITHIN => AgentConnection::Connected,
        (Some(_), None) => AgentConnection::Disconnected,
        (None, _) if now - a.updated_at > CONNECTION_TIMEOUT => AgentConnection::Timeout,
        (None, _) => AgentConnection::Connecting,
    };
    WorkspaceAgent {
        id: a.id,
        name: a.name,
        lifecycle_state: a.lifecycle_state,
        connection,
        serving_owner_id: a.serving_owner_id,
        first_connected_at: a.first_connected_at,
        last_connected_at: a.last_connected_at,
        disconnected_at: a.disconnected_at,
        started_at: a.started_at,
        ready_at: a.ready_at,
        created_at: a.created_at,
    }
}

pub fn user_view(row: UserRow) -> User {
    let roles = subject_of(&row).roles;
    User {
        id: row.id,
        username: row.username,
        email: row.email,
        name: row.name,
        login_type: row.login_type,
        status: row.status,
        is_system: row.is_system,
        roles,
        organization_ids: row.organization_ids,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_seen_at: row.last_seen_at,
        timezone: row.timezone,
    }
}

fn version_view(job: JobRow, v: TemplateVersionRow) -> TemplateVersion {
    TemplateVersion {
        unchanged: false,
        id: v.id,
        organization_id: v.organization_id,
        template_id: v.template_id,
        name: v.name,
        message: v.message,
        file_id: v.file_id,
        created_by: v.created_by,
        created_at: v.created_at,
        job: job_view(job),
        provisioner: v.provisioner,
        claim_mode: v.claim_mode,
    }
}

pub fn template_view(t: TemplateRow) -> Template {
    let days = DAYS
        .iter()
        .enumerate()
        .filter(|(bit, _)| t.autostop_requirement_days_of_week & (1 << bit) != 0)
        .map(|(_, day)| (*day).to_owned())
        .collect();
    Template {
        id: t.id,
        organization_id: t.organization_id,
        name: t.name,
        display_name: t.display_name,
        description: t.description,
        icon: t.icon,
        active_version_id: t.active_version_id,
        created_by: t.created_by,
        created_at: t.created_at,
        updated_at: t.updated_at,
        settings: TemplateSettings {
            default_ttl_ms: t.default_ttl_ms,
            autostop_requirement_days_of_week: days,
            autostop_requirement_weeks: t.autostop_requirement_weeks,
            autostop_requirement_hour: i32::from(t.autostop_requirement_hour),
            require_active_version: t.require_active_version,
            allow_user_autostart: t.allow_user_autostart,
            failure_ttl_ms: t.failure_ttl_ms,
            time_til_dormant_ms: t.time_til_dormant_ms,
            time_til_dormant_autodelete_ms: t.time_til_dormant_autodelete_ms,
            agent_ready_timeout_ms: t.agent_ready_timeout_ms,
        },
    }
}

pub fn parameter_view(p: Parameter) -> TemplateVersionParameter {
    let required = p.required();
    let validation =
        p.validation.unwrap_or(warmspace_template::Validation { min: None, max: None, regex: None, error: None });
    TemplateVersionParameter {
        name: p.name,
        display_name: p.display_name,
        description: p.description,
        kind: p.kind,
        default_value: p.default,
        required,
        mutable: p.mutable,
        options: p
            .options
            .into_iter()
            .map(|o| TemplateVersionParameterOption {
                name: o.name,
                value: o.value,
                description: o.description,
                icon: o.icon,
            })
            .collect(),
        validation_min: validation.min,
        validation_max: validation.max,
        validation_regex: validation.regex,
        validation_error: validation.error,
    }
}

pub fn preset_view(p: PresetRow) -> Preset {
    let scheduling = p.scheduling_timezone.map(|timezone| PrebuildScheduling {
        timezone,
        schedules: p
            .schedules
            .0
            .into_iter()
            .map(|s| PrebuildSchedule { cron: s.cron, instances: s.instances as i32 })
            .collect(),
    });
    Preset {
        id: p.id,
        template_version_id: p.template_version_id,
        name: p.name,
        description: p.description,
        icon: p.icon,
        default: p.is_default,
        parameters: p.parameters.0.into_iter().map(|(name, value)| PresetParameter { name, value }).collect(),
        prebuilds: p.desired_instances.map(|instances| PrebuildPolicy {
            instances,
            ttl_seconds: p.ttl_seconds,
            scheduling,
        }),
        last_invalidated_at: p.last_invalidated_at,
    }
}

pub fn notification_view(row: NotificationRow) -> Notification {
    Notification {
        id: row.id,
        kind: row.kind,
        title: row.title,
        content: row.content,
        target_id: row.target_id,
        created_at: row.created_at,
        read_at: row.read_at,
    }
}

pub fn key_view(key: ProvisionerKeyRow) -> ProvisionerKey {
    ProvisionerKey { id: key.id, name: key.name, created_at: key.created_at }
}

pub fn daemon_view(d: DaemonRow) -> ProvisionerDaemon {
    ProvisionerDaemon {
        id: d.id,
        name: d.name,
        tags: d.tags.0,
        key_name: d.key_name,
        created_at: d.created_at,
        last_seen_at: d.last_seen_at,
        live: d.live,
        running_jobs: d.running_jobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmspace_sdk::AgentLifecycle;

    fn agent(last: Option<i64>, gone: bool, issued_ago: i64) -> AgentRow {
        let now = Utc::now();
        AgentRow {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            name: "main".into(),
            lifecycle_state: AgentLifecycle::Ready,
            serving_owner_id: None,
            first_connected_at: last.map(|s| now - chrono::Duration::seconds(s)),
            last_connected_at: last.map(|s| now - chrono::Duration::seconds(s)),
            disconnected_at: gone.then_some(now),
            started_at: None,
            ready_at: Some(now),
            created_at: now,
            updated_at: now - chrono::Duration::seconds(issued_ago),
            has_token: true,
        }
    }

    #[test]
    fn connection_status_follows_heartbeats() {
        let now = Utc::now();
        let connection = |a| agent_view(a, now).connection;
        assert_eq!(connection(agent(Some(5), false, 0)), AgentConnection::Connected);
        assert_eq!(connection(agent(Some(45), false, 0)), AgentConnection::Disconnected);
        assert_eq!(connection(agent(Some(5), true, 0)), AgentConnection::Disconnected, "said goodbye");
        assert_eq!(connection(agent(None, false, 10)), AgentConnection::Connecting);
        assert_eq!(connection(agent(None, false, 600)), AgentConnection::Timeout);
    }
}
