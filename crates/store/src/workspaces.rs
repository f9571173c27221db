//! Workspaces and their builds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use warmspace_states::{BuildReason, JobPriority, JobStatus, JobType, Transition, WorkspaceStatus};

use crate::claims::{ClaimMiss, insert_miss};
use crate::jobs::{NewJob, finish_job, insert_job};
use crate::{Result, Store, StoreError};

/// The user that owns unclaimed prebuilds.
pub const PREBUILDS_USER_ID: Uuid = uuid::uuid!("c42fdf75-3097-471c-8c33-fb52454d81c0");

/// What the channel announcing a prebuild's claim is named, before its workspace's id.
const CLAIM_CHANNEL_PREFIX: &str = "workspace_claims:";

/// The channel announcing that a prebuild was claimed, for its agents' re-init streams.
pub fn claim_channel(workspace_id: Uuid) -> String {
    format!("{CLAIM_CHANNEL_PREFIX}{workspace_id}")
}

/// A workspace with what its latest build says about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub template_active_version_id: Uuid,
    pub name: String,
    pub preset_id: Option<Uuid>,
    /// The name of that preset, read with the workspace so that a listing
    /// names every row's preset in the same statement.
    pub preset_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
    pub autostart_schedule: Option<String>,
    pub ttl_ms: Option<i64>,
    pub last_used_at: DateTime<Utc>,
    /// When the lifecycle executor (or a person) marked it dormant: it cannot start until woken.
    pub dormant_at: Option<DateTime<Utc>>,
    /// When its deletion for dormancy was queued.
    pub deleting_at: Option<DateTime<Utc>>,
    pub latest_build_id: Uuid,
    pub latest_build_number: i32,
    pub latest_transition: Transition,
    pub latest_version_id: Uuid,
    pub latest_job_id: Uuid,
    pub latest_job_status: JobStatus,
}

impl WorkspaceRow {
    pub fn status(&self) -> WorkspaceStatus {
        WorkspaceStatus::of_build(self.latest_transition, self.latest_job_status)
    }
}

const WORKSPACE_SELECT: &str = "SELECT w.id, w.organization_id, w.owner_id, u.username AS owner_name, w.template_id, \
             t.name AS template_name, t.active_version_id AS template_active_version_id, w.name, w.preset_id, \
             (SELECT name FROM template_version_presets WHERE id = w.preset_id) AS preset_name, \
             w.created_at, w.updated_at, w.deleted, w.autostart_schedule, w.ttl_ms, w.last_used_at, \
             w.dormant_at, w.deleting_at, b.id AS latest_build_id, b.build_number AS latest_build_number, b.transition AS latest_transition, \
             b.template_version_id AS latest_version_id, j.id AS latest_job_id, j.status AS latest_job_status \
         FROM workspaces w \
         JOIN users u ON u.id = w.owner_id \
         JOIN templates t ON t.id = w.template_id \
         JOIN LATERAL (SELECT * FROM workspace_builds WHERE workspace_id = w.id ORDER BY build_number DESC LIMIT 1) b \
             ON true \
         JOIN provisioner_jobs j ON j.id = b.job_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub build_number: i32,
    pub transition: Transition,
    pub initiator_id: Uuid,
    pub initiator_name: String,
    pub reason: BuildReason,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    pub template_version_preset_id: Option<Uuid>,
    pub job_id: Uuid,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub job_status: JobStatus,
    pub parameters: Json<BTreeMap<String, String>>,
    pub resources: Json<Vec<ResourceRow>>,
}

