//! Prebuild pools: their status (derived from the database on whichever
//! replica answers), pausing reconciliation, invalidating presets.

use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_prebuilds::reconcile::{self, Status};
use warmspace_sdk::{
    ClaimStats, ClaimStatsQuery, InvalidatePresetsRequest, InvalidatePresetsResponse, PrebuildSettings,
    PrebuildsStatus, PresetPoolStatus, Response as Body,
};

use super::ApiError;
use super::extract::{Json, Query};
use crate::AppState;
use crate::auth::Actor;
use crate::reconciler::trigger;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(invalidate))
        .routes(routes!(claims))
}

/// Hits and misses of create requests, per preset, over a window.
#[utoipa::path(get, path = "/api/v2/prebuilds/claims", tag = "prebuilds", security(("session_token" = [])),
    params(ClaimStatsQuery), responses((status = 200, body = Vec<ClaimStats>), (status = 400, body = Body)))]
async fn claims(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<ClaimStatsQuery>,
) -> Result<axum::Json<Vec<ClaimStats>>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    let window = query.window_seconds.unwrap_or(86_400);
    if window <= 0 {
        return Err(ApiError::field("window_seconds", "must be positive"));
    }
    let since = chrono::Utc::now() - chrono::Duration::seconds(window);
    let rows = state.store.claim_stats(since).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| ClaimStats {
                template_name: r.template_name,
                preset_id: r.preset_id,
                preset_name: r.preset_name,
                hits: r.hits,
                misses: r.misses,
                misses_by_reason: r.misses_by_reason.0,
                hit_p50_ms: r.hit_p50_ms,
                hit_p99_ms: r.hit_p99_ms,
            })
            .collect(),
    ))
}

/// Every prebuild-configured preset's pool: desired, running, eligible, in progress, and its status.
#[utoipa::path(get, path = "/api/v2/prebuilds/status", tag = "prebuilds", security(("session_token" = [])),
    responses((status = 200, body = PrebuildsStatus), (status = 403, body = Body)))]
async fn status(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<PrebuildsStatus>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Workspace))?;
    let (raw, snapshot) = state.reconciler.snapshot().await?;
    let presets = raw
        .presets
        .into_iter()
        .zip(&snapshot.presets)
        .map(|(row, preset)| {
            let decision = reconcile::decide(preset, snapshot.now, &snapshot.settings);
            let c = decision.counts;
            let backoff_until = match decision.status {
                Status::Backoff { until } => Some(until),
                _ => None,
            };
            PresetPoolStatus {
                organization_name: row.organization_name,
                template_id: row.template_id,
                template_name: row.template_name,
                template_version_id: row.template_version_id,
                version_active: row.version_active,
                preset_id: row.preset_id,
                preset_name: row.preset_name,
                desired: c.desired,
                running: c.running,
                eligible: c.eligible,
                expired: c.expired,
                starting: c.starting,
                stopping: c.stopping,
                deleting: c.deleting,
                failed: c.failed,
                status: decision.status.kind(),
                backoff_until,
                validation_error: row.validation_error,
                last_invalidated_at: row.last_invalidated_at,
            }
        })
        .collect();
    Ok(axum::Json(PrebuildsStatus { reconciliation_paused: raw.paused, presets }))
}

#[utoipa::path(get, path = "/api/v2/prebuilds/settings", tag = "prebuilds", security(("session_token" = [])),
    responses((status = 200, body = PrebuildSettings)))]
async fn get_settings(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<PrebuildSettings>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::Template))?;
    Ok(axum::Json(PrebuildSettings { reconciliation_paused: state.store.reconciliation_paused().await? }))
}

/// Pauses or resumes reconciliation site-wide; while paused nothing is created, deleted or canceled.
#[utoipa::path(put, path = "/api/v2/prebuilds/settings", tag = "prebuilds", security(("session_token" = [])),
    request_body = PrebuildSettings, responses((status = 200, body = PrebuildSettings), (status = 403, body = Body)))]
async fn put_settings(
    State(state): State<AppState>,
    actor: Actor,
    Json(req): Json<PrebuildSettings>,
) -> Result<axum::Json<PrebuildSettings>, ApiError> {
    actor.authorize(Action::Update, Object::any(Resource::Template))?;
    state.store.set_reconciliation_paused(req.reconciliation_paused).await?;
    tracing::info!(paused = req.reconciliation_paused, by = %actor.user.username, "prebuild reconciliation settings changed");
    trigger(&state.pubsub, "settings").await;
    Ok(axum::Json(req))
}

/// Invalidates a template's presets (of its active version): their prebuilds count as expired and are replaced.
#[utoipa::path(post, path = "/api/v2/templates/{template}/prebuilds/invalidate", tag = "prebuilds",
    security(("session_token" = [])), params(("template" = Uuid, Path)), request_body = InvalidatePresetsRequest,
    responses((status = 200, body = InvalidatePresetsResponse), (status = 400, body = Body), (status = 403, body = Body),
              (status = 404, body = Body)))]
async fn invalidate(
    State(state): State<AppState>,
    actor: Actor,
    Path(template_id): Path<Uuid>,
    Json(req): Json<InvalidatePresetsRequest>,
) -> Result<axum::Json<InvalidatePresetsResponse>, ApiError> {
    actor.authorize(Action::Update, Object::any(Resource::Template))?;
    let template = state.store.template(template_id).await.map_err(ApiError::missing("Template"))?;
    let presets: Vec<_> = state
        .store
        .version_presets(template.active_version_id)
        .await?
        .into_iter()
        .filter(|p| p.desired_instances.is_some())
        .filter(|p| req.preset.as_ref().is_none_or(|name| &p.name == name))
        .collect();
    if let Some(name) = &req.preset
        && presets.is_empty()
    {
        return Err(ApiError::field(
            "preset",
            format!("the active version has no prebuild-configured preset {name:?}"),
        ));
    }
    let ids: Vec<Uuid> = presets.iter().map(|p| p.id).collect();
    state.store.invalidate_presets(&ids).await?;
    tracing::info!(template = %template.name, presets = ids.len(), by = %actor.user.username, "presets invalidated");
    trigger(&state.pubsub, "invalidated").await;
    Ok(axum::Json(InvalidatePresetsResponse { invalidated: presets.into_iter().map(|p| p.name).collect() }))
}
