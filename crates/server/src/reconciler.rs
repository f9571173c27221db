//! The reconciliation loop: read one snapshot, let the pure logic decide,
//! carry out its actions as ordinary builds initiated by the prebuilds user.
//! Only the replica holding the reconciliation advisory lock acts in a cycle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::RngExt;
use rand::distr::Alphanumeric;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;
use warmspace_prebuilds::reconcile::{
    self, Action, Creation, Decision, JobStatus, LatestBuild, Prebuild, PresetState, Settings, Snapshot, Transition,
};
use warmspace_prebuilds::schedule::Schedule;
use warmspace_states::{BuildReason, DeletionReason, MissReason, PrebuildEvent};
use warmspace_store::prebuilds::{PrebuildsSnapshot, PresetSnapshotRow};
use warmspace_store::pubsub::PubSub;
use warmspace_store::workspaces::{NewBuild, NewWorkspace, PREBUILDS_USER_ID};
use warmspace_store::{Store, StoreError};
use warmspace_template::{ParameterInput, resolve_parameters};

/// Anything that may change a pool's picture publishes here; every replica's
/// loop wakes, and the one holding the lock acts.
pub const RECONCILE_CHANNEL: &str = "prebuilds_reconcile";

/// Triggers arriving within this window are handled by one cycle.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// When another replica held the lock, look again this soon: its cycle may
/// have started before the trigger we woke for.
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// Asks every replica's reconciler to run a cycle soon. After commit only.
pub async fn trigger(pubsub: &PubSub, why: &str) {
    if let Err(err) = pubsub.publish(RECONCILE_CHANNEL, why).await {
        tracing::warn!(error = %err, "could not trigger reconciliation");
    }
}

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// A cycle runs at least this often.
    pub interval: Duration,
    pub backoff_interval: Duration,
    pub backoff_lookback: Duration,
    /// Consecutive failed creations before a preset stops; 0 disables.
    pub failure_hard_limit: u32,
    /// Presets worked on at once (half the database pool, at least one).
    pub concurrency: usize,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            interval: Duration::from_secs(15),
            backoff_interval: Duration::from_secs(15),
            backoff_lookback: Duration::from_secs(3600),
            failure_hard_limit: 3,
            concurrency: 5,
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub presets_total: usize,
    /// Presets that needed any work looked at (the others were skipped).
    pub presets_reconciled: usize,
    pub actions: usize,
    pub created: usize,
    pub deleted: usize,
    pub canceled: usize,
    pub snapshot: Duration,
    pub elapsed: Duration,
}

#[derive(Clone)]
pub struct Reconciler {
    store: Store,
    pubsub: PubSub,
    config: ReconcilerConfig,
    /// Prebuilds whose `eligible` event this replica already recorded.
    eligible_recorded: Arc<Mutex<HashSet<Uuid>>>,
}

/// Each preset's validated parameter values (or why they do not validate),
/// computed once per cycle.
type ParameterCache = tokio::sync::Mutex<HashMap<Uuid, Result<BTreeMap<String, String>, String>>>;

/// A snapshot's preset with its row (names, for logs and events).
struct Planned<'a> {
    row: &'a PresetSnapshotRow,
    state: &'a PresetState,
    decision: Decision,
}

impl Reconciler {
    pub fn new(store: Store, pubsub: PubSub, config: ReconcilerConfig) -> Self {
        Reconciler { store, pubsub, config, eligible_recorded: Default::default() }
    }

    pub fn settings(&self, paused: bool) -> Settings {
        Settings {
            paused,
            backoff_interval: self.config.backoff_interval,
            backoff_lookback: self.config.backoff_lookback,
            failure_hard_limit: self.config.failure_hard_limit,
        }
    }

    /// How much build history a snapshot reads: enough of each preset's latest
    /// builds to see the hard limit, and failures since the backoff lookback.
    fn history(&self) -> (i64, DateTime<Utc>) {
        (i64::from(self.config.failure_hard_limit.max(1)), Utc::now() - self.config.backoff_lookback)
    }

    /// Reads the snapshot reconciliation decides from, as the pure logic sees it.
    pub async fn snapshot(&self) -> Result<(PrebuildsSnapshot, Snapshot), StoreError> {
        let (history, since) = self.history();
        let raw = self.store.prebuilds_snapshot(history, since).await?;
        let snapshot = to_snapshot(&raw, self.settings(raw.paused));
        Ok((raw, snapshot))
    }

