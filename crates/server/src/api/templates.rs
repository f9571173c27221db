//! Templates, their versions, and what an imported version declares.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{
    CreateTemplateRequest, CreateTemplateVersionRequest, LogsQuery, PrebuildPolicy, PrebuildSchedule,
    PrebuildScheduling, Preset, PresetParameter, Response as Body, Template, TemplateSettings, TemplateVersion,
    TemplateVersionParameter, TemplateVersionParameterOption, UpdateActiveVersionRequest, UpdateTemplateRequest,
    UpdateTemplateSettings, ValidationError,
};
use warmspace_states::JobStatus;
use warmspace_store::{NewTemplate, NewTemplateVersion, PresetRow, TemplateRow, TemplateUpdate, TemplateVersionRow};
use warmspace_template::Parameter;

use super::extract::{Json, Query};
use super::jobs::{job_view, logs_response};
use super::{ApiError, invalid, organization};
use crate::AppState;
use crate::auth::Actor;
use crate::provisioning::EVENT_DONE;

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

const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

type Created<T> = (StatusCode, axum::Json<T>);

/// Creates a template version from an uploaded archive and queues its import.
#[utoipa::path(post, path = "/api/v2/organizations/{organization}/templateversions", tag = "templates",
    security(("session_token" = [])), request_body = CreateTemplateVersionRequest,
    params(("organization" = String, Path, description = "Id or name; `default` for the default one")),
    responses((status = 201, body = TemplateVersion), (status = 400, body = Body), (status = 403, body = Body)))]
async fn create_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization_ref): Path<String>,
    Json(req): Json<CreateTemplateVersionRequest>,
) -> Result<Created<TemplateVersion>, ApiError> {
    actor.authorize(Action::Create, Object::any(Resource::Template))?;
    let organization = organization(&state, &organization_ref).await?;
    if let Some(name) = &req.name
        && !valid_version_name(name)
    {
        return Err(ApiError::field(
            "name",
            "must be 1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit",
        ));
    }
    state.store.file(req.file_id).await.map_err(|_| ApiError::field("file_id", "no such file"))?;
    if let Some(template_id) = req.template_id {
        let template =
            state.store.template(template_id).await.map_err(|_| ApiError::field("template_id", "no such template"))?;
        if template.organization_id != organization.id {
            return Err(ApiError::field("template_id", "the template belongs to another organization"));
        }
    }
    let version = state
        .store
        .create_template_version(&NewTemplateVersion {
            organization_id: organization.id,
            template_id: req.template_id,
            name: req.name,
            message: req.message,
            file_id: req.file_id,
            created_by: actor.user.id,
            tags: req.provisioner_tags,
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(version_view(&state, version).await?)))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = TemplateVersion), (status = 404, body = Body)))]
async fn get_version(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<TemplateVersion>, ApiError> {
    let version = readable_version(&state, &actor, id).await?;
    Ok(axum::Json(version_view(&state, version).await?))
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
    let version = readable_version(&state, &actor, id).await?;
    logs_response(state, version.job_id, query).await
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
    actor.authorize(Action::Update, Object::any(Resource::Template))?;
    let version = readable_version(&state, &actor, id).await?;
    match state.store.cancel_job(version.job_id).await? {
        Some(JobStatus::Canceled) => crate::provisioning::announce(&state.pubsub, version.job_id, EVENT_DONE).await,
        Some(_) => {}
        None => return Err(ApiError::new(StatusCode::CONFLICT, "The import has already finished.")),
    }
    Ok(axum::Json(Body::message("Import canceled.")))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}/parameters", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = Vec<TemplateVersionParameter>), (status = 404, body = Body)))]
async fn version_parameters(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TemplateVersionParameter>>, ApiError> {
    readable_version(&state, &actor, id).await?;
    let parameters = state.store.version_parameters(id).await?;
    Ok(axum::Json(parameters.into_iter().map(parameter_view).collect()))
}

#[utoipa::path(get, path = "/api/v2/templateversions/{version}/presets", tag = "templates",
    security(("session_token" = [])), params(("version" = Uuid, Path)),
    responses((status = 200, body = Vec<Preset>), (status = 404, body = Body)))]
