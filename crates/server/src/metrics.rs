//! Prometheus metrics (DESIGN §6, docs/metrics.md): the registry and its
//! families, and the cache the collector fills.
//!
//! Two kinds of metric live here:
//! * **Observed** histograms and the last cycle's gauges, per process:
//!   the domain and the reconciler record them where the thing happens,
//!   from data they already hold (no statement of their own).
//! * **Collected** pool gauges and database-derived counters: the
//!   collector ([`crate::collector`]) computes them on an interval and
//!   [`Metrics::set_collected`] swaps them in. A scrape only encodes what
//!   is in memory: it never runs a query.
//!
//! This module knows nothing of the domain; the domain and the collector
//! write into it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use uuid::Uuid;

/// A series' labels, in the order they are written.
pub type Labels = Vec<(&'static str, String)>;

/// The content type of what [`Metrics::encode`] writes (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The labels of a pool's series.
pub fn preset_labels(organization: &str, template: &str, preset: &str) -> Labels {
    vec![
        ("organization_name", organization.to_owned()),
        ("template_name", template.to_owned()),
        ("preset_name", preset.to_owned()),
    ]
}

/// What kind of workspace creation a duration is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationType {
    /// A person's first build, cold.
    Regular,
    /// A prebuild's first build, for the pool.
    Prebuild,
    /// The build that hands a prebuild over to a person.
    Claim,
}

impl CreationType {
    fn as_str(self) -> &'static str {
        match self {
            CreationType::Regular => "regular",
            CreationType::Prebuild => "prebuild",
            CreationType::Claim => "claim",
        }
    }
}

/// One preset's pool, as the reconciler would see it at collection time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolGauges {
    pub desired: i64,
    pub running: i64,
    pub eligible: i64,
    /// Only for presets of active versions of live templates.
    pub hard_limited: Option<bool>,
    pub validation_failed: Option<bool>,
}

/// Totals since the database began, for one preset name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresetTotals {
    pub created: u64,
    pub failed: u64,
    pub claimed: u64,
    pub replacements: u64,
}

/// What one collection found: every series the collector serves.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// When it was collected (the server's clock).
    pub at: Option<DateTime<Utc>>,
    pub paused: bool,
    pub pools: Vec<(Labels, PoolGauges)>,
    pub totals: Vec<(Labels, PresetTotals)>,
    /// Preset labels plus `reason`.
    pub misses: Vec<(Labels, u64)>,
    /// `status` and `type`.
    pub jobs: Vec<(Labels, i64)>,
    pub live_daemons: i64,
}

/// A build taken by a daemon whose end is a workspace creation: when its
/// job was queued, and the labels its duration is observed under.
struct InFlight {
    created_at: DateTime<Utc>,
    labels: Labels,
}

/// Builds followed from their acquisition to their end at most this many
/// at once; past it, those queued longest ago are forgotten (their daemon
/// vanished, or they ended on another replica).
const MAX_IN_FLIGHT: usize = 10_000;

/// The server's metrics. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    collected: Arc<CollectedMetrics>,
    claim_duration: Family<Labels, Histogram>,
    creation_duration: Family<Labels, Histogram>,
    build_ready_duration: Family<Labels, Histogram>,
    queue_wait: Family<Labels, Histogram>,
    reconcile_duration: Family<Labels, Histogram>,
    last_cycle_presets: Gauge,
    last_cycle_reconciled: Gauge,
    last_cycle_skipped: Gauge,
    last_cycle_actions: Family<Labels, Gauge>,
    in_flight: Mutex<HashMap<Uuid, InFlight>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A family of histograms, all with the buckets `new` gives them.
fn histograms(new: fn() -> Histogram) -> Family<Labels, Histogram> {
    Family::new_with_constructor(new)
}

