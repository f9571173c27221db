//! Connections to workspaces: the agents' tunnels, clients' connections
//! spliced onto them, relays between replicas, and the connection log.
//!
//! The tunnel, client connections and relays are HTTP/1.1 upgrades to the
//! `warmspace-tunnel` protocol (see [`warmspace_sdk::tunnel`]): the request
//! is authenticated and checked like any other, and only then answered
//! `101 Switching Protocols`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::tunnel::{Opener, PROTOCOL, RELAY_SECRET_HEADER, StreamHeader};
use warmspace_sdk::{AgentConnectionReport, ConnectQuery, ConnectionLogPage, ConnectionLogQuery, Response as Body};

use super::extract::{Json, Path, Query};
use super::{ApiError, AppState, message};
use crate::domain::{Actor, AgentAuth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tunnel))
        .routes(routes!(relay))
        .routes(routes!(report_exit))
        .routes(routes!(connect))
        .routes(routes!(connection_log))
}

/// A request to upgrade its connection to the tunnel protocol, and the
/// client's address.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    client: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let asks = parts.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v == PROTOCOL);
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().filter(|_| asks).ok_or_else(|| {
            ApiError::new(StatusCode::UPGRADE_REQUIRED, "This route is a connection, not a request.").detail(format!(
                "Ask for an HTTP/1.1 upgrade to {PROTOCOL} (Connection: upgrade, Upgrade: {PROTOCOL})."
            ))
        })?;
        Ok(Upgrade { on_upgrade, client: client_address(&parts.extensions) })
    }
}

/// The client's address, as this server saw it.
pub(crate) fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |ConnectInfo(address)| address.ip().to_string())
}

impl Upgrade {
    /// Answers 101 and hands the upgraded connection to `then`, in a task
    /// of its own that ends when the server shuts down.
    fn then<F>(
        self,
        state: &AppState,
        then: impl FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> F + Send + 'static,
    ) -> Response
    where
        F: Future<Output = ()> + Send,
    {
        let down = state.shutting_down();
        tokio::spawn(async move {
            match self.on_upgrade.await {
                Ok(upgraded) => {
                    tokio::select! {
                        () = then(TokioIo::new(upgraded)) => {}
                        () = down => {}
                    }
                }
                Err(err) => tracing::debug!(error = %err, "an upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static(PROTOCOL)),
            ],
        )
            .into_response()
    }
}

/// The agent's tunnel: held by this replica until either end closes it.
#[utoipa::path(get, path = "/api/v2/workspaceagents/{agent}/tunnel", tag = "agents",
    params(("agent" = String, Path, description = "`me` or the agent's own id")),
    responses((status = 101, description = "The tunnel, as an upgraded connection"), (status = 401, body = Body),
              (status = 426, body = Body)))]
async fn tunnel(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path(agent): Path<String>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    auth.check(&agent)?;
    let domain = state.domain.clone();
    Ok(upgrade.then(&state, move |io| async move {
        let (opener, closed) = Opener::start(io);
        match domain.hold_tunnel(&auth, opener).await {
            Ok(lease) => {
                // Either the agent goes, or the server does (the task ends, the tunnel with it).
                closed.await.ok();
                domain.release_tunnel(lease).await;
            }
            Err(err) => tracing::warn!(error = %err, "cannot record an agent's tunnel; closing it"),
        }
    }))
}

/// Between replicas: a stream to an agent whose tunnel this replica holds,
/// for a connection another replica authorised and recorded.
#[utoipa::path(get, path = "/api/v2/workspaceagents/{agent}/relay", tag = "agents",
    params(("agent" = Uuid, Path), ("kind" = String, Query), ("connection_id" = Uuid, Query), ("port" = Option<u16>, Query),
           ("devcontainer" = Option<String>, Query),
           ("Warmspace-Relay-Secret" = String, Header, description = "The tunnel's secret, from the database")),
    responses((status = 101, description = "The stream, as an upgraded connection"), (status = 404, body = Body)))]
async fn relay(
    State(state): State<AppState>,
    Path(agent): Path<Uuid>,
    Query(header): Query<StreamHeader>,
    parts: RelaySecret,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let stream = state.domain.relayed_stream(agent, &parts.0, &header).await?;
    Ok(upgrade.then(&state, move |io| splice(io, stream, |_| async {})))
}

/// The relay secret header.
pub struct RelaySecret(String);

impl<S: Send + Sync> FromRequestParts<S> for RelaySecret {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let secret = parts.headers.get(RELAY_SECRET_HEADER).and_then(|v| v.to_str().ok());
        secret.map(|s| RelaySecret(s.to_owned())).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, format!("A relay needs the {RELAY_SECRET_HEADER} header."))
        })
    }
}

/// The agent reports how an SSH session on a connection ended.
#[utoipa::path(post, path = "/api/v2/workspaceagents/{agent}/connections/{connection}", tag = "agents",
    params(("agent" = String, Path), ("connection" = Uuid, Path)), request_body = AgentConnectionReport,
    responses((status = 200, body = Body), (status = 401, body = Body), (status = 404, body = Body)))]
async fn report_exit(
    State(state): State<AppState>,
    auth: AgentAuth,
    Path((agent, connection)): Path<(String, Uuid)>,
    Json(report): Json<AgentConnectionReport>,
) -> Result<axum::Json<Body>, ApiError> {
    auth.check(&agent)?;
    state.domain.agent_connection_exit(&auth, connection, report.exit_code).await?;
    Ok(message("OK."))
}

/// A connection to a workspace's agent: its SSH server (`type=ssh`) or a
/// TCP port on its loopback (`type=port_forward&port=N`). Only the
/// workspace's owner may connect (and deployment owners when the server
/// allows it); never to an unclaimed prebuild. Recorded in the connection log.
#[utoipa::path(get, path = "/api/v2/workspaces/{workspace}/connect", tag = "workspaces", security(("session_token" = [])),
    params(("workspace" = Uuid, Path), ConnectQuery),
    responses((status = 101, description = "The connection, as an upgraded connection"), (status = 403, body = Body),
              (status = 404, body = Body), (status = 409, body = Body, description = "Not running, or its agent is not connected")))]
async fn connect(
    State(state): State<AppState>,
    actor: Actor,
    Path(workspace): Path<Uuid>,
    Query(query): Query<ConnectQuery>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let connection = state.domain.connect(&actor, workspace, query, upgrade.client.clone()).await?;
    let (domain, id) = (state.domain.clone(), connection.id);
    Ok(upgrade.then(&state, move |io| {
        splice(io, connection.stream, move |reason| async move { domain.connection_closed(id, &reason).await })
    }))
}

/// Copies both ways until either side ends, then says why to `closed`.
async fn splice<A, B, F>(mut a: A, mut b: B, closed: impl FnOnce(String) -> F)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let reason = match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok(_) => "closed".to_owned(),
        Err(err) => format!("broken: {err}"),
    };
    closed(reason).await;
}

/// The connection log, newest first: everyone's for deployment owners, one's own for everyone else.
#[utoipa::path(get, path = "/api/v2/connectionlog", tag = "connections", security(("session_token" = [])),
    params(ConnectionLogQuery), responses((status = 200, body = ConnectionLogPage), (status = 400, body = Body)))]
async fn connection_log(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<ConnectionLogQuery>,
) -> Result<axum::Json<ConnectionLogPage>, ApiError> {
    Ok(axum::Json(state.domain.connection_log(&actor, query).await?))
}
