//! The inbox: per-user notifications.
//!
//! Writers announce each new notification on its recipient's
//! [`inbox_channel`] (payload: the notification id) once their transaction
//! has committed, so live inbox streams pick it up at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// The pub/sub channel announcing a user's new notifications; each message's
/// payload is a notification id. 42 bytes, well within PostgreSQL's 63.
pub fn inbox_channel(user_id: Uuid) -> String {
    format!("inbox:{user_id}")
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub content: String,
    pub target_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// One notification made for one user: what a caller needs to announce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notified {
    pub user_id: Uuid,
    pub notification_id: Uuid,
}

/// The roles whose holders hear about template and prebuild trouble.
const TEMPLATE_ADMIN_ROLES: &[&str] = &["owner", "template-admin"];

/// What a preset's trouble notice tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrebuildNotice {
    /// A digest of failed creations.
    Failures,
    /// The preset reached its failure hard limit and creates no more.
    HardLimit,
}

impl PrebuildNotice {
    /// The notification's kind.
    pub fn kind(self) -> &'static str {
        match self {
            PrebuildNotice::Failures => "prebuild_failures",
            PrebuildNotice::HardLimit => "prebuild_hard_limited",
        }
    }
}

/// The error a digest gives for a prebuild whose agents were never ready.
const AGENTS_NOT_READY_ERROR: &str = "its agents were not all ready within the template's agent_ready_timeout";

/// One preset's failed creations since its last digest.
#[derive(Debug, Clone)]
pub struct PrebuildFailuresRow {
    pub preset_id: Uuid,
    pub preset_name: String,
    pub template_name: String,
    pub version_name: String,
    /// When the preset's last failure digest was sent, if ever.
    pub last_notice_at: Option<DateTime<Utc>>,
    pub count: i64,
    pub oldest_at: DateTime<Utc>,
    pub newest_at: DateTime<Utc>,
    /// The newest failure's error, if it has one.
    pub last_error: Option<String>,
    /// The workspace whose creation failed last.
    pub last_workspace: String,
}

/// Sends one notification to every active human owner and template admin,
/// in one statement, on `executor` (a pool, or an open transaction).
async fn notify_template_admins(
    executor: impl sqlx::PgExecutor<'_>,
    kind: &str,
    title: &str,
    content: &str,
    target_id: Option<Uuid>,
) -> Result<Vec<Notified>> {
    sqlx::query_as!(
        Notified,
        "INSERT INTO notifications (user_id, kind, title, content, target_id) \
         SELECT u.id, $2, $3, $4, $5 FROM users u \
         WHERE NOT u.deleted AND NOT u.is_system AND u.status = 'active' AND u.rbac_roles && $1::text[] \
         RETURNING user_id, id AS notification_id",
        TEMPLATE_ADMIN_ROLES as &[&str],
        kind,
        title,
        content,
        target_id,
    )
    .fetch_all(executor)
    .await
    .map_err(invalid_input)
}

