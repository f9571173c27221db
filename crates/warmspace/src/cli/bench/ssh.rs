//! `warmspace bench ssh`: SSH round trips and forwarded-port throughput
//! through the agent's tunnel, each beside the same done over a direct
//! loopback TCP connection in the same run.
//!
//! A server runs in this process with one daemon; an `exec` template starts
//! a real `warmspace agent` (this executable) as the workspace, on this
//! machine. Round trips: one byte written to `cat` over an open SSH session
//! and read back, one at a time (the baseline: one byte to a TCP echo
//! server). Throughput: bytes written through a forwarded port to a sink
//! that counts them and answers the count at the end (the baseline: the
//! same sink reached directly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warmspace_sdk::{AgentConnection, AgentLifecycle, Client, ConnectQuery, ConnectionType, CreateWorkspaceRequest};

use super::{Database, QuietServer, first_owner, ms};

#[derive(clap::Args, Debug)]
pub struct SshArgs {
    /// Round trips measured, each way (after a few unmeasured ones).
    #[arg(long, default_value_t = 2_000)]
    round_trips: usize,
    /// MiB sent through the forwarded port, and directly.
    #[arg(long, default_value_t = 256)]
    mebibytes: usize,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

const WARMUP: usize = 20;
const PASSWORD: &str = "bench password, not a secret";

const MANIFEST: &str = "provisioner = \"exec\"\nagent \"main\" {}\n\
    exec {\n  start = \"start.sh\"\n  stop = \"stop.sh\"\n  delete = \"stop.sh\"\n}\n";
/// Starts this executable as the workspace's agent; its pid in the state file.
const START: &str = "#!/bin/sh\nset -eu\n\
    WARMSPACE_AGENT_URL=\"$WARMSPACE_URL\" WARMSPACE_AGENT_TOKEN=\"$WARMSPACE_AGENT_TOKEN_MAIN\" \
    nohup \"$WARMSPACE_BINARY\" agent >/dev/null 2>&1 &\necho \"$!\" >\"$WARMSPACE_STATE_FILE\"\n";
const STOP: &str = "#!/bin/sh\nset -eu\npid=$(cat \"$WARMSPACE_STATE_FILE\" 2>/dev/null || true)\n\
    if [ -n \"$pid\" ]; then kill \"$pid\" 2>/dev/null || true; fi\n: >\"$WARMSPACE_STATE_FILE\"\n";

pub async fn run(args: SshArgs) -> anyhow::Result<()> {
    ensure!(args.round_trips >= 1 && args.mebibytes >= 1, "--round-trips and --mebibytes must be at least 1");
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let server = QuietServer::start(&database.options, 1, warmspace_server::Config::default().max_connections).await?;
    let result = measure(&args, &server.url).await;
    server.stop().await?;
    database.close().await?;
    result
}

async fn measure(args: &SshArgs, url: &url::Url) -> anyhow::Result<()> {
    let client = first_owner(url, "owner", "owner@bench.invalid", PASSWORD).await?;
    let dir = tempfile::tempdir()?;
    for (name, text) in [("warmspace.hcl", MANIFEST), ("start.sh", START), ("stop.sh", STOP)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    crate::cli::templates::push(&client, "default", "bench-ssh", dir.path(), true, None, String::new()).await?;
    let template = client.template_by_name("default", "bench-ssh").await?;
    let request = CreateWorkspaceRequest {
        template_id: template.id,
        template_version_id: None,
        name: "bench".into(),
        rich_parameter_values: vec![],
        template_version_preset_id: None,
        ttl_ms: None,
        autostart_schedule: None,
    };
    let workspace = client.create_workspace("me", &request).await?;
    let result = measure_on(args, &client, workspace.id).await;
    // Stops the agent this run started.
    let stop = warmspace_sdk::CreateWorkspaceBuildRequest {
        transition: warmspace_sdk::Transition::Stop,
        template_version_id: None,
        rich_parameter_values: vec![],
    };
    client.create_build(workspace.id, &stop).await?;
    wait(Duration::from_secs(60), "the workspace to stop", || async {
        Ok(client.workspace(workspace.id).await?.status == warmspace_sdk::WorkspaceStatus::Stopped)
    })
    .await?;
    result
}

async fn measure_on(args: &SshArgs, client: &Client, workspace: uuid::Uuid) -> anyhow::Result<()> {
    wait(Duration::from_secs(60), "the workspace's agent", || async {
        let ws = client.workspace(workspace).await?;
        Ok(ws
            .agents
            .iter()
            .any(|a| a.lifecycle_state == AgentLifecycle::Ready && a.connection == AgentConnection::Connected))
    })
    .await?;
    let ssh = ConnectQuery { kind: ConnectionType::Ssh, port: None, agent: None, devcontainer: None };
    // The tunnel opens beside the agent's first reports.
    wait(Duration::from_secs(30), "the agent's tunnel", || async {
        Ok(client.connect_workspace(workspace, &ssh).await.is_ok())
    })
    .await?;
    println!(
        "warmspace bench ssh — a real agent on this machine, reached through the server on loopback; \
         {} round trips each, {} MiB each way",
        args.round_trips, args.mebibytes
    );

    // Round trips.
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(serve(echo, |mut conn| async move {
        let (mut r, mut w) = conn.split();
        tokio::io::copy(&mut r, &mut w).await.ok();
    }));
    let mut direct = TcpStream::connect(("127.0.0.1", echo_port)).await?;
    direct.set_nodelay(true)?;
    let baseline = round_trips(args.round_trips, async || {
        direct.write_all(b"x").await?;
        direct.read_exact(&mut [0u8; 1]).await?;
        Ok(())
    })
    .await?;
    let stream = client.connect_workspace(workspace, &ssh).await?;
    let mut session = Cat::open(stream).await?;
    let tunnelled = round_trips(args.round_trips, async || session.round_trip().await).await?;
    println!("  {:<52} {:>10} {:>10}", "round trip of one byte", "p50", "p99");
    for (what, samples) in
        [("SSH session (cat) through the tunnel", &tunnelled), ("baseline: direct loopback TCP echo", &baseline)]
    {
        println!("  {what:<52} {:>7.3} ms {:>7.3} ms", ms(samples.0), ms(samples.1));
    }

    // Throughput.
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_port = sink.local_addr()?.port();
    tokio::spawn(serve(sink, |mut conn| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            total += n as u64;
        }
        conn.write_all(&total.to_be_bytes()).await.ok();
    }));
    let bytes = args.mebibytes * (1 << 20);
    let direct = throughput(TcpStream::connect(("127.0.0.1", sink_port)).await?, bytes).await?;
    let forward =
        ConnectQuery { kind: ConnectionType::PortForward, port: Some(sink_port), agent: None, devcontainer: None };
    let forwarded = throughput(client.connect_workspace(workspace, &forward).await?, bytes).await?;
    println!("  {:<52} {:>10}", "throughput", "MB/s");
    println!("  {:<52} {:>10.1}", "forwarded port through the tunnel", forwarded);
    println!("  {:<52} {:>10.1}", "baseline: direct loopback TCP", direct);
    println!(
        "  tunnel / baseline: {:.1}× the round trip (p50), {:.2}× the throughput",
        tunnelled.0.as_secs_f64() / baseline.0.as_secs_f64().max(1e-9),
        forwarded / direct.max(1e-9)
    );
    Ok(())
}

