//! Uploaded files: tar archives of template versions, stored by content hash.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{Response, UploadResponse};

use super::ApiError;
use crate::AppState;
use crate::auth::Actor;

pub const TAR: &str = "application/x-tar";

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
) -> Result<(StatusCode, axum::Json<UploadResponse>), ApiError> {
    actor.authorize(Action::Create, Object { resource: Resource::File, owner: Some(actor.user.id) })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type != TAR {
        return Err(ApiError::field("Content-Type", format!("must be {TAR}, not {content_type:?}")));
    }
    let limit = state.config.max_file_size;
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "The file is too large.")
            .detail(format!("Uploads are limited to {limit} bytes (--max-file-size)."))
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let data = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    let hash = hex::encode(Sha256::digest(&data));
    let file = state.store.upload_file(&hash, TAR, &data, actor.user.id).await?;
    Ok((StatusCode::CREATED, axum::Json(UploadResponse { id: file.id, hash: file.hash })))
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
    let file = state.store.file(id).await.map_err(|_| ApiError::not_found("File"))?;
    // Checked on every read: nothing cached may let one user read another's upload.
    let reads_all = warmspace_authz::authorize(&actor.subject, Action::Read, Object::any(Resource::File)).is_ok();
    let readable = reads_all
        || state.store.file_uploaded_by(id, actor.user.id).await?
        || (state.store.file_backs_a_template(id).await?
            && actor.authorize(Action::Read, Object::any(Resource::Template)).is_ok());
    if !readable {
        return Err(warmspace_authz::Denied { action: Action::Read, resource: Resource::File }.into());
    }
    let data = state.store.file_data(id).await?;
    Ok(([(header::CONTENT_TYPE, file.mimetype)], data))
}
