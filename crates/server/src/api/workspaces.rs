//! Workspaces and their builds.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource, Visibility};
use warmspace_prebuilds::claim::{PresetMatch, PresetValues, match_preset};
use warmspace_prebuilds::schedule::Schedule;
use warmspace_sdk::{
    BuildParameter, CreateWorkspaceBuildRequest, CreateWorkspaceRequest, LogsQuery, ReinitEvent, Response as Body,
    UpdateWorkspaceAutostartRequest, UpdateWorkspaceTtlRequest, Workspace, WorkspaceBuild, WorkspaceResource,
    WorkspaceStatus, WorkspacesQuery, WorkspacesResponse,
};
use warmspace_states::{BuildReason, ClaimMode, JobStatus, MissReason, Transition, UnknownValue};
use warmspace_store::claims::{ClaimRequest, Claimed};
use warmspace_store::workspaces::{
    BuildRow, NewBuild, NewWorkspace, PREBUILDS_USER_ID, WorkspaceFilter, WorkspaceRow, claim_channel,
};
use warmspace_store::{TemplateRow, UserRow};
use warmspace_template::{ParameterInput, resolve_parameters};

use super::agents::agent_view;
use super::extract::{Json, Query};
use super::jobs::{job_view, logs_response};
use super::users::find_user;
use super::{ApiError, invalid, page};
use crate::AppState;
use crate::auth::Actor;
use crate::provisioning::{EVENT_DONE, announce};
use crate::reconciler::trigger;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace))
        .routes(routes!(list_workspaces))
        .routes(routes!(workspace_by_name))
        .routes(routes!(get_workspace))
        .routes(routes!(create_build, list_builds))
        .routes(routes!(get_build))
        .routes(routes!(build_logs))
        .routes(routes!(cancel_build))
        .routes(routes!(update_ttl))
        .routes(routes!(update_autostart))
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
) -> Result<(StatusCode, axum::Json<Workspace>), ApiError> {
    let started = Instant::now();
    let owner = find_user(&state, &actor, &user).await?;
    actor.authorize(Action::Create, Object { resource: Resource::Workspace, owner: Some(owner.id) })?;
    if !valid_name(&req.name) {
        return Err(ApiError::field(
            "name",
            "must be 1 to 64 lowercase letters or digits, with single hyphens between them (no leading or trailing hyphen)",
        ));
    }
    if req.ttl_ms.is_some_and(|ttl| ttl <= 0) {
        return Err(ApiError::field("ttl_ms", "must be positive"));
    }
    let template =
        state.store.template(req.template_id).await.map_err(|_| ApiError::field("template_id", "no such template"))?;
    if req.autostart_schedule.is_some() && !template.allow_user_autostart {
        return Err(ApiError::field("autostart_schedule", "the template does not allow autostart"));
    }
    let autostart_schedule = req.autostart_schedule.as_deref().map(check_autostart).transpose()?;
    let version_id = req.template_version_id.unwrap_or(template.active_version_id);
    usable_version(&state, &template, version_id).await?;
    let presets = state.store.version_presets(version_id).await?;
    let parameters = state.store.version_parameters(version_id).await?;
    let requested = requested_values(&req.rich_parameter_values)?;

    // The preset: the one named, else the one whose values the request repeats.
    let named =
        match req.template_version_preset_id {
            None => None,
            Some(id) => Some(presets.iter().find(|p| p.id == id).ok_or_else(|| {
                ApiError::field("template_version_preset_id", "not a preset of the template version")
            })?),
        };
    let matched = match named {
        Some(preset) => PresetMatch::Matched(preset.id),
        None => {
            let canonical: BTreeMap<String, String> = requested
                .iter()
                .map(|(name, value)| match parameters.iter().find(|p| &p.name == name) {
                    Some(parameter) => (name.clone(), parameter.canonical(value)),
                    None => (name.clone(), value.clone()),
                })
                .collect();
            let candidates: Vec<PresetValues> =
                presets.iter().map(|p| PresetValues { id: p.id, values: &p.parameters.0 }).collect();
            match_preset(&candidates, &canonical)
        }
    };
    let preset = match matched {
        PresetMatch::Matched(id) => presets.iter().find(|p| p.id == id),
        _ => None,
    };
    let values = resolve_parameters(&ParameterInput {
        parameters: &parameters,
        previous: None,
        preset: preset.map(|p| (p.name.as_str(), &p.parameters.0)),
        requested: &requested,
        transition: Transition::Start,
    })
    .map_err(parameter_problems)?;
    let ttl_ms = req.ttl_ms.or((template.default_ttl_ms > 0).then_some(template.default_ttl_ms));
    let deadline = ttl_ms.map(|ttl| Utc::now() + chrono::Duration::milliseconds(ttl));

    // Claim when a warm pool applies; else say why not.
    let pooled = preset.filter(|p| p.desired_instances.is_some() && version_id == template.active_version_id);
    let miss = match (pooled, matched) {
        (Some(preset), _) => {
            let claim = ClaimRequest {
                preset_id: preset.id,
                template_id: template.id,
                user_id: owner.id,
                name: &req.name,
                ttl_ms,
                autostart_schedule: autostart_schedule.clone(),
                deadline,
                max_deadline: None,
                parameters: &values,
                reinit: state.store.template_version(version_id).await?.claim_mode == Some(ClaimMode::Reinit),
                elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            };
            match state.store.claim_prebuild(&claim).await? {
                Some(claimed) => return claimed_response(&state, &actor, owner.id, claimed, started).await,
                None => Some((Some(preset.id), state.reconciler.miss_reason(preset.id).await?)),
            }
        }
        (None, PresetMatch::Mismatch(id)) => Some((Some(id), MissReason::ParameterMismatch)),
        (None, _) => (!presets.is_empty()).then_some((preset.map(|p| p.id), MissReason::NoPreset)),
    };

    let workspace = state
        .store
        .create_workspace(&NewWorkspace {
            organization_id: template.organization_id,
            owner_id: owner.id,
            template_id: template.id,
            name: req.name,
            ttl_ms,
            autostart_schedule,
            build: NewBuild {
                transition: Transition::Start,
                initiator_id: actor.user.id,
                reason: BuildReason::Initiator,
                template_version_id: version_id,
                preset_id: preset.map(|p| p.id),
                parameters: values,
                deadline,
                max_deadline: None,
            },
        })
        .await?;
    if let Some((preset_id, reason)) = miss {
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        if let Err(err) =
            state.store.record_claim_miss(template.id, preset_id, owner.id, reason, Some(workspace.id), latency).await
        {
            tracing::warn!(error = %err, "cannot record a claim miss");
        }
    }
    tracing::info!(workspace = %workspace.name, owner = %owner.username, by = %actor.user.username, "workspace created");
    Ok((StatusCode::CREATED, axum::Json(workspace_view(&state, workspace).await?)))
}

