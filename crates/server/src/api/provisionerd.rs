//! Provisioner keys, and the protocol external daemons speak: the same
//! operations in-process daemons call directly, over HTTP, authenticated by
//! a provisioner key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_provisioner::{JobKind, JobState, Worker};
use warmspace_sdk::{
    AcquiredJobKind, AcquiredJobResponse, AppendJobLogsRequest, CompleteJobRequest, CreateProvisionerKeyRequest,
    CreateProvisionerKeyResponse, DaemonWorker, HeartbeatRequest, HeartbeatResponse, JobCompletion, ProvisionerDaemon,
    ProvisionerKey, Response as Body,
};
use warmspace_store::pubsub::Event as PubSubEvent;

use super::extract::{Json, LogJson, Path};
use super::{ApiError, AppState, Created, created, message, sse};
use crate::domain::{self, Actor, DaemonAuth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(delete_key))
        .routes(routes!(list_daemons))
        .routes(routes!(acquire))
        .routes(routes!(job_posted_events))
        .routes(routes!(daemon_file))
        .routes(routes!(heartbeat))
        .routes(routes!(append_logs))
        .routes(routes!(complete))
        // Log batches and state files can be large.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
}

/// Creates a provisioner key for daemons on other hosts. The secret is shown once.
#[utoipa::path(post, path = "/api/v2/provisionerkeys", tag = "provisioning", security(("session_token" = [])),
    request_body = CreateProvisionerKeyRequest,
    responses((status = 201, body = CreateProvisionerKeyResponse), (status = 403, body = Body), (status = 409, body = Body)))]
async fn create_key(
    State(state): State<AppState>,
    actor: Actor,
    Json(req): Json<CreateProvisionerKeyRequest>,
) -> Result<Created<CreateProvisionerKeyResponse>, ApiError> {
    Ok(created(state.domain.create_provisioner_key(&actor, req).await?))
}

#[utoipa::path(get, path = "/api/v2/provisionerkeys", tag = "provisioning", security(("session_token" = [])),
    responses((status = 200, body = Vec<ProvisionerKey>), (status = 403, body = Body)))]
async fn list_keys(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Vec<ProvisionerKey>>, ApiError> {
    Ok(axum::Json(state.domain.provisioner_keys(&actor).await?))
}

/// Deletes a key; daemons using it can take no more jobs.
#[utoipa::path(delete, path = "/api/v2/provisionerkeys/{name}", tag = "provisioning", security(("session_token" = [])),
    params(("name" = String, Path)), responses((status = 200, body = Body), (status = 404, body = Body)))]
async fn delete_key(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> Result<axum::Json<Body>, ApiError> {
    state.domain.delete_provisioner_key(&actor, &name).await?;
    Ok(message("Provisioner key deleted."))
}

/// The provisioner daemons (in-process and external), most recently seen first.
#[utoipa::path(get, path = "/api/v2/provisionerdaemons", tag = "provisioning", security(("session_token" = [])),
    responses((status = 200, body = Vec<ProvisionerDaemon>), (status = 403, body = Body)))]
async fn list_daemons(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<axum::Json<Vec<ProvisionerDaemon>>, ApiError> {
    Ok(axum::Json(state.domain.provisioner_daemons(&actor).await?))
}

/// Takes the next job the daemon may run: 200 with the job, or 204 when there is none.
#[utoipa::path(post, path = "/api/v2/provisionerdaemons/acquire", tag = "provisioner daemons",
    responses((status = 200, description = "A job"), (status = 204, description = "No job"), (status = 401, body = Body)))]
async fn acquire(
    State(state): State<AppState>,
    daemon: DaemonAuth,
    Json(worker): Json<DaemonWorker>,
) -> Result<Response, ApiError> {
    let worker = Worker { id: worker.id, name: worker.name, tags: worker.tags };
    let Some(job) = state.domain.acquire_job(&worker, Some(daemon.key_id)).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let kind = match job.kind {
        JobKind::TemplateImport { template_version_id, file_id } => {
            AcquiredJobKind::TemplateImport { template_version_id, file_id }
        }
        JobKind::WorkspaceBuild(build) => AcquiredJobKind::WorkspaceBuild { build },
        JobKind::DriftCheck(build) => AcquiredJobKind::DriftCheck { build },
    };
    let heartbeat_every_ms = u64::try_from(job.heartbeat_every.as_millis()).unwrap_or(u64::MAX);
    Ok(axum::Json(AcquiredJobResponse { job_id: job.id, heartbeat_every_ms, job: kind }).into_response())
}

