//! Workspaces and their builds.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    CreateWorkspaceBuildRequest, CreateWorkspaceRequest, ExtendWorkspaceRequest, LogsQuery, Response as Body,
    UpdateWorkspaceAutostartRequest, UpdateWorkspaceDormancyRequest, UpdateWorkspaceTtlRequest, Workspace,
    WorkspaceBuild, WorkspacesQuery, WorkspacesResponse,
};

use super::extract::{Json, Path, Query};
use super::jobs::log_events;
use super::{ApiError, AppState, Created, created, message};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace))
        .routes(routes!(list_workspaces))
        .routes(routes!(workspace_by_name))
        .routes(routes!(get_workspace))
        .routes(routes!(create_build, list_builds))
        .routes(routes!(get_build))
        .routes(routes!(build_logs))
        .routes(routes!(build_timings))
        .routes(routes!(cancel_build))
        .routes(routes!(update_ttl))
        .routes(routes!(update_autostart))
        .routes(routes!(extend_workspace))
        .routes(routes!(update_dormancy))
}

/// Creates a workspace for a user. When the request names a preset with a
/// warm pool — or names none but repeats every value of one — an eligible
/// prebuild is claimed: handed over in one transaction, personalised by a
/// claim build (or, for `claim = "reinit"`, by its agent). Otherwise, or when
/// the pool is empty, a cold first build is queued. Either way the response
/// is the workspace; its latest build's reason says `claim` for a claim.
#[utoipa::path(post, path = "/api/v2/users/{user}/workspaces", tag = "workspaces", security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id, a username, or `me`")),
    request_body = CreateWorkspaceRequest,
    responses((status = 201, body = Workspace), (status = 400, body = Body), (status = 403, body = Body),
              (status = 409, body = Body)))]
async fn create_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(user): Path<String>,
    Json(req): Json<CreateWorkspaceRequest>,
) -> Result<Created<Workspace>, ApiError> {
    Ok(created(state.domain.create_workspace(&actor, &user, req).await?.workspace))
}

/// Lists the workspaces the caller may see: all for owners and template
/// admins, their own for members.
#[utoipa::path(get, path = "/api/v2/workspaces", tag = "workspaces", security(("session_token" = [])),
    params(WorkspacesQuery),
    responses((status = 200, body = WorkspacesResponse), (status = 400, body = Body)))]
async fn list_workspaces(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<WorkspacesQuery>,
) -> Result<axum::Json<WorkspacesResponse>, ApiError> {
    Ok(axum::Json(state.domain.list_workspaces(&actor, query).await?))
}

#[utoipa::path(get, path = "/api/v2/users/{user}/workspace/{name}", tag = "workspaces",
    security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id, a username, or `me`"), ("name" = String, Path)),
    responses((status = 200, body = Workspace), (status = 404, body = Body)))]
async fn workspace_by_name(
    State(state): State<AppState>,
    actor: Actor,
    Path((user, name)): Path<(String, String)>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.workspace_by_name(&actor, &user, &name).await?))
}

#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}", tag = "workspaces", security(("session_token" = [])),
    params(("workspace" = Uuid, Path)), responses((status = 200, body = Workspace), (status = 404, body = Body)))]
async fn get_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.workspace(&actor, id).await?))
}

/// Queues a build: `start`, `stop` or `delete`. Every parameter value is
/// validated before anything is queued. Refused (409) while another build of
/// the workspace is pending or running.
#[utoipa::path(post, path = "/api/v2/workspaces/{workspace}/builds", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path)), request_body = CreateWorkspaceBuildRequest,
    responses((status = 201, body = WorkspaceBuild), (status = 400, body = Body), (status = 403, body = Body),
              (status = 409, body = Body)))]
async fn create_build(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateWorkspaceBuildRequest>,
) -> Result<Created<WorkspaceBuild>, ApiError> {
    Ok(created(state.domain.create_build(&actor, id, req).await?))
}

/// A workspace's builds, newest first.
#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}/builds", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path)),
    responses((status = 200, body = Vec<WorkspaceBuild>), (status = 404, body = Body)))]
async fn list_builds(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<WorkspaceBuild>>, ApiError> {
    Ok(axum::Json(state.domain.builds(&actor, id).await?))
}

#[utoipa::path(get, path = "/api/v2/workspacebuilds/{build}", tag = "workspaces", security(("session_token" = [])),
    params(("build" = Uuid, Path)), responses((status = 200, body = WorkspaceBuild), (status = 404, body = Body)))]
