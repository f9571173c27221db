//! Provisioner keys, and the protocol external daemons speak: the same
//! operations in-process daemons call directly, over HTTP, authenticated by
//! a provisioner key.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_provisioner::{Coordinator, CoordinatorError, JobKind, JobState, Worker};
use warmspace_sdk::{
    AcquiredJobKind, AcquiredJobResponse, CompleteJobRequest, CreateProvisionerKeyRequest,
    CreateProvisionerKeyResponse, DaemonWorker, HeartbeatRequest, HeartbeatResponse, JobCompletion, JobLogLine,
    PROVISIONER_KEY_HEADER, ProvisionerKey, Response as Body,
};
use warmspace_store::ProvisionerKeyRow;
use warmspace_store::jobs::JOB_POSTED_CHANNEL;
use warmspace_store::pubsub::Event as PubSubEvent;

use super::ApiError;
use super::extract::Json;
use crate::AppState;
use crate::auth::Actor;
use crate::auth::tokens::Token;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(delete_key))
        .routes(routes!(acquire))
        .routes(routes!(job_posted_events))
        .routes(routes!(daemon_file))
        .routes(routes!(heartbeat))
        .routes(routes!(append_logs))
        .routes(routes!(complete))
        // Log batches and state files can be large.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
}

fn ok(message: &str) -> axum::Json<Body> {
    axum::Json(Body::message(message))
}

/// Creates a provisioner key for daemons on other hosts. The secret is shown once.
#[utoipa::path(post, path = "/api/v2/provisionerkeys", tag = "provisioning", security(("session_token" = [])),
    request_body = CreateProvisionerKeyRequest,
    responses((status = 201, body = CreateProvisionerKeyResponse), (status = 403, body = Body), (status = 409, body = Body)))]
async fn create_key(
    State(state): State<AppState>,
    actor: Actor,
    Json(req): Json<CreateProvisionerKeyRequest>,
) -> Result<(StatusCode, axum::Json<CreateProvisionerKeyResponse>), ApiError> {
    actor.authorize(Action::Create, Object::any(Resource::ProvisionerDaemon))?;
    let valid = (1..=64).contains(&req.name.len())
        && req
            .name
            .split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !valid {
        return Err(ApiError::field("name", "must be lowercase letters or digits with single hyphens, at most 64"));
    }
    let token = Token::generate();
    let key = state.store.create_provisioner_key(&token.id, &req.name, &token.hashed_secret(), actor.user.id).await?;
    tracing::info!(key = %key.name, by = %actor.user.username, "provisioner key created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreateProvisionerKeyResponse { key: key_view(key), secret: token.to_header_value() }),
    ))
}

#[utoipa::path(get, path = "/api/v2/provisionerkeys", tag = "provisioning", security(("session_token" = [])),
    responses((status = 200, body = Vec<ProvisionerKey>), (status = 403, body = Body)))]
async fn list_keys(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Vec<ProvisionerKey>>, ApiError> {
    actor.authorize(Action::Read, Object::any(Resource::ProvisionerDaemon))?;
    Ok(axum::Json(state.store.provisioner_keys().await?.into_iter().map(key_view).collect()))
}

/// Deletes a key; daemons using it can take no more jobs.
#[utoipa::path(delete, path = "/api/v2/provisionerkeys/{name}", tag = "provisioning", security(("session_token" = [])),
    params(("name" = String, Path)), responses((status = 200, body = Body), (status = 404, body = Body)))]
async fn delete_key(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> Result<axum::Json<Body>, ApiError> {
    actor.authorize(Action::Delete, Object::any(Resource::ProvisionerDaemon))?;
    state.store.delete_provisioner_key(&name).await.map_err(|_| ApiError::not_found("Provisioner key"))?;
    Ok(ok("Provisioner key deleted."))
}

fn key_view(key: ProvisionerKeyRow) -> ProvisionerKey {
    ProvisionerKey { id: key.id, name: key.name, created_at: key.created_at }
}

/// An external daemon, authenticated by its provisioner key.
pub struct DaemonAuth {
    key_id: String,
}

impl FromRequestParts<AppState> for DaemonAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let invalid = || ApiError::unauthorized("Invalid provisioner key.");
        let raw = parts.headers.get(PROVISIONER_KEY_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::unauthorized(format!("Send a provisioner key in the {PROVISIONER_KEY_HEADER} header."))
        })?;
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let key = state.store.provisioner_key(&token.id).await.map_err(|_| invalid())?;
        if !token.matches(&key.hashed_secret) {
            return Err(invalid());
        }
        Ok(DaemonAuth { key_id: key.id })
    }
}