/// Server-Sent Events, one `posted` event whenever a job may be waiting, so idle daemons need not poll tightly.
#[utoipa::path(get, path = "/api/v2/provisionerdaemons/events", tag = "provisioner daemons",
    responses((status = 200, content_type = "text/event-stream"), (status = 401, body = Body)))]
async fn job_posted_events(State(state): State<AppState>, _daemon: DaemonAuth) -> Result<Response, ApiError> {
    let subscription = state.domain.events().job_posted().await.map_err(domain::Error::internal)?;
    let events = futures::stream::unfold(subscription, |mut subscription| async move {
        // A gap may have hidden a posted job: tell the daemon to look too.
        match subscription.recv().await {
            Some(PubSubEvent::Message(_) | PubSubEvent::Gap) => Some(((), subscription)),
            None => None,
        }
    });
    Ok(sse(&state, events.map(|()| Event::default().event("posted").data("job"))))
}

/// A template version's archive, for the daemon running its job.
#[utoipa::path(get, path = "/api/v2/provisionerdaemons/files/{file}", tag = "provisioner daemons",
    params(("file" = Uuid, Path)), responses((status = 200, content_type = "application/x-tar"), (status = 404, body = Body)))]
async fn daemon_file(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
    Path(id): Path<Uuid>,
) -> Result<Vec<u8>, ApiError> {
    Ok(state.domain.daemon_file(id).await?)
}

/// Renews the lease of a job this daemon holds; says whether it was canceled (410 when the job is lost).
#[utoipa::path(post, path = "/api/v2/provisionerdaemons/jobs/{job}/heartbeat", tag = "provisioner daemons",
    params(("job" = Uuid, Path)), responses((status = 200, description = "Still held"), (status = 410, body = Body)))]
async fn heartbeat(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
    Path(job_id): Path<Uuid>,
    Json(req): Json<HeartbeatRequest>,
) -> Result<axum::Json<HeartbeatResponse>, ApiError> {
    let job_state = state.domain.job_heartbeat(job_id, req.worker_id).await?;
    Ok(axum::Json(HeartbeatResponse { canceling: job_state == JobState::Canceling }))
}

#[utoipa::path(post, path = "/api/v2/provisionerdaemons/jobs/{job}/logs", tag = "provisioner daemons",
    params(("job" = Uuid, Path)), responses((status = 200, body = Body), (status = 410, body = Body)))]
async fn append_logs(
    State(state): State<AppState>,
    daemon: DaemonAuth,
    Path(job_id): Path<Uuid>,
    LogJson(req): LogJson<AppendJobLogsRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    state.domain.append_job_logs(job_id, req.worker_id, Some(daemon.key_id), req.logs).await?;
    Ok(message("Stored."))
}

/// Reports how a job ended (410 when the daemon no longer holds it).
#[utoipa::path(post, path = "/api/v2/provisionerdaemons/jobs/{job}/complete", tag = "provisioner daemons",
    params(("job" = Uuid, Path)), responses((status = 200, body = Body), (status = 410, body = Body)))]
async fn complete(
    State(state): State<AppState>,
    daemon: DaemonAuth,
    Path(job_id): Path<Uuid>,
    LogJson(req): LogJson<CompleteJobRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    let domain = &state.domain;
    match req.completion {
        JobCompletion::Import { manifest } => domain.complete_import(job_id, req.worker_id, *manifest).await,
        JobCompletion::Build { outcome } => {
            domain.complete_build(job_id, req.worker_id, Some(&daemon.key_id), outcome, Vec::new()).await
        }
        JobCompletion::DriftCheck { replaced } => {
            domain.complete_drift_check(job_id, req.worker_id, Some(&daemon.key_id), replaced, Vec::new()).await
        }
        JobCompletion::Failed { error } => domain.fail_job(job_id, req.worker_id, &error).await,
    }?;
    Ok(message("Recorded."))
}