impl Store {
    /// Sends one notification to each of `user_ids`, in one statement. Returns
    /// the notifications' ids in the order of `user_ids`.
    pub async fn notify(
        &self,
        user_ids: &[Uuid],
        kind: &str,
        title: &str,
        content: &str,
        target_id: Option<Uuid>,
    ) -> Result<Vec<Uuid>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ids made here rather than by the database, so they pair up with
        // `user_ids` without relying on the order of RETURNING.
        let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query!(
            "INSERT INTO notifications (id, user_id, kind, title, content, target_id) \
             SELECT n.id, n.user_id, $3, $4, $5, $6 FROM unnest($1::uuid[], $2::uuid[]) AS n (id, user_id)",
            &ids,
            user_ids,
            kind,
            title,
            content,
            target_id,
        )
        .execute(&self.pool)
        .await
        .map_err(invalid_input)?;
        Ok(ids)
    }

    /// Sends one notification to every active human owner and template
    /// admin, in one statement. Returns who was notified, and with which
    /// notification.
    pub async fn notify_template_admins(
        &self,
        kind: &str,
        title: &str,
        content: &str,
        target_id: Option<Uuid>,
    ) -> Result<Vec<Notified>> {
        notify_template_admins(&self.pool, kind, title, content, target_id).await
    }

    /// Per preset, the creations of prebuilds that failed since its last
    /// failure digest, and no earlier than `since` nor later than `now`: a
    /// failed creation job, or a prebuild deleted because its agents were
    /// never ready. Only presets with such failures are returned. Both
    /// kinds are reached by time through partial indexes.
    pub async fn prebuild_failures(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<PrebuildFailuresRow>> {
        Ok(sqlx::query_as!(
            PrebuildFailuresRow,
            "WITH failures AS ( \
                 SELECT w.preset_id, w.name AS workspace_name, j.completed_at AS at, j.error \
                 FROM provisioner_jobs j JOIN workspace_builds b ON b.job_id = j.id \
                 JOIN workspaces w ON w.id = b.workspace_id \
                 WHERE j.status = 'failed' AND NOT j.interrupted AND j.completed_at > $2 AND j.completed_at <= $3 \
                   AND b.build_number = 1 AND b.initiator_id = $1 AND w.preset_id IS NOT NULL \
                 UNION ALL \
                 SELECT e.preset_id, w.name, e.at, $4 FROM prebuild_events e JOIN workspaces w ON w.id = e.workspace_id \
                 WHERE e.event = 'deleted' AND e.reason = 'agents_not_ready' AND e.at > $2 AND e.at <= $3) \
             SELECT f.preset_id AS \"preset_id!\", p.name AS preset_name, t.name AS template_name, \
                 v.name AS version_name, n.failures_notified_at AS last_notice_at, count(*) AS \"count!\", \
                 min(f.at) AS \"oldest_at!\", max(f.at) AS \"newest_at!\", \
                 (array_agg(f.error ORDER BY f.at DESC))[1] AS last_error, \
                 (array_agg(f.workspace_name ORDER BY f.at DESC))[1] AS \"last_workspace!\" \
             FROM failures f \
             JOIN template_version_presets p ON p.id = f.preset_id \
             JOIN template_versions v ON v.id = p.template_version_id \
             JOIN templates t ON t.id = v.template_id \
             LEFT JOIN prebuild_notices n ON n.preset_id = f.preset_id \
             WHERE n.failures_notified_at IS NULL OR f.at > n.failures_notified_at \
             GROUP BY f.preset_id, p.name, t.name, v.name, n.failures_notified_at \
             ORDER BY t.name, p.name",
            crate::workspaces::PREBUILDS_USER_ID,
            since,
            now,
            AGENTS_NOT_READY_ERROR,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When each of `preset_ids` was last told to have reached its hard
    /// limit (presets never told are left out).
    pub async fn hard_limit_notices(&self, preset_ids: &[Uuid]) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
        let rows = sqlx::query!(
            "SELECT preset_id, hard_limit_notified_at AS \"at!\" FROM prebuild_notices \
             WHERE preset_id = ANY ($1) AND hard_limit_notified_at IS NOT NULL",
            preset_ids,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.preset_id, r.at)).collect())
    }

    /// Tells every template admin of a preset's trouble and records when
    /// (`at`, by the server's clock), in one transaction: a notice is sent
    /// and recorded together or not at all. Returns who was notified, for
    /// the caller to announce once committed.
    pub async fn send_prebuild_notice(
        &self,
        preset_id: Uuid,
        notice: PrebuildNotice,
        at: DateTime<Utc>,
        title: &str,
        content: &str,
    ) -> Result<Vec<Notified>> {
        let mut tx = self.pool.begin().await?;
        match notice {
            PrebuildNotice::Failures => {
                sqlx::query!(
                    "INSERT INTO prebuild_notices (preset_id, failures_notified_at) VALUES ($1, $2) \
                     ON CONFLICT (preset_id) DO UPDATE SET failures_notified_at = EXCLUDED.failures_notified_at",
                    preset_id,
                    at,
                )
                .execute(&mut *tx)
                .await?
            }
            PrebuildNotice::HardLimit => {
                sqlx::query!(
                    "INSERT INTO prebuild_notices (preset_id, hard_limit_notified_at) VALUES ($1, $2) \
                     ON CONFLICT (preset_id) DO UPDATE SET hard_limit_notified_at = EXCLUDED.hard_limit_notified_at",
                    preset_id,
                    at,
                )
                .execute(&mut *tx)
                .await?
            }
        };
        let notified = notify_template_admins(&mut *tx, notice.kind(), title, content, Some(preset_id)).await?;
        tx.commit().await?;
        Ok(notified)
    }

    /// A user's newest `limit` notifications (only the unread ones with
    /// `unread_only`), newest first.
    pub async fn notifications(&self, user_id: Uuid, unread_only: bool, limit: i64) -> Result<Vec<NotificationRow>> {
        // Two statements rather than one with an `$2 OR …` condition, so the
        // unread listing can use the partial index.
        let rows = if unread_only {
            sqlx::query_as!(
                NotificationRow,
                "SELECT id, user_id, kind, title, content, target_id, created_at, read_at \
                 FROM notifications WHERE user_id = $1 AND read_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $2",
                user_id,
                limit,
            )
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query_as!(
                NotificationRow,
                "SELECT id, user_id, kind, title, content, target_id, created_at, read_at \
                 FROM notifications WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                user_id,
                limit,
            )
            .fetch_all(&self.pool)
            .await?
        };
        Ok(rows)
    }

    /// One of a user's notifications; `NotFound` when it is somebody else's.
    pub async fn notification(&self, user_id: Uuid, id: Uuid) -> Result<NotificationRow> {
        sqlx::query_as!(
            NotificationRow,
            "SELECT id, user_id, kind, title, content, target_id, created_at, read_at \
             FROM notifications WHERE id = $1 AND user_id = $2",
            id,
            user_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    pub async fn unread_count(&self, user_id: Uuid) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            "SELECT count(*) AS \"count!\" FROM notifications WHERE user_id = $1 AND read_at IS NULL",
            user_id,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks one of a user's notifications read; `NotFound` when it is
    /// somebody else's. Marking it again keeps the time it was first read.
    pub async fn mark_notification_read(&self, user_id: Uuid, id: Uuid) -> Result<()> {
        let done = sqlx::query!(
            "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = $1 AND user_id = $2",
            id,
            user_id,
        )
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Marks all of a user's unread notifications read; returns how many there were.
    pub async fn mark_all_read(&self, user_id: Uuid) -> Result<u64> {
        let done =
            sqlx::query!("UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL", user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

/// A notification for a user that does not exist, or of a malformed kind, is
/// the caller's mistake rather than a database failure.
fn invalid_input(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        match db.constraint() {
            Some("notifications_user_id_fkey") => {
                return StoreError::Invalid { field: "user_ids", message: "names a user that does not exist".into() };
            }
            Some("notifications_kind_check") => {
                return StoreError::Invalid { field: "kind", message: "must be lowercase words joined by `_`".into() };
            }
            _ => {}
        }
    }
    err.into()
}
