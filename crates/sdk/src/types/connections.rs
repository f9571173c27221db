//! People's connections to workspaces (SSH, forwarded ports, apps) and the
//! connection log that records them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
pub use warmspace_states::{ConnectionStatus, ConnectionType};

/// What a client connection to a workspace reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// `ssh` (the agent's SSH server) or `port_forward` (needs `port`).
    #[serde(rename = "type")]
    #[param(inline)]
    pub kind: ConnectionType,
    /// For `port_forward`: the TCP port on the workspace's loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The agent's name; may be left out when the workspace has one agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For `ssh`: a dev container of the agent, by its `devcontainer`
    /// block's name, to run the session inside (it must be `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devcontainer: Option<String>,
}

/// Filters and page of the connection log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionLogQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<Uuid>,
    /// The username of the workspaces' owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The username of who connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub kind: Option<ConnectionType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub status: Option<ConnectionStatus>,
    /// Connections started at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_after: Option<DateTime<Utc>>,
    /// Connections started before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_before: Option<DateTime<Utc>>,
    /// At most this many entries (1 to 1000; 100 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// One connection: who reached which workspace's agent, how, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionLogEntry {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: ConnectionType,
    pub status: ConnectionStatus,
    pub user_id: Uuid,
    pub username: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub workspace_owner_id: Uuid,
    pub workspace_owner_name: String,
    pub agent_id: Uuid,
    pub agent_name: String,
    /// The client's address as the server saw it.
    pub client_address: String,
    /// The forwarded port, for `port_forward`.
    pub port: Option<u16>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// An SSH session's last exit status, as the agent reported it.
    pub exit_code: Option<i32>,
    /// Why it ended: `closed`, or what broke it; for an app, the latest
    /// request's answer (`HTTP 200 OK`) or why it got none.
    pub close_reason: Option<String>,
    /// The app's name, for `app`.
    #[serde(default)]
    pub app: Option<String>,
    /// For `app`: the HTTP status of the latest request the entry covers
    /// (101 for a WebSocket).
    #[serde(default)]
    pub http_status: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionLogPage {
    pub entries: Vec<ConnectionLogEntry>,
    /// How many entries the filters match, on every page.
    pub count: i64,
}

/// An agent's report of how a session on a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConnectionReport {
    pub exit_code: i32,
}
