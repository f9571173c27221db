//! What the lifecycle executor reads and writes: people's workspaces that
//! may need a transition (never unclaimed prebuilds: every statement here
//! leaves out the prebuilds user itself), the transitions as one
//! transaction each, the once-per-deadline stop notice, the activity bump,
//! and the executor's lock and last tick.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;
use warmspace_states::{JobStatus, Transition};

use crate::notifications::Notified;
use crate::prebuilds::LockSession;
use crate::workspaces::{NewBuild, PREBUILDS_USER_ID, insert_build};
use crate::{Result, Store};

/// The system user that initiates the executor's builds.
pub const LIFECYCLE_USER_ID: Uuid = uuid::uuid!("0a7b1c3e-5d2f-4e6a-9b8c-1f2e3d4c5b6a");

const LIFECYCLE_LOCK: &str = "hashtext('warmspace.lifecycle')";

/// A person's workspace as the executor sees it: its latest build (which
/// has finished), its settings, its template's rules and its owner's zone.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LifecycleRow {
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_timezone: String,
    pub template_name: String,
    pub autostart_schedule: Option<String>,
    pub ttl_ms: Option<i64>,
    pub last_used_at: DateTime<Utc>,
    pub dormant_at: Option<DateTime<Utc>>,
    pub deleting_at: Option<DateTime<Utc>>,
    pub build_id: Uuid,
    pub build_number: i32,
    pub transition: Transition,
    pub template_version_id: Uuid,
    pub build_created_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    pub stop_notice_for: Option<DateTime<Utc>>,
    pub job_status: JobStatus,
    pub job_completed_at: Option<DateTime<Utc>>,
    pub allow_user_autostart: bool,
    pub failure_ttl_ms: i64,
    pub time_til_dormant_ms: i64,
    pub time_til_dormant_autodelete_ms: i64,
    pub autostop_requirement_days_of_week: i16,
    pub autostop_requirement_weeks: i32,
    pub autostop_requirement_hour: i16,
    pub require_active_version: bool,
    pub active_version_id: Uuid,
}

/// The candidates of a tick at `$1`: people's workspaces whose latest build
/// has finished and for which some rule could be due (the pure rules decide).
static CANDIDATES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT w.id AS workspace_id, w.name AS workspace_name, w.owner_id, u.timezone AS owner_timezone, \
             t.name AS template_name, w.autostart_schedule, w.ttl_ms, w.last_used_at, w.dormant_at, w.deleting_at, \
             b.id AS build_id, b.build_number, b.transition, b.template_version_id, b.created_at AS build_created_at, \
             b.deadline, b.max_deadline, b.stop_notice_for, j.status AS job_status, j.completed_at AS job_completed_at, \
             t.allow_user_autostart, t.failure_ttl_ms, t.time_til_dormant_ms, t.time_til_dormant_autodelete_ms, \
             t.autostop_requirement_days_of_week, t.autostop_requirement_weeks, t.autostop_requirement_hour, \
             t.require_active_version, t.active_version_id \
         FROM workspaces w \
         JOIN users u ON u.id = w.owner_id \
         JOIN templates t ON t.id = w.template_id \
         JOIN LATERAL (SELECT * FROM workspace_builds WHERE workspace_id = w.id \
                       ORDER BY build_number DESC LIMIT 1) b ON true \
         JOIN provisioner_jobs j ON j.id = b.job_id \
         WHERE NOT w.deleted AND w.owner_id <> '{PREBUILDS_USER_ID}' \
           AND j.status IN ('succeeded', 'failed') \
           AND ((b.transition = 'start' AND j.status = 'succeeded' AND b.deadline IS NOT NULL \
                 AND b.deadline <= $1 + interval '30 minutes') \
             OR (b.transition = 'stop' AND j.status = 'succeeded' AND w.autostart_schedule IS NOT NULL \
                 AND t.allow_user_autostart AND w.dormant_at IS NULL) \
             OR (b.transition = 'start' AND j.status = 'failed' AND t.failure_ttl_ms > 0 \
                 AND j.completed_at + t.failure_ttl_ms * interval '1 millisecond' <= $1) \
             OR (w.dormant_at IS NULL AND t.time_til_dormant_ms > 0 \
                 AND w.last_used_at + t.time_til_dormant_ms * interval '1 millisecond' <= $1) \
             OR (w.dormant_at IS NOT NULL AND w.deleting_at IS NULL AND t.time_til_dormant_autodelete_ms > 0 \
                 AND w.dormant_at + t.time_til_dormant_autodelete_ms * interval '1 millisecond' <= $1)) \
         ORDER BY w.id"
    )
});