async fn get_build(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WorkspaceBuild>, ApiError> {
    Ok(axum::Json(state.domain.build(&actor, id).await?))
}

/// The build's log; `follow=true` streams it as Server-Sent Events until the build ends.
#[utoipa::path(get, path = "/api/v2/workspacebuilds/{build}/logs", tag = "workspaces",
    security(("session_token" = [])), params(("build" = Uuid, Path), LogsQuery),
    responses((status = 200, body = Vec<warmspace_sdk::ProvisionerJobLog>,
               description = "JSON, or `text/event-stream` with follow=true"), (status = 404, body = Body)))]
async fn build_logs(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let after = query.after.unwrap_or(0);
    if query.follow {
        return Ok(log_events(&state, state.domain.follow_build_log(&actor, id, after).await?));
    }
    Ok(axum::Json(state.domain.build_log(&actor, id, after).await?).into_response())
}

/// How long the build's stages took, and each action on each resource
/// within them (Terraform builds; empty for the others).
#[utoipa::path(get, path = "/api/v2/workspacebuilds/{build}/timings", tag = "workspaces",
    security(("session_token" = [])), params(("build" = Uuid, Path)),
    responses((status = 200, body = Vec<warmspace_sdk::BuildTiming>), (status = 404, body = Body)))]
async fn build_timings(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<warmspace_sdk::BuildTiming>>, ApiError> {
    Ok(axum::Json(state.domain.build_timings(&actor, id).await?))
}

/// Cancels a build: at once if no daemon has it yet, else its daemon stops the backend.
#[utoipa::path(patch, path = "/api/v2/workspacebuilds/{build}/cancel", tag = "workspaces",
    security(("session_token" = [])), params(("build" = Uuid, Path)),
    responses((status = 200, body = Body), (status = 403, body = Body), (status = 409, body = Body)))]
async fn cancel_build(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Body>, ApiError> {
    Ok(message(state.domain.cancel_build(&actor, id).await?))
}

/// Sets or clears a workspace's time to live. Refused for unclaimed prebuilds,
/// which only the reconciler manages.
#[utoipa::path(put, path = "/api/v2/workspaces/{workspace}/ttl", tag = "workspaces", security(("session_token" = [])),
    params(("workspace" = Uuid, Path)), request_body = UpdateWorkspaceTtlRequest,
    responses((status = 200, body = Workspace), (status = 400, body = Body), (status = 403, body = Body),
              (status = 409, body = Body)))]
async fn update_ttl(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateWorkspaceTtlRequest>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.update_workspace_ttl(&actor, id, req.ttl_ms).await?))
}

/// Sets or clears a workspace's autostart schedule. Refused for unclaimed prebuilds.
#[utoipa::path(put, path = "/api/v2/workspaces/{workspace}/autostart", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path)), request_body = UpdateWorkspaceAutostartRequest,
    responses((status = 200, body = Workspace), (status = 400, body = Body), (status = 403, body = Body),
              (status = 409, body = Body)))]
async fn update_autostart(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateWorkspaceAutostartRequest>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.update_workspace_autostart(&actor, id, req.schedule).await?))
}

/// Moves a running workspace's deadline to a duration from now, within its
/// max deadline. Refused for unclaimed prebuilds.
#[utoipa::path(put, path = "/api/v2/workspaces/{workspace}/extend", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path)), request_body = ExtendWorkspaceRequest,
    responses((status = 200, body = Workspace), (status = 400, body = Body), (status = 404, body = Body),
              (status = 409, body = Body)))]
async fn extend_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<ExtendWorkspaceRequest>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.extend_workspace(&actor, id, req.duration_ms).await?))
}

/// Marks a workspace dormant or wakes it (a dormant workspace cannot start).
/// Refused for unclaimed prebuilds.
#[utoipa::path(put, path = "/api/v2/workspaces/{workspace}/dormant", tag = "workspaces",
    security(("session_token" = [])), params(("workspace" = Uuid, Path)), request_body = UpdateWorkspaceDormancyRequest,
    responses((status = 200, body = Workspace), (status = 400, body = Body), (status = 404, body = Body),
              (status = 409, body = Body)))]
async fn update_dormancy(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateWorkspaceDormancyRequest>,
) -> Result<axum::Json<Workspace>, ApiError> {
    Ok(axum::Json(state.domain.set_workspace_dormant(&actor, id, req.dormant).await?))
}
