//! `warmspace bench …`: measurements, each printed beside a baseline
//! measured in the same run on the same database.

mod claim;
mod dashboard;
mod queue;
mod reconcile;
mod refill;
mod scale;
mod ssh;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use warmspace_sdk::{Client, CreateFirstUserRequest, LoginWithPasswordRequest};
use warmspace_store::PgConnectOptions;
use warmspace_store::embedded::{Cluster, ClusterOptions};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Claiming a warm prebuild through the HTTP API at 1, 10 and 50
    /// concurrent claimers, against the bare `UPDATE … SKIP LOCKED` a claim
    /// is built around, and the statements one claim request runs.
    Claim(claim::ClaimArgs),
    /// Reconciliation: a no-op cycle over many presets against reading its
    /// snapshot alone, and the database connections a cycle with work uses.
    Reconcile(reconcile::ReconcileArgs),
    /// A `warmspace server` child with 10 000 workspaces: its memory, cycle time and connections.
    Scale(scale::ScaleArgs),
    /// The job queue: zero-work jobs/s through the real daemons against a bare SKIP LOCKED loop.
    Queue(queue::QueueArgs),
    /// Refill: from a claim's commit to its replacement prebuild queued, one
    /// claim a second and in bursts, beside thousands of other presets.
    Refill(refill::RefillArgs),
    /// The dashboard's workspaces page for one person with 1 000 workspaces:
    /// request time and size, against the JSON API's listing of them.
    Dashboard(dashboard::DashboardArgs),
    /// SSH round trips and forwarded-port throughput through a real agent's
    /// tunnel, against direct loopback TCP.
    Ssh(ssh::SshArgs),
}

/// Runs a benchmark, logging warnings (unless `RUST_LOG` says otherwise),
/// with a statement counter beside the log that counts only when asked to.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let statements = claim::Statements::default();
    super::logging::init_with("warn", statements.layer());
    match command {
        BenchCommand::Claim(args) => claim::run(args, statements).await,
        BenchCommand::Reconcile(args) => reconcile::run(args).await,
        BenchCommand::Scale(args) => scale::run(args).await,
        BenchCommand::Queue(args) => queue::run(args).await,
        BenchCommand::Refill(args) => refill::run(args).await,
        BenchCommand::Dashboard(args) => dashboard::run(args).await,
        BenchCommand::Ssh(args) => ssh::run(args).await,
    }
}

/// The database a benchmark runs on: the one `--postgres-url` names, or a
/// throwaway non-durable built-in cluster (stopped by [`Database::close`]).
struct Database {
    options: PgConnectOptions,
    cluster: Option<Cluster>,
    /// Holds the throwaway cluster's files until the benchmark ends.
    _dir: tempfile::TempDir,
}

impl Database {
    async fn open(postgres_url: Option<&str>) -> anyhow::Result<Database> {
        let dir = tempfile::Builder::new().prefix("warmspace-bench-").tempdir()?;
        // The cluster runs as `postgres` when we are root: it must reach its directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let (options, cluster) = match postgres_url {
            Some(url) => (PgConnectOptions::from_str(url)?, None),
            None => {
                let cluster =
                    Cluster::start(ClusterOptions { durable: false, ..ClusterOptions::new(dir.path().join("pg")) })
                        .await
                        .context("starting a throwaway PostgreSQL")?;
                (cluster.connect_options("postgres"), Some(cluster))
            }
        };
        Ok(Database { options, cluster, _dir: dir })
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Some(cluster) = self.cluster {
            cluster.stop().await?;
        }
        Ok(())
    }
}

/// A `warmspace server` in this process, with nothing on a timer (no
/// reconciliation loop, no polling, reaping or metrics collection): only
/// what the benchmark does talks to the database.
struct QuietServer {
    url: url::Url,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl QuietServer {
    /// On `options`, with `daemons` in-process daemons and a pool of `max_connections`.
    async fn start(options: &PgConnectOptions, daemons: usize, max_connections: u32) -> anyhow::Result<QuietServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr()?))?;
        let mut config = warmspace_server::Config {
            database: warmspace_server::Database::External(Box::new(options.clone())),
            max_connections,
            provisioner_daemons: daemons,
            ..warmspace_server::Config::default()
        };
        config.reconciler.background = false;
        config.provisioning.poll_interval = Duration::from_secs(3600);
        config.provisioning.reap_interval = Duration::from_secs(3600);
        config.metrics.collect_interval = Duration::from_secs(3600);
        let server = warmspace_server::Server::start(config, Some(listener)).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            // Sent or dropped: the bench is done either way.
            Ok(server
                .serve(async {
                    stopped.await.ok();
                })
                .await?)
        });
        Ok(QuietServer { url, stop, serving })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.send(()).ok();
        self.serving.await?
    }
}

/// Creates the server's first user (an owner) and returns a client logged in as them.
async fn first_owner(url: &url::Url, username: &str, email: &str, password: &str) -> anyhow::Result<Client> {
    Client::new(url.clone())
        .create_first_user(&CreateFirstUserRequest {
            username: username.into(),
            email: email.into(),
            password: password.into(),
            name: String::new(),
        })
        .await?;
    let session = Client::new(url.clone())
        .login(&LoginWithPasswordRequest { email: email.into(), password: password.into() })
        .await?;
    Ok(Client::new(url.clone()).with_token(session.session_token))
}

/// The median of `samples` (sorted in place).
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
