//! Prebuild pools: their status (derived from the database on whichever
//! replica answers), pausing reconciliation, invalidating presets, claim statistics, what each pool gave and cost.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    ClaimStats, ClaimStatsQuery, InvalidatePresetsRequest, InvalidatePresetsResponse, PrebuildInsights,
    PrebuildInsightsQuery, PrebuildSettings, PrebuildsStatus, Response as Body,
};

use super::extract::{Json, Path, Query};
use super::{ApiError, AppState};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(invalidate))
        .routes(routes!(claims))
        .routes(routes!(insights))
}

/// What each pool gave and cost over a window ending now: per preset, claims, hits, misses by reason, hit rate,
/// hand-over p50/p95, cold and claim ready times, time saved, idle instance-hours (see docs/prebuilds.md).
#[utoipa::path(get, path = "/api/v2/prebuilds/insights", tag = "prebuilds", security(("session_token" = [])),
    params(PrebuildInsightsQuery),
    responses((status = 200, body = PrebuildInsights), (status = 400, body = Body), (status = 403, body = Body)))]
async fn insights(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<PrebuildInsightsQuery>,
) -> Result<axum::Json<PrebuildInsights>, ApiError> {
    Ok(axum::Json(state.domain.prebuild_insights(&actor, query).await?))
}

/// Hits and misses of create requests, per preset, over a window.
#[utoipa::path(get, path = "/api/v2/prebuilds/claims", tag = "prebuilds", security(("session_token" = [])),
    params(ClaimStatsQuery), responses((status = 200, body = Vec<ClaimStats>), (status = 400, body = Body)))]
async fn claims(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<ClaimStatsQuery>,
) -> Result<axum::Json<Vec<ClaimStats>>, ApiError> {
    Ok(axum::Json(state.domain.claim_stats(&actor, query).await?))
}

/// Every prebuild-configured preset's pool: desired, running, eligible, in progress, and its status.
#[utoipa::path(get, path = "/api/v2/prebuilds/status", tag = "prebuilds", security(("session_token" = [])),
    responses((status = 200, body = PrebuildsStatus), (status = 403, body = Body)))]
async fn status(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<PrebuildsStatus>, ApiError> {
    Ok(axum::Json(state.domain.prebuilds_status(&actor).await?))
}

#[utoipa::path(get, path = "/api/v2/prebuilds/settings", tag = "prebuilds", security(("session_token" = [])),
    responses((status = 200, body = PrebuildSettings)))]
async fn get_settings(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<PrebuildSettings>, ApiError> {
    Ok(axum::Json(state.domain.prebuild_settings(&actor).await?))
}

/// Pauses or resumes reconciliation site-wide; while paused nothing is created, deleted or canceled.
#[utoipa::path(put, path = "/api/v2/prebuilds/settings", tag = "prebuilds", security(("session_token" = [])),
    request_body = PrebuildSettings, responses((status = 200, body = PrebuildSettings), (status = 403, body = Body)))]
async fn put_settings(
    State(state): State<AppState>,
    actor: Actor,
    Json(req): Json<PrebuildSettings>,
) -> Result<axum::Json<PrebuildSettings>, ApiError> {
    Ok(axum::Json(state.domain.set_prebuild_settings(&actor, req).await?))
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
    Ok(axum::Json(state.domain.invalidate_presets(&actor, template_id, req).await?))
}
