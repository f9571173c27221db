//! Apps and dev containers: what agents report about them, and how a
//! workspace shows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
pub use warmspace_states::{AppHealth, AppStatusState, DevcontainerState};
pub use warmspace_template::{App, Devcontainer, Healthcheck};

/// The longest app status message, in characters.
pub const MAX_APP_STATUS_MESSAGE: usize = 1024;
/// The longest app status URI, in characters.
pub const MAX_APP_STATUS_URI: usize = 2048;

/// An agent reports the health of some of its apps (all of them when it starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentAppHealthRequest {
    /// App name → its health now.
    pub apps: BTreeMap<String, AppHealth>,
}

/// A status about one of the agent's apps, from something in the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentAppStatusRequest {
    pub app: String,
    pub state: AppStatusState,
    /// At most 1024 characters.
    pub message: String,
    /// Where to look (a pull request, a log), at most 2048 characters.
    #[serde(default)]
    pub uri: Option<String>,
}

/// An agent reports a dev container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDevcontainerRequest {
    pub name: String,
    pub state: DevcontainerState,
    /// Why it could not come up: only with the `error` state.
    #[serde(default)]
    pub error: Option<String>,
}

/// A workspace's apps and dev containers, in the manifest's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceApps {
    pub apps: Vec<WorkspaceApp>,
    pub devcontainers: Vec<WorkspaceDevcontainer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceApp {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub name: String,
    pub display_name: String,
    /// Where the app listens inside the workspace.
    pub url: String,
    /// Where to open it: the server's path for it
    /// (`ACCESS_URL/@OWNER/WORKSPACE.AGENT/apps/APP/`), reverse-proxied to `url`.
    pub proxy_url: String,
    pub health: AppHealth,
    /// The latest status reported about it, if any.
    pub latest_status: Option<WorkspaceAppStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceAppStatus {
    /// Later statuses have larger ids.
    pub id: i64,
    pub agent_name: String,
    pub app: String,
    pub state: AppStatusState,
    pub message: String,
    pub uri: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceDevcontainer {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub name: String,
    pub workspace_folder: String,
    pub config_path: Option<String>,
    /// `None` until its agent reports it.
    pub state: Option<DevcontainerState>,
    /// Why it could not come up (the `devcontainer` CLI's message).
    pub error: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}
