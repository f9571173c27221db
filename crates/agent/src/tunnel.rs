//! The agent's tunnel (see [`warmspace_sdk::tunnel`]): kept open to the
//! server for as long as the agent runs, reopened with backoff when it
//! drops. Each stream the server opens on it is an SSH connection for the
//! agent's SSH server or a TCP connection (forwarded, or to an app) to a
//! port on the workspace's loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use warmspace_sdk::tunnel::{self, StreamHeader, TunnelStream};
use warmspace_sdk::{AgentManifest, Client, ConnectionType};

use crate::AgentError;
use crate::retry::{self, Failure};
use crate::ssh::{Connection, SshServer};

/// How long the server gets to say what a new stream is for.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections (SSH, forwarded) are open: the heartbeats tell the
/// server, for which an open one is use of the workspace.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<AtomicU32>);

impl Sessions {
    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more until the returned guard is dropped.
    fn open(&self) -> OpenSession {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenSession(self.clone())
    }
}

struct OpenSession(Sessions);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds the tunnel open until the token stops working (the only way it returns).
pub(crate) async fn hold(
    client: &Client,
    manifest: watch::Receiver<Option<AgentManifest>>,
    sessions: &Sessions,
) -> AgentError {
    let ssh = SshServer::new();
    let mut backoff = retry::backoff();
    loop {
        match client.agent_tunnel().await {
            Ok(io) => {
                tracing::info!("the tunnel is open");
                backoff = retry::backoff();
                let served = tunnel::accept(io, |stream| {
                    let (client, ssh, manifest) = (client.clone(), ssh.clone(), manifest.clone());
                    let open = sessions.open();
                    tokio::spawn(async move {
                        serve(stream, &client, &ssh, &manifest).await;
                        drop(open);
                    });
                })
                .await;
                match served {
                    Ok(()) => tracing::info!("the tunnel closed; reopening it"),
                    Err(err) => tracing::info!(error = %err, "the tunnel broke; reopening it"),
                }
            }
            Err(err) => match retry::classify(&err) {
                Failure::Unauthorized => return AgentError::Unauthorized,
                // A server that does not know tunnels yet may learn them on its next release.
                Failure::Refused => tracing::warn!(error = %err, "the server refused the tunnel"),
                Failure::Transient => tracing::debug!(error = %err, "cannot open the tunnel yet"),
            },
        }
        retry::sleep(&mut backoff).await;
    }
}

/// Serves one stream the server opened.
async fn serve(
    mut stream: TunnelStream,
    client: &Client,
    ssh: &SshServer,
    manifest: &watch::Receiver<Option<AgentManifest>>,
) {
    let header = match tokio::time::timeout(HEADER_TIMEOUT, StreamHeader::read(&mut stream)).await {
        Ok(Ok(header)) => header,
        Ok(Err(err)) => return tracing::debug!(error = %err, "a tunnel stream without a header"),
        Err(_) => return tracing::debug!("a tunnel stream whose header never came"),
    };
    match (header.kind, header.port) {
        (ConnectionType::Ssh, _) => {
            let (env, devcontainer) = {
                let manifest = manifest.borrow();
                let manifest = manifest.as_ref();
                let devcontainer = header.devcontainer.as_ref().map(|name| {
                    manifest.and_then(|m| m.devcontainers.iter().find(|d| &d.name == name)).cloned().ok_or(name)
                });
                (manifest.map(crate::runner::script_env).unwrap_or_default(), devcontainer.transpose())
            };
            let devcontainer = match devcontainer {
                Ok(devcontainer) => devcontainer,
                // The server checked it against the manifest; this agent's copy is older.
                Err(name) => {
                    return tracing::warn!(devcontainer = %name, "a session for a dev container this agent does not know");
                }
            };
            let connection = Connection { id: header.connection_id, env, devcontainer, client: client.clone() };
            ssh.serve(stream, connection).await;
        }
        // An app's requests go to its port the same way.
        (ConnectionType::PortForward | ConnectionType::App, Some(port)) => forward(stream, port).await,
        (kind, _) => tracing::warn!(%kind, "a tunnel stream of a kind this agent does not serve"),
    }
}

/// Splices the stream onto a TCP connection to `port` on the loopback.
async fn forward(mut stream: TunnelStream, port: u16) {
    let mut target = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(target) => target,
        Err(err) => return tracing::info!(port, error = %err, "nothing to forward to"),
    };
    target.set_nodelay(true).ok();
    if let Err(err) = tokio::io::copy_bidirectional(&mut stream, &mut target).await {
        tracing::debug!(port, error = %err, "a forwarded connection ended badly");
    }
}
