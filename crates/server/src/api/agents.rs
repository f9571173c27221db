//! The agent protocol (authenticated with agent tokens, each reaching only
//! its own agent) and reading agents for users.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{
    AGENT_TOKEN_HEADER, AgentConnection, AgentHeartbeatRequest, AgentHeartbeatResponse, AgentLifecycleRequest,
    AgentLogLine, AgentManifest, LogSource, Response as Body, WorkspaceAgent, WorkspaceAgentLog,
};
use warmspace_store::agents::AgentRow;
use warmspace_store::jobs::{NewLog, job_events_channel};
use warmspace_store::workspaces::claim_channel;

use super::ApiError;
use super::extract::{Json, Query};
use crate::AppState;
use crate::auth::Actor;
use crate::auth::tokens::Token;
use crate::reinit::{Decision, decide};

/// Agents heartbeat every 10 s; three missed ones mean disconnected.
const CONNECTED_WITHIN: chrono::Duration = chrono::Duration::seconds(30);
/// An agent that has not connected this long after its token was issued has timed out.
const CONNECTION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);
/// A waiting re-init stream looks at durable state at least this often.
const REINIT_POLL: Duration = Duration::from_secs(30);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(manifest))
        .routes(routes!(lifecycle))
        .routes(routes!(heartbeat))
        .routes(routes!(disconnect))
        .routes(routes!(read_logs, append_logs))
        .routes(routes!(reinit))
}

/// A workspace agent, authenticated by its token.
pub struct AgentAuth {
    agent_id: Uuid,
    workspace_id: Uuid,
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let invalid = || ApiError::unauthorized("Invalid agent token.");
        let raw = parts
            .headers
            .get(AGENT_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(format!("Send the agent's token in the {AGENT_TOKEN_HEADER} header."))
            })?;
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let credential = state.store.agent_credential(&token.id).await.map_err(|_| invalid())?;
        if !token.matches(&credential.hashed_secret) {
            return Err(invalid());
        }
        Ok(AgentAuth { agent_id: credential.agent_id, workspace_id: credential.workspace_id })
    }
}

impl AgentAuth {
    /// An agent token reaches its own agent only (`me`, or its own id).
    fn check(&self, agent: &str) -> Result<(), ApiError> {
        if agent == "me" || agent.parse::<Uuid>().is_ok_and(|id| id == self.agent_id) {
            return Ok(());
        }
        Err(ApiError::new(StatusCode::FORBIDDEN, "Forbidden.").detail("An agent token reaches only its own agent."))
    }
}

fn ok() -> axum::Json<Body> {
    axum::Json(Body::message("OK."))
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
    let m = state.store.agent_manifest(auth.agent_id).await?;
    Ok(axum::Json(AgentManifest {
        agent_id: m.agent_id,
        agent_name: m.agent_name,
        workspace_id: m.workspace_id,
        workspace_name: m.workspace_name,
        owner_id: m.owner_id,
        owner_name: m.owner_name,
        template_version_id: m.template_version_id,
        env: m.env.map(|env| env.0).unwrap_or_default(),
        startup_script: m.startup_script.unwrap_or_default(),
        server_url: state.config.access_url.clone(),
    }))
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
    state.store.set_agent_lifecycle(auth.agent_id, req.state).await?;
    Ok(ok())
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
    let stop = state.store.agent_heartbeat(auth.agent_id, req.serving_owner_id).await?;
    Ok(axum::Json(AgentHeartbeatResponse { stop }))
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
    state.store.agent_disconnected(auth.agent_id).await?;
    Ok(ok())
}

/// Appends startup-script output to the agent's log (capped at 1 MiB).
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/logs", tag = "agents",
    params(("agent" = String, Path)), request_body = Vec<AgentLogLine>,
    responses((status = 200, body = Body), (status = 401, body = Body)))]
