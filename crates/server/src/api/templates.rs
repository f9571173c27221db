//! Templates, their versions, and what an imported version declares.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    CreateTemplateRequest, CreateTemplateVersionRequest, LogsQuery, Preset, Response as Body, Template,
    TemplateVersion, TemplateVersionParameter, UpdateActiveVersionRequest, UpdateTemplateRequest,
};

use super::extract::{Json, Path, Query};
use super::jobs::log_events;
use super::{ApiError, AppState, Created, created, message};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_version))
        .routes(routes!(get_version))
        .routes(routes!(version_logs))
        .routes(routes!(cancel_version))
        .routes(routes!(version_parameters))
        .routes(routes!(version_presets))
        .routes(routes!(create_template, list_org_templates))
        .routes(routes!(template_by_name))
        .routes(routes!(list_templates))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(template_versions, activate_version))
}

/// Creates a template version from an uploaded archive and queues its import.
/// With `skip_if_unchanged`, files identical to the template's active
/// version's create nothing: 200 with the active version, marked `unchanged`.
#[utoipa::path(post, path = "/api/v2/organizations/{organization}/templateversions", tag = "templates",
    security(("session_token" = [])), request_body = CreateTemplateVersionRequest,
    params(("organization" = String, Path, description = "Id or name; `default` for the default one")),
    responses((status = 201, body = TemplateVersion), (status = 200, body = TemplateVersion, description = "Unchanged"),
              (status = 400, body = Body), (status = 403, body = Body)))]
async fn create_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization): Path<String>,
    Json(req): Json<CreateTemplateVersionRequest>,
) -> Result<Created<TemplateVersion>, ApiError> {
    let version = state.domain.create_template_version(&actor, &organization, req).await?;
    let status = if version.unchanged { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(version)))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = TemplateVersion), (status = 404, body = Body)))]
async fn get_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<TemplateVersion>, ApiError> {
    Ok(axum::Json(state.domain.template_version(&actor, id).await?))
}

/// The import job's log; `follow=true` streams it as Server-Sent Events until the job ends.
#[utoipa::path(get, path = "/api/v2/templateversions/{version}/logs", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path), LogsQuery),
    responses((status = 200, body = Vec<warmspace_sdk::ProvisionerJobLog>,
               description = "JSON, or `text/event-stream` with follow=true"), (status = 404, body = Body)))]
async fn version_logs(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let after = query.after.unwrap_or(0);
    if query.follow {
        return Ok(log_events(&state, state.domain.follow_template_version_log(&actor, id, after).await?));
    }
    Ok(axum::Json(state.domain.template_version_log(&actor, id, after).await?).into_response())
}

/// Cancels the version's import if no daemon has picked it up yet.
#[utoipa::path(patch, path = "/api/v2/templateversions/{version}/cancel", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = Body), (status = 409, body = Body)))]
async fn cancel_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Body>, ApiError> {
    state.domain.cancel_template_version(&actor, id).await?;
    Ok(message("Import canceled."))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}/parameters", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = Vec<TemplateVersionParameter>), (status = 404, body = Body)))]
async fn version_parameters(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TemplateVersionParameter>>, ApiError> {
    Ok(axum::Json(state.domain.template_version_parameters(&actor, id).await?))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}/presets", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = Vec<Preset>), (status = 404, body = Body)))]
async fn version_presets(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<Preset>>, ApiError> {
    Ok(axum::Json(state.domain.template_version_presets(&actor, id).await?))
}

/// Creates a template from a successfully imported version, which becomes its active version.
#[utoipa::path(post, path = "/api/v2/organizations/{organization}/templates", tag = "templates",
    security(("session_token" = [])), request_body = CreateTemplateRequest,
    params(("organization" = String, Path, description = "Id or name; `default` for the default one")),
    responses((status = 201, body = Template), (status = 400, body = Body), (status = 403, body = Body),
              (status = 409, body = Body)))]