fn lost(err: CoordinatorError) -> ApiError {
    match err {
        CoordinatorError::JobLost => ApiError::new(StatusCode::GONE, "This daemon no longer holds the job."),
        CoordinatorError::Other(message) => ApiError::internal(message),
    }
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
    let Some(job) = state.coordinator.acquire_as(&worker, Some(daemon.key_id)).await.map_err(lost)? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let kind = match job.kind {
        JobKind::TemplateImport { template_version_id, file_id } => {
            AcquiredJobKind::TemplateImport { template_version_id, file_id }
        }
        JobKind::WorkspaceBuild(build) => AcquiredJobKind::WorkspaceBuild { build },
    };
    let response =
        AcquiredJobResponse { job_id: job.id, heartbeat_every_ms: job.heartbeat_every.as_millis() as u64, job: kind };
    Ok(axum::Json(response).into_response())
}

/// Server-Sent Events, one `posted` event whenever a job may be waiting, so idle daemons need not poll tightly.
#[utoipa::path(get, path = "/api/v2/provisionerdaemons/events", tag = "provisioner daemons",
    responses((status = 200, content_type = "text/event-stream"), (status = 401, body = Body)))]
async fn job_posted_events(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = state.pubsub.subscribe(JOB_POSTED_CHANNEL).await.map_err(ApiError::internal)?;
    let events = futures::stream::unfold(subscription, |mut subscription| async move {
        // A gap may have hidden a posted job: tell the daemon to look too.
        match subscription.recv().await {
            Some(PubSubEvent::Message(_) | PubSubEvent::Gap) => {
                Some((Ok(Event::default().event("posted").data("job")), subscription))
            }
            None => None,
        }
    });
    // Ends with the server, so shutdown need not wait for idle daemons.
    Ok(Sse::new(events.take_until(state.shutting_down())).keep_alive(KeepAlive::default()))
}

/// A template version's archive, for the daemon running its job.
#[utoipa::path(get, path = "/api/v2/provisionerdaemons/files/{file}", tag = "provisioner daemons",
    params(("file" = Uuid, Path)), responses((status = 200, content_type = "application/x-tar"), (status = 404, body = Body)))]
async fn daemon_file(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
    Path(id): Path<Uuid>,
) -> Result<Vec<u8>, ApiError> {
    state.coordinator.file(id).await.map_err(|_| ApiError::not_found("File"))
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
    let job_state = state.coordinator.heartbeat(job_id, req.worker_id).await.map_err(lost)?;
    Ok(axum::Json(HeartbeatResponse { canceling: job_state == JobState::Canceling }))
}

#[utoipa::path(post, path = "/api/v2/provisionerdaemons/jobs/{job}/logs", tag = "provisioner daemons",
    params(("job" = Uuid, Path)), responses((status = 200, body = Body)))]
async fn append_logs(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
    Path(job_id): Path<Uuid>,
    Json(logs): Json<Vec<JobLogLine>>,
) -> Result<axum::Json<Body>, ApiError> {
    state.coordinator.append_logs(job_id, logs).await.map_err(lost)?;
    Ok(ok("Stored."))
}

/// Reports how a job ended (410 when the daemon no longer holds it).
#[utoipa::path(post, path = "/api/v2/provisionerdaemons/jobs/{job}/complete", tag = "provisioner daemons",
    params(("job" = Uuid, Path)), responses((status = 200, body = Body), (status = 410, body = Body)))]
async fn complete(
    State(state): State<AppState>,
    _daemon: DaemonAuth,
    Path(job_id): Path<Uuid>,
    Json(req): Json<CompleteJobRequest>,
) -> Result<axum::Json<Body>, ApiError> {
    let c = &state.coordinator;
    match req.completion {
        JobCompletion::Import { manifest } => c.complete_import(job_id, req.worker_id, *manifest).await,
        JobCompletion::Build { outcome } => c.complete_build(job_id, req.worker_id, outcome).await,
        JobCompletion::Failed { error } => c.fail_job(job_id, req.worker_id, error).await,
    }
    .map_err(lost)?;
    Ok(ok("Recorded."))
}