/// A claim's hand-over: milliseconds, up to a slow database's seconds.
const HAND_OVER_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Builds and agents: from an echo build's instant to a real one's hour.
const BUILD_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];
/// Waiting in the queue: none at all, up to a backlog's half hour.
const QUEUE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0];
/// A reconciliation pass: milliseconds for one preset, seconds for thousands.
const RECONCILE_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn hand_over_histogram() -> Histogram {
    Histogram::new(HAND_OVER_BUCKETS.iter().copied())
}
fn build_histogram() -> Histogram {
    Histogram::new(BUILD_BUCKETS.iter().copied())
}
fn queue_histogram() -> Histogram {
    Histogram::new(QUEUE_BUCKETS.iter().copied())
}
fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS.iter().copied())
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let collected = Arc::new(CollectedMetrics::default());
        registry.register_collector(Box::new(Arc::clone(&collected)));

        let claim_duration = histograms(hand_over_histogram);
        registry.register(
            "warmspace_prebuilt_workspaces_claim_duration_seconds",
            "Time to hand an eligible prebuild over to a user (the claim transaction), per process",
            claim_duration.clone(),
        );
        let creation_duration = histograms(build_histogram);
        registry.register(
            "warmspace_workspace_creation_duration_seconds",
            "From a creating build's job being queued to its success, by type (regular, prebuild, claim), per process",
            creation_duration.clone(),
        );
        let build_ready_duration = histograms(build_histogram);
        registry.register(
            "warmspace_workspace_build_ready_duration_seconds",
            "From a build's creation to all its agents being ready, per process",
            build_ready_duration.clone(),
        );
        let queue_wait = histograms(queue_histogram);
        registry.register(
            "warmspace_provisioner_job_queue_wait_seconds",
            "From a job being queued to a daemon taking it, by initiator (user, prebuild), per process",
            queue_wait.clone(),
        );
        let reconcile_duration = histograms(reconcile_histogram);
        registry.register(
            "warmspace_prebuilds_reconciliation_duration_seconds",
            "Duration of reconciliation passes (pass = full or presets), per process",
            reconcile_duration.clone(),
        );
        let last_cycle_presets = Gauge::default();
        registry.register(
            "warmspace_prebuilds_reconciliation_last_cycle_presets",
            "Presets the last full cycle of this process saw",
            last_cycle_presets.clone(),
        );
        let last_cycle_reconciled = Gauge::default();
        registry.register(
            "warmspace_prebuilds_reconciliation_last_cycle_presets_reconciled",
            "Presets the last full cycle of this process looked at closely",
            last_cycle_reconciled.clone(),
        );
        let last_cycle_skipped = Gauge::default();
        registry.register(
            "warmspace_prebuilds_reconciliation_last_cycle_presets_skipped",
            "Presets the last full cycle of this process skipped as idle",
            last_cycle_skipped.clone(),
        );
        let last_cycle_actions = Family::<Labels, Gauge>::default();
        registry.register(
            "warmspace_prebuilds_reconciliation_last_cycle_actions",
            "Actions the last full cycle of this process took, by kind (created, deleted, canceled)",
            last_cycle_actions.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                collected,
                claim_duration,
                creation_duration,
                build_ready_duration,
                queue_wait,
                reconcile_duration,
                last_cycle_presets,
                last_cycle_reconciled,
                last_cycle_skipped,
                last_cycle_actions,
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Every series, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Replaces what the collector serves.
    pub fn set_collected(&self, collected: Collected) {
        *self.inner.collected.0.write().unwrap_or_else(|p| p.into_inner()) = collected;
    }

    /// When the collector last succeeded, if ever.
    pub fn collected_at(&self) -> Option<DateTime<Utc>> {
        self.inner.collected.0.read().unwrap_or_else(|p| p.into_inner()).at
    }

    pub fn observe_claim(&self, labels: Labels, hand_over_seconds: f64) {
        self.inner.claim_duration.get_or_create(&labels).observe(hand_over_seconds);
    }

    pub fn observe_creation(&self, mut labels: Labels, kind: CreationType, seconds: f64) {
        labels.push(("type", kind.as_str().to_owned()));
        self.inner.creation_duration.get_or_create(&labels).observe(seconds);
    }

    /// A build all of whose agents became ready `seconds` after it was created.
    pub fn observe_build_ready(&self, organization: &str, template: &str, transition: &str, claim: bool, seconds: f64) {
        let labels = vec![
            ("organization_name", organization.to_owned()),
            ("template_name", template.to_owned()),
            ("transition", transition.to_owned()),
            ("claim", claim.to_string()),
        ];
        self.inner.build_ready_duration.get_or_create(&labels).observe(seconds);
    }

    /// A job taken `seconds` after it was queued; `prebuild` when the
    /// prebuilds user asked for it (else a person did).
    pub fn observe_queue_wait(&self, mut labels: Labels, job_type: &str, prebuild: bool, seconds: f64) {
        labels.push(("job_type", job_type.to_owned()));
        labels.push(("initiator", if prebuild { "prebuild" } else { "user" }.to_owned()));
        self.inner.queue_wait.get_or_create(&labels).observe(seconds);
    }

    /// A reconciliation pass: `full` (every preset) or `presets` (named ones).
    pub fn observe_reconcile(&self, pass: &'static str, seconds: f64) {
        self.inner.reconcile_duration.get_or_create(&vec![("pass", pass.to_owned())]).observe(seconds);
    }

    /// The stats of the last full cycle.
    pub fn set_last_cycle(&self, presets: usize, reconciled: usize, created: usize, deleted: usize, canceled: usize) {
        let inner = &self.inner;
        inner.last_cycle_presets.set(presets as i64);
        inner.last_cycle_reconciled.set(reconciled as i64);
        inner.last_cycle_skipped.set(presets.saturating_sub(reconciled) as i64);
        for (kind, n) in [("created", created), ("deleted", deleted), ("canceled", canceled)] {
            inner.last_cycle_actions.get_or_create(&vec![("kind", kind.to_owned())]).set(n as i64);
        }
    }

    /// A daemon took the job of a creating build: its duration is observed
    /// when it ends ([`Metrics::build_ended`]) on this replica.
    pub fn build_started(&self, job_id: Uuid, created_at: DateTime<Utc>, mut labels: Labels, kind: CreationType) {
        labels.push(("type", kind.as_str().to_owned()));
        let mut in_flight = self.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.len() >= MAX_IN_FLIGHT {
            let mut oldest: Vec<(DateTime<Utc>, Uuid)> = in_flight.iter().map(|(id, f)| (f.created_at, *id)).collect();
            oldest.sort_unstable();
            for (_, id) in oldest.into_iter().take(MAX_IN_FLIGHT / 10) {
                in_flight.remove(&id);
            }
        }
        in_flight.insert(job_id, InFlight { created_at, labels });
    }

    /// A job ended at `now`: a creating build followed since it was taken
    /// here is observed if it succeeded, and forgotten either way.
    pub fn build_ended(&self, job_id: Uuid, succeeded: bool, now: DateTime<Utc>) {
        let Some(flight) = self.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&job_id) else {
            return;
        };
        if succeeded {
            let seconds = (now - flight.created_at).as_seconds_f64().max(0.0);
            self.inner.creation_duration.get_or_create(&flight.labels).observe(seconds);
        }
    }
}