/// A notification for a workspace's owner, written with the change it tells of.
#[derive(Debug, Clone)]
pub struct OwnerNotice {
    pub kind: &'static str,
    pub title: String,
    pub content: String,
}

/// One transition the executor carries out, in one transaction.
#[derive(Debug, Clone)]
pub struct LifecycleChange {
    pub workspace_id: Uuid,
    /// The latest build the decision was made from: if the workspace has
    /// another by now (a person, or another replica, acted), nothing is done.
    pub expected_build_number: i32,
    pub build: Option<NewBuild>,
    pub mark_dormant: bool,
    pub mark_deleting: bool,
    pub notices: Vec<OwnerNotice>,
}

/// What a change did, for announcing after its commit.
#[derive(Debug, Clone)]
pub struct LifecycleDone {
    pub build_id: Option<Uuid>,
    pub notified: Vec<Notified>,
}

/// The workspace an agent's activity bumps, as it is now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivityTarget {
    pub workspace_id: Uuid,
    pub ttl_ms: Option<i64>,
    pub build_id: Uuid,
    pub transition: Transition,
    pub job_status: JobStatus,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
}

impl LockSession {
    /// The lifecycle executor's lock, unless another session holds it.
    pub async fn try_lock_lifecycle(&mut self) -> Result<bool> {
        let sql = format!("SELECT pg_try_advisory_lock({LIFECYCLE_LOCK})");
        Ok(sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(self.connection()).await?)
    }
}

