//! App statuses from inside the workspace reach the server through the
//! agent: it listens on a Unix socket only its user may open (nothing
//! listens on the network), whose path it gives the processes it starts as
//! `WARMSPACE_AGENT_SOCKET`. The agent's token never leaves the agent; it
//! forwards each status under it. One request per connection: a JSON line
//! ([`AgentAppStatusRequest`]) in, a JSON line ([`RelayReply`]) out.
//! [`report`] is the other end, used by `warmspace agent status`.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use uuid::Uuid;
use warmspace_sdk::{AgentAppStatusRequest, Client};

use crate::AgentError;
use crate::retry::{Failure, classify};

/// The environment variable naming the socket, set for the agent's processes.
pub const SOCKET_ENV: &str = "WARMSPACE_AGENT_SOCKET";
/// A request is one short JSON line; anything longer is refused.
const MAX_REQUEST: u64 = 16 * 1024;
/// How long one status may take to reach the server, retries included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may take to send its request: the agent answers
/// one connection at a time, and one that says nothing must not hold up the rest.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reporter waits for the agent's answer, which comes within
/// [`FORWARD_TIMEOUT`] once its turn comes.
const REPORT_TIMEOUT: Duration = Duration::from_secs(90);

/// What the agent answers: whether the server took the status, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayReply {
    pub ok: bool,
    /// The server's answer when it refused, or what went wrong on the way.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the workspace agent at {path}: {source} (is `warmspace agent` running in this workspace?)")]
    Unreachable { path: String, source: std::io::Error },
    #[error("the workspace agent did not answer properly: {0}")]
    Garbled(String),
    #[error("the status was not recorded: {0}")]
    Refused(String),
}

/// Where an agent's socket is: one per agent, in the temporary directory.
pub fn socket_path(agent_id: Uuid) -> PathBuf {
    std::env::temp_dir().join(format!("warmspace-agent-{agent_id}.sock"))
}

/// Serves the socket until the agent stops. A socket that cannot be opened
/// is logged, and the agent goes on without it.
pub async fn serve(client: &Client, path: &Path) -> Result<Infallible, AgentError> {
    let listener = match bind(path) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot open the app status socket");
            return std::future::pending().await;
        }
    };
    let _remove = RemoveOnDrop(path.to_owned());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "the app status socket failed to accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // One at a time: statuses reach the server in the order they came.
        if let Err(AgentError::Unauthorized) = answer(client, stream).await {
            return Err(AgentError::Unauthorized);
        }
    }
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // Left over from an agent that did not exit cleanly.
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

async fn answer(client: &Client, stream: UnixStream) -> Result<(), AgentError> {
    let (read, mut write) = stream.into_split();
    let request = tokio::time::timeout(READ_TIMEOUT, read_line(read)).await;
    let request = request.unwrap_or_else(|_| Err(format!("no request within {}s", READ_TIMEOUT.as_secs())));
    let (reply, outcome) = match request {
        Err(error) => (RelayReply { ok: false, error: Some(error) }, Ok(())),
        Ok(line) => match serde_json::from_str::<AgentAppStatusRequest>(&line) {
            Err(err) => (RelayReply { ok: false, error: Some(format!("not an app status: {err}")) }, Ok(())),
            Ok(req) => forward(client, &req).await,
        },
    };
    let mut text = serde_json::to_string(&reply).expect("a reply serialises");
    text.push('\n');
    // The reporter may have given up waiting; the status is recorded either way.
    write.write_all(text.as_bytes()).await.ok();
    outcome
}

async fn read_line(read: impl AsyncRead + Unpin) -> Result<String, String> {
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    reader.read_line(&mut line).await.map_err(|err| format!("cannot read the request: {err}"))?;
    if !line.ends_with('\n') {
        return Err(format!("the request must be one JSON line of at most {MAX_REQUEST} bytes"));
    }
    Ok(line)
}

/// Sends the status to the server, retrying while it is unreachable, for
/// at most [`FORWARD_TIMEOUT`].
async fn forward(client: &Client, req: &AgentAppStatusRequest) -> (RelayReply, Result<(), AgentError>) {
    let mut backoff = crate::retry::backoff();
    let attempts = async {
        loop {
            match client.agent_app_status(req).await {
                Ok(_) => return (RelayReply { ok: true, error: None }, Ok(())),
                Err(err) => match classify(&err) {
                    Failure::Unauthorized => {
                        let error = Some(AgentError::Unauthorized.to_string());
                        return (RelayReply { ok: false, error }, Err(AgentError::Unauthorized));
                    }
                    Failure::Refused => return (RelayReply { ok: false, error: Some(err.to_string()) }, Ok(())),
                    Failure::Transient => crate::retry::sleep(&mut backoff).await,
                },
            }
        }
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, attempts).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let error = format!("the server could not be reached within {}s", FORWARD_TIMEOUT.as_secs());
            (RelayReply { ok: false, error: Some(error) }, Ok(()))
        }
    }
}

/// Sends a status through the agent listening at `socket` and waits for the
/// server's verdict.
pub async fn report(socket: &Path, req: &AgentAppStatusRequest) -> Result<(), RelayError> {
    let waited = format!("no answer within {}s", REPORT_TIMEOUT.as_secs());
    tokio::time::timeout(REPORT_TIMEOUT, exchange(socket, req)).await.unwrap_or(Err(RelayError::Garbled(waited)))
}

async fn exchange(socket: &Path, req: &AgentAppStatusRequest) -> Result<(), RelayError> {
    let unreachable = |source| RelayError::Unreachable { path: socket.display().to_string(), source };
    let stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(req).expect("a request serialises");
    line.push('\n');
    write.write_all(line.as_bytes()).await.map_err(unreachable)?;
    let answer = read_line(read).await.map_err(RelayError::Garbled)?;
    let reply: RelayReply = serde_json::from_str(&answer).map_err(|err| RelayError::Garbled(err.to_string()))?;
    match reply {
        RelayReply { ok: true, .. } => Ok(()),
        RelayReply { error, .. } => Err(RelayError::Refused(error.unwrap_or_else(|| "no reason given".to_owned()))),
    }
}