/// After a claim has committed: tell the prebuild's agents (on every
/// replica) and wake the reconciler to refill the pool, then answer.
async fn claimed_response(
    state: &AppState,
    actor: &Actor,
    owner_id: Uuid,
    claimed: Claimed,
    started: Instant,
) -> Result<(StatusCode, axum::Json<Workspace>), ApiError> {
    let event = ReinitEvent { workspace_id: claimed.workspace_id, owner_id, reason: "claimed".into() };
    let payload = serde_json::to_string(&event).expect("an event serialises");
    if let Err(err) = state.pubsub.publish(&claim_channel(claimed.workspace_id), &payload).await {
        tracing::warn!(error = %err, "cannot announce a claim; the agents will see it on their next check");
    }
    trigger(&state.pubsub, "claimed").await;
    let workspace = state.store.workspace(claimed.workspace_id).await?;
    tracing::info!(
        workspace = %workspace.name, owner = %workspace.owner_name, by = %actor.user.username,
        hand_over_ms = started.elapsed().as_secs_f64() * 1000.0, "prebuild claimed"
    );
    Ok((StatusCode::CREATED, axum::Json(workspace_view(state, workspace).await?)))
}

/// An autostart schedule: five cron fields, optionally after `CRON_TZ=<zone> `.
fn check_autostart(schedule: &str) -> Result<String, ApiError> {
    let bad = |detail: String| ApiError::field("autostart_schedule", detail);
    let cron = match schedule.strip_prefix("CRON_TZ=") {
        Some(rest) => {
            let (zone, cron) = rest.split_once(' ').ok_or_else(|| bad("expected CRON_TZ=<zone> <cron>".into()))?;
            zone.parse::<chrono_tz::Tz>().map_err(|_| bad(format!("{zone:?} is not an IANA time zone")))?;
            cron
        }
        None => schedule,
    };
    Schedule::parse(cron).map_err(|e| bad(e.to_string()))?;
    Ok(schedule.trim().to_owned())
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
    let mut filter = parse_search(&state, &actor, query.q.as_deref().unwrap_or_default()).await?;
    (filter.limit, filter.offset) = page(query.limit, query.offset)?;
    match warmspace_authz::visibility(&actor.subject, Action::Read, Resource::Workspace) {
        Visibility::All => {}
        Visibility::OwnedBy(me) if filter.owner_id.is_none_or(|owner| owner == me) => filter.owner_id = Some(me),
        // Asking for someone else's workspaces without the right to see them: nothing.
        Visibility::OwnedBy(_) | Visibility::Nothing => {
            return Ok(axum::Json(WorkspacesResponse { workspaces: Vec::new(), count: 0 }));
        }
    }
    let (rows, count) = state.store.list_workspaces(&filter).await?;
    let mut workspaces = Vec::with_capacity(rows.len());
    for row in rows {
        workspaces.push(workspace_view(&state, row).await?);
    }
    Ok(axum::Json(WorkspacesResponse { workspaces, count }))
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
    let owner = find_user(&state, &actor, &user).await?;
    let workspace = state.store.workspace_by_name(owner.id, &name).await.map_err(ApiError::missing("Workspace"))?;
    readable(&actor, &workspace)?;
    Ok(axum::Json(workspace_view(&state, workspace).await?))
}

