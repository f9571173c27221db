//! The warmspace server: the HTTP API and everything behind it that is not
//! SQL. Replicas are stateless; all state is in the store.

pub mod api;
pub mod auth;
pub mod provisioning;
pub mod reconciler;
pub mod reinit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warmspace_store::Store;
use warmspace_store::jobs::QueuePolicy;
use warmspace_store::pubsub::PubSub;

use crate::provisioning::LocalCoordinator;
use crate::reconciler::{Reconciler, ReconcilerConfig};

#[derive(Clone, Debug)]
pub struct Config {
    /// How long a session lasts after its last use.
    pub session_duration: chrono::Duration,
    /// Largest accepted file upload, in bytes.
    pub max_file_size: usize,
    /// Job leases and the prebuild share of daemons.
    pub queue: QueuePolicy,
    /// How workspaces (their agents, their scripts) reach this server.
    pub access_url: String,
    /// Prebuild reconciliation.
    pub reconciler: ReconcilerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_duration: chrono::Duration::hours(24),
            max_file_size: 100 << 20,
            queue: QueuePolicy::default(),
            access_url: "http://127.0.0.1:3000".into(),
            reconciler: ReconcilerConfig::default(),
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pubsub: PubSub,
    pub config: Arc<Config>,
    /// The job queue as daemons see it; external daemons reach it over HTTP.
    pub coordinator: LocalCoordinator,
    /// Decides prebuild pools; its loop runs only where started.
    pub reconciler: Reconciler,
    /// Turns true when the server shuts down, so long-lived streams end.
    shutdown: Arc<watch::Sender<bool>>,
}

impl AppState {
    pub fn new(store: Store, pubsub: PubSub, config: Config) -> Self {
        let coordinator = LocalCoordinator::new(store.clone(), pubsub.clone(), config.queue, config.access_url.clone());
        let shutdown = Arc::new(watch::channel(false).0);
        let reconciler = Reconciler::new(store.clone(), pubsub.clone(), config.reconciler.clone());
        AppState { store, pubsub, config: Arc::new(config), coordinator, reconciler, shutdown }
    }

    /// Completes when the server begins shutting down.
    pub fn shutting_down(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut receiver = self.shutdown.subscribe();
        async move {
            let _ = receiver.wait_for(|down| *down).await;
        }
    }
}

/// How long requests in flight get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trigger = state.shutdown.clone();
    let down = state.shutting_down();
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = trigger.send(true);
    });
    tokio::select! {
        served = server => served,
        _ = async { down.await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("requests still open after {DRAIN:?}; stopping anyway");
            Ok(())
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;
