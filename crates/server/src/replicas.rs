//! This replica's heartbeat (see [`warmspace_store::replicas`]): every
//! [`HEARTBEAT`] it records that it is alive and cleans up after replicas
//! whose heartbeats stopped [`DEAD_AFTER`] ago (killed, crashed, cut off):
//! the agent tunnels they held are forgotten and the connections they
//! recorded close as `replica stopped`. A replica stopping cleanly does the
//! same for itself.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::Domain;

/// How often a replica says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a replica may stay silent before the others take it for dead:
/// several heartbeats, so that a slow database or a pause is not a death.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);

/// One heartbeat; a failure is logged, and the next one tries again.
pub async fn beat(domain: &Domain) {
    if let Err(err) = domain.replica_heartbeat(DEAD_AFTER).await {
        tracing::warn!(error = %err, "cannot record this replica's heartbeat");
    }
}

/// Beats every [`HEARTBEAT`] until `stop`. The first beat is the caller's
/// (at start, before any tunnel is held), so this waits a whole interval first.
pub fn spawn(domain: Domain, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => beat(&domain).await,
                _ = stop.changed() => return,
            }
        }
    })
}
