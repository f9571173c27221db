//! The domain layer: every workflow of the server, one module per concept.
//!
//! An operation takes who is acting (an [`Actor`], or an agent's or daemon's
//! credential) and typed input, checks permission, carries out the workflow
//! over the store, announces what changed once it has committed, and returns
//! a typed result or an [`Error`]. The HTTP API, the provisioning
//! coordinator and the reconciler call this layer; it calls none of them.

mod actor;
mod agents;
mod app_target;
mod apps;
mod connections;
mod drift;
mod error;
mod events;
mod files;
mod history;
mod jobs;
mod lifecycle;
mod metrics;
mod notices;
mod notifications;
mod prebuilds;
mod provisioning;
mod templates;
mod timings;
mod users;
mod views;
mod workspaces;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_store::Store;
use warmspace_store::pubsub::PubSub;

pub use actor::{Actor, AgentAuth, DaemonAuth};
pub use agents::Reinit;
pub use connections::{APP_SESSION_IDLE, AgentStream, AppAddress, AppConnection, AppTarget, Connection, TunnelLease};
pub use error::{Error, Found, Result};
pub use events::{Events, RECONCILE_CHANNEL, Trigger};
pub use history::{POOL_HISTORY_STEP, POOL_HISTORY_WINDOW, PoolHistory, PoolSample};
pub use jobs::LogFollow;
pub use lifecycle::TickStats;
pub use prebuilds::{CycleStats, PrebuildPlan};
pub use workspaces::Created;

use crate::Config;
use crate::metrics::Metrics;

/// Listings return at most this many items per request.
const MAX_PAGE: i64 = 1000;

/// The domain's handle on the world: the store, the announcements between
/// replicas, the configuration. Cheap to clone.
#[derive(Clone)]
pub struct Domain {
    store: Store,
    events: Events,
    config: Arc<Config>,
    /// What the workflows observe as it happens, and the collector's cache.
    metrics: Metrics,
    /// The agent tunnels this replica holds.
    tunnels: crate::tunnels::Tunnels,
    /// This replica, in `replicas` (made at each start).
    replica_id: Uuid,
}

impl Domain {
    pub fn new(store: Store, pubsub: PubSub, config: Arc<Config>) -> Domain {
        Domain {
            store,
            events: Events::new(pubsub),
            config,
            metrics: Metrics::new(),
            tunnels: Default::default(),
            replica_id: Uuid::new_v4(),
        }
    }

    /// The same domain over another store (a pool of its own for the reconciler).
    pub fn with_store(&self, store: Store) -> Domain {
        Domain { store, ..self.clone() }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    fn now(&self) -> DateTime<Utc> {
        self.store.clock().now()
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }
}

/// A listing's `limit` (default and maximum [`MAX_PAGE`]) and `offset` (default 0), checked.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64)> {
    let (limit, offset) = (limit.unwrap_or(MAX_PAGE), offset.unwrap_or(0));
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::field("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    if offset < 0 {
        return Err(Error::field("offset", "must not be negative"));
    }
    Ok((limit, offset))
}

/// Lowercase letters or digits in words joined by single hyphens, at most
/// `max` long: the names of templates, workspaces and provisioner keys.
fn valid_slug(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}