async fn append_logs(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    Json(lines): Json<Vec<AgentLogLine>>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    let logs: Vec<NewLog> = lines
        .into_iter()
        .map(|l| NewLog {
            created_at: l.created_at,
            source: LogSource::Provisioner,
            level: l.level,
            stage: String::new(),
            output: l.output,
        })
        .collect();
    state.store.append_agent_logs(auth.agent_id, &logs).await?;
    Ok(ok())
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
    let not_found = || ApiError::not_found("Agent");
    let row = state.store.agent(agent).await.map_err(|_| not_found())?;
    let workspace = state.store.workspace(row.workspace_id).await?;
    actor
        .authorize(Action::Read, Object { resource: Resource::Workspace, owner: Some(workspace.owner_id) })
        .map_err(|_| not_found())?;
    let logs = state.store.agent_logs(agent, 0).await?;
    Ok(axum::Json(
        logs.into_iter()
            .map(|(id, created_at, level, output)| WorkspaceAgentLog { id, created_at, level, output })
            .collect(),
    ))
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
    let workspace_id = auth.workspace_id;
    // Subscribe before reading durable state: a claim landing in between is
    // then seen by the stream rather than lost.
    let claims = state.pubsub.subscribe(&claim_channel(workspace_id)).await.map_err(ApiError::internal)?;
    match decide(workspace_id, &state.store.reinit_state(workspace_id).await?, query.owner_id) {
        Decision::Regular => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "This workspace was not a prebuild; it is never re-initialised.",
            ));
        }
        Decision::NothingToDo => return Ok(StatusCode::NO_CONTENT.into_response()),
        _ => {}
    }
    let shutting_down = state.shutting_down();
    let stream = futures::stream::unfold(
        (state, claims, Some(shutting_down)),
        move |(state, mut claims, shutting_down)| async move {
            let mut shutting_down = Box::pin(shutting_down?);
            loop {
                let current = match state.store.reinit_state(workspace_id).await {
                    Ok(current) => current,
                    Err(err) => {
                        tracing::warn!(%workspace_id, error = %err, "re-init stream cannot read the workspace");
                        return None;
                    }
                };
                let wait_on = match decide(workspace_id, &current, query.owner_id) {
                    Decision::Reinit(event) => {
                        let event = Event::default().event("reinit").json_data(&event).expect("an event serialises");
                        // Sent once; the next unfold step ends the stream.
                        return Some((Ok::<_, Infallible>(event), (state, claims, None)));
                    }
                    Decision::Regular | Decision::NothingToDo => return None,
                    Decision::WaitForClaim => None,
                    Decision::WaitForClaimBuild(job) => Some(job),
                };
                let job_events = match wait_on {
                    Some(job) => state.pubsub.subscribe(&job_events_channel(job)).await.ok(),
                    None => None,
                };
                // Whatever wakes us, the decision is made again from durable state.
                tokio::select! {
                    _ = claims.recv() => {}
                    _ = async {
                        match job_events {
                            Some(mut events) => { events.recv().await; }
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = tokio::time::sleep(REINIT_POLL) => {}
                    _ = &mut shutting_down => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// An agent as the workspace API shows it, its connection judged at `now`.
pub fn agent_view(a: AgentRow, now: DateTime<Utc>) -> WorkspaceAgent {
    let connection = match (a.last_connected_at, a.disconnected_at) {
        (Some(_), Some(_)) => AgentConnection::Disconnected,
        (Some(seen), None) if now - seen <= CONNECTED_WITHIN => AgentConnection::Connected,
        (Some(_), None) => AgentConnection::Disconnected,
        (None, _) if now - a.updated_at > CONNECTION_TIMEOUT => AgentConnection::Timeout,
        (None, _) => AgentConnection::Connecting,
    };
    WorkspaceAgent {
        id: a.id,
        name: a.name,
        lifecycle_state: a.lifecycle_state,
        connection,
        serving_owner_id: a.serving_owner_id,
        first_connected_at: a.first_connected_at,
        last_connected_at: a.last_connected_at,
        disconnected_at: a.disconnected_at,
        started_at: a.started_at,
        ready_at: a.ready_at,
        created_at: a.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmspace_sdk::AgentLifecycle;

    fn agent(last: Option<i64>, gone: bool, issued_ago: i64) -> AgentRow {
        let now = Utc::now();
        AgentRow {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            name: "main".into(),
            lifecycle_state: AgentLifecycle::Ready,
            serving_owner_id: None,
            first_connected_at: last.map(|s| now - chrono::Duration::seconds(s)),
            last_connected_at: last.map(|s| now - chrono::Duration::seconds(s)),
            disconnected_at: gone.then_some(now),
            started_at: None,
            ready_at: Some(now),
            created_at: now,
            updated_at: now - chrono::Duration::seconds(issued_ago),
            has_token: true,
        }
    }

    #[test]
    fn connection_status_follows_heartbeats() {
        let now = Utc::now();
        let connection = |a| agent_view(a, now).connection;
        assert_eq!(connection(agent(Some(5), false, 0)), AgentConnection::Connected);
        assert_eq!(connection(agent(Some(45), false, 0)), AgentConnection::Disconnected);
        assert_eq!(connection(agent(Some(5), true, 0)), AgentConnection::Disconnected, "said goodbye");
        assert_eq!(connection(agent(None, false, 10)), AgentConnection::Connecting);
        assert_eq!(connection(agent(None, false, 600)), AgentConnection::Timeout);
    }
}
