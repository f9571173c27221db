//! The agent tunnel: one outbound HTTP/1.1 connection from the agent to a
//! server replica, upgraded to a raw byte stream carrying [`yamux`]
//! streams. The server opens a stream per client connection (an SSH
//! session, a forwarded TCP connection) and starts it with a
//! [`StreamHeader`] line telling the agent what the stream is for. The
//! agent opens none; streams the agent might open are refused.
//!
//! Client connections (`warmspace ssh`, `port-forward`) are HTTP/1.1
//! upgrades too, each a plain byte stream that the server splices onto an
//! agent stream.

use std::future::poll_fn;
use std::io;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use uuid::Uuid;
use warmspace_states::ConnectionType;

/// The `Upgrade` header's protocol for the tunnel and client connections.
pub const PROTOCOL: &str = "warmspace-tunnel";
/// The header by which a replica relaying a connection proves it read the
/// tunnel's holder from the database.
pub const RELAY_SECRET_HEADER: &str = "Warmspace-Relay-Secret";
/// Longest header line accepted, so a broken peer cannot make the agent buffer forever.
const MAX_HEADER: usize = 4096;

/// A yamux stream as a tokio byte stream.
pub type TunnelStream = Compat<yamux::Stream>;

/// What a stream from the server to the agent is for: its first line, JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    pub kind: ConnectionType,
    /// The connection log entry the stream belongs to: the agent reports
    /// an SSH session's exit status against it.
    pub connection_id: Uuid,
    /// For [`ConnectionType::PortForward`]: the port on the workspace's loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// For [`ConnectionType::Ssh`]: the dev container (by name) to run the session inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devcontainer: Option<String>,
}

impl StreamHeader {
    pub async fn write(&self, stream: &mut (impl AsyncWrite + Unpin)) -> io::Result<()> {
        let mut line = serde_json::to_vec(self).expect("a header serialises");
        line.push(b'\n');
        stream.write_all(&line).await?;
        stream.flush().await
    }

    /// Reads the header line, and nothing past it.
    pub async fn read(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<StreamHeader> {
        // One byte at a time: what follows the line belongs to the stream's user.
        let mut reader = BufReader::with_capacity(1, stream);
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            if line.len() > MAX_HEADER {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "the stream header is too long"));
            }
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended before its header"));
            }
        }
        serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn config() -> yamux::Config {
    yamux::Config::default()
}

/// The server's end of a tunnel: opens streams to the agent. Cloned freely;
/// the connection closes once every clone is dropped or the agent goes.
#[derive(Clone, Debug)]
pub struct Opener {
    requests: mpsc::Sender<oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>>,
}

impl Opener {
    /// Drives the tunnel over `io` in a task of its own; `closed` completes
    /// when the connection ends.
    pub fn start<T>(io: T) -> (Opener, oneshot::Receiver<()>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (requests, receiver) = mpsc::channel(16);
        let (done, closed) = oneshot::channel();
        let connection = yamux::Connection::new(io.compat(), config(), yamux::Mode::Server);
        tokio::spawn(async move {
            drive(connection, receiver).await;
            done.send(()).ok();
        });
        (Opener { requests }, closed)
    }

    /// A new stream to the agent.
    pub async fn open(&self) -> io::Result<TunnelStream> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "the agent's tunnel is closed");
        let (reply, stream) = oneshot::channel();
        self.requests.send(reply).await.map_err(|_| gone())?;
        let stream = stream.await.map_err(|_| gone())?.map_err(io::Error::other)?;
        Ok(stream.compat())
    }

    /// Whether the tunnel is gone.
    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }
}

/// Runs the connection: serves open requests one at a time and refuses
/// inbound streams, until the connection ends or every [`Opener`] is gone.
async fn drive<T>(
    mut connection: yamux::Connection<T>,
    mut requests: mpsc::Receiver<oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>>,
) where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    use std::task::Poll;
    let mut waiting = None;
    let closing = poll_fn(|cx| {
        loop {
            // Polling for inbound streams is what moves the connection along.
            match connection.poll_next_inbound(cx) {
                Poll::Ready(None) => return Poll::Ready(false),
                Poll::Ready(Some(Err(err))) => {
                    tracing::debug!(error = %err, "the tunnel failed");
                    return Poll::Ready(false);
                }
                // The agent opens nothing; dropping the stream refuses it.
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Pending => {}
            }
            if waiting.is_none() {
                match requests.poll_recv(cx) {
                    Poll::Ready(Some(reply)) => waiting = Some(reply),
                    Poll::Ready(None) => return Poll::Ready(true),
                    Poll::Pending => {}
                }
            }
            if let Some(reply) = waiting.take() {
                match connection.poll_new_outbound(cx) {
                    Poll::Ready(stream) => {
                        // The asker may have given up; the stream then closes.
                        reply.send(stream).ok();
                        continue;
                    }
                    Poll::Pending => waiting = Some(reply),
                }
            }
            return Poll::Pending;
        }
    })
    .await;
    if closing {
        poll_fn(|cx| connection.poll_close(cx)).await.ok();
    }
}

/// The agent's end of a tunnel: hands each stream the server opens to
/// `serve` (which should spawn), until the connection ends.
pub async fn accept<T>(io: T, mut serve: impl FnMut(TunnelStream)) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = yamux::Connection::new(io.compat(), config(), yamux::Mode::Client);
    loop {
        match poll_fn(|cx| connection.poll_next_inbound(cx)).await {
            Some(Ok(stream)) => serve(stream.compat()),
            Some(Err(err)) => return Err(io::Error::other(err)),
            None => return Ok(()),
        }
    }
}
