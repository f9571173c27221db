//! Uploaded files: tar archives of template versions, stored by content hash.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{Response, UploadResponse};

use super::extract::Path;
use super::{ApiError, AppState, Created, created};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_file))
        // The upload enforces its own, configurable limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .routes(routes!(download_file))
}

/// Uploads a tar archive. The same bytes always get the same id and are stored once.
#[utoipa::path(post, path = "/api/v2/files", tag = "files", security(("session_token" = [])),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 201, body = UploadResponse), (status = 400, body = Response),
              (status = 413, body = Response, description = "Larger than the server's limit")))]
async fn upload_file(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    body: Body,
) -> Result<Created<UploadResponse>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Read no more than the server takes: refuse a declared oversize at once, stop reading past the limit.
    let limit = state.domain.config().max_file_size;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(state.domain.upload_too_large().into());
    }
    let data = axum::body::to_bytes(body, limit).await.map_err(|_| state.domain.upload_too_large())?;
    Ok(created(state.domain.upload_file(&actor, content_type, &data).await?))
}

/// Downloads a file you uploaded, or one behind a template you may read.
#[utoipa::path(get, path = "/api/v2/files/{file}", tag = "files", security(("session_token" = [])),
    params(("file" = Uuid, Path)),
    responses((status = 200, content_type = "application/x-tar"), (status = 403, body = Response),
              (status = 404, body = Response)))]
async fn download_file(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    let (mimetype, data) = state.domain.download_file(&actor, id).await?;
    Ok(([(header::CONTENT_TYPE, mimetype)], data))
}
