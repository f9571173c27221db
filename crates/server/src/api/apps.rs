//! Apps and dev containers: agents' reports (agent tokens) and a
//! workspace's apps and their status history (people's sessions).

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    AgentAppHealthRequest, AgentAppStatusRequest, AgentDevcontainerRequest, Response as Body, WorkspaceAppStatus,
    WorkspaceApps,
};

use super::extract::{Json, Path};
use super::{ApiError, AppState, message};
use crate::domain::{Actor, AgentAuth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(app_health))
        .routes(routes!(app_status))
        .routes(routes!(devcontainer))
        .routes(routes!(workspace_apps))
        .routes(routes!(app_statuses))
}

/// The health of some of the agent's apps (all of them when it starts).
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/app-health", tag = "agents",
    params(("agent" = String, Path)), request_body = AgentAppHealthRequest,
    responses((status = 200, body = Body), (status = 400, body = Body), (status = 401, body = Body)))]
async fn app_health(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(req): Json<AgentAppHealthRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.report_app_health(&auth, req).await?;
    Ok(message("OK."))
}

/// A status about one of the agent's apps, from something in its workspace.
/// Each app keeps its latest 100.
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/app-status", tag = "agents",
    params(("agent" = String, Path)), request_body = AgentAppStatusRequest,
    responses((status = 200, body = WorkspaceAppStatus), (status = 400, body = Body), (status = 401, body = Body)))]
async fn app_status(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(req): Json<AgentAppStatusRequest>,
) -> Result<axum::Json<WorkspaceAppStatus>, ApiError> {
    auth.check(&agent)?;
    Ok(axum::Json(state.domain.report_app_status(&auth, req).await?))
}

/// A dev container's state.
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/devcontainers", tag = "agents",
    params(("agent" = String, Path)), request_body = AgentDevcontainerRequest,
    responses((status = 200, body = Body), (status = 400, body = Body), (status = 401, body = Body)))]
async fn devcontainer(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(req): Json<AgentDevcontainerRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.report_devcontainer(&auth, req).await?;
    Ok(message("OK."))
}

/// A workspace's apps (health, latest status) and dev containers (state).
#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}/apps", tag = "workspaces", security(("session_token" = [])),
    params(("workspace" = Uuid, Path)), responses((status = 200, body = WorkspaceApps), (status = 404, body = Body)))]
async fn workspace_apps(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WorkspaceApps>, ApiError> {
    Ok(axum::Json(state.domain.workspace_apps(&actor, id).await?))
}

/// The statuses reported about a workspace's app, newest first (at most 100).
#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}/apps/{app}/statuses", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path), ("app" = String, Path)),
    responses((status = 200, body = Vec<WorkspaceAppStatus>), (status = 404, body = Body)))]
async fn app_statuses(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, app)): Path<(Uuid, String)>,
) -> Result<axum::Json<Vec<WorkspaceAppStatus>>, ApiError> {
    Ok(axum::Json(state.domain.workspace_app_statuses(&actor, id, &app).await?))
}