impl BuildRow {
    /// What the workspace was doing as of this build.
    pub fn status(&self) -> WorkspaceStatus {
        WorkspaceStatus::of_build(self.transition, self.job_status)
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ResourceRow {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub replaced: bool,
}

const BUILD_SELECT: &str = "SELECT b.id, b.workspace_id, b.build_number, b.transition, b.initiator_id, \
             u.username AS initiator_name, b.reason, b.template_version_id, v.name AS template_version_name, \
             b.template_version_preset_id, b.job_id, b.deadline, b.max_deadline, b.created_at, b.updated_at, \
             j.status AS job_status, \
             coalesce((SELECT json_object_agg(p.name, p.value) FROM workspace_build_parameters p \
                       WHERE p.workspace_build_id = b.id), '{}') AS parameters, \
             coalesce((SELECT json_agg(json_build_object('address', r.address, 'type', r.type, \
                       'replaced', r.replaced) ORDER BY r.address) \
                       FROM workspace_resources r WHERE r.workspace_build_id = b.id), '[]') AS resources \
         FROM workspace_builds b JOIN users u ON u.id = b.initiator_id \
         JOIN template_versions v ON v.id = b.template_version_id \
         JOIN provisioner_jobs j ON j.id = b.job_id";

/// A build to queue. Its parameter values have been validated already.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub transition: Transition,
    pub initiator_id: Uuid,
    pub reason: BuildReason,
    pub template_version_id: Uuid,
    pub preset_id: Option<Uuid>,
    pub parameters: BTreeMap<String, String>,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
}

pub struct NewWorkspace {
    pub organization_id: Uuid,
    pub owner_id: Uuid,
    pub template_id: Uuid,
    pub name: String,
    pub ttl_ms: Option<i64>,
    pub autostart_schedule: Option<String>,
    /// Build 1, a `start`.
    pub build: NewBuild,
    /// The create request this answers did not claim a prebuild: recorded
    /// in the same transaction.
    pub miss: Option<ClaimMiss>,
}

/// Filters of a workspace listing; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceFilter {
    pub owner_id: Option<Uuid>,
    pub template_name: Option<String>,
    pub status: Option<WorkspaceStatus>,
    /// Matched as a substring of the name.
    pub name: Option<String>,
    pub include_deleted: bool,
    pub limit: i64,
    pub offset: i64,
}

/// What a finished build leaves behind.
#[derive(Debug, Clone)]
pub struct BuildCompletion {
    /// Succeeded, failed or canceled.
    pub status: JobStatus,
    pub error: Option<String>,
    /// Failed because its daemon stopped under it, not because of what it ran.
    pub interrupted: bool,
    /// The backend's state after the build; `None` when it keeps none.
    pub state: Option<Vec<u8>>,
    pub resources: Vec<(String, String, bool)>,
}

/// What a daemon needs to run a build, gathered in one place (returned
/// with the job when a daemon takes it: see `Store::take_job`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildPayload {
    pub build_id: Uuid,
    pub build_number: i32,
    pub transition: Transition,
    pub reason: BuildReason,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub owner_email: String,
    pub template_version_id: Uuid,
    pub file_id: Uuid,
    pub provisioner_config: Option<Json<serde_json::Value>>,
    pub parameters: Json<BTreeMap<String, String>>,
    /// The state the newest earlier build reported (empty: it kept none).
    pub previous_state: Option<Vec<u8>>,
    /// The agents the template version declares, in order.
    pub agent_names: Vec<String>,
    /// Whether any of the workspace's agents holds a token now (one the
    /// build may have to revoke).
    pub has_agent_tokens: bool,
}