/// A family to encode: its name, its help, and its series.
type Encoded<'a, V> = (&'static str, &'static str, Vec<(&'a Labels, V)>);

/// The collected series, encoded from memory at each scrape.
#[derive(Debug, Default)]
struct CollectedMetrics(RwLock<Collected>);

impl Collector for CollectedMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.0.read().unwrap_or_else(|p| p.into_inner());
        let pool = |get: fn(&PoolGauges) -> Option<i64>| {
            c.pools.iter().filter_map(move |(l, p)| get(p).map(|v| (l, v))).collect::<Vec<_>>()
        };
        let gauges: [Encoded<'_, i64>; 5] = [
            (
                "warmspace_prebuilt_workspaces_desired",
                "Prebuilds each preset's pool should hold now (0 for inactive versions)",
                pool(|p| Some(p.desired)),
            ),
            (
                "warmspace_prebuilt_workspaces_running",
                "Prebuilds whose latest build is a successful start",
                pool(|p| Some(p.running)),
            ),
            (
                "warmspace_prebuilt_workspaces_eligible",
                "Prebuilds that can be claimed now (running, not expired, agents ready)",
                pool(|p| Some(p.eligible)),
            ),
            (
                "warmspace_prebuilt_workspaces_preset_hard_limited",
                "1 when the preset (of an active version) stopped creating after repeated failures",
                pool(|p| p.hard_limited.map(i64::from)),
            ),
            (
                "warmspace_prebuilt_workspaces_preset_validation_failed",
                "1 when the preset's (of an active version) creations fail parameter validation",
                pool(|p| p.validation_failed.map(i64::from)),
            ),
        ];
        for (name, help, series) in gauges {
            gauge_family(&mut encoder, name, help, series)?;
        }
        let totals = |get: fn(&PresetTotals) -> u64| c.totals.iter().map(|(l, t)| (l, get(t))).collect::<Vec<_>>();
        let counters: [Encoded<'_, u64>; 5] = [
            (
                "warmspace_prebuilt_workspaces_created",
                "Prebuild creations queued (from the database)",
                totals(|t| t.created),
            ),
            (
                "warmspace_prebuilt_workspaces_failed",
                "Prebuild creations that failed (from the database)",
                totals(|t| t.failed),
            ),
            ("warmspace_prebuilt_workspaces_claimed", "Prebuilds claimed (from the database)", totals(|t| t.claimed)),
            (
                "warmspace_prebuilt_workspaces_claim_misses",
                "Create requests that got no prebuild, by reason (from the database)",
                c.misses.iter().map(|(l, n)| (l, *n)).collect(),
            ),
            (
                "warmspace_prebuilt_workspaces_resource_replacements",
                "Resources that claim builds reported replaced (from the database)",
                totals(|t| t.replacements),
            ),
        ];
        for (name, help, series) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, value) in series {
                ConstCounter::new(value).encode(family.encode_family(labels)?)?;
            }
        }
        let jobs = c.jobs.iter().map(|(l, n)| (l, *n)).collect();
        gauge_family(&mut encoder, "warmspace_provisioner_jobs", "Provisioner jobs by status and type", jobs)?;
        let none = Labels::new();
        let site: [(&str, &str, i64); 3] = [
            (
                "warmspace_provisioner_daemons_live",
                "Provisioner daemons seen within the last 90 seconds",
                c.live_daemons,
            ),
            (
                "warmspace_prebuilds_reconciliation_paused",
                "1 while prebuild reconciliation is paused site-wide",
                i64::from(c.paused),
            ),
            (
                "warmspace_prebuilt_workspaces_metrics_last_updated",
                "Unix time of the last collection of the collected metrics (0: none yet)",
                c.at.map_or(0, |at| at.timestamp()),
            ),
        ];
        for (name, help, value) in site {
            gauge_family(&mut encoder, name, help, vec![(&none, value)])?;
        }
        Ok(())
    }
}

fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: Vec<(&Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_series_are_served_with_their_labels() {
        let metrics = Metrics::new();
        metrics.set_collected(Collected {
            at: Some(DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            paused: true,
            pools: vec![(
                preset_labels("default", "tpl", "us"),
                PoolGauges { desired: 2, running: 1, eligible: 1, hard_limited: Some(false), validation_failed: None },
            )],
            ..Default::default()
        });
        let text = metrics.encode();
        assert!(
            text.contains(
                "warmspace_prebuilt_workspaces_desired{organization_name=\"default\",template_name=\"tpl\",preset_name=\"us\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("warmspace_prebuilt_workspaces_preset_hard_limited{"), "{text}");
        assert!(!text.contains("warmspace_prebuilt_workspaces_preset_validation_failed{"), "{text}");
        assert!(text.contains("warmspace_prebuilds_reconciliation_paused 1\n"), "{text}");
        assert!(text.contains("warmspace_prebuilt_workspaces_metrics_last_updated 1700000000\n"), "{text}");
    }

    #[test]
    fn a_creation_is_observed_once_when_it_succeeds_and_forgotten_when_it_fails() {
        let metrics = Metrics::new();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        metrics.build_started(a, t0, preset_labels("o", "t", "p"), CreationType::Prebuild);
        metrics.build_started(b, t0, preset_labels("o", "t", "p"), CreationType::Prebuild);
        metrics.build_ended(a, true, t0 + chrono::Duration::seconds(3));
        metrics.build_ended(a, true, t0 + chrono::Duration::seconds(9));
        metrics.build_ended(b, false, t0 + chrono::Duration::seconds(3));
        let text = metrics.encode();
        assert!(text.contains("warmspace_workspace_creation_duration_seconds_count{organization_name=\"o\",template_name=\"t\",preset_name=\"p\",type=\"prebuild\"} 1\n"), "{text}");
        assert!(text.contains("warmspace_workspace_creation_duration_seconds_sum{organization_name=\"o\",template_name=\"t\",preset_name=\"p\",type=\"prebuild\"} 3.0\n"), "{text}");
    }
}
