//! Connections to workspaces: which replica holds each agent's tunnel, and
//! the connection log.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_states::{ConnectionStatus, ConnectionType};

use crate::{Result, Store};

/// Where an agent's tunnel is held.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TunnelRow {
    pub relay_url: String,
    pub secret: String,
}

/// Who connected to what: the user, and the workspace and agent with
/// their names as they were.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionParties {
    pub user_id: Uuid,
    pub username: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub workspace_owner_id: Uuid,
    pub workspace_owner_name: String,
    pub agent_id: Uuid,
    pub agent_name: String,
}

/// A connection as it opens.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: Uuid,
    pub kind: ConnectionType,
    pub parties: ConnectionParties,
    pub client_address: String,
    pub port: Option<u16>,
    /// The replica recording it, which closes it (or the others do, if it dies).
    pub replica_id: Uuid,
    /// For [`ConnectionType::App`]: the app's name.
    pub app: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: ConnectionType,
    #[sqlx(flatten)]
    pub parties: ConnectionParties,
    pub client_address: String,
    pub port: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub close_reason: Option<String>,
    pub app: Option<String>,
    pub http_status: Option<i16>,
}

/// Which app requests continue one connection log entry: one person's, to
/// one app of one agent, from one address.
#[derive(Debug, Clone)]
pub struct AppSessionKey<'a> {
    pub user_id: Uuid,
    pub agent_id: Uuid,
    pub app: &'a str,
    pub client_address: &'a str,
}

/// Which connections a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// Only those this user made (a person who may not see everyone's).
    pub visible_to: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub kind: Option<ConnectionType>,
    pub status: Option<ConnectionStatus>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
}

impl Store {
    /// Records that replica `replica_id` holds the agent's tunnel now
    /// (replacing whichever replica held it before).
    pub async fn hold_tunnel(&self, agent_id: Uuid, replica_id: Uuid, relay_url: &str, secret: &str) -> Result<()> {
        sqlx::query!(
            "INSERT INTO agent_tunnels (agent_id, relay_url, secret, connected_at, replica_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent_id) DO UPDATE SET relay_url = $2, secret = $3, connected_at = $4, replica_id = $5",
            agent_id,
            relay_url,
            secret,
            self.now(),
            replica_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the tunnel, unless another has replaced it since.
    pub async fn release_tunnel(&self, agent_id: Uuid, secret: &str) -> Result<()> {
        sqlx::query!("DELETE FROM agent_tunnels WHERE agent_id = $1 AND secret = $2", agent_id, secret)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn tunnel(&self, agent_id: Uuid) -> Result<Option<TunnelRow>> {
        Ok(sqlx::query_as!(TunnelRow, "SELECT relay_url, secret FROM agent_tunnels WHERE agent_id = $1", agent_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn open_connection(&self, c: &NewConnection) -> Result<()> {
        sqlx::query!(
            "INSERT INTO connection_log (id, type, user_id, username, workspace_id, workspace_name, \
                 workspace_owner_id, workspace_owner_name, agent_id, agent_name, client_address, port, app, started_at, \
                 replica_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            c.id,
            c.kind as ConnectionType,
            c.parties.user_id,
            c.parties.username,
            c.parties.workspace_id,
            c.parties.workspace_name,
            c.parties.workspace_owner_id,
            c.parties.workspace_owner_name,
            c.parties.agent_id,
            c.parties.agent_name,
            c.client_address,
            c.port.map(i32::from),
            c.app,
            self.now(),
            c.replica_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes a connection's entry (once: a later close changes nothing).
    pub async fn close_connection(&self, id: Uuid, reason: &str) -> Result<()> {
        sqlx::query!(
            "UPDATE connection_log SET ended_at = greatest($2, started_at), close_reason = $3 \
             WHERE id = $1 AND ended_at IS NULL",
            id,
            self.now(),
            reason,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The app connection entry that a new request continues: the latest
    /// of `key`'s that ended (with an answer other than a WebSocket's) at or
    /// after `since`.
    pub async fn app_session(&self, key: &AppSessionKey<'_>, since: DateTime<Utc>) -> Result<Option<Uuid>> {
        Ok(sqlx::query_scalar!(
            "SELECT id FROM connection_log \
             WHERE type = 'app' AND user_id = $1 AND agent_id = $2 AND app = $3 AND client_address = $4 \
               AND ended_at >= $5 AND http_status IS DISTINCT FROM 101 \
             ORDER BY ended_at DESC LIMIT 1",
            key.user_id,
            key.agent_id,
            key.app,
            key.client_address,
            since,
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends an app connection's entry (again, for each request it covers):
    /// now, with the latest request's outcome.
    pub async fn end_app_connection(&self, id: Uuid, reason: &str, http_status: Option<u16>) -> Result<()> {
        sqlx::query!(
            "UPDATE connection_log SET ended_at = greatest($2, started_at), close_reason = $3, http_status = $4 \
             WHERE id = $1 AND type = 'app'",
            id,
            self.now(),
            reason,
            http_status.and_then(|s| i16::try_from(s).ok()),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a session's exit status on a connection of this agent's.
    /// False when the agent has no such connection.
    pub async fn set_connection_exit(&self, agent_id: Uuid, id: Uuid, exit_code: i32) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE connection_log SET exit_code = $3 WHERE id = $1 AND agent_id = $2",
            id,
            agent_id,
            exit_code,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A page of the connections `filter` matches, newest first, and how many it matches in all.
    pub async fn connections(
        &self,
        filter: &ConnectionFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ConnectionRow>, i64)> {
        const WHERE: &str = "WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::uuid IS NULL OR workspace_id = $2) \
             AND ($3::uuid IS NULL OR workspace_owner_id = $3) AND ($4::uuid IS NULL OR user_id = $4) \
             AND ($5::text IS NULL OR type = $5) \
             AND ($6::text IS NULL OR ($6 = 'ongoing') = (ended_at IS NULL)) \
             AND ($7::timestamptz IS NULL OR started_at >= $7) AND ($8::timestamptz IS NULL OR started_at < $8)";
        let page = format!("SELECT * FROM connection_log {WHERE} ORDER BY started_at DESC, id LIMIT $9 OFFSET $10");
        let count = format!("SELECT count(*) FROM connection_log {WHERE}");
        let rows = filtered(sqlx::query_as(sqlx::AssertSqlSafe(page)), filter)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let (total,) = filtered(sqlx::query_as(sqlx::AssertSqlSafe(count)), filter).fetch_one(&self.pool).await?;
        Ok((rows, total))
    }
}

/// Binds the filter's values as `$1` to `$8` of [`Store::connections`]' WHERE.
fn filtered<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    filter: &ConnectionFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(filter.visible_to)
        .bind(filter.workspace_id)
        .bind(filter.owner_id)
        .bind(filter.user_id)
        .bind(filter.kind)
        .bind(filter.status.map(ConnectionStatus::as_str))
        .bind(filter.started_after)
        .bind(filter.started_before)
}