async fn insert_owner_notice(
    tx: &mut sqlx::PgConnection,
    user_id: Uuid,
    notice: &OwnerNotice,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Notified> {
    let notification_id = sqlx::query_scalar!(
        "INSERT INTO notifications (user_id, kind, title, content, target_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        user_id,
        notice.kind,
        notice.title,
        notice.content,
        workspace_id,
        now,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(Notified { user_id, notification_id })
}

impl Store {
    /// A session holding the lifecycle lock, or `None` when another holds it.
    pub async fn try_lock_lifecycle(&self) -> Result<Option<LockSession>> {
        let mut session = self.lock_session().await?;
        if session.try_lock_lifecycle().await? {
            Ok(Some(session))
        } else {
            session.release().await;
            Ok(None)
        }
    }

    /// People's workspaces for which a lifecycle rule may be due at `now`.
    pub async fn lifecycle_candidates(&self, now: DateTime<Utc>) -> Result<Vec<LifecycleRow>> {
        Ok(sqlx::query_as(AssertSqlSafe(CANDIDATES.as_str())).bind(now).fetch_all(&self.pool).await?)
    }

    /// Carries out one transition in one transaction: the build, the
    /// workspace's marks and the owner's notification — unless the
    /// workspace has moved on since the decision (another build, deleted,
    /// or an unclaimed prebuild), when it does nothing and returns `None`.
    pub async fn apply_lifecycle_change(&self, change: &LifecycleChange) -> Result<Option<LifecycleDone>> {
        let mut tx = self.pool.begin().await?;
        let now = self.now();
        let current = sqlx::query!(
            "SELECT w.organization_id, w.owner_id, \
                 (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = w.id) AS latest \
             FROM workspaces w WHERE w.id = $1 AND NOT w.deleted AND w.owner_id <> $2 FOR UPDATE",
            change.workspace_id,
            PREBUILDS_USER_ID,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current.filter(|c| c.latest == Some(change.expected_build_number)) else {
            return Ok(None);
        };
        let build_id = match &change.build {
            Some(build) => Some(insert_build(&mut tx, change.workspace_id, current.organization_id, build, now).await?),
            None => None,
        };
        sqlx::query!(
            "UPDATE workspaces SET dormant_at = CASE WHEN $2 THEN $4 ELSE dormant_at END, \
                 deleting_at = CASE WHEN $3 THEN $4 ELSE deleting_at END, updated_at = $4 \
             WHERE id = $1",
            change.workspace_id,
            change.mark_dormant,
            change.mark_deleting,
            now,
        )
        .execute(&mut *tx)
        .await?;
        let mut notified = Vec::new();
        for notice in &change.notices {
            notified.push(insert_owner_notice(&mut tx, current.owner_id, notice, change.workspace_id, now).await?);
        }
        self.commit_posting(tx, usize::from(build_id.is_some())).await?;
        Ok(Some(LifecycleDone { build_id, notified }))
    }

    /// Tells the owner their workspace will stop at `deadline`, once per
    /// deadline: only if the build still has it and was not told of it yet.
    pub async fn send_stop_notice(
        &self,
        workspace_id: Uuid,
        build_id: Uuid,
        deadline: DateTime<Utc>,
        notice: &OwnerNotice,
    ) -> Result<Option<Notified>> {
        let mut tx = self.pool.begin().await?;
        let owner = sqlx::query_scalar!(
            "UPDATE workspace_builds b SET stop_notice_for = b.deadline \
             FROM workspaces w \
             WHERE b.id = $1 AND w.id = b.workspace_id AND w.id = $2 AND w.owner_id <> $4 \
               AND b.deadline = $3 AND b.stop_notice_for IS DISTINCT FROM b.deadline \
             RETURNING w.owner_id",
            build_id,
            workspace_id,
            deadline,
            PREBUILDS_USER_ID,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(owner) = owner else { return Ok(None) };
        let notified = insert_owner_notice(&mut tx, owner, notice, workspace_id, self.now()).await?;
        tx.commit().await?;
        Ok(Some(notified))
    }

    /// The workspace of an agent, for an activity bump (`None`: an unclaimed
    /// prebuild, or deleted: nobody's activity counts there).
    pub async fn activity_target(&self, agent_id: Uuid) -> Result<Option<ActivityTarget>> {
        let sql = format!(
            "SELECT w.id AS workspace_id, w.ttl_ms, b.id AS build_id, b.transition, j.status AS job_status, \
                 b.deadline, b.max_deadline \
             FROM workspace_agents a \
             JOIN workspaces w ON w.id = a.workspace_id \
             JOIN LATERAL (SELECT * FROM workspace_builds WHERE workspace_id = w.id \
                           ORDER BY build_number DESC LIMIT 1) b ON true \
             JOIN provisioner_jobs j ON j.id = b.job_id \
             WHERE a.id = $1 AND NOT w.deleted AND w.owner_id <> '{PREBUILDS_USER_ID}'"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql)).bind(agent_id).fetch_optional(&self.pool).await?)
    }

    /// Records use of a workspace at `now`, and moves its build's deadline
    /// from `old` to `new` when given (and still `old`: a concurrent change
    /// wins). Returns whether the deadline moved.
    pub async fn record_activity(
        &self,
        workspace_id: Uuid,
        deadline: Option<(Uuid, DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let now = self.now();
        sqlx::query!(
            "UPDATE workspaces SET last_used_at = greatest(last_used_at, $2) WHERE id = $1 AND owner_id <> $3",
            workspace_id,
            now,
            PREBUILDS_USER_ID,
        )
        .execute(&mut *tx)
        .await?;
        let moved = match deadline {
            Some((build_id, old, new)) => {
                sqlx::query!(
                    "UPDATE workspace_builds SET deadline = $3, updated_at = $4 WHERE id = $1 AND deadline = $2",
                    build_id,
                    old,
                    new,
                    now,
                )
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            None => false,
        };
        tx.commit().await?;
        Ok(moved)
    }

    /// Sets the deadline of a workspace's running build (a person's
    /// extension, or a TTL change), if `build_id` is still its latest
    /// build. The database refuses a deadline after the max deadline.
    pub async fn set_build_deadline(
        &self,
        workspace_id: Uuid,
        build_id: Uuid,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let updated = sqlx::query!(
            "UPDATE workspace_builds b SET deadline = $3, updated_at = $4 \
             WHERE b.id = $2 AND b.workspace_id = $1 \
               AND b.build_number = (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = $1)",
            workspace_id,
            build_id,
            deadline,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Wakes a dormant workspace (or marks one dormant): waking counts as a use.
    pub async fn set_workspace_dormant(&self, workspace_id: Uuid, dormant: bool) -> Result<()> {
        let now = self.now();
        sqlx::query!(
            "UPDATE workspaces SET dormant_at = CASE WHEN $2 THEN coalesce(dormant_at, $3) END, deleting_at = NULL, \
                 last_used_at = CASE WHEN $2 THEN last_used_at ELSE $3 END, updated_at = $3 \
             WHERE id = $1 AND NOT deleted",
            workspace_id,
            dormant,
            now,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the last tick's time once a tick has acted.
    pub async fn set_lifecycle_tick(&self, at: DateTime<Utc>) -> Result<()> {
        sqlx::query!(
            "INSERT INTO lifecycle_ticks (singleton, last_tick_at) VALUES (true, $1) \
             ON CONFLICT (singleton) DO UPDATE SET last_tick_at = greatest(lifecycle_ticks.last_tick_at, $1)",
            at,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the last tick ran, if ever.
    pub async fn last_lifecycle_tick(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar!("SELECT last_tick_at FROM lifecycle_ticks").fetch_optional(&self.pool).await?)
    }
}
