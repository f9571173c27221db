//! The warmspace server: the HTTP API and everything behind it that is not
//! SQL. Replicas are stateless; all state is in the store.
//!
//! Layers, arrows pointing down only: [`api`] (HTTP) and [`web`] (the
//! dashboard's pages) → [`domain`] (every
//! workflow, with permission checks) → the store. The in-process
//! provisioner daemons ([`provisioning`]) and the [`reconciler`] drive the
//! domain too. [`Server::start`] puts it all together, once, for
//! `warmspace server` and for every test.

pub mod api;
pub mod auth;
mod collector;
mod config;
pub mod domain;
pub mod lifecycle;
pub mod metrics;
pub mod provisioning;
pub mod reconciler;
mod replicas;
pub mod tunnels;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warmspace_store::embedded::{Cluster, ClusterError, ClusterOptions};
use warmspace_store::pubsub::PubSub;
use warmspace_store::{PgConnectOptions, Store, StoreError};

pub use config::{Config, Database, LifecycleConfig, MetricsConfig, ProvisioningConfig, ReconcilerConfig};

use crate::api::AppState;
use crate::domain::Domain;
use crate::lifecycle::LifecycleExecutor;
use crate::provisioning::Daemons;
use crate::reconciler::Reconciler;

/// The database the server keeps its state in, inside the built-in cluster.
const BUILTIN_DATABASE: &str = "warmspace";
/// What the server's connections call themselves in `pg_stat_activity`
/// (with the part of the budget they belong to appended).
const APPLICATION_NAME: &str = "warmspace";
/// How long requests in flight get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);
/// The fewest connections a replica can work with: the pub/sub listener,
/// two for requests and daemons (one of which the lifecycle executor's lock
/// may hold during a tick), and the reconciler's lock and one for its work.
const MIN_CONNECTIONS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("starting the built-in PostgreSQL: {0}")]
    Cluster(#[from] ClusterError),
    #[error("connecting to PostgreSQL: {0}")]
    Store(#[from] StoreError),
    #[error("listening for HTTP: {0}")]
    Listen(#[from] std::io::Error),
}

/// A server put together and ready to serve: its database, its pools,
/// pub/sub, the domain, the reconciler and the in-process daemons.
pub struct Server {
    listener: TcpListener,
    /// `/metrics` on a listener of its own (`--prometheus-address`), if asked for.
    metrics_listener: Option<TcpListener>,
    collector: (watch::Sender<bool>, JoinHandle<()>),
    heartbeat: (watch::Sender<bool>, JoinHandle<()>),
    state: AppState,
    reconciler: Reconciler,
    reconciler_loop: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    lifecycle: LifecycleExecutor,
    lifecycle_loop: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    daemons: Daemons,
    stores: [Store; 2],
    pubsub: PubSub,
    cluster: Option<Cluster>,
}

/// Connections to PostgreSQL, split between the parts that use them, never
/// more in total than the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionBudget {
    /// Requests and in-process daemons.
    main: u32,
    /// The reconciler: its lock, and its per-preset work.
    reconciler: u32,
    /// The pub/sub listener.
    listener: u32,
}

impl ConnectionBudget {
    fn split(max: u32) -> Result<ConnectionBudget, StartError> {
        if max < MIN_CONNECTIONS {
            return Err(StartError::Config(format!(
                "--postgres-max-connections must be at least {MIN_CONNECTIONS} (got {max})"
            )));
        }
        let rest = max - 1;
        // A third for the reconciler: it works on several presets at once
        // but must never starve requests.
        let reconciler = (rest / 3).max(2);
        Ok(ConnectionBudget { main: rest - reconciler, reconciler, listener: 1 })
    }
}

impl Server {
    /// Builds a server from `config`: starts the built-in PostgreSQL if asked
    /// to, connects and migrates, and starts the in-process daemons and (unless
    /// configured off) the reconciliation loop. Serves on `listener` when
    /// given, else on `config.http_address`.
    pub async fn start(mut config: Config, listener: Option<TcpListener>) -> Result<Server, StartError> {
        let budget = ConnectionBudget::split(config.max_connections)?;
        if config.metrics.collect_interval.is_zero() {
            return Err(StartError::Config("--prometheus-collect-interval must be more than 0".into()));
        }
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.http_address).await?,
        };
        let metrics_listener = match config.metrics.prometheus_address {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
        if config.access_url.is_empty() {
            config.access_url = format!("http://{}", listener.local_addr()?);
        }
        if config.relay_url.is_empty() {
            config.relay_url = tunnels::default_relay_url(listener.local_addr()?);
        }
        let (options, cluster) = match &config.database {
            Database::External(options) => (options.as_ref().clone(), None),
            Database::BuiltIn(dir) => {
                let cluster = Cluster::start(ClusterOptions::new(dir.join("postgres"))).await?;
                cluster.ensure_database(BUILTIN_DATABASE).await.map_err(StoreError::from)?;
                (cluster.connect_options(BUILTIN_DATABASE), Some(cluster))
            }
        };
        let (store, reconciler_store) = match connect(&options, budget, &config).await {
            Ok(stores) => stores,
            Err(err) => {
                if let Some(cluster) = cluster {
                    stop_cluster(cluster).await;
                }
                return Err(err);
            }
        };
        let pubsub = PubSub::start(named(&options, "listener"), &store);
        let config = Arc::new(config);
        let domain = Domain::new(store.clone(), pubsub.clone(), Arc::clone(&config));
        let reconciler = Reconciler::new(domain.with_store(reconciler_store.clone()), budget.reconciler as usize);
        let reconciler_loop = config.reconciler.background.then(|| {
            let (stop, stopped) = watch::channel(false);
            (stop, reconciler.clone().spawn(stopped))
        });
        // Once before serving, so the first scrape already has pools to show;
        // then on the interval.
        collector::collect(&domain).await;
        let collector = {
            let (stop, stopped) = watch::channel(false);
            (stop, collector::spawn(domain.clone(), config.metrics.collect_interval, stopped))
        };
        // Recorded alive before any tunnel is held here (a tunnel names its replica).
        replicas::beat(&domain).await;
        let heartbeat = {
            let (stop, stopped) = watch::channel(false);
            (stop, replicas::spawn(domain.clone(), stopped))
        };
        let lifecycle = LifecycleExecutor::new(domain.clone());
        let lifecycle_loop = config.lifecycle.background.then(|| {
            let (stop, stopped) = watch::channel(false);
            (stop, lifecycle.clone().spawn(stopped))
        });
        let daemons = Daemons::start(domain.clone(), config.provisioner_daemons, config.binary.clone());
        Ok(Server {
            listener,
            metrics_listener,
            collector,
            heartbeat,
            state: AppState::new(domain),
            reconciler,
            reconciler_loop,
            lifecycle,
            lifecycle_loop,
            daemons,
            stores: [store, reconciler_store],
            pubsub,
            cluster,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served: its own listener's address, or the API's.
    pub fn metrics_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.metrics_listener.as_ref().unwrap_or(&self.listener).local_addr()
    }

    pub fn domain(&self) -> &Domain {
        &self.state.domain
    }

    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    pub fn lifecycle(&self) -> &LifecycleExecutor {
        &self.lifecycle
    }

    /// Serves until `shutdown` completes; then takes no more work, lets
    /// requests in flight and builds under way finish within their graces,
    /// and stops everything it started, the built-in PostgreSQL last.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let Server {
            listener,
            metrics_listener,
            collector,
            heartbeat,
            state,
            reconciler: _,
            reconciler_loop,
            lifecycle: _,
            lifecycle_loop,
            daemons,
            stores,
            pubsub,
            cluster,
        } = self;
        // Work stops being taken as soon as shutdown begins, while requests
        // drain: the daemons' grace and the drain run side by side.
        let stop_daemons = daemons.begin_stop();
        let stop_reconciler = reconciler_loop.as_ref().map(|(stop, _)| stop.clone());
        let stop_collector = collector.0.clone();
        let stop_lifecycle = lifecycle_loop.as_ref().map(|(stop, _)| stop.clone());
        let shutdown = async move {
            shutdown.await;
            stop_daemons();
            for stop in stop_reconciler.iter().chain(&stop_lifecycle) {
                stop.send_replace(true);
            }
            stop_collector.send_replace(true);
        };
        let metrics_server = metrics_listener.map(|listener| {
            let stopped = collector.0.subscribe();
            tokio::spawn(serve_metrics(listener, state.clone(), stopped))
        });
        let domain = state.domain.clone();
        let served = serve(listener, state, metrics_server.is_none(), shutdown).await;
        heartbeat.0.send_replace(true);
        if let Err(err) = heartbeat.1.await {
            tracing::warn!(error = %err, "the replica heartbeat ended badly");
        }
        domain.replica_stopping().await;
        collector.0.send_replace(true);
        if let Some(task) = metrics_server
            && let Ok(Err(err)) = task.await
        {
            tracing::warn!(error = %err, "the metrics listener failed");
        }
        if let Err(err) = collector.1.await {
            tracing::warn!(error = %err, "the metrics collector ended badly");
        }
        if let Some((stop, task)) = reconciler_loop {
            stop.send_replace(true);
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "the reconciliation loop ended badly");
            }
        }
        if let Some((stop, task)) = lifecycle_loop {
            stop.send_replace(true);
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "the lifecycle loop ended badly");
            }
        }
        daemons.stop().await;
        for store in &stores {
            store.close().await;
        }
        pubsub.close().await;
        if let Some(cluster) = cluster {
            stop_cluster(cluster).await;
        }
        tracing::info!("warmspace server stopped");
        Ok(served?)
    }
}

