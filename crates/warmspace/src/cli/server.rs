//! `warmspace server`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use warmspace_server::{
    Config, Database, LifecycleConfig, MetricsConfig, ProvisioningConfig, ReconcilerConfig, Server,
};
use warmspace_store::PgConnectOptions;
use warmspace_store::jobs::QueuePolicy;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address the HTTP API listens on: `IP:PORT`, or `HOST:PORT` with a host name to resolve.
    #[arg(long, env = "WARMSPACE_HTTP_ADDRESS", default_value = "127.0.0.1:3000", value_parser = listen_address)]
    http_address: SocketAddr,
    /// PostgreSQL to keep state in. Without it, a built-in PostgreSQL runs in --data-dir.
    #[arg(long, env = "WARMSPACE_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// Where the built-in PostgreSQL keeps its files (default: ~/.config/warmspace, or
    /// /var/lib/warmspace when run as root).
    #[arg(long, env = "WARMSPACE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Most database connections this replica opens, in all (requests and
    /// daemons, the reconciler, the pub/sub listener).
    #[arg(long, env = "WARMSPACE_POSTGRES_MAX_CONNECTIONS", default_value_t = 20)]
    postgres_max_connections: u32,
    /// How long a session lasts after its last use.
    #[arg(long, env = "WARMSPACE_SESSION_DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    session_duration: Duration,
    /// Provisioner daemons to run inside the server.
    #[arg(long, env = "WARMSPACE_PROVISIONER_DAEMONS", default_value_t = 3)]
    provisioner_daemons: usize,
    /// Largest accepted file upload (template archives), in bytes.
    #[arg(long, env = "WARMSPACE_MAX_FILE_SIZE", default_value_t = 100 << 20)]
    max_file_size: usize,
    /// How workspaces reach this server (WARMSPACE_URL in scripts, agents); default: http://<http-address>.
    #[arg(long, env = "WARMSPACE_ACCESS_URL")]
    access_url: Option<String>,
    /// How other replicas reach this one to relay SSH and port-forward
    /// connections to the agent tunnels it holds (default: http:// and
    /// --http-address, with this host's name for an unspecified address).
    #[arg(long, env = "WARMSPACE_RELAY_URL")]
    relay_url: Option<String>,
    /// Let deployment owners connect (SSH, port forwarding) to every
    /// workspace, not only to their own. Unclaimed prebuilds stay unreachable.
    #[arg(long, env = "WARMSPACE_ALLOW_OWNER_SSH")]
    allow_owner_ssh: bool,
    /// A running job whose daemon has not heartbeated for this long is failed.
    #[arg(long, env = "WARMSPACE_PROVISIONER_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    provisioner_lease: Duration,
    /// How long a canceled or timed-out template script gets between SIGTERM and SIGKILL.
    #[arg(long, env = "WARMSPACE_PROVISIONER_STOP_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    provisioner_stop_grace: Duration,
    /// Once stopping, how long builds under way get to finish before they are stopped and failed.
    #[arg(long, env = "WARMSPACE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// The Terraform CLI the in-process provisioner daemons run for `provisioner = "terraform"` templates: a path, or a name looked up on PATH.
    #[arg(long, env = "WARMSPACE_TERRAFORM_BINARY", default_value = warmspace_provisioner::DEFAULT_TERRAFORM_BINARY)]
    terraform_binary: std::path::PathBuf,
    /// Terraform's plugin cache directory (TF_PLUGIN_CACHE_DIR) for the in-process provisioner daemons: providers are downloaded (or placed by a mirror) once and shared by every build. It must exist. Default: none, each build's init fetches its own.
    #[arg(long, env = "WARMSPACE_TERRAFORM_PLUGIN_CACHE_DIR")]
    terraform_plugin_cache_dir: Option<std::path::PathBuf>,
    /// The share of live provisioner daemons prebuild jobs may occupy at once (at least one daemon).
    #[arg(long, env = "WARMSPACE_PREBUILD_DAEMON_SHARE", default_value_t = 0.5)]
    prebuild_daemon_share: f64,
    /// How often prebuild pools are reconciled (they are also reconciled at once when something changes).
    #[arg(long, env = "WARMSPACE_PREBUILDS_RECONCILIATION_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    prebuilds_reconciliation_interval: Duration,
    /// Each recent failed prebuild creation delays the next one by this much.
    #[arg(long, env = "WARMSPACE_PREBUILDS_BACKOFF_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    prebuilds_backoff_interval: Duration,
    /// Failures older than this no longer count for backoff.
    #[arg(long, env = "WARMSPACE_PREBUILDS_BACKOFF_LOOKBACK", default_value = "1h", value_parser = humantime::parse_duration)]
    prebuilds_backoff_lookback: Duration,
    /// Consecutive failed creations after which a preset stops until a new version (0: never).
    #[arg(long, env = "WARMSPACE_PREBUILDS_FAILURE_HARD_LIMIT", default_value_t = 3)]
    prebuilds_failure_hard_limit: u32,
    /// An expired prebuild waits at most this long past its expiry for its replacement to become eligible.
    #[arg(long, env = "WARMSPACE_PREBUILDS_REPLACEMENT_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    prebuilds_replacement_grace: Duration,
    /// Serve Prometheus metrics (`/metrics`, no session needed) on a listener of its own at this
    /// address (`IP:PORT` or `HOST:PORT`), and then only there; without it, `/metrics` is served on
    /// --http-address.
    #[arg(long, env = "WARMSPACE_PROMETHEUS_ADDRESS", value_parser = listen_address)]
    prometheus_address: Option<SocketAddr>,
    /// How often the metrics read from the database (pool sizes, counters, the job queue) are
    /// recomputed; scrapes are answered from the last computation.
    #[arg(long, env = "WARMSPACE_PROMETHEUS_COLLECT_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    prometheus_collect_interval: Duration,
    /// How often the lifecycle executor looks for workspaces to autostart,
    /// autostop, stop after a failed start, mark dormant or delete.
    #[arg(long, env = "WARMSPACE_LIFECYCLE_INTERVAL", default_value = "1m", value_parser = positive_duration)]
    lifecycle_interval: Duration,
    /// Log format.
    #[arg(long, env = "WARMSPACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    super::logging::init("info,sqlx=warn,tower_http=warn", matches!(format, LogFormat::Json));
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let database = match &args.postgres_url {
        Some(url) => Database::External(Box::new(
            PgConnectOptions::from_str(url).context("--postgres-url is not a valid PostgreSQL URL")?,
        )),
        None => Database::BuiltIn(args.data_dir.clone().map_or_else(default_data_dir, Ok)?),
    };
    let config = Config {
        database,
        http_address: args.http_address,
        max_connections: args.postgres_max_connections,
        provisioner_daemons: args.provisioner_daemons,
        binary: std::env::current_exe().context("finding this executable")?,
        clock: Default::default(),
        session_duration: chrono::Duration::from_std(args.session_duration).context("--session-duration")?,
        max_file_size: args.max_file_size,
        queue: QueuePolicy { lease: args.provisioner_lease, prebuild_share: args.prebuild_daemon_share },
        access_url: args.access_url.clone().unwrap_or_default(),
        relay_url: args.relay_url.clone().unwrap_or_default(),
        allow_owner_connections: args.allow_owner_ssh,
        provisioning: ProvisioningConfig {
            stop_grace: args.provisioner_stop_grace,
            shutdown_grace: args.shutdown_grace,
            terraform_binary: args.terraform_binary.clone(),
            terraform_plugin_cache_dir: args.terraform_plugin_cache_dir.clone(),
            ..ProvisioningConfig::default()
        },
        reconciler: ReconcilerConfig {
            interval: args.prebuilds_reconciliation_interval,
            backoff_interval: args.prebuilds_backoff_interval,
            backoff_lookback: args.prebuilds_backoff_lookback,
            failure_hard_limit: args.prebuilds_failure_hard_limit,
            replacement_grace: args.prebuilds_replacement_grace,
            ..ReconcilerConfig::default()
        },
        metrics: MetricsConfig {
            prometheus_address: args.prometheus_address,
            collect_interval: args.prometheus_collect_interval,
        },
        lifecycle: LifecycleConfig { interval: args.lifecycle_interval, ..LifecycleConfig::default() },
    };
    let server = Server::start(config, None).await.context("starting the server")?;
    let url = format!("http://{}", server.local_addr()?);
    tracing::info!(%url, "warmspace server listening");
    say(format_args!("warmspace {} is listening on {url}", env!("CARGO_PKG_VERSION")));
    say(format_args!("  API description: {url}/api/v2/openapi.json"));
    say(format_args!("  Prometheus metrics: http://{}/metrics", server.metrics_addr()?));
    if !server.domain().first_user_exists().await? {
        say(format_args!(
            "  No users yet. Create the first one with:\n    warmspace login {url} --first-user-username admin \
             --first-user-email admin@example.com --first-user-password <password>"
        ));
    }
    server.serve(super::shutdown_signal()).await?;
    Ok(())
}

/// `IP:PORT`, or `HOST:PORT` resolved to the first address the host name has.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is neither IP:PORT nor a HOST:PORT that resolves ({e})"))?;
    addresses.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Prints a line of the banner. With stdout closed the line is lost (the log
/// has the URL too); a server must not panic over it.
fn say(line: std::fmt::Arguments) {
    writeln!(std::io::stdout(), "{line}").ok();
}

/// A root-run server keeps its data where services do: root's home is not
/// reachable by the `postgres` user the built-in cluster runs as.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    if nix::unistd::Uid::effective().is_root() {
        return Ok(PathBuf::from("/var/lib/warmspace"));
    }
    Ok(dirs::config_dir().context("no config directory for this user; pass --data-dir")?.join("warmspace"))
}

/// A duration longer than zero (a zero interval would spin).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}
