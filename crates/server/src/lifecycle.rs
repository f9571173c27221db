//! The lifecycle executor's loop: a tick every `--lifecycle-interval`, in
//! which the replica holding the lifecycle lock carries out whatever the
//! rules say is due for people's workspaces (the domain's
//! `lifecycle_tick`). Replicas that do not get the lock skip the tick.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::{self, Domain, TickStats};

#[derive(Clone)]
pub struct LifecycleExecutor {
    domain: Domain,
}

impl LifecycleExecutor {
    pub fn new(domain: Domain) -> Self {
        LifecycleExecutor { domain }
    }

    /// One tick, if this replica gets the lock (`None` when another holds it).
    pub async fn tick(&self) -> domain::Result<Option<TickStats>> {
        self.domain.lifecycle_tick().await
    }

    /// Ticks every interval until `stop`.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let interval = self.domain.config().lifecycle.interval;
            let mut timer = tokio::time::interval(interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = stop.changed() => break,
                }
                if let Err(err) = self.tick().await {
                    tracing::warn!(error = %err, "lifecycle tick failed");
                }
            }
        })
    }
}
