//! The warmspace server: the HTTP API and everything behind it that is not
//! SQL. Replicas are stateless; all state is in the store.

pub mod api;
pub mod auth;
pub mod provisioning;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use warmspace_store::Store;
use warmspace_store::pubsub::PubSub;

#[derive(Clone, Debug)]
pub struct Config {
    /// How long a session lasts after its last use.
    pub session_duration: chrono::Duration,
    /// Largest accepted file upload, in bytes.
    pub max_file_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { session_duration: chrono::Duration::hours(24), max_file_size: 100 << 20 }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pubsub: PubSub,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(store: Store, pubsub: PubSub, config: Config) -> Self {
        AppState { store, pubsub, config: Arc::new(config) }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(feature = "testing")]
pub mod testing;
