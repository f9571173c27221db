//! `GET /metrics`: the Prometheus text format, unauthenticated (as
//! Prometheus scrapes it). Served from memory: no database query.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::AppState;
use crate::metrics;

/// The `/metrics` route alone: merged into the API's router, or served on
/// a listener of its own (`--prometheus-address`).
pub fn router(state: AppState) -> Router {
    Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state)
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], state.domain.metrics().encode())
}
