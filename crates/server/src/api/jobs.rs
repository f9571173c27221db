//! Provisioner jobs: listing them, and following a job's log.

use axum::extract::State;
use axum::response::Response;
use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warmspace_sdk::{JobsQuery, ProvisionerJob, Response as Body};

use super::extract::{Path, Query};
use super::{ApiError, AppState, sse};
use crate::domain::{Actor, LogFollow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_jobs))
}

/// Jobs of an organization, newest first, with their queue positions.
#[utoipa::path(get, path = "/api/v2/organizations/{organization}/provisionerjobs", tag = "provisioning",
    security(("session_token" = [])),
    params(("organization" = String, Path, description = "Id or name; `default` for the default one"), JobsQuery),
    responses((status = 200, body = Vec<ProvisionerJob>), (status = 400, body = Body), (status = 403, body = Body)))]
async fn list_jobs(
    State(state): State<AppState>,
    actor: Actor,
    Path(organization): Path<String>,
    Query(query): Query<JobsQuery>,
) -> Result<axum::Json<Vec<ProvisionerJob>>, ApiError> {
    Ok(axum::Json(state.domain.list_jobs(&actor, &organization, query).await?))
}

/// A followed log as Server-Sent Events: `log` events, then one `end`
/// event carrying the finished job.
pub fn log_events(state: &AppState, follow: impl Stream<Item = LogFollow> + Send + 'static) -> Response {
    sse(
        state,
        follow.map(|item| match item {
            LogFollow::Line(line) => {
                Event::default().event("log").id(line.id.to_string()).json_data(line).expect("a log line serialises")
            }
            LogFollow::End(job) => Event::default().event("end").json_data(job).expect("a job serialises"),
        }),
    )
}
