use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::users::USER_COLUMNS;
use crate::{Result, Store, UserRow};

pub struct NewSession {
    /// The public half of the token, used to find the row.
    pub id: String,
    /// SHA-256 of the secret half; the secret itself is never stored.
    pub hashed_secret: Vec<u8>,
    pub user_id: Uuid,
    pub login_type: &'static str,
    pub expires_at: DateTime<Utc>,
}

/// A session together with the user it belongs to: what authenticating a
/// request needs, in one round trip.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub key_hashed_secret: Vec<u8>,
    pub key_expires_at: DateTime<Utc>,
    pub key_last_used_at: DateTime<Utc>,
}

impl Store {
    pub async fn create_session(&self, session: &NewSession) -> Result<()> {
        sqlx::query!(
            "INSERT INTO api_keys (id, hashed_secret, user_id, login_type, expires_at, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            session.id,
            session.hashed_secret,
            session.user_id,
            session.login_type,
            session.expires_at,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id and its (non-deleted) user, if any.
    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {USER_COLUMNS}, k.hashed_secret AS key_hashed_secret, k.expires_at AS key_expires_at, \
                 k.last_used_at AS key_last_used_at \
                 FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1 AND NOT u.deleted"
            )
        });
        Ok(sqlx::query_as(AssertSqlSafe(SQL.as_str())).bind(id).fetch_optional(&self.pool).await?)
    }

    /// Records use of a session and slides its expiry forward to `expires_at`
    /// (never backward).
    pub async fn refresh_session(&self, id: &str, expires_at: DateTime<Utc>) -> Result<()> {
        sqlx::query!(
            "UPDATE api_keys SET last_used_at = $3, expires_at = greatest(expires_at, $2) WHERE id = $1",
            id,
            expires_at,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query!("DELETE FROM api_keys WHERE id = $1", id).execute(&self.pool).await?;
        Ok(())
    }
}
