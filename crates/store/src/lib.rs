//! Everything warmspace keeps lives in PostgreSQL; this crate is the only
//! code that speaks SQL.

pub mod agents;
pub mod apps;
mod batching;
pub mod bench;
mod claimer;
pub mod claims;
mod clock;
mod completer;
pub mod connections;
pub mod daemons;
pub mod drift;
pub mod embedded;
mod error;
mod files;
pub mod insights;
pub mod jobs;
mod keys;
pub mod lifecycle;
pub mod metrics;
mod migrate;
pub mod notifications;
mod organizations;
pub mod prebuilds;
mod publisher;
pub mod pubsub;
pub mod replicas;
mod seed;
mod sessions;
mod taker;
mod templates;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
pub mod timings;
mod users;
pub mod workspaces;

use std::time::Duration;

use claimer::Claimer;
pub use clock::Clock;
use completer::Completer;
pub use error::StoreError;
pub use files::FileRow;
pub use keys::ProvisionerKeyRow;
pub use migrate::MIGRATOR;
use migrate::migrate;
pub use organizations::OrganizationRow;
use publisher::Publisher;
pub use sessions::{NewSession, Session};
pub use sqlx::postgres::{PgConnectOptions, PgPool};
use taker::Taker;
pub use templates::{
    CreateContext, NewTemplate, NewTemplateVersion, PresetRow, TemplateRow, TemplateSettings, TemplateUpdate,
    TemplateVersionRow,
};
pub use users::{NewUser, UserFilter, UserRow};

use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection};

/// How long the first connection may take before PostgreSQL counts as not
/// answering (a firewall that drops packets gives no other sign).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One direct connection, so that a database that cannot be reached says
/// why (connection refused, authentication failed, no such database) at
/// once: a pool retries such failures until its acquire timeout and then
/// reports only that it timed out.
async fn probe(options: &PgConnectOptions) -> Result<()> {
    // PostgreSQL's own default: a database named after the user.
    let database = options.get_database().unwrap_or(options.get_username());
    let target = match options.get_socket() {
        Some(socket) => format!("{}, database {database}", socket.display()),
        None => format!("{}:{}, database {database}", options.get_host(), options.get_port()),
    };
    let reason = match tokio::time::timeout(PROBE_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            // It answered: that was the point; how the probe closes does not matter.
            conn.close().await.ok();
            return Ok(());
        }
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
    };
    Err(StoreError::Connect { target, reason })
}

/// A handle on the database: a connection pool plus the queries of each
/// concept, defined in the module named after it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    clock: Clock,
    /// Announces changes once they have committed (see [`publisher`]).
    publisher: Publisher,
    /// Records how builds ended, many per statement (see [`completer`]).
    completer: Completer,
    /// Hands prebuilds over, many per statement (see [`claimer`]).
    claimer: Claimer,
    /// Hands out jobs, to many daemons per statement (see [`taker`]).
    taker: Taker,
}

impl Store {
    /// Connects a pool of at most `max_connections` and waits for the first
    /// connection, so a wrong URL fails here rather than on the first request.
    /// When there are at least three, one of them is the claims' own (see
    /// [`claimer`]).
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Store> {
        probe(&options).await?;
        Store::open(options, max_connections, max_connections >= 3).await
    }

    /// Another pool on a database that [`Store::connect`] has already
    /// reached: no probe, whose closing backend PostgreSQL would for a
    /// moment still count beside the connections already open. For work
    /// that claims nothing: claims share its pool.
    pub async fn connect_another(options: PgConnectOptions, max_connections: u32) -> Result<Store> {
        Store::open(options, max_connections, false).await
    }

    async fn open(options: PgConnectOptions, max_connections: u32, own_claims_connection: bool) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections - u32::from(own_claims_connection))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let claims = match own_claims_connection {
            // Opened when first needed.
            true => PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy_with(options.options([("plan_cache_mode", "force_generic_plan")])),
            false => pool.clone(),
        };
        let publisher = Publisher::start(pool.clone());
        let completer = Completer::start(pool.clone());
        let taker = Taker::start(pool.clone());
        let claimer = Claimer::start(claims);
        Ok(Store { pool, clock: Clock::default(), publisher, completer, claimer, taker })
    }

    /// The same store, reading time from `clock`.
    pub fn with_clock(self, clock: Clock) -> Store {
        Store { clock, ..self }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The time queries compare against and stamp rows with.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    pub(crate) fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Brings the schema up to date (see [`migrate`]).
    pub async fn migrate(&self) -> Result<()> {
        migrate(&self.pool).await
    }

    /// Connections this store's pool holds open now, in use or idle.
    pub fn open_connections(&self) -> u32 {
        self.pool.size()
    }

    /// Closes every connection, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The `application_name` of every other client connection to this
    /// database: all but those named as this store's own (for benchmarks
    /// watching what a server holds).
    pub async fn other_connections(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar!(
            "SELECT coalesce(application_name, '') AS \"name!\" FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' \
               AND application_name IS DISTINCT FROM current_setting('application_name') \
             ORDER BY 1"
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The PostgreSQL server's version, for reports.
    pub async fn server_version(&self) -> Result<String> {
        Ok(sqlx::query_scalar("SHOW server_version").fetch_one(&self.pool).await?)
    }

    /// The round trip a health check makes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query_scalar!("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }
}
