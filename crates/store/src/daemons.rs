//! Provisioner daemons as last seen: every daemon that ever took a job (or
//! asked for one) has a row, rewritten as it keeps asking.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::jobs::{DAEMON_LIVENESS, Tags};
use crate::{Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DaemonRow {
    pub id: Uuid,
    pub name: String,
    pub tags: Json<Tags>,
    /// The provisioner key it authenticates with; `None` for a daemon inside a server.
    pub key_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Seen recently enough to count toward the prebuild share of the daemons.
    pub live: bool,
    /// Jobs it holds now (running or being canceled).
    pub running_jobs: i64,
}

impl Store {
    /// Every daemon, most recently seen first.
    pub async fn provisioner_daemons(&self) -> Result<Vec<DaemonRow>> {
        let sql = format!(
            "SELECT d.id, d.name, d.tags, k.name AS key_name, d.created_at, d.last_seen_at, \
                 d.last_seen_at > $1 - interval '{DAEMON_LIVENESS}' AS live, \
                 (SELECT count(*) FROM provisioner_jobs j \
                  WHERE j.worker_id = d.id AND j.status IN ('running', 'canceling')) AS running_jobs \
             FROM provisioner_daemons d LEFT JOIN provisioner_keys k ON k.id = d.key_id \
             ORDER BY d.last_seen_at DESC, d.name, d.id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(self.now()).fetch_all(&self.pool).await?)
    }
}