/// Builds a server from `config` and serves until `shutdown`: what
/// `warmspace server` runs.
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    Server::start(config, listener).await?.serve(shutdown).await
}

/// The main store (migrated) and the reconciler's, within the budget.
async fn connect(
    options: &PgConnectOptions,
    budget: ConnectionBudget,
    config: &Config,
) -> Result<(Store, Store), StartError> {
    let store = Store::connect(named(options, "main"), budget.main).await?.with_clock(config.clock.clone());
    store.migrate().await?;
    let reconciler_store =
        Store::connect_another(named(options, "reconciler"), budget.reconciler).await?.with_clock(config.clock.clone());
    Ok((store, reconciler_store))
}

/// `options` for one part of the budget, named after it so that operators
/// (and the test that holds the server to its budget) can tell the server's
/// connections apart in `pg_stat_activity`: `warmspace-main`,
/// `warmspace-reconciler`, `warmspace-listener`, or the `application_name`
/// the URL gives in place of `warmspace`.
fn named(options: &PgConnectOptions, part: &str) -> PgConnectOptions {
    let base = options.get_application_name().unwrap_or(APPLICATION_NAME);
    options.clone().application_name(&format!("{base}-{part}"))
}

async fn stop_cluster(cluster: Cluster) {
    if let Err(err) = cluster.stop().await {
        tracing::error!(error = %err, "cannot stop the built-in PostgreSQL");
    }
}

