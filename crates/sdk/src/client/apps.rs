//! Apps and dev containers: an agent's reports, and reading a workspace's.

use uuid::Uuid;

use super::{Client, ClientError};
use crate::types::{
    AgentAppHealthRequest, AgentAppStatusRequest, AgentDevcontainerRequest, Response, WorkspaceAppStatus, WorkspaceApps,
};

impl Client {
    /// A workspace's apps (with health and latest status) and dev containers.
    pub async fn workspace_apps(&self, workspace_id: Uuid) -> Result<WorkspaceApps, ClientError> {
        self.get(&format!("api/v2/workspaces/{workspace_id}/apps")).await
    }

    /// The statuses reported about a workspace's app, newest first.
    pub async fn workspace_app_statuses(
        &self,
        workspace_id: Uuid,
        app: &str,
    ) -> Result<Vec<WorkspaceAppStatus>, ClientError> {
        self.get(&format!("api/v2/workspaces/{workspace_id}/apps/{app}/statuses")).await
    }

    pub async fn agent_app_health(&self, req: &AgentAppHealthRequest) -> Result<Response, ClientError> {
        self.post("api/v2/workspaceagents/me/app-health", req).await
    }

    /// Answers the status as recorded.
    pub async fn agent_app_status(&self, req: &AgentAppStatusRequest) -> Result<WorkspaceAppStatus, ClientError> {
        self.post("api/v2/workspaceagents/me/app-status", req).await
    }

    pub async fn agent_devcontainer(&self, req: &AgentDevcontainerRequest) -> Result<Response, ClientError> {
        self.post("api/v2/workspaceagents/me/devcontainers", req).await
    }
}
