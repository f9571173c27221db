//! How a server is set up: everything `warmspace server`'s flags decide.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warmspace_store::jobs::QueuePolicy;
use warmspace_store::{Clock, PgConnectOptions};

#[derive(Clone, Debug)]
pub struct Config {
    /// The database: an external PostgreSQL, or the built-in one in a directory.
    pub database: Database,
    /// Where the HTTP API listens (unless a listener is handed over).
    pub http_address: SocketAddr,
    /// Most connections to PostgreSQL this replica opens, all pools and the
    /// pub/sub listener together.
    pub max_connections: u32,
    /// In-process provisioner daemons.
    pub provisioner_daemons: usize,
    /// The `warmspace` executable daemons hand to template scripts (`WARMSPACE_BINARY`).
    pub binary: PathBuf,
    /// Where every time-dependent rule reads "now".
    pub clock: Clock,
    /// How long a session lasts after its last use.
    pub session_duration: chrono::Duration,
    /// Largest accepted file upload, in bytes.
    pub max_file_size: usize,
    /// Job leases and the prebuild share of daemons.
    pub queue: QueuePolicy,
    /// How workspaces (their agents, their scripts) reach this server; by
    /// default the address the server listens on.
    pub access_url: String,
    /// How other replicas reach this one to relay connections to the agent
    /// tunnels it holds; by default the address the server listens on (with
    /// the host's name in place of an unspecified address).
    pub relay_url: String,
    /// Deployment owners may connect (SSH, port forwarding) to other
    /// people's workspaces, not only to their own.
    pub allow_owner_connections: bool,
    pub provisioning: ProvisioningConfig,
    pub reconciler: ReconcilerConfig,
    pub metrics: MetricsConfig,
    pub lifecycle: LifecycleConfig,
}

#[derive(Clone, Debug)]
pub enum Database {
    /// A PostgreSQL server the operator runs.
    External(Box<PgConnectOptions>),
    /// A private cluster started from the machine's PostgreSQL binaries,
    /// kept under this directory (in `postgres/`).
    BuiltIn(PathBuf),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: Database::BuiltIn("warmspace-data".into()),
            http_address: SocketAddr::from(([127, 0, 0, 1], 3000)),
            max_connections: 20,
            provisioner_daemons: 3,
            binary: std::env::current_exe().unwrap_or_else(|_| "warmspace".into()),
            clock: Clock::default(),
            session_duration: chrono::Duration::hours(24),
            max_file_size: 100 << 20,
            queue: QueuePolicy::default(),
            access_url: String::new(),
            relay_url: String::new(),
            allow_owner_connections: false,
            provisioning: ProvisioningConfig::default(),
            reconciler: ReconcilerConfig::default(),
            metrics: MetricsConfig::default(),
            lifecycle: LifecycleConfig::default(),
        }
    }
}

/// Timings of the in-process daemons and the lease reaper.
#[derive(Clone, Debug)]
pub struct ProvisioningConfig {
    /// Idle daemons look for work this often even without a notification.
    pub poll_interval: Duration,
    /// How often expired leases are looked for.
    pub reap_interval: Duration,
    /// A canceled or timed-out script gets this long between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Once the server is stopping, a build under way gets this long to
    /// finish before it is stopped and failed.
    pub shutdown_grace: Duration,
    /// The Terraform CLI the in-process daemons run for `terraform`
    /// templates: a path, or a name looked up on `PATH`.
    pub terraform_binary: std::path::PathBuf,
    /// Terraform's plugin cache directory for the in-process daemons
    /// (`TF_PLUGIN_CACHE_DIR`); `None`: none.
    pub terraform_plugin_cache_dir: Option<std::path::PathBuf>,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            poll_interval: Duration::from_secs(5),
            reap_interval: Duration::from_secs(2),
            stop_grace: warmspace_provisioner::DEFAULT_STOP_GRACE,
            shutdown_grace: warmspace_provisioner::DEFAULT_SHUTDOWN_GRACE,
            terraform_binary: warmspace_provisioner::DEFAULT_TERRAFORM_BINARY.into(),
            terraform_plugin_cache_dir: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Run cycles in the background, on the timer and whenever triggered.
    /// Off, they run only when called (`Reconciler::run_cycle`): for tests
    /// that drive cycles themselves.
    pub background: bool,
    /// A cycle runs at least this often (and at once when something changes).
    pub interval: Duration,
    /// Full-cycle triggers arriving within this window of the first are
    /// handled by one cycle. (Triggers naming presets start a pass at once:
    /// those arriving while it runs are merged into one follow-up.)
    pub debounce: Duration,
    pub backoff_interval: Duration,
    pub backoff_lookback: Duration,
    /// Consecutive failed creations before a preset stops; 0 disables.
    pub failure_hard_limit: u32,
    /// An expired prebuild waits for its replacement to be eligible at most
    /// this long past its expiry before it is deleted anyway.
    pub replacement_grace: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            background: true,
            interval: Duration::from_secs(15),
            debounce: Duration::from_millis(20),
            backoff_interval: Duration::from_secs(15),
            backoff_lookback: Duration::from_secs(3600),
            failure_hard_limit: 3,
            replacement_grace: Duration::from_secs(10 * 60),
        }
    }
}

/// Where `/metrics` is served and how fresh the collected metrics are.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Serve `/metrics` on a listener of its own at this address, and then
    /// only there (not on the HTTP API's address): it is unauthenticated, so
    /// an operator who names an address means to keep it off the API's.
    /// `None`: on the HTTP API's address.
    pub prometheus_address: Option<SocketAddr>,
    /// The pool gauges and the counters read from the database are
    /// collected this often (and once at start); scrapes are served from
    /// the last collection.
    pub collect_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { prometheus_address: None, collect_interval: Duration::from_secs(15) }
    }
}

/// The lifecycle executor: autostart, autostop, failure TTL, dormancy.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Run ticks in the background, every `interval`. Off, they run only
    /// when called (`LifecycleExecutor::tick`): for tests that drive them.
    pub background: bool,
    /// How often a tick runs (`--lifecycle-interval`).
    pub interval: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig { background: true, interval: Duration::from_secs(60) }
    }
}