/// Serves the API (with `/metrics` when `with_metrics`) on `listener` until
/// `shutdown` completes, then finishes the requests in flight (for at most
/// [`DRAIN`]).
async fn serve(
    listener: TcpListener,
    state: AppState,
    with_metrics: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.clone();
    let down = state.shutting_down();
    let mut router = api::router(state.clone());
    if with_metrics {
        router = router.merge(api::metrics_router(state));
    }
    // Connections record the client's address.
    let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small writes go out at once: an SSH keystroke through a tunnel must
    // not wait for the peer's delayed acknowledgement.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot turn Nagle's algorithm off on a connection");
        }
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        streams.shut_down();
    });
    tokio::select! {
        served = server => served,
        _ = async { down.await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("requests still open after {DRAIN:?}; stopping anyway");
            Ok(())
        }
    }
}

/// Serves `/metrics` alone on its own listener until `stopped` turns true.
async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, api::metrics_router(state))
        .with_graceful_shutdown(async move {
            // An error means the sender is gone, which is a stop too.
            stopped.wait_for(|stop| *stop).await.ok();
        })
        .await
}

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_never_exceeds_the_maximum() {
        for max in MIN_CONNECTIONS..200 {
            let b = ConnectionBudget::split(max).unwrap();
            assert_eq!(b.main + b.reconciler + b.listener, max);
            assert!(b.main >= 2 && b.reconciler >= 2, "{max}: {b:?}");
        }
        assert!(ConnectionBudget::split(MIN_CONNECTIONS - 1).is_err());
        assert_eq!(ConnectionBudget::split(20).unwrap(), ConnectionBudget { main: 13, reconciler: 6, listener: 1 });
    }
}
