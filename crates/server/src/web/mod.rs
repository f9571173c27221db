//! The dashboard: server-rendered pages under `/`, served on the API's
//! address by the same binary. Like the API handlers, every page extracts
//! its input, calls the domain layer (which checks permission) and renders
//! the result; the only JavaScript is one small static file that keeps the
//! live parts (pool counts, the unread badge, build logs) current over
//! Server-Sent Events and asks before an action in a dialog.
//!
//! Every response carries a Content-Security-Policy that allows scripts,
//! styles and connections from this origin only (no inline script or
//! style). Sessions and CSRF tokens: see [`session`].

mod charts;
mod handlers;
mod pages;
mod prebuilds;
mod provisioner;
mod session;
mod templates;
mod users;
mod workspaces;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use warmspace_sdk::ValidationError;

pub use session::{cookies_without_session, session_token};

use crate::api::{ApiError, AppState};
use crate::domain;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes (merged into the API's router, whose fallback
/// answers unknown paths outside `/api/` with [`not_found`]).
pub fn routes() -> Router<AppState> {
    use handlers::*;
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/setup", get(setup_page).post(setup))
        .route("/logout", post(logout))
        .route("/workspaces", get(workspaces::list).post(workspaces::create))
        .route("/workspaces/new", get(workspaces::new))
        .route("/workspaces/{id}", get(workspaces::show))
        .route("/workspaces/{id}/{action}", get(workspaces::confirm).post(workspaces::act))
        .route("/workspaces/{id}/ttl", post(workspaces::set_ttl))
        .route("/workspaces/{id}/autostart", post(workspaces::set_autostart))
        .route("/workspaces/{id}/extend", post(workspaces::extend))
        .route("/workspaces/{id}/wake", post(workspaces::wake))
        .route("/builds/{id}/log", get(workspaces::build_log))
        .route("/templates", get(templates::templates))
        .route("/templates/{id}", get(templates::template))
        .route("/templates/{id}/active", post(templates::promote))
        .route("/templates/{id}/versions/{version}", get(templates::version))
        .route("/prebuilds", get(prebuilds::prebuilds))
        .route("/prebuilds/events", get(prebuilds::prebuild_events))
        .route("/prebuilds/pause", post(prebuilds::pause))
        .route("/prebuilds/invalidate", get(prebuilds::invalidate_page).post(prebuilds::invalidate))
        .route("/provisioner", get(provisioner::provisioner))
        .route("/provisioner/keys", post(provisioner::create_key))
        .route("/provisioner/keys/{name}/delete", get(provisioner::delete_key_page).post(provisioner::delete_key))
        .route("/users", get(users::users).post(users::create_user))
        .route("/users/{user}/status", post(users::set_status))
        .route("/users/{user}/roles", post(users::set_roles))
        .route("/notifications", get(notifications))
        .route("/notifications/events", get(notification_events))
        .route("/notifications/read-all", post(read_all))
        .route("/static/app.css", get(|| asset("text/css; charset=utf-8", include_str!("static/app.css"))))
        .route("/static/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("static/app.js"))))
        .layer(axum::middleware::map_response(secure_headers))
        // Pages gzipped for browsers that take it (all do): a list of a thousand
        // workspaces is mostly repeated markup. Event streams are left alone by
        // the default predicate. CSRF tokens are masked per page (`session::masked`).
        .layer(tower_http::compression::CompressionLayer::new())
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The headers every dashboard response carries.
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    set("content-security-policy", CONTENT_SECURITY_POLICY);
    set("x-content-type-options", "nosniff");
    set("referrer-policy", "same-origin");
    set("x-frame-options", "DENY");
    response
}

/// The page for a path the dashboard does not have.
pub async fn not_found() -> Response {
    secure_headers(WebError::new(StatusCode::NOT_FOUND, "Page not found.").into_response()).await
}

/// A page's failure, shown as a page with its status: what went wrong, and
/// the fields at fault.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    message: String,
    detail: String,
    validations: Vec<ValidationError>,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError { status, message: message.into(), detail: String::new(), validations: Vec::new() }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> WebError {
        self.detail = detail.into();
        self
    }

    pub fn not_found() -> WebError {
        WebError::new(StatusCode::NOT_FOUND, "Page not found.")
    }
}

impl From<domain::Error> for WebError {
    /// The same status and words the API would answer with.
    fn from(err: domain::Error) -> WebError {
        let api = ApiError::from(err);
        WebError {
            status: api.status,
            message: api.body.message,
            detail: api.body.detail,
            validations: api.body.validations,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.status, pages::error(self.status, &self.message, &self.detail, &self.validations)).into_response()
    }
}