    /// Why a preset has no claimable prebuild now, as a claim-miss reason:
    /// `paused`, `hard_limited`, `backoff`, or `no_eligible`.
    pub async fn miss_reason(&self, preset_id: Uuid) -> Result<MissReason, StoreError> {
        let (history, since) = self.history();
        let raw = self.store.preset_snapshot(preset_id, history, since).await?;
        let snapshot = to_snapshot(&raw, self.settings(raw.paused));
        if snapshot.settings.paused {
            return Ok(MissReason::Paused);
        }
        let Some(preset) = snapshot.presets.first() else { return Ok(MissReason::NoEligible) };
        Ok(match reconcile::decide(preset, snapshot.now, &snapshot.settings).status {
            reconcile::Status::HardLimited | reconcile::Status::ValidationFailed => MissReason::HardLimited,
            reconcile::Status::Backoff { .. } => MissReason::Backoff,
            reconcile::Status::Normal => MissReason::NoEligible,
        })
    }

    /// One cycle, if this replica gets the reconciliation lock (`None` when
    /// another replica holds it).
    pub async fn run_cycle(&self) -> Result<Option<CycleStats>, StoreError> {
        let Some(lock) = self.store.try_lock_reconciler().await? else {
            return Ok(None);
        };
        let stats = self.cycle().await;
        lock.release().await;
        stats.map(Some)
    }

    async fn cycle(&self) -> Result<CycleStats, StoreError> {
        let started = Instant::now();
        let (raw, snapshot) = self.snapshot().await?;
        let snapshot_elapsed = started.elapsed();
        let now = snapshot.now;
        let planned: Vec<Planned> = raw
            .presets
            .iter()
            .zip(&snapshot.presets)
            .filter(|(_, state)| reconcile::needs_attention(state, now))
            .map(|(row, state)| Planned { row, state, decision: reconcile::decide(state, now, &snapshot.settings) })
            .collect();
        self.record_eligible(&planned, now).await;

        let mut stats = CycleStats {
            presets_total: snapshot.presets.len(),
            presets_reconciled: planned.len(),
            snapshot: snapshot_elapsed,
            ..Default::default()
        };
        let parameters = Arc::new(tokio::sync::Mutex::new(HashMap::new()));
        // Built in a plain loop: futures boxed here stay provably `Send` for
        // the spawned loop, where an iterator adapter's closures would not.
        let mut work: Vec<Pin<Box<dyn Future<Output = CycleStats> + Send + '_>>> = Vec::new();
        for plan in &planned {
            if !plan.decision.actions.is_empty() {
                work.push(Box::pin(self.carry_out(plan, now, Arc::clone(&parameters))));
            }
        }
        let results: Vec<CycleStats> =
            futures::stream::iter(work).buffer_unordered(self.config.concurrency.max(1)).collect().await;
        for done in results {
            stats.actions += done.actions;
            stats.created += done.created;
            stats.deleted += done.deleted;
            stats.canceled += done.canceled;
        }
        stats.elapsed = started.elapsed();
        if stats.actions > 0 {
            tracing::info!(
                presets = stats.presets_total,
                reconciled = stats.presets_reconciled,
                actions = stats.actions,
                created = stats.created,
                deleted = stats.deleted,
                canceled = stats.canceled,
                elapsed_ms = stats.elapsed.as_millis() as u64,
                "reconciliation cycle"
            );
        } else {
            tracing::debug!(
                presets = stats.presets_total,
                elapsed_ms = stats.elapsed.as_millis() as u64,
                "reconciliation cycle"
            );
        }
        Ok(stats)
    }