async fn version_presets(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<Preset>>, ApiError> {
    readable_version(&state, &actor, id).await?;
    let presets = state.store.version_presets(id).await?;
    Ok(axum::Json(presets.into_iter().map(preset_view).collect()))
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
    Path(organization_ref): Path<String>,
    Json(req): Json<CreateTemplateRequest>,
) -> Result<Created<Template>, ApiError> {
    actor.authorize(Action::Create, Object::any(Resource::Template))?;
    let organization = organization(&state, &organization_ref).await?;
    let mut problems = Vec::new();
    if !valid_template_name(&req.name) {
        problems.push(invalid("name", "must be 1 to 64 lowercase letters or digits, with single hyphens between them"));
    }
    problems.extend(check_presentation(&req.display_name, &req.description, &req.icon));
    let settings = merge_settings(TemplateSettings::default(), req.settings).map_err(ApiError::invalid)?;
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let template = state
        .store
        .create_template(&NewTemplate {
            organization_id: organization.id,
            name: req.name,
            display_name: req.display_name,
            description: req.description,
            icon: req.icon,
            version_id: req.template_version_id,
            created_by: actor.user.id,
            settings: settings_row(&settings),
        })
        .await?;
    tracing::info!(template = %template.name, by = %actor.user.username, "template created");
    Ok((StatusCode::CREATED, axum::Json(template_view(template))))
}

#[utoipa::path(get, path = "/api/v2/organizations/{organization}/templates", tag = "templates",
    security(("session_token" = [])),
    params(("organization" = String, Path, description = "Id or name; `default` for the default one")),
    responses((status = 200, body = Vec<Template>)))]
async fn list_org_templates(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization_ref): Path<String>,
) -> Result<axum::Json<Vec<Template>>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    let organization = organization(&state, &organization_ref).await?;
    let templates = state.store.list_templates(Some(organization.id)).await?;
    Ok(axum::Json(templates.into_iter().map(template_view).collect()))
}

#[utoipa::path(get, path = "/api/v2/organizations/{organization}/templates/{name}", tag = "templates",
    security(("session_token" = [])),
    params(("organization" = String, Path, description = "Id or name; `default` for the default one"),
           ("name" = String, Path)),
    responses((status = 200, body = Template), (status = 404, body = Body)))]
async fn template_by_name(
    State(state): State<AppState>,
    actor: Actor,
    Path((organization_ref, name)): Path<(String, String)>,
) -> Result<axum::Json<Template>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    let organization = organization(&state, &organization_ref).await?;
    let template = state.store.template_by_name(organization.id, &name).await.map_err(ApiError::missing("Template"))?;
    Ok(axum::Json(template_view(template)))
}

#[utoipa::path(get, path = "/api/v2/templates", tag = "templates", security(("session_token" = [])),
    responses((status = 200, body = Vec<Template>)))]
async fn list_templates(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Vec<Template>>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    let templates = state.store.list_templates(None).await?;
    Ok(axum::Json(templates.into_iter().map(template_view).collect()))
}

#[utoipa::path(get, path = "/api/v2/templates/{template}", tag = "templates", security(("session_token" = [])),
    params(("template" = Uuid, Path)), responses((status = 200, body = Template), (status = 404, body = Body)))]
async fn get_template(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Template>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    Ok(axum::Json(template_view(state.store.template(id).await.map_err(ApiError::missing("Template"))?)))
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
    actor.authorize(Action::Update, Object::any(Resource::Template))?;
    let current = state.store.template(id).await.map_err(ApiError::missing("Template"))?;
    let display_name = req.display_name.unwrap_or(current.display_name.clone());
    let description = req.description.unwrap_or(current.description.clone());
    let icon = req.icon.unwrap_or(current.icon.clone());
    let mut problems = check_presentation(&display_name, &description, &icon);
    match merge_settings(template_view(current).settings, req.settings) {
        Ok(settings) if problems.is_empty() => {
            let update = TemplateUpdate { display_name, description, icon, settings: settings_row(&settings) };
            Ok(axum::Json(template_view(state.store.update_template(id, &update).await?)))
        }
        Ok(_) => Err(ApiError::invalid(problems)),
        Err(more) => {
            problems.extend(more);
            Err(ApiError::invalid(problems))
        }
    }
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
    actor.authorize(Action::Delete, Object::any(Resource::Template))?;
    state.store.template(id).await.map_err(ApiError::missing("Template"))?;
    let in_use = state.store.template_in_use(id).await?;
    if in_use > 0 {
        return Err(ApiError::new(StatusCode::CONFLICT, "The template is in use.")
            .detail(format!("{in_use} workspaces use it; delete them first (prebuilds do not count).")));
    }
    state.store.delete_template(id).await.map_err(ApiError::missing("Template"))?;
    Ok(axum::Json(Body::message("Template deleted.")))
}

