//! The server replicas alive on this database, by their heartbeats, so that
//! what a replica leaves behind when it dies without cleaning up (the agent
//! tunnels it held, the connections it recorded) is cleaned up by the others.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store};

/// The reason a connection's entry is closed with when its replica went.
pub const REPLICA_STOPPED: &str = "replica stopped";

impl Store {
    /// Records that the replica is alive now: its row is written, or its
    /// heartbeat moved (a row the others removed, thinking it dead, comes back).
    pub async fn replica_heartbeat(&self, id: Uuid, relay_url: &str) -> Result<()> {
        sqlx::query!(
            "INSERT INTO replicas (id, relay_url, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = greatest($3, replicas.heartbeat_at)",
            id,
            relay_url,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the replicas whose last heartbeat is before `dead_before`,
    /// and `stopping` (a replica stopping cleanly) if given, in one
    /// statement: their tunnels go with them and the connections they
    /// recorded close with [`REPLICA_STOPPED`]. Returns the replicas removed
    /// and how many connections were closed.
    pub async fn remove_replicas(
        &self,
        dead_before: Option<DateTime<Utc>>,
        stopping: Option<Uuid>,
    ) -> Result<(Vec<Uuid>, i64)> {
        let removed = sqlx::query!(
            "WITH gone AS ( \
                 DELETE FROM replicas WHERE heartbeat_at < $1 OR id = $2 RETURNING id \
             ), closed AS ( \
                 UPDATE connection_log SET ended_at = greatest($3, started_at), close_reason = $4 \
                 WHERE replica_id IN (SELECT id FROM gone) AND ended_at IS NULL RETURNING id \
             ) \
             SELECT (SELECT array_agg(id) FROM gone) AS replicas, (SELECT count(*) FROM closed) AS \"closed!\"",
            dead_before,
            stopping,
            self.now(),
            REPLICA_STOPPED,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((removed.replicas.unwrap_or_default(), removed.closed))
    }
}