    /// Records when prebuilds became claimable (once per prebuild).
    async fn record_eligible(&self, planned: &[Planned<'_>], now: chrono::DateTime<Utc>) {
        let fresh: Vec<(Uuid, Uuid)> = {
            let recorded = self.eligible_recorded.lock().unwrap();
            planned
                .iter()
                .flat_map(|p| {
                    p.state
                        .prebuilds
                        .iter()
                        .filter(move |b| reconcile::is_eligible(p.state, b, now))
                        .map(|b| (b.workspace_id, p.state.preset_id))
                })
                .filter(|(id, _)| !recorded.contains(id))
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        match self.store.record_eligible(&fresh).await {
            Ok(()) => self.eligible_recorded.lock().unwrap().extend(fresh.iter().map(|(id, _)| *id)),
            Err(err) => tracing::warn!(error = %err, "cannot record eligible prebuilds"),
        }
    }

    async fn carry_out(
        &self,
        plan: &Planned<'_>,
        now: chrono::DateTime<Utc>,
        parameters: Arc<ParameterCache>,
    ) -> CycleStats {
        let mut done = CycleStats::default();
        let (row, state) = (plan.row, plan.state);
        for action in &plan.decision.actions {
            match action {
                Action::CancelPending(jobs) => match self.store.cancel_pending_jobs(jobs).await {
                    Ok(canceled) => {
                        for job in &canceled {
                            crate::provisioning::announce(&self.pubsub, *job, crate::provisioning::EVENT_DONE).await;
                        }
                        done.canceled += canceled.len();
                        done.actions += 1;
                        // Canceled creations are deleted by the next cycle: ask for it now.
                        if !canceled.is_empty() {
                            trigger(&self.pubsub, "creations canceled").await;
                        }
                    }
                    Err(err) => tracing::warn!(preset = %row.preset_name, error = %err, "cannot cancel creations"),
                },
                Action::Delete(workspaces) => {
                    for id in workspaces {
                        let reason = deletion_reason(state, *id, now);
                        match self.delete_prebuild(*id).await {
                            Ok(()) => {
                                done.deleted += 1;
                                let mut events = vec![(*id, state.preset_id, PrebuildEvent::Deleted, Some(reason))];
                                if reason == DeletionReason::Expired {
                                    events.push((*id, state.preset_id, PrebuildEvent::Expired, None));
                                }
                                let _ = self.store.record_prebuild_events(&events).await;
                            }
                            // Someone else (a claim, a user) got there first: next cycle sees it.
                            Err(StoreError::InProgress(_) | StoreError::NotFound) => {}
                            Err(err) => tracing::warn!(workspace = %id, error = %err, "cannot delete a prebuild"),
                        }
                    }
                    done.actions += 1;
                }
                Action::Create(count) => {
                    let values = {
                        let mut cache = parameters.lock().await;
                        match cache.get(&state.preset_id) {
                            Some(values) => values.clone(),
                            None => {
                                let values = self.preset_values(state).await;
                                cache.insert(state.preset_id, values.clone());
                                values
                            }
                        }
                    };
                    let values = match values {
                        Ok(values) => values,
                        Err(problem) => {
                            tracing::warn!(preset = %row.preset_name, template = %row.template_name, %problem,
                                "preset parameters do not validate; its prebuilds will not be created");
                            let _ = self.store.set_preset_validation_error(state.preset_id, &problem).await;
                            break;
                        }
                    };
                    for _ in 0..*count {
                        match self.create_prebuild(row, state, &values).await {
                            Ok(id) => {
                                done.created += 1;
                                let _ = self
                                    .store
                                    .record_prebuild_events(&[(id, state.preset_id, PrebuildEvent::Created, None)])
                                    .await;
                            }
                            Err(err) => {
                                tracing::warn!(preset = %row.preset_name, error = %err, "cannot create a prebuild")
                            }
                        }
                    }
                    done.actions += 1;
                }
            }
        }
        done
    }

    /// The preset's parameter values for a new prebuild, validated as any
    /// build's are; an error is a validation failure (not retried).
    async fn preset_values(&self, state: &PresetState) -> Result<BTreeMap<String, String>, String> {
        let parameters = self.store.version_parameters(state.template_version_id).await.map_err(|e| e.to_string())?;
        let presets = self.store.version_presets(state.template_version_id).await.map_err(|e| e.to_string())?;
        let preset = presets.iter().find(|p| p.id == state.preset_id).ok_or("the preset is gone")?;
        resolve_parameters(&ParameterInput {
            parameters: &parameters,
            previous: None,
            preset: Some((&preset.name, &preset.parameters.0)),
            requested: &BTreeMap::new(),
            transition: warmspace_template::Transition::Start,
        })
        .map_err(|problems| problems.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; "))
    }

    async fn create_prebuild(
        &self,
        row: &PresetSnapshotRow,
        state: &PresetState,
        values: &BTreeMap<String, String>,
    ) -> Result<Uuid, StoreError> {
        let template = self.store.template(state.template_id).await?;
        let suffix: String = rand::rng().sample_iter(Alphanumeric).take(8).map(char::from).collect::<String>();
        // Prebuilds get no lifecycle fields: no TTL, deadline or autostart until claimed.
        let workspace = self
            .store
            .create_workspace(&NewWorkspace {
                organization_id: template.organization_id,
                owner_id: PREBUILDS_USER_ID,
                template_id: state.template_id,
                name: format!("prebuild-{}", suffix.to_lowercase()),
                ttl_ms: None,
                autostart_schedule: None,
                build: NewBuild {
                    transition: Transition::Start,
                    initiator_id: PREBUILDS_USER_ID,
                    reason: BuildReason::Prebuild,
                    template_version_id: state.template_version_id,
                    preset_id: Some(state.preset_id),
                    parameters: values.clone(),
                    deadline: None,
                    max_deadline: None,
                },
            })
            .await?;
        tracing::debug!(preset = %row.preset_name, workspace = %workspace.name, "prebuild queued");
        Ok(workspace.id)
    }

    /// A delete build initiated by the prebuilds user, on the version and
    /// with the values of the prebuild's latest build.
    async fn delete_prebuild(&self, workspace_id: Uuid) -> Result<(), StoreError> {
        let workspace = self.store.workspace(workspace_id).await?;
        if workspace.owner_id != PREBUILDS_USER_ID {
            return Err(StoreError::NotFound);
        }
        let latest = self.store.build(workspace.latest_build_id).await?;
        // Only while still unclaimed: a claim landing meanwhile keeps its workspace.
        self.store
            .create_build_for_owner(
                workspace_id,
                PREBUILDS_USER_ID,
                &NewBuild {
                    transition: Transition::Delete,
                    initiator_id: PREBUILDS_USER_ID,
                    reason: BuildReason::Prebuild,
                    template_version_id: latest.template_version_id,
                    preset_id: None,
                    parameters: latest.parameters.0,
                    deadline: None,
                    max_deadline: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Runs cycles every `interval` and whenever triggered, until `stop`.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut triggers = loop {
                match self.pubsub.subscribe(RECONCILE_CHANNEL).await {
                    Ok(subscription) => break subscription,
                    Err(err) => {
                        tracing::warn!(error = %err, "reconciler cannot subscribe to triggers; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(LOCK_RETRY) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
            };
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    event = triggers.recv() => {
                        if event.is_none() {
                            return;
                        }
                        tokio::time::sleep(DEBOUNCE).await;
                    }
                    _ = stop.changed() => return,
                }
                wait = match self.run_cycle().await {
                    Ok(Some(_)) => self.config.interval,
                    Ok(None) => LOCK_RETRY.min(self.config.interval),
                    Err(err) => {
                        tracing::warn!(error = %err, "reconciliation cycle failed");
                        self.config.interval
                    }
                };
            }
        })
    }
}

fn deletion_reason(state: &PresetState, workspace: Uuid, now: chrono::DateTime<Utc>) -> DeletionReason {
    let prebuild = state.prebuilds.iter().find(|b| b.workspace_id == workspace);
    if !state.version_active || state.template_deleted {
        DeletionReason::Inactive
    } else if prebuild.is_some_and(|b| !matches!(b.latest.status, JobStatus::Succeeded)) {
        DeletionReason::Failed
    } else if prebuild.is_some_and(|b| reconcile::is_expired(state, b, now)) {
        DeletionReason::Expired
    } else {
        DeletionReason::Surplus
    }
}

/// The store's rows as the pure logic's snapshot.
pub fn to_snapshot(raw: &PrebuildsSnapshot, settings: Settings) -> Snapshot {
    let mut schedules: HashMap<Uuid, Vec<(Schedule, u32)>> = HashMap::new();
    for s in &raw.schedules {
        // The import validated every expression; one that no longer parses is skipped, not fatal.
        if let Ok(schedule) = Schedule::parse(&s.cron_expression) {
            schedules.entry(s.preset_id).or_default().push((schedule, s.desired_instances.max(0) as u32));
        }
    }
    let mut prebuilds: HashMap<Uuid, Vec<Prebuild>> = HashMap::new();
    for b in &raw.prebuilds {
        prebuilds.entry(b.preset_id).or_default().push(Prebuild {
            workspace_id: b.workspace_id,
            created_at: b.created_at,
            latest: LatestBuild {
                transition: b.transition,
                status: b.job_status,
                job_id: b.job_id,
                build_number: b.build_number,
                finished_at: b.finished_at,
            },
            agents_ready: b.agents_ready,
        });
    }
    let mut creations: HashMap<Uuid, Vec<Creation>> = HashMap::new();
    for c in &raw.creations {
        creations.entry(c.preset_id).or_default().push(Creation { finished_at: c.finished_at, succeeded: c.succeeded });
    }
    let presets = raw
        .presets
        .iter()
        .map(|p| PresetState {
            preset_id: p.preset_id,
            template_id: p.template_id,
            template_version_id: p.template_version_id,
            version_active: p.version_active,
            template_deleted: p.template_deleted,
            instances: p.desired_instances.max(0) as u32,
            ttl: p.ttl_seconds.map(|s| Duration::from_secs(s.max(0) as u64)),
            timezone: p.scheduling_timezone.as_deref().and_then(|tz| chrono_tz::Tz::from_str(tz).ok()),
            schedules: schedules.remove(&p.preset_id).unwrap_or_default(),
            last_invalidated_at: p.last_invalidated_at,
            validation_failed: p.validation_error.is_some(),
            creations: creations.remove(&p.preset_id).unwrap_or_default(),
            prebuilds: prebuilds.remove(&p.preset_id).unwrap_or_default(),
        })
        .collect();
    Snapshot { now: raw.now, settings, presets }
}