#[utoipa::path(get, path = "/api/v2/templates/{template}/versions", tag = "templates",
    security(("session_token" = [])), params(("template" = Uuid, Path)),
    responses((status = 200, body = Vec<TemplateVersion>), (status = 404, body = Body)))]
async fn template_versions(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TemplateVersion>>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    state.store.template(id).await.map_err(ApiError::missing("Template"))?;
    let mut versions = Vec::new();
    for version in state.store.template_versions(id).await? {
        versions.push(version_view(&state, version).await?);
    }
    Ok(axum::Json(versions))
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
    actor.authorize(Action::Update, Object::any(Resource::Template))?;
    state.store.template(id).await.map_err(ApiError::missing("Template"))?;
    let template = state.store.set_active_version(id, req.id).await?;
    tracing::info!(template = %template.name, version = %req.id, "active version changed");
    crate::reconciler::trigger(&state.pubsub, "version activated").await;
    Ok(axum::Json(template_view(template)))
}

async fn readable_version(state: &AppState, actor: &Actor, id: Uuid) -> Result<TemplateVersionRow, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    state.store.template_version(id).await.map_err(ApiError::missing("Template version"))
}

async fn version_view(state: &AppState, v: TemplateVersionRow) -> Result<TemplateVersion, ApiError> {
    let job = state.store.job(v.job_id).await?;
    Ok(TemplateVersion {
        id: v.id,
        organization_id: v.organization_id,
        template_id: v.template_id,
        name: v.name,
        message: v.message,
        file_id: v.file_id,
        created_by: v.created_by,
        created_at: v.created_at,
        job: job_view(job),
        provisioner: v.provisioner,
        claim_mode: v.claim_mode,
    })
}

pub fn template_view(t: TemplateRow) -> Template {
    let days = DAYS
        .iter()
        .enumerate()
        .filter(|(bit, _)| t.autostop_requirement_days_of_week & (1 << bit) != 0)
        .map(|(_, day)| (*day).to_owned())
        .collect();
    Template {
        id: t.id,
        organization_id: t.organization_id,
        name: t.name,
        display_name: t.display_name,
        description: t.description,
        icon: t.icon,
        active_version_id: t.active_version_id,
        created_by: t.created_by,
        created_at: t.created_at,
        updated_at: t.updated_at,
        settings: TemplateSettings {
            default_ttl_ms: t.default_ttl_ms,
            autostop_requirement_days_of_week: days,
            autostop_requirement_weeks: t.autostop_requirement_weeks,
            allow_user_autostart: t.allow_user_autostart,
            failure_ttl_ms: t.failure_ttl_ms,
            time_til_dormant_ms: t.time_til_dormant_ms,
            time_til_dormant_autodelete_ms: t.time_til_dormant_autodelete_ms,
        },
    }
}

fn settings_row(s: &TemplateSettings) -> warmspace_store::TemplateSettings {
    let days = s
        .autostop_requirement_days_of_week
        .iter()
        .filter_map(|d| DAYS.iter().position(|day| day == d))
        .fold(0i16, |bits, bit| bits | (1 << bit));
    warmspace_store::TemplateSettings {
        default_ttl_ms: s.default_ttl_ms,
        autostop_requirement_days_of_week: days,
        autostop_requirement_weeks: s.autostop_requirement_weeks,
        allow_user_autostart: s.allow_user_autostart,
        failure_ttl_ms: s.failure_ttl_ms,
        time_til_dormant_ms: s.time_til_dormant_ms,
        time_til_dormant_autodelete_ms: s.time_til_dormant_autodelete_ms,
    }
}

