//! What the server is and whether it is healthy.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warmspace_sdk::BuildInfo;

use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(buildinfo))
}

/// Healthy when the database answers within two seconds.
#[utoipa::path(get, path = "/healthz", tag = "general",
    responses((status = 200, description = "OK"), (status = 503, description = "The database does not answer")))]
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), state.domain.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "OK"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

#[utoipa::path(get, path = "/api/v2/buildinfo", tag = "general", responses((status = 200, body = BuildInfo)))]
async fn buildinfo() -> axum::Json<BuildInfo> {
    axum::Json(BuildInfo { version: env!("CARGO_PKG_VERSION").to_owned(), api_version: "v2".to_owned() })
}
