//! Provisioner jobs: listing them, and following a job's log.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{JobStatus, JobsQuery, LogsQuery, ProvisionerJob, ProvisionerJobLog, Response as Body};
use warmspace_store::jobs::{JobFilter, JobRow, LogRow, job_events_channel};

use super::ApiError;
use super::extract::Query;
use crate::AppState;
use crate::auth::Actor;

/// A follower re-reads the log at least this often, in case an
/// announcement was lost.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

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
    actor.authorize(Action::Read, Object::any(Resource::ProvisionerJob))?;
    let organization = super::organization(&state, &organization).await?;
    let statuses = match query.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<JobStatus>())
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::field("status", e.to_string()))?,
    };
    let (limit, _) = super::page(query.limit, None)?;
    let filter = JobFilter { organization_id: Some(organization.id), statuses, limit };
    let jobs = state.store.list_jobs(&filter).await?;
    Ok(axum::Json(jobs.into_iter().map(job_view).collect()))
}

pub fn job_view(row: JobRow) -> ProvisionerJob {
    ProvisionerJob {
        id: row.id,
        organization_id: row.organization_id,
        kind: row.kind,
        status: row.status,
        initiator_id: row.initiator_id,
        priority: row.priority,
        tags: row.tags.0,
        worker_id: row.worker_id,
        worker_name: row.worker_name,
        error: row.error,
        created_at: row.created_at,
        started_at: row.started_at,
        completed_at: row.completed_at,
        canceled_at: row.canceled_at,
        queue_position: row.queue_position,
        logs_overflowed: row.logs_overflowed,
    }
}

fn log_view(row: LogRow) -> ProvisionerJobLog {
    ProvisionerJobLog {
        id: row.id,
        created_at: row.created_at,
        source: row.source,
        level: row.level,
        stage: row.stage,
        output: row.output,
    }
}

/// A job's log: all of it (after `after`) as JSON, or with `follow=true` a
/// Server-Sent Events stream of `log` events ending with one `end` event
/// (carrying the finished job) once the job is over.
pub async fn logs_response(state: AppState, job_id: Uuid, query: LogsQuery) -> Result<Response, ApiError> {
    let after = query.after.unwrap_or(0);
    if !query.follow {
        let logs = state.store.job_logs(job_id, after).await?;
        return Ok(axum::Json(logs.into_iter().map(log_view).collect::<Vec<_>>()).into_response());
    }
    // Subscribe before the first read, so nothing stored in between is missed.
    let events = state.pubsub.subscribe(&job_events_channel(job_id)).await.map_err(ApiError::internal)?;
    Ok(Sse::new(follow(state, job_id, after, events)).keep_alive(KeepAlive::default()).into_response())
}

fn follow(
    state: AppState,
    job_id: Uuid,
    mut after: i64,
    mut events: warmspace_store::pubsub::Subscription,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let shutting_down = state.shutting_down();
    async_stream(move |tx| async move {
        tokio::pin!(shutting_down);
        while !tx.is_closed() {
            // Read the job's state before its logs: if it had finished, every
            // line it will ever have is already stored.
            let job = match state.store.job(job_id).await {
                Ok(job) => job,
                Err(err) => return tracing::warn!(%job_id, error = %err, "log follower cannot read the job"),
            };
            let logs = match state.store.job_logs(job_id, after).await {
                Ok(logs) => logs,
                Err(err) => return tracing::warn!(%job_id, error = %err, "log follower cannot read the log"),
            };
            for log in logs {
                after = log.id;
                let event = Event::default().event("log").id(log.id.to_string()).json_data(log_view(log));
                if tx.send(event.expect("a log line serialises")).await.is_err() {
                    return;
                }
            }
            if job.is_finished() {
                let end = Event::default().event("end").json_data(job_view(job)).expect("a job serialises");
                let _ = tx.send(end).await;
                return;
            }
            tokio::select! {
                _ = tokio::time::timeout(FOLLOW_POLL, events.recv()) => {}
                // Followers reconnect to another replica (or this one, restarted).
                _ = &mut shutting_down => return,
            }
        }
    })
}

/// A stream fed by a task, so the follower reads as a plain loop.
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}
