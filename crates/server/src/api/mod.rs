//! The HTTP API under `/api/v2/`, described by the OpenAPI document it serves.

mod agents;
mod app_proxy;
mod app_tls;
mod apps;
mod connections;
mod error;
mod extract;
mod files;
mod jobs;
mod meta;
mod metrics;
mod notifications;
mod prebuilds;
mod provisionerd;
mod templates;
mod users;
mod workspaces;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use extract::Json;
pub use metrics::router as metrics_router;

use tokio::sync::watch;

use crate::domain::Domain;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub domain: Domain,
    /// Turns true when the server shuts down, so long-lived streams end.
    shutdown: Arc<watch::Sender<bool>>,
}

impl AppState {
    pub fn new(domain: Domain) -> Self {
        AppState { domain, shutdown: Arc::new(watch::channel(false).0) }
    }

    /// Ends open streams (clients reconnect, to another replica or this one restarted).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Completes when the server begins shutting down.
    pub fn shutting_down(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut receiver = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone, which is a shutdown too.
            receiver.wait_for(|down| *down).await.ok();
        }
    }
}

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
        .merge(apps::routes())
        .merge(connections::routes())
        .merge(prebuilds::routes())
        .merge(notifications::routes())
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
        // Workspace apps, under `/@OWNER/` (see app_proxy).
        .merge(app_proxy::routes())
        // The dashboard's pages, under `/` (every path outside `/api/`).
        .merge(crate::web::routes())
        .fallback(|uri: axum::http::Uri| async move {
            if is_api(&uri) {
                ApiError::new(StatusCode::NOT_FOUND, "Route not found.").into_response()
            } else {
                crate::web::not_found().await
            }
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed on this route.")
        })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Whether a path is the API's (answered in JSON) rather than the dashboard's.
fn is_api(uri: &axum::http::Uri) -> bool {
    uri.path() == "/api" || uri.path().starts_with("/api/")
}

/// A stream as Server-Sent Events, kept alive, ending when the server shuts
/// down (clients reconnect, to another replica or this one restarted).
pub(crate) fn sse<S>(state: &AppState, events: S) -> axum::response::Response
where
    S: futures::Stream<Item = axum::response::sse::Event> + Send + 'static,
{
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let events = events.map(Ok::<_, std::convert::Infallible>).take_until(state.shutting_down());
    axum::response::sse::Sse::new(events).keep_alive(axum::response::sse::KeepAlive::default()).into_response()
}

type Created<T> = (StatusCode, axum::Json<T>);

fn created<T>(value: T) -> Created<T> {
    (StatusCode::CREATED, axum::Json(value))
}

fn message(text: &str) -> axum::Json<warmspace_sdk::Response> {
    axum::Json(warmspace_sdk::Response::message(text))
}