/// Accepts connections for ever, each handled in a task of its own.
async fn serve<F: Future<Output = ()> + Send + 'static>(listener: TcpListener, handle: fn(TcpStream) -> F) {
    while let Ok((conn, _)) = listener.accept().await {
        conn.set_nodelay(true).ok();
        tokio::spawn(handle(conn));
    }
}

/// p50 and p99 of `n` calls of `once`, after [`WARMUP`] unmeasured ones.
async fn round_trips(
    n: usize,
    mut once: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, Duration)> {
    for _ in 0..WARMUP {
        once().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        once().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok((samples[n / 2], samples[(n * 99 / 100).min(n - 1)]))
}

/// MB/s (10⁶ bytes) of `bytes` written to a counting sink, until it has answered its count.
async fn throughput(mut stream: impl AsyncRead + AsyncWrite + Unpin, bytes: usize) -> anyhow::Result<f64> {
    let chunk = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n]).await?;
        sent += n;
    }
    stream.shutdown().await?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await.context("reading the sink's count")?;
    let elapsed = started.elapsed();
    if u64::from_be_bytes(count) != bytes as u64 {
        bail!("the sink counted {} bytes of {bytes}", u64::from_be_bytes(count));
    }
    Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64())
}

struct Accept;

impl russh::client::Handler for Accept {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// `cat` running in an open SSH session.
struct Cat {
    channel: russh::Channel<russh::client::Msg>,
    _session: russh::client::Handle<Accept>,
}

impl Cat {
    async fn open(stream: reqwest::Upgraded) -> anyhow::Result<Cat> {
        let config = Arc::new(russh::client::Config { nodelay: true, ..Default::default() });
        let mut session = russh::client::connect_stream(config, stream, Accept).await?;
        ensure!(session.authenticate_none("bench").await?.success(), "the SSH server refused the session");
        let channel = session.channel_open_session().await?;
        channel.exec(true, "cat").await?;
        Ok(Cat { channel, _session: session })
    }

    async fn round_trip(&mut self) -> anyhow::Result<()> {
        self.channel.data(&b"x"[..]).await?;
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) if !data.is_empty() => return Ok(()),
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => bail!("cat ended"),
                Some(_) => {}
            }
        }
    }
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn wait<F: AsyncFnMut() -> anyhow::Result<bool>>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
