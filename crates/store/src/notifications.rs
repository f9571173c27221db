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
        .fetch_all(&self.pool)
        .await
        .map_err(invalid_input)
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
