//! Workspace apps opened through the server: `/@OWNER/WORKSPACE.AGENT/apps/APP/…`
//! (`.AGENT` may be left out for a workspace with one agent) is
//! reverse-proxied to the app's URL inside the workspace, over the agent's
//! tunnel (see [`Domain::open_app`](crate::domain::Domain::open_app)).
//!
//! Each request gets a stream of its own to the app's port (with TLS for an
//! https app: see [`super::app_tls`]), and hyper's HTTP/1.1 client speaks
//! to the app over it: any method, the headers less
//! the hop-by-hop ones and the person's own credentials, bodies streamed
//! both ways, and WebSocket (any HTTP/1.1) upgrades spliced once the app
//! agrees. Credentials: the session token header, `Authorization: Bearer`,
//! or the dashboard's session cookie. Refusals are JSON for API clients and
//! a page for browsers (requests that carried the cookie).

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use warmspace_sdk::SESSION_TOKEN_HEADER;

use super::app_tls;
use super::connections::client_address;
use super::extract::Path;
use super::{ApiError, AppState};
use crate::domain::{AgentStream, AppAddress, AppConnection, Error};
use crate::web::{self, WebError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/@{owner}/{workspace}/apps/{app}", any(to_root))
        .route("/@{owner}/{workspace}/apps/{app}/", any(proxy_root))
        .route("/@{owner}/{workspace}/apps/{app}/{*rest}", any(proxy))
}

#[derive(Deserialize)]
struct AppPath {
    owner: String,
    workspace: String,
    app: String,
}

/// The request's path below the app's root, as sent (still percent-encoded).
fn rest(uri: &Uri) -> &str {
    // "", "@OWNER", "WORKSPACE", "apps", "APP", the rest.
    uri.path().splitn(6, '/').nth(5).unwrap_or("")
}

/// Headers that belong to one hop (RFC 9110 §7.6.1), never passed on;
/// an upgrade's `Connection` and `Upgrade` are set again for it.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The app's root without its slash: on to the root, so that the app's
/// relative links resolve below it.
async fn to_root(uri: Uri) -> Redirect {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::temporary(&format!("{}/{query}", uri.path()))
}

async fn proxy_root(state: State<AppState>, path: Path<AppPath>, request: Request) -> Response {
    proxy(state, path, request).await
}

async fn proxy(State(state): State<AppState>, Path(path): Path<AppPath>, request: Request) -> Response {
    let browser = web::session_token(request.headers()).is_some();
    let uri = request.uri().clone();
    match forward(&state, &path, request).await {
        Ok(response) => response,
        Err(Refusal::SignIn) => {
            let then: String = form_urlencoded::byte_serialize(uri.to_string().as_bytes()).collect();
            Redirect::to(&format!("/login?then={then}")).into_response()
        }
        Err(Refusal::Domain(err)) if browser => web::secure_headers(WebError::from(err).into_response()).await,
        Err(Refusal::Domain(err)) => ApiError::from(err).into_response(),
        Err(Refusal::Gateway(err)) if browser => {
            let page = WebError::new(err.status, err.body.message).detail(err.body.detail);
            web::secure_headers(page.into_response()).await
        }
        Err(Refusal::Gateway(err)) => err.into_response(),
    }
}

enum Refusal {
    /// A browser without a session: to the sign-in page, and back once signed in.
    SignIn,
    Domain(Error),
    /// The app did not answer.
    Gateway(ApiError),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Refusal {
        Refusal::Domain(err)
    }
}

async fn forward(state: &AppState, path: &AppPath, mut request: Request) -> Result<Response, Refusal> {
    let headers = request.headers();
    let token = headers
        .get(SESSION_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer "))
        .or_else(|| web::session_token(headers));
    if token.is_none() && accepts_html(headers) {
        return Err(Refusal::SignIn);
    }
    let actor = state.domain.authenticate(token).await?;
    let address = AppAddress::new(&path.owner, &path.workspace, &path.app);
    let upgrade = request.headers().get(header::UPGRADE).cloned();
    let client = client_address(request.extensions());
    let AppConnection { id, stream, target } =
        state.domain.open_app(&actor, &address, client.clone(), upgrade.is_some()).await?;

    let downstream = upgrade.as_ref().and_then(|_| request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>());
    let path_and_query = target.path_and_query(rest(request.uri()), request.uri().query());
    *request.uri_mut() = match path_and_query.parse() {
        Ok(uri) => uri,
        Err(_) => {
            state.domain.app_connection_ended(id, "not a path the app can be asked for", None).await;
            return Err(Refusal::Domain(Error::field("path", "is not a path an app can be asked for")));
        }
    };
    let prefix = address.path();
    prepare_headers(request.headers_mut(), &target.host, &client, prefix.trim_end_matches('/'), upgrade);

    let answer = async {
        let stream: Box<dyn AgentStream> = match target.tls {
            true => Box::new(app_tls::connect(stream, target.host_name()).await.map_err(|e| e.to_string())?),
            false => stream,
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "a connection to an app ended badly");
            }
        });
        sender.send_request(request).await.map_err(|e| e.to_string())
    };
    let mut response = match answer.await {
        Ok(response) => response,
        Err(err) => {
            let why = format!("the app did not answer: {err}");
            state.domain.app_connection_ended(id, &why, None).await;
            return Err(Refusal::Gateway(
                ApiError::new(StatusCode::BAD_GATEWAY, format!("App \"{}\" did not answer.", path.app))
                    .detail(format!("Is it running and listening on {} inside the workspace? ({err})", target.host)),
            ));
        }
    };
    let status = response.status();
    match (status, downstream) {
        (StatusCode::SWITCHING_PROTOCOLS, Some(downstream)) => {
            let upstream = hyper::upgrade::on(&mut response);
            let domain = state.domain.clone();
            let down = state.shutting_down();
            tokio::spawn(async move {
                let reason = tokio::select! {
                    reason = splice(downstream, upstream) => reason,
                    () = down => "the server shut down".to_owned(),
                };
                domain.app_connection_ended(id, &reason, Some(status.as_u16())).await;
            });
        }
        _ => {
            remove_hop_by_hop(response.headers_mut());
            state.domain.app_connection_ended(id, &format!("HTTP {status}"), Some(status.as_u16())).await;
        }
    }
    Ok(response.map(axum::body::Body::new))
}

/// Copies both ways between the person's upgraded connection and the
/// app's until either ends; says why it ended.
async fn splice(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) -> String {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(both) => both,
        Err(err) => return format!("the upgrade failed: {err}"),
    };
    let (mut a, mut b) = (TokioIo::new(downstream), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok(_) => "closed".to_owned(),
        Err(err) => format!("broken: {err}"),
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

/// The request's headers as the app gets them: for one hop to it, without
/// the person's warmspace credentials (the app is not to act as them), and
/// saying where it came from.
fn prepare_headers(headers: &mut HeaderMap, host: &str, client: &str, prefix: &str, upgrade: Option<HeaderValue>) {
    remove_hop_by_hop(headers);
    headers.remove(SESSION_TOKEN_HEADER);
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer ")) {
        headers.remove(header::AUTHORIZATION);
    }
    let cookies = web::cookies_without_session(headers);
    headers.remove(header::COOKIE);
    if let Some(cookies) = cookies.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::COOKIE, cookies);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    if let Some(original) = headers.get(header::HOST).cloned() {
        headers.insert("x-forwarded-host", original);
    }
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, host);
    }
    if let Ok(client) = HeaderValue::from_str(client) {
        headers.append("x-forwarded-for", client);
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert("x-forwarded-prefix", prefix);
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the `Connection` header names are the hop's too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}
