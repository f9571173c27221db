//! The metrics collector: computes the pool gauges and the database-derived
//! counters on an interval ([`crate::MetricsConfig::collect_interval`]), so
//! that a scrape is served from memory and never runs a query.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::Domain;

/// Collects once; a failure is logged and the previous collection stays
/// served (its `…_metrics_last_updated` says how old it is).
pub async fn collect(domain: &Domain) {
    if let Err(err) = domain.collect_metrics().await {
        tracing::warn!(error = %err, "cannot collect metrics");
    }
}

/// Collects every `every`, until `stop`. The first collection is the
/// caller's (at start), so this waits a whole interval first.
pub fn spawn(domain: Domain, every: Duration, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => collect(&domain).await,
                _ = stop.changed() => return,
            }
        }
    })
}