async fn create_template(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization): Path<String>,
    Json(req): Json<CreateTemplateRequest>,
) -> Result<Created<Template>, ApiError> {
    Ok(created(state.domain.create_template(&actor, &organization, req).await?))
}

#[utoipa::path(get, path = "/api/v2/organizations/{organization}/templates", tag = "templates",
    security(("session_token" = [])),
    params(("organization" = String, Path, description = "Id or name; `default` for the default one")),
    responses((status = 200, body = Vec<Template>)))]
async fn list_org_templates(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization): Path<String>,
) -> Result<axum::Json<Vec<Template>>, ApiError> {
    Ok(axum::Json(state.domain.list_templates(&actor, Some(&organization)).await?))
}

#[utoipa::path(get, path = "/api/v2/organizations/{organization}/templates/{name}", tag = "templates",
    security(("session_token" = [])),
    params(("organization" = String, Path, description = "Id or name; `default` for the default one"),
           ("name" = String, Path)),
    responses((status = 200, body = Template), (status = 404, body = Body)))]
async fn template_by_name(
    State(state): State<AppState>,
    actor: Actor,
    Path((organization, name)): Path<(String, String)>,
) -> Result<axum::Json<Template>, ApiError> {
    Ok(axum::Json(state.domain.template_by_name(&actor, &organization, &name).await?))
}

#[utoipa::path(get, path = "/api/v2/templates", tag = "templates", security(("session_token" = [])),
    responses((status = 200, body = Vec<Template>)))]
async fn list_templates(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Vec<Template>>, ApiError> {
    Ok(axum::Json(state.domain.list_templates(&actor, None).await?))
}

#[utoipa::path(get, path = "/api/v2/templates/{template}", tag = "templates", security(("session_token" = [])),
    params(("template" = Uuid, Path)), responses((status = 200, body = Template), (status = 404, body = Body)))]
async fn get_template(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Template>, ApiError> {
    Ok(axum::Json(state.domain.template(&actor, id).await?))
}

/// Changes a template's presentation and lifecycle settings; absent fields keep their value.
#[utoipa::path(patch, path = "/api/v2/templates/{template}", tag = "templates", security(("session_token" = [])),
    params(("template" = Uuid, Path)), request_body = UpdateTemplateRequest,
    responses((status = 200, body = Template), (status = 400, body = Body), (status = 403, body = Body)))]
async fn update_template(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateTemplateRequest>,
) -> Result<axum::Json<Template>, ApiError> {
    Ok(axum::Json(state.domain.update_template(&actor, id, req).await?))
}

/// Deletes a template (softly: its history stays). Refused while workspaces other than prebuilds use it.
#[utoipa::path(delete, path = "/api/v2/templates/{template}", tag = "templates", security(("session_token" = [])),
    params(("template" = Uuid, Path)),
    responses((status = 200, body = Body), (status = 403, body = Body), (status = 404, body = Body),
              (status = 409, body = Body)))]
async fn delete_template(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Body>, ApiError> {
    state.domain.delete_template(&actor, id).await?;
    Ok(message("Template deleted."))
}

#[utoipa::path(get, path = "/api/v2/templates/{template}/versions", tag = "templates",
    security(("session_token" = [])), params(("template" = Uuid, Path)),
    responses((status = 200, body = Vec<TemplateVersion>), (status = 404, body = Body)))]
async fn template_versions(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TemplateVersion>>, ApiError> {
    Ok(axum::Json(state.domain.template_versions(&actor, id).await?))
}

/// Makes a successfully imported version of the template the active one.
#[utoipa::path(patch, path = "/api/v2/templates/{template}/versions", tag = "templates",
    security(("session_token" = [])), params(("template" = Uuid, Path)), request_body = UpdateActiveVersionRequest,
    responses((status = 200, body = Template), (status = 400, body = Body), (status = 403, body = Body)))]
async fn activate_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateActiveVersionRequest>,
) -> Result<axum::Json<Template>, ApiError> {
    Ok(axum::Json(state.domain.activate_template_version(&actor, id, req.id).await?))
}
