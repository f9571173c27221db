//! The agent protocol (authenticated with agent tokens, each reaching only
//! its own agent) and reading agents' logs for people.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    AgentHeartbeatRequest, AgentHeartbeatResponse, AgentLifecycleRequest, AgentLogLine, AgentManifest,
    Response as Body, WorkspaceAgentLog,
};

use super::extract::{Json, LogJson, Path, Query};
use super::{ApiError, AppState, message, sse};
use crate::domain::{Actor, AgentAuth, Reinit};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(manifest))
        .routes(routes!(lifecycle))
        .routes(routes!(heartbeat))
        .routes(routes!(disconnect))
        .routes(routes!(read_logs, append_logs))
        .routes(routes!(reinit))
}

#[utoipa::path(get, path = "/api/v2/workspaceagents/{agent}/manifest", tag = "agents",
    params(("agent" = String, Path, description = "`me` or the agent's own id")),
    responses((status = 200, body = AgentManifest), (status = 401, body = Body), (status = 403, body = Body)))]
async fn manifest(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
) -> Result<axum::Json<AgentManifest>, ApiError> {
    auth.check(&agent)?;
    Ok(axum::Json(state.domain.agent_manifest(&auth).await?))
}

#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/lifecycle", tag = "agents",
    params(("agent" = String, Path)), request_body = AgentLifecycleRequest,
    responses((status = 200, body = Body), (status = 401, body = Body)))]
async fn lifecycle(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(req): Json<AgentLifecycleRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.agent_lifecycle(&auth, req.state).await?;
    Ok(message("OK."))
}

/// Records that the agent is alive; tells it to exit once its workspace is stopped or deleted.
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/heartbeat", tag = "agents",
    params(("agent" = String, Path)), request_body = AgentHeartbeatRequest,
    responses((status = 200, body = AgentHeartbeatResponse), (status = 401, body = Body)))]
async fn heartbeat(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(req): Json<AgentHeartbeatRequest>,
) -> Result<axum::Json<AgentHeartbeatResponse>, ApiError> {
    auth.check(&agent)?;
    Ok(axum::Json(AgentHeartbeatResponse { stop: state.domain.agent_heartbeat(&auth, req).await? }))
}

/// The agent is going away on purpose.
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/disconnect", tag = "agents",
    params(("agent" = String, Path)), responses((status = 200, body = Body), (status = 401, body = Body)))]
async fn disconnect(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.agent_disconnected(&auth).await?;
    Ok(message("OK."))
}

/// Appends startup-script output to the agent's log (capped at 1 MiB).
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/logs", tag = "agents",
    params(("agent" = String, Path)), request_body = Vec<AgentLogLine>,
    responses((status = 200, body = Body), (status = 401, body = Body)))]
async fn append_logs(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    LogJson(lines): LogJson<Vec<AgentLogLine>>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.append_agent_logs(&auth, lines).await?;
    Ok(message("OK."))
}

/// An agent's log, for users who may read its workspace.
#[utoipa::path(get, path = "/api/v2/workspaceagents/{agent}/logs", tag = "agents", security(("session_token" = [])),
    params(("agent" = Uuid, Path)),
    responses((status = 200, body = Vec<WorkspaceAgentLog>), (status = 404, body = Body)))]
async fn read_logs(
    State(state): State<AppState>,
    actor: Actor,
    Path(agent): Path<Uuid>,
) -> Result<axum::Json<Vec<WorkspaceAgentLog>>, ApiError> {
    Ok(axum::Json(state.domain.agent_logs(&actor, agent).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReinitQuery {
    /// The owner the agent serves now.
    owner_id: Uuid,
}

/// The re-init stream: one `reinit` event, then the end, once the prebuild
/// this agent runs in has been claimed for someone other than the owner it
/// serves. 409 for a workspace that was never a prebuild; 204 when the agent
/// already serves the owner.
#[utoipa::path(get, path = "/api/v2/workspaceagents/{agent}/reinit", tag = "agents",
    params(("agent" = String, Path), ReinitQuery),
    responses((status = 200, content_type = "text/event-stream"), (status = 204, description = "Nothing to do"),
              (status = 401, body = Body), (status = 409, body = Body)))]
async fn reinit(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Query(query): Query<ReinitQuery>,
) -> Result<Response, ApiError> {
    auth.check(&agent)?;
    match state.domain.agent_reinit(&auth, query.owner_id).await? {
        Reinit::Regular => {
            Err(ApiError::new(StatusCode::CONFLICT, "This workspace was not a prebuild; it is never re-initialised."))
        }
        Reinit::NothingToDo => Ok(StatusCode::NO_CONTENT.into_response()),
        Reinit::Stream(events) => Ok(sse(
            &state,
            events.map(|event| Event::default().event("reinit").json_data(&event).expect("an event serialises")),
        )),
    }
}
