//! Collecting the metrics that are read from the database: the pools, as
//! the reconciler sees them (the same snapshot, decided by the same pure
//! logic, so the numbers match its own), and the counters the database
//! keeps. What is observed as it happens is recorded by the workflows
//! themselves (claims, job acquisition and completion, agents, the
//! reconciler), from data they already hold.

use std::collections::BTreeMap;

use warmspace_prebuilds::reconcile::{self, Status};

use super::{Domain, Result};
use crate::metrics::{Collected, Labels, Metrics, PoolGauges, PresetTotals, preset_labels};

impl Domain {
    /// The server's metrics, which the workflows record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Reads and computes every collected metric, and serves them from now
    /// on: the reconciliation snapshot's reads, and five set-based ones.
    pub async fn collect_metrics(&self) -> Result<()> {
        let (raw, snapshot) = self.prebuilds_snapshot().await?;
        let totals = self.store.metric_totals().await?;
        // Per preset name: versions of one template share their presets' names,
        // and a new version's pool takes over the old one's series.
        let mut pools: BTreeMap<Labels, PoolGauges> = BTreeMap::new();
        for (row, preset) in raw.presets.iter().zip(&snapshot.presets) {
            let decision = reconcile::decide(preset, snapshot.now, &snapshot.settings);
            let pool =
                pools.entry(preset_labels(&row.organization_name, &row.template_name, &row.preset_name)).or_default();
            let c = decision.counts;
            pool.desired += i64::from(c.desired);
            pool.running += i64::from(c.running);
            pool.eligible += i64::from(c.eligible);
            // Only the active version of a live template says whether the
            // preset is stuck: an old version's verdict is history.
            if row.version_active && !row.template_deleted {
                pool.hard_limited = Some(decision.status == Status::HardLimited);
                pool.validation_failed = Some(decision.status == Status::ValidationFailed);
            }
        }
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let collected = Collected {
            at: Some(snapshot.now),
            paused: raw.paused,
            pools: pools.into_iter().collect(),
            totals: totals
                .presets
                .into_iter()
                .map(|r| {
                    (
                        preset_labels(&r.organization_name, &r.template_name, &r.preset_name),
                        PresetTotals {
                            created: count(r.created),
                            failed: count(r.failed),
                            claimed: count(r.claimed),
                            replacements: count(r.replacements),
                        },
                    )
                })
                .collect(),
            misses: totals
                .misses
                .into_iter()
                .map(|r| {
                    let mut labels = preset_labels(&r.organization_name, &r.template_name, &r.preset_name);
                    labels.push(("reason", r.reason.to_string()));
                    (labels, count(r.misses))
                })
                .collect(),
            jobs: totals
                .jobs
                .into_iter()
                .map(|r| (vec![("status", r.status.to_string()), ("type", r.kind.to_string())], r.jobs))
                .collect(),
            live_daemons: totals.live_daemons,
        };
        self.metrics.set_collected(collected);
        Ok(())
    }
}