#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}", tag = "workspaces", security(("session_token" = [])),
    params(("workspace" = Uuid, Path)), responses((status = 200, body = Workspace), (status = 404, body = Body)))]
async fn get_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Workspace>, ApiError> {
    let workspace = state.store.workspace(id).await.map_err(ApiError::missing("Workspace"))?;
    readable(&actor, &workspace)?;
    Ok(axum::Json(workspace_view(&state, workspace).await?))
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
) -> Result<(StatusCode, axum::Json<WorkspaceBuild>), ApiError> {
    let workspace = state.store.workspace(id).await.map_err(ApiError::missing("Workspace"))?;
    readable(&actor, &workspace)?;
    if workspace.deleted {
        return Err(ApiError::not_found("Workspace"));
    }
    let transition = req.transition;
    let actions: &[Action] = match transition {
        Transition::Start | Transition::Stop => &[Action::Read, Action::Update],
        // Deleting needs read, update and delete.
        Transition::Delete => &[Action::Read, Action::Update, Action::Delete],
    };
    authorize_workspace(&actor, workspace.owner_id, actions)?;
    let template = state.store.template(workspace.template_id).await?;
    // Without a version, a build keeps the one of the latest build (so a
    // delete uses the version the workspace was built with).
    let version_id = req.template_version_id.unwrap_or(workspace.latest_version_id);
    usable_version(&state, &template, version_id).await?;
    let latest = state.store.build(workspace.latest_build_id).await?;
    let parameters = state.store.version_parameters(version_id).await?;
    let requested = requested_values(&req.rich_parameter_values)?;
    let values = resolve_parameters(&ParameterInput {
        parameters: &parameters,
        previous: Some(&latest.parameters.0),
        preset: None,
        requested: &requested,
        transition,
    })
    .map_err(parameter_problems)?;
    let ttl = workspace.ttl_ms.filter(|_| transition == Transition::Start);
    let build = state
        .store
        .create_build(
            workspace.id,
            &NewBuild {
                transition,
                initiator_id: actor.user.id,
                reason: BuildReason::Initiator,
                template_version_id: version_id,
                preset_id: None,
                parameters: values,
                deadline: ttl.map(|ttl| Utc::now() + chrono::Duration::milliseconds(ttl)),
                max_deadline: None,
            },
        )
        .await?;
    tracing::info!(workspace = %workspace.name, transition = transition.as_str(), by = %actor.user.username, "build queued");
    Ok((StatusCode::CREATED, axum::Json(build_view(&state, build).await?)))
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
    let workspace = state.store.workspace(id).await.map_err(ApiError::missing("Workspace"))?;
    readable(&actor, &workspace)?;
    let mut builds = Vec::new();
    for build in state.store.builds(id).await? {
        builds.push(build_view(&state, build).await?);
    }
    Ok(axum::Json(builds))
}

