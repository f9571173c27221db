use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
pub use warmspace_states::AgentLifecycle;

use super::LogLevel;

/// Header carrying an agent's token (`Authorization: Bearer` works too).
pub const AGENT_TOKEN_HEADER: &str = "Warmspace-Agent-Token";

/// What an agent is told about itself and the workspace it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentManifest {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub template_version_id: Uuid,
    pub env: BTreeMap<String, String>,
    pub startup_script: String,
    pub server_url: String,
    /// The apps the agent health-checks and reports statuses about.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub apps: Vec<super::App>,
    /// The dev containers the agent brings up on start.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub devcontainers: Vec<super::Devcontainer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentConnection {
    /// Never connected yet, still within the connection timeout.
    Connecting,
    Connected,
    /// Connected once, silent since (or said goodbye).
    Disconnected,
    /// Never connected, and the connection timeout has passed.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentLifecycleRequest {
    pub state: AgentLifecycle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentHeartbeatRequest {
    /// The owner the agent currently serves.
    #[serde(default)]
    pub serving_owner_id: Option<Uuid>,
    /// Sessions open through the agent now (SSH, apps, port forwards): any
    /// counts as use of the workspace and pushes its deadline forward.
    #[serde(default)]
    pub sessions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentHeartbeatResponse {
    /// The workspace was stopped or deleted: exit.
    pub stop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentLogLine {
    pub created_at: DateTime<Utc>,
    pub level: LogLevel,
    pub output: String,
}

/// The payload of a `reinit` event: the workspace now belongs to `owner_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReinitEvent {
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub reason: String,
}

/// An agent as the workspace API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceAgent {
    pub id: Uuid,
    pub name: String,
    pub lifecycle_state: AgentLifecycle,
    pub connection: AgentConnection,
    pub serving_owner_id: Option<Uuid>,
    pub first_connected_at: Option<DateTime<Utc>>,
    pub last_connected_at: Option<DateTime<Utc>>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceAgentLog {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub level: LogLevel,
    pub output: String,
}