/// Applies a partial update to settings, checking every given value.
fn merge_settings(
    mut s: TemplateSettings,
    u: UpdateTemplateSettings,
) -> Result<TemplateSettings, Vec<ValidationError>> {
    let mut problems = Vec::new();
    let mut duration = |field: &str, value: Option<i64>, slot: &mut i64| {
        if let Some(ms) = value {
            if ms < 0 {
                problems.push(invalid(&format!("settings.{field}"), "must not be negative"));
            }
            *slot = ms;
        }
    };
    duration("default_ttl_ms", u.default_ttl_ms, &mut s.default_ttl_ms);
    duration("failure_ttl_ms", u.failure_ttl_ms, &mut s.failure_ttl_ms);
    duration("time_til_dormant_ms", u.time_til_dormant_ms, &mut s.time_til_dormant_ms);
    duration("time_til_dormant_autodelete_ms", u.time_til_dormant_autodelete_ms, &mut s.time_til_dormant_autodelete_ms);
    if let Some(days) = u.autostop_requirement_days_of_week {
        for day in days.iter().filter(|d| !DAYS.contains(&d.as_str())) {
            problems.push(invalid(
                "settings.autostop_requirement_days_of_week",
                format!("{day:?} is not a day of the week (monday … sunday)"),
            ));
        }
        s.autostop_requirement_days_of_week = days;
    }
    if let Some(weeks) = u.autostop_requirement_weeks {
        if !(1..=16).contains(&weeks) {
            problems.push(invalid("settings.autostop_requirement_weeks", "must be between 1 and 16"));
        }
        s.autostop_requirement_weeks = weeks;
    }
    if let Some(allow) = u.allow_user_autostart {
        s.allow_user_autostart = allow;
    }
    if problems.is_empty() { Ok(s) } else { Err(problems) }
}

fn check_presentation(display_name: &str, description: &str, icon: &str) -> Vec<ValidationError> {
    [("display_name", display_name, 64), ("description", description, 128), ("icon", icon, 256)]
        .into_iter()
        .filter(|(_, value, max)| value.chars().count() > *max)
        .map(|(field, _, max)| invalid(field, format!("must be at most {max} characters")))
        .collect()
}

fn valid_template_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

fn valid_version_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn parameter_view(p: Parameter) -> TemplateVersionParameter {
    let required = p.required();
    let validation =
        p.validation.unwrap_or(warmspace_template::Validation { min: None, max: None, regex: None, error: None });
    TemplateVersionParameter {
        name: p.name,
        display_name: p.display_name,
        description: p.description,
        kind: p.kind,
        default_value: p.default,
        required,
        mutable: p.mutable,
        options: p
            .options
            .into_iter()
            .map(|o| TemplateVersionParameterOption {
                name: o.name,
                value: o.value,
                description: o.description,
                icon: o.icon,
            })
            .collect(),
        validation_min: validation.min,
        validation_max: validation.max,
        validation_regex: validation.regex,
        validation_error: validation.error,
    }
}

pub fn preset_view(p: PresetRow) -> Preset {
    let scheduling = p.scheduling_timezone.map(|timezone| PrebuildScheduling {
        timezone,
        schedules: p
            .schedules
            .0
            .into_iter()
            .map(|s| PrebuildSchedule { cron: s.cron, instances: s.instances as i32 })
            .collect(),
    });
    Preset {
        id: p.id,
        template_version_id: p.template_version_id,
        name: p.name,
        description: p.description,
        icon: p.icon,
        default: p.is_default,
        parameters: p.parameters.0.into_iter().map(|(name, value)| PresetParameter { name, value }).collect(),
        prebuilds: p.desired_instances.map(|instances| PrebuildPolicy {
            instances,
            ttl_seconds: p.ttl_seconds,
            scheduling,
        }),
        last_invalidated_at: p.last_invalidated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_of_week_round_trip_through_the_bitmask() {
        let settings = TemplateSettings {
            autostop_requirement_days_of_week: vec!["monday".into(), "sunday".into()],
            ..TemplateSettings::default()
        };
        let row = settings_row(&settings);
        assert_eq!(row.autostop_requirement_days_of_week, 0b100_0001);
        let problems = merge_settings(
            TemplateSettings::default(),
            UpdateTemplateSettings {
                autostop_requirement_days_of_week: Some(vec!["funday".into()]),
                default_ttl_ms: Some(-1),
                ..Default::default()
            },
        )
        .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["settings.default_ttl_ms", "settings.autostop_requirement_days_of_week"]);
    }

    #[test]
    fn names() {
        assert!(valid_template_name("docker-dev2"));
        for bad in ["", "Docker", "a--b", "-a", "a_b", &"a".repeat(65)] {
            assert!(!valid_template_name(bad), "{bad}");
        }
        assert!(valid_version_name("v1.2_rc-3"));
        assert!(!valid_version_name(".hidden"));
    }
}