#[utoipa::path(get, path = "/api/v2/workspacebuilds/{build}", tag = "workspaces", security(("session_token" = [])),
    params(("build" = Uuid, Path)), responses((status = 200, body = WorkspaceBuild), (status = 404, body = Body)))]
async fn get_build(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WorkspaceBuild>, ApiError> {
    let build = readable_build(&state, &actor, id).await?.1;
    Ok(axum::Json(build_view(&state, build).await?))
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
    let build = readable_build(&state, &actor, id).await?.1;
    logs_response(state, build.job_id, query).await
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
    let (workspace, build) = readable_build(&state, &actor, id).await?;
    authorize_workspace(&actor, workspace.owner_id, &[Action::Read, Action::Update])?;
    let message = match state.store.cancel_job(build.job_id).await? {
        Some(JobStatus::Canceled) => {
            announce(&state.pubsub, build.job_id, EVENT_DONE).await;
            "Build canceled."
        }
        Some(_) => "Cancel requested; the daemon is stopping the build.",
        None => return Err(ApiError::new(StatusCode::CONFLICT, "The build has already finished.")),
    };
    Ok(axum::Json(Body::message(message)))
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
    let workspace = lifecycle_target(&state, &actor, id).await?;
    if req.ttl_ms.is_some_and(|ttl| ttl <= 0) {
        return Err(ApiError::field("ttl_ms", "must be positive (or null for none)"));
    }
    state.store.set_workspace_lifecycle(workspace.id, req.ttl_ms, workspace.autostart_schedule.clone()).await?;
    Ok(axum::Json(workspace_view(&state, state.store.workspace(id).await?).await?))
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
    let workspace = lifecycle_target(&state, &actor, id).await?;
    let schedule = match req.schedule.as_deref() {
        Some(schedule) => {
            let template = state.store.template(workspace.template_id).await?;
            if !template.allow_user_autostart {
                return Err(ApiError::field("schedule", "the template does not allow autostart"));
            }
            Some(check_autostart(schedule).map_err(|_| {
                ApiError::field("schedule", "expected five cron fields, optionally after CRON_TZ=<zone>")
            })?)
        }
        None => None,
    };
    state.store.set_workspace_lifecycle(workspace.id, workspace.ttl_ms, schedule).await?;
    Ok(axum::Json(workspace_view(&state, state.store.workspace(id).await?).await?))
}

/// A workspace whose lifecycle settings the actor may change.
async fn lifecycle_target(state: &AppState, actor: &Actor, id: Uuid) -> Result<WorkspaceRow, ApiError> {
    let workspace = state.store.workspace(id).await.map_err(ApiError::missing("Workspace"))?;
    readable(actor, &workspace)?;
    authorize_workspace(actor, workspace.owner_id, &[Action::Read, Action::Update])?;
    if workspace.owner_id == PREBUILDS_USER_ID {
        return Err(ApiError::new(StatusCode::CONFLICT, "An unclaimed prebuild has no schedule of its own.")
            .detail("The reconciler manages prebuilds; the workspace takes the template's settings once claimed."));
    }
    Ok(workspace)
}

fn readable(actor: &Actor, workspace: &WorkspaceRow) -> Result<(), ApiError> {
    // Not found rather than forbidden: nobody learns which workspaces others have.
    authorize_workspace(actor, workspace.owner_id, &[Action::Read]).map_err(|_| ApiError::not_found("Workspace"))
}

/// May the actor do all of `actions` to a workspace? An unclaimed prebuild
/// is checked as a `prebuilt_workspace` first (template admins manage the
/// pool), then as the workspace it also is.
pub fn authorize_workspace(actor: &Actor, owner: Uuid, actions: &[Action]) -> Result<(), ApiError> {
    let all = |object: Object| actions.iter().try_for_each(|action| actor.authorize(*action, object));
    if owner == PREBUILDS_USER_ID && all(Object { resource: Resource::PrebuiltWorkspace, owner: None }).is_ok() {
        return Ok(());
    }
    all(Object { resource: Resource::Workspace, owner: Some(owner) })
}

async fn readable_build(state: &AppState, actor: &Actor, id: Uuid) -> Result<(WorkspaceRow, BuildRow), ApiError> {
    let build = state.store.build(id).await.map_err(ApiError::missing("Build"))?;
    let workspace = state.store.workspace(build.workspace_id).await?;
    readable(actor, &workspace)?;
    Ok((workspace, build))
}

/// A version of this template whose import succeeded.
async fn usable_version(state: &AppState, template: &TemplateRow, version_id: Uuid) -> Result<(), ApiError> {
    let bad = |detail: &str| ApiError::field("template_version_id", detail.to_owned());
    let version = state.store.template_version(version_id).await.map_err(|_| bad("no such template version"))?;
    if version.template_id != Some(template.id) {
        return Err(bad("the version belongs to another template"));
    }
    if version.provisioner.is_none() {
        return Err(bad("the version has not been imported successfully"));
    }
    Ok(())
}

fn requested_values(values: &[BuildParameter]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut map = BTreeMap::new();
    for value in values {
        if map.insert(value.name.clone(), value.value.clone()).is_some() {
            return Err(ApiError::field("rich_parameter_values", format!("{:?} is given twice", value.name)));
        }
    }
    Ok(map)
}

fn parameter_problems(problems: Vec<warmspace_template::ParameterProblem>) -> ApiError {
    ApiError::invalid(problems.into_iter().map(|p| invalid(&p.parameter, p.message)).collect())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// Parses `GET /workspaces?q=`.
async fn parse_search(state: &AppState, actor: &Actor, q: &str) -> Result<WorkspaceFilter, ApiError> {
    let mut filter = WorkspaceFilter::default();
    let bad = |detail: String| ApiError::field("q", detail);
    for term in q.split_whitespace() {
        match term.split_once(':') {
            Some(("owner", who)) => {
                let owner: UserRow = find_user(state, actor, who).await.map_err(|_| bad(format!("no user {who:?}")))?;
                filter.owner_id = Some(owner.id);
            }
            Some(("template", name)) => filter.template_name = Some(name.to_owned()),
            Some(("status", status)) => {
                let status: WorkspaceStatus = status.parse().map_err(|e: UnknownValue| bad(e.to_string()))?;
                filter.include_deleted |= status == WorkspaceStatus::Deleted;
                filter.status = Some(status);
            }
            Some(("name", name)) => filter.name = Some(name.to_owned()),
            Some((key, _)) => {
                return Err(bad(format!("unknown filter {key:?}: expected owner, template, status or name")));
            }
            None => filter.name = Some(term.to_owned()),
        }
    }
    Ok(filter)
}

pub async fn workspace_view(state: &AppState, w: WorkspaceRow) -> Result<Workspace, ApiError> {
    let latest = state.store.build(w.latest_build_id).await?;
    let now = Utc::now();
    let agents = state.store.workspace_agents(w.id).await?.into_iter().map(|a| agent_view(a, now)).collect();
    let status = w.status();
    Ok(Workspace {
        id: w.id,
        organization_id: w.organization_id,
        owner_id: w.owner_id,
        owner_name: w.owner_name,
        template_id: w.template_id,
        template_name: w.template_name,
        template_active_version_id: w.template_active_version_id,
        name: w.name,
        preset_id: w.preset_id,
        created_at: w.created_at,
        updated_at: w.updated_at,
        ttl_ms: w.ttl_ms,
        autostart_schedule: w.autostart_schedule,
        last_used_at: w.last_used_at,
        outdated: w.latest_version_id != w.template_active_version_id,
        status,
        latest_build: build_view(state, latest).await?,
        agents,
    })
}

async fn build_view(state: &AppState, b: BuildRow) -> Result<WorkspaceBuild, ApiError> {
    let job = job_view(state.store.job(b.job_id).await?);
    let status = b.status();
    Ok(WorkspaceBuild {
        id: b.id,
        workspace_id: b.workspace_id,
        build_number: b.build_number,
        transition: b.transition,
        initiator_id: b.initiator_id,
        initiator_name: b.initiator_name,
        reason: b.reason,
        template_version_id: b.template_version_id,
        template_version_name: b.template_version_name,
        template_version_preset_id: b.template_version_preset_id,
        status,
        job,
        deadline: b.deadline,
        max_deadline: b.max_deadline,
        created_at: b.created_at,
        updated_at: b.updated_at,
        parameters: b.parameters.0.into_iter().map(|(name, value)| BuildParameter { name, value }).collect(),
        resources: b
            .resources
            .0
            .into_iter()
            .map(|r| WorkspaceResource { address: r.address, kind: r.kind, replaced: r.replaced })
            .collect(),
    })
}