/// Inserts a build and its job inside the caller's transaction, which wakes
/// daemons once committed (see [`Store::commit_posting`]).
pub(crate) async fn insert_build(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    organization_id: Uuid,
    build: &NewBuild,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let number = sqlx::query_scalar!(
        "SELECT coalesce(max(build_number), 0) + 1 AS \"number!\" FROM workspace_builds WHERE workspace_id = $1",
        workspace_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let file_id = sqlx::query_scalar!("SELECT file_id FROM template_versions WHERE id = $1", build.template_version_id)
        .fetch_one(&mut *tx)
        .await?;
    // Pool upkeep waits behind anything a person is waiting for; a claim is a person waiting.
    let job_priority = if build.initiator_id == PREBUILDS_USER_ID && build.reason != BuildReason::Claim {
        JobPriority::Prebuild
    } else {
        JobPriority::User
    };
    let id = Uuid::new_v4();
    let job_id = insert_job(
        tx,
        &NewJob {
            organization_id,
            kind: JobType::WorkspaceBuild,
            initiator_id: build.initiator_id,
            priority: job_priority,
            tags: Default::default(),
            input: serde_json::json!({ "workspace_build_id": id }),
            file_id: Some(file_id),
        },
        now,
    )
    .await?;
    sqlx::query!(
        "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
             template_version_id, template_version_preset_id, job_id, deadline, max_deadline) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        id,
        workspace_id,
        number,
        build.transition as Transition,
        build.initiator_id,
        build.reason as BuildReason,
        build.template_version_id,
        build.preset_id,
        job_id,
        build.deadline,
        build.max_deadline,
    )
    .execute(&mut *tx)
    .await?;
    let (names, values): (Vec<&String>, Vec<&String>) = build.parameters.iter().unzip();
    sqlx::query!(
        "INSERT INTO workspace_build_parameters (workspace_build_id, name, value) \
         SELECT $1, * FROM unnest($2::text[], $3::text[])",
        id,
        names as Vec<&String>,
        values as Vec<&String>,
    )
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

impl Store {
    /// Creates a workspace and queues its first build, in one transaction.
    pub async fn create_workspace(&self, new: &NewWorkspace) -> Result<WorkspaceRow> {
        let mut tx = self.pool.begin().await?;
        let now = self.now();
        // Stamped by the clock: its age decides when a prebuild expires.
        let id = sqlx::query_scalar!(
            "INSERT INTO workspaces (organization_id, owner_id, template_id, name, preset_id, ttl_ms, autostart_schedule, \
                 created_at, updated_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8) RETURNING id",
            new.organization_id,
            new.owner_id,
            new.template_id,
            new.name,
            new.build.preset_id,
            new.ttl_ms,
            new.autostart_schedule,
            now,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_on(e, &[("workspaces_owner_name_key", "name")]))?;
        insert_build(&mut tx, id, new.organization_id, &new.build, now).await?;
        if let Some(miss) = &new.miss {
            insert_miss(&mut tx, miss, new.owner_id, id, now).await?;
        }
        self.commit_posting(tx, 1).await?;
        self.workspace(id).await
    }

    /// Queues a build of a workspace. Refused while another build of it is
    /// pending or running: the workspace row lock makes this check and the
    /// insert one step, so two racing requests cannot both pass it.
    pub async fn create_build(&self, workspace_id: Uuid, build: &NewBuild) -> Result<BuildRow> {
        self.create_build_checked(workspace_id, None, build).await
    }

    /// Like [`Store::create_build`], but only while `owner` still owns the
    /// workspace (`NotFound` otherwise): the reconciler deletes prebuilds
    /// this way, so a claim that lands first keeps its workspace.
    pub async fn create_build_for_owner(&self, workspace_id: Uuid, owner: Uuid, build: &NewBuild) -> Result<BuildRow> {
        self.create_build_checked(workspace_id, Some(owner), build).await
    }

    async fn create_build_checked(
        &self,
        workspace_id: Uuid,
        owner: Option<Uuid>,
        build: &NewBuild,
    ) -> Result<BuildRow> {
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query!(
            "SELECT organization_id, deleted, owner_id FROM workspaces WHERE id = $1 FOR UPDATE",
            workspace_id,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        if current.deleted || owner.is_some_and(|owner| owner != current.owner_id) {
            return Err(StoreError::NotFound);
        }
        let busy = sqlx::query!(
            "SELECT b.build_number, b.transition AS \"transition: Transition\", j.status AS \"status: JobStatus\" \
             FROM workspace_builds b \
             JOIN provisioner_jobs j ON j.id = b.job_id \
             WHERE b.workspace_id = $1 AND j.status IN ('pending', 'running', 'canceling') \
             ORDER BY b.build_number DESC LIMIT 1",
            workspace_id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(busy) = busy {
            let (number, transition, status) = (busy.build_number, busy.transition, busy.status);
            return Err(StoreError::InProgress(format!(
                "build {number} ({transition}) of this workspace is still {status}; wait for it or cancel it"
            )));
        }
        let id = insert_build(&mut tx, workspace_id, current.organization_id, build, self.now()).await?;
        self.commit_posting(tx, 1).await?;
        self.build(id).await
    }

    pub async fn workspace(&self, id: Uuid) -> Result<WorkspaceRow> {
        let sql = format!("{} WHERE w.id = $1", WORKSPACE_SELECT);
        sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    pub async fn workspace_by_name(&self, owner_id: Uuid, name: &str) -> Result<WorkspaceRow> {
        let sql = format!("{} WHERE w.owner_id = $1 AND w.name = $2 AND NOT w.deleted", WORKSPACE_SELECT);
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A page of workspaces, oldest first, and how many match in all.
    pub async fn list_workspaces(&self, filter: &WorkspaceFilter) -> Result<(Vec<WorkspaceRow>, i64)> {
        // A status is matched as the latest builds that show it, so the rule
        // stays in one place (`WorkspaceStatus::of_build`).
        let condition = "($1::uuid IS NULL OR w.owner_id = $1) AND ($2::text IS NULL OR t.name = $2) \
             AND ($3::text IS NULL OR strpos(w.name, $3) > 0) AND ($4 OR NOT w.deleted) \
             AND (NOT $5 OR (b.transition, j.status) IN (SELECT * FROM unnest($6::text[], $7::text[])))";
        let (transitions, statuses): (Vec<Transition>, Vec<JobStatus>) =
            filter.status.map(WorkspaceStatus::latest_builds).unwrap_or_default().into_iter().unzip();
        let list = format!("{} WHERE {condition} ORDER BY w.created_at, w.id LIMIT $8 OFFSET $9", WORKSPACE_SELECT);
        let count = format!("SELECT count(*) FROM ({} WHERE {condition}) matching", WORKSPACE_SELECT);
        let rows = sqlx::query_as(AssertSqlSafe(list))
            .bind(filter.owner_id)
            .bind(&filter.template_name)
            .bind(&filter.name)
            .bind(filter.include_deleted)
            .bind(filter.status.is_some())
            .bind(&transitions)
            .bind(&statuses)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.pool)
            .await?;
        let (total,): (i64,) = sqlx::query_as(AssertSqlSafe(count))
            .bind(filter.owner_id)
            .bind(&filter.template_name)
            .bind(&filter.name)
            .bind(filter.include_deleted)
            .bind(filter.status.is_some())
            .bind(&transitions)
            .bind(&statuses)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, total))
    }

    pub async fn set_workspace_lifecycle(
        &self,
        id: Uuid,
        ttl_ms: Option<i64>,
        autostart: Option<String>,
    ) -> Result<()> {
        sqlx::query!(
            "UPDATE workspaces SET ttl_ms = $2, autostart_schedule = $3, updated_at = now() WHERE id = $1",
            id,
            ttl_ms,
            autostart,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Workspaces other than unclaimed prebuilds that still use a template.
    pub async fn template_in_use(&self, template_id: Uuid) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            "SELECT count(*) AS \"count!\" FROM workspaces WHERE template_id = $1 AND NOT deleted AND owner_id <> $2",
            template_id,
            PREBUILDS_USER_ID,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn build_by_job(&self, job_id: Uuid) -> Result<BuildRow> {
        let sql = format!("{} WHERE b.job_id = $1", BUILD_SELECT);
        sqlx::query_as(AssertSqlSafe(sql)).bind(job_id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    pub async fn build(&self, id: Uuid) -> Result<BuildRow> {
        let sql = format!("{} WHERE b.id = $1", BUILD_SELECT);
        sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    pub async fn build_by_number(&self, workspace_id: Uuid, number: i32) -> Result<BuildRow> {
        let sql = format!("{} WHERE b.workspace_id = $1 AND b.build_number = $2", BUILD_SELECT);
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(number)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Builds by id, in no particular order (a listing's latest builds, in one query).
    pub async fn builds_by_ids(&self, ids: &[Uuid]) -> Result<Vec<BuildRow>> {
        let sql = format!("{} WHERE b.id = ANY ($1)", BUILD_SELECT);
        Ok(sqlx::query_as(AssertSqlSafe(sql)).bind(ids).fetch_all(&self.pool).await?)
    }

    /// A workspace's builds, newest first.
    pub async fn builds(&self, workspace_id: Uuid) -> Result<Vec<BuildRow>> {
        let sql = format!("{} WHERE b.workspace_id = $1 ORDER BY b.build_number DESC", BUILD_SELECT);
        Ok(sqlx::query_as(AssertSqlSafe(sql)).bind(workspace_id).fetch_all(&self.pool).await?)
    }

    /// Records how a build ended — the job's status, the backend's state and
    /// resources, and for a successful delete the workspace's deletion — in
    /// one transaction.
    pub async fn complete_build(&self, job_id: Uuid, worker_id: Uuid, done: &BuildCompletion) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let error = done.error.as_deref();
        let status = finish_job(&mut tx, job_id, worker_id, done.status, error, done.interrupted, self.now()).await?;
        // An empty state means "reported, and there is none", unlike NULL
        // ("never reported"), which makes the next build look further back.
        let build = sqlx::query!(
            "UPDATE workspace_builds SET provisioner_state = $2, updated_at = now() WHERE job_id = $1 \
             RETURNING id, workspace_id, transition AS \"transition: Transition\"",
            job_id,
            done.state.clone().unwrap_or_default(),
        )
        .fetch_one(&mut *tx)
        .await?;
        for (address, kind, replaced) in &done.resources {
            sqlx::query!(
                "INSERT INTO workspace_resources (workspace_build_id, address, type, replaced) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_build_id, address) DO UPDATE SET type = excluded.type, replaced = excluded.replaced",
                build.id,
                address,
                kind,
                replaced,
            )
            .execute(&mut *tx)
            .await?;
        }
        if build.transition == Transition::Delete && status == JobStatus::Succeeded {
            mark_deleted(&mut tx, build.workspace_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a workspace nothing was ever built for — every build of it
    /// was canceled before any daemon took it, so no backend holds anything
    /// of it — without a delete build (DESIGN §5.1). Only while `owner` owns
    /// it. Returns whether it was removed; `false` (nothing changed) when
    /// any of its jobs ever started or has not ended.
    pub async fn remove_never_built(&self, workspace_id: Uuid, owner: Uuid) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders this after any build being queued for it.
        let never_built = sqlx::query_scalar!(
            "SELECT NOT EXISTS (SELECT 1 FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id \
                                WHERE b.workspace_id = w.id AND (j.started_at IS NOT NULL OR j.status <> 'canceled')) \
                 AS \"never_built!\" \
             FROM workspaces w WHERE w.id = $1 AND w.owner_id = $2 AND NOT w.deleted FOR UPDATE",
            workspace_id,
            owner,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        if !never_built {
            return Ok(false);
        }
        mark_deleted(&mut tx, workspace_id).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Marks a workspace deleted; its agents authenticate no more.
async fn mark_deleted(tx: &mut sqlx::PgConnection, workspace_id: Uuid) -> Result<()> {
    sqlx::query!("UPDATE workspaces SET deleted = true, updated_at = now() WHERE id = $1", workspace_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "UPDATE workspace_agents SET token_id = NULL, hashed_secret = NULL, updated_at = now() \
         WHERE workspace_id = $1",
        workspace_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
