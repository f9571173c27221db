//! The HTTP API under `/api/v2/`, described by the OpenAPI document it serves.

mod agents;
mod error;
mod extract;
mod files;
mod jobs;
mod meta;
mod notifications;
mod prebuilds;
mod provisionerd;
mod templates;
mod users;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use extract::Json;
pub use notifications::notify_template_admins;

use warmspace_sdk::ValidationError;
use warmspace_store::OrganizationRow;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "warmspace", description = "Developer workspaces with warm pools of prebuilt workspaces."),
    modifiers(&SessionTokenScheme)
)]
struct ApiDoc;

struct SessionTokenScheme;

impl Modify for SessionTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.components.get_or_insert_with(Default::default).add_security_scheme(
            SESSION_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(warmspace_sdk::SESSION_TOKEN_HEADER))),
        );
    }
}

/// The security scheme handlers name in their `security(...)`.
const SESSION_TOKEN: &str = "session_token";

/// The routes together with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::routes())
        .merge(users::routes())
        .merge(files::routes())
        .merge(templates::routes())
        .merge(jobs::routes())
        .merge(workspaces::routes())
        .merge(provisionerd::routes())
        .merge(agents::routes())
        .merge(prebuilds::routes())
        .merge(notifications::routes())
}

/// The organization a path names, by id or name (`default` for the default one).
async fn organization(state: &AppState, id_or_name: &str) -> Result<OrganizationRow, ApiError> {
    state.store.organization(id_or_name).await.map_err(ApiError::missing("Organization"))
}

/// Listings return at most this many items per request.
const MAX_PAGE: i64 = 1000;

/// A listing's `limit` (default and maximum [`MAX_PAGE`]) and `offset` (default 0), checked.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let (limit, offset) = (limit.unwrap_or(MAX_PAGE), offset.unwrap_or(0));
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    if offset < 0 {
        return Err(ApiError::field("offset", "must not be negative"));
    }
    Ok((limit, offset))
}

fn invalid(field: &str, detail: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), detail: detail.into() }
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serialises"));
    router
        .route(
            "/api/v2/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Route not found.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed on this route.")
        })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
