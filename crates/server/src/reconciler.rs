//! The reconciliation loop (DESIGN §5.1): on a timer and whenever something
//! changes a pool's picture, read one snapshot, let the pure logic decide
//! each preset, and have the domain carry out the actions. Only the replica
//! holding the reconciliation lock acts in a cycle.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;
use warmspace_prebuilds::reconcile::{self, Snapshot};
use warmspace_store::prebuilds::{PrebuildsSnapshot, ReconcilerLock};
use warmspace_store::pubsub::{Event, Subscription};

use crate::domain::{self, CycleStats, Domain, PrebuildPlan, RECONCILE_CHANNEL, Trigger};

/// When another replica held the global lock, look again this soon: its
/// cycle may have started before the trigger we woke for.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// When another pass held a named preset's lock, look again this soon: it is
/// acting on that preset now, from a picture that may predate our trigger.
const PRESET_RETRY: Duration = Duration::from_millis(10);
/// Presets a full cycle locks, re-reads and acts on at a time: their locks
/// are held only while it acts on them, so passes over named presets wait
/// for a handful of presets, never for the whole cycle.
const FULL_CYCLE_CHUNK: usize = 64;

#[derive(Clone)]
pub struct Reconciler {
    domain: Domain,
    /// Presets worked on at once by one pass.
    concurrency: usize,
    /// Lock sessions held at once (each pass holds one connection for its
    /// locks): fewer than the reconciler's connections, so a pass holding a
    /// session always finds one to work on and passes never starve each other.
    sessions: Arc<Semaphore>,
    /// Eligible prebuilds whose `eligible` event this replica has recorded;
    /// only those still eligible are kept, so it stays as small as the pools.
    eligible_recorded: Arc<Mutex<HashSet<Uuid>>>,
    /// Passes this replica has run (held the locks for).
    cycles: Arc<AtomicU64>,
}

impl Reconciler {
    /// A reconciler working through `domain`, whose store should be a pool
    /// of its own of `connections` connections (so a busy cycle never
    /// starves requests). A full cycle and a pass over named presets each
    /// hold one for their locks; with three or more, they run side by side.
    pub fn new(domain: Domain, connections: usize) -> Self {
        let connections = connections.max(2);
        // One connection is always left for work; two sessions: a full
        // cycle's and the named presets' pass.
        let sessions = (connections - 1).min(2);
        Reconciler {
            domain,
            concurrency: connections - sessions,
            sessions: Arc::new(Semaphore::new(sessions)),
            eligible_recorded: Default::default(),
            cycles: Default::default(),
        }
    }

    /// Passes this replica has run so far.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    /// Reads what a cycle decides from, and nothing else (a benchmark's baseline).
    pub async fn snapshot(&self) -> domain::Result<()> {
        self.domain.prebuilds_snapshot().await.map(drop)
    }

    /// One full cycle, if this replica gets the global reconciliation lock
    /// (`None` when another replica's full cycle holds it). Presets it finds
    /// with work to do are locked, re-read and acted on a few at a time;
    /// those another pass is acting on are left to it.
    pub async fn run_cycle(&self) -> domain::Result<Option<CycleStats>> {
        let _session = self.sessions.acquire().await.expect("the session semaphore is never closed");
        let Some(mut lock) = self.domain.try_lock_reconciler().await? else {
            return Ok(None);
        };
        // Should the cycle panic or its task be aborted, the session closes
        // its connection and PostgreSQL releases its locks.
        let stats = self.full_cycle(&mut lock).await;
        lock.release().await;
        self.cycles.fetch_add(1, Ordering::Relaxed);
        stats.map(Some)
    }

    /// A pass over these presets alone, reading only their rows, holding
    /// their locks and not the global one: it never waits for a full cycle.
    /// Presets another pass holds are skipped; `None` when that is all of them.
    pub async fn run_presets(&self, preset_ids: &[Uuid]) -> domain::Result<Option<CycleStats>> {
        let (stats, busy) = self.named_pass(preset_ids).await?;
        Ok((busy.len() < preset_ids.len()).then_some(stats))
    }

    /// A pass over `preset_ids`; returns what it did and the presets it
    /// skipped because another pass held them.
    async fn named_pass(&self, preset_ids: &[Uuid]) -> domain::Result<(CycleStats, Vec<Uuid>)> {
        let _session = self.sessions.acquire().await.expect("the session semaphore is never closed");
        let mut session = self.domain.lock_session().await?;
        let locked = match session.try_lock_presets(preset_ids).await {
            Ok(locked) => locked,
            Err(err) => {
                session.release().await;
                return Err(err.into());
            }
        };
        let busy: Vec<Uuid> = preset_ids.iter().copied().filter(|id| !locked.contains(id)).collect();
        let stats = if locked.is_empty() { Ok(CycleStats::default()) } else { self.pass(Some(&locked)).await };
        session.release().await;
        if !locked.is_empty() {
            self.cycles.fetch_add(1, Ordering::Relaxed);
            if let Ok(stats) = &stats {
                log_pass("presets", stats);
                self.domain.metrics().observe_reconcile("presets", stats.elapsed.as_secs_f64());
            }
        }
        Ok((stats?, busy))
    }

    /// A full cycle, under the global lock held on `lock`: one snapshot of
    /// every preset finds those with work to do; each of those is then
    /// locked and re-read before anything is done to it, so a picture that
    /// went stale while the cycle ran (a pass over named presets acted
    /// meanwhile) never doubles what that pass did.
    async fn full_cycle(&self, lock: &mut ReconcilerLock) -> domain::Result<CycleStats> {
        let started = std::time::Instant::now();
        let (raw, snapshot) = self.domain.prebuilds_snapshot().await?;
        let snapshot_elapsed = started.elapsed();
        let planned = plans(&raw, &snapshot);
        self.record_eligible(&planned, true).await;
        let with_actions: Vec<Uuid> =
            planned.iter().filter(|p| !p.decision.actions.is_empty()).map(|p| p.state.preset_id).collect();
        let mut stats = CycleStats {
            presets_total: snapshot.presets.len(),
            presets_reconciled: planned.len(),
            snapshot: snapshot_elapsed,
            ..Default::default()
        };
        drop(planned);
        for chunk in with_actions.chunks(FULL_CYCLE_CHUNK) {
            let locked = lock.try_lock_presets(chunk).await?;
            if locked.len() < chunk.len() {
                tracing::debug!(skipped = chunk.len() - locked.len(), "presets being reconciled by another pass");
            }
            if locked.is_empty() {
                continue;
            }
            let done = self.pass(Some(&locked)).await;
            lock.unlock_presets(&locked).await?;
            stats.add(&done?);
        }
        self.domain.tell_of_pool_trouble(&raw, &snapshot).await;
        stats.elapsed = started.elapsed();
        log_pass("full", &stats);
        let metrics = self.domain.metrics();
        metrics.observe_reconcile("full", stats.elapsed.as_secs_f64());
        metrics.set_last_cycle(
            stats.presets_total,
            stats.presets_reconciled,
            stats.created,
            stats.deleted,
            stats.canceled,
        );
        Ok(stats)
    }

    /// Reads the presets `only` names (every preset if `None`), decides
    /// each and carries the decisions out. The caller holds their locks.
    async fn pass(&self, only: Option<&[Uuid]>) -> domain::Result<CycleStats> {
        let started = std::time::Instant::now();
        let (raw, snapshot) = match only {
            None => self.domain.prebuilds_snapshot().await?,
            Some(preset_ids) => self.domain.presets_snapshot(preset_ids).await?,
        };
        let snapshot_elapsed = started.elapsed();
        let planned = plans(&raw, &snapshot);
        self.record_eligible(&planned, only.is_none()).await;

        let mut stats = CycleStats {
            presets_total: snapshot.presets.len(),
            presets_reconciled: planned.len(),
            snapshot: snapshot_elapsed,
            ..Default::default()
        };
        // Built in a plain loop: futures boxed here stay provably `Send` for
        // the spawned loop, where an iterator adapter's closures would not.
        let mut work: Vec<Pin<Box<dyn Future<Output = CycleStats> + Send + '_>>> = Vec::new();
        for plan in &planned {
            if !plan.decision.actions.is_empty() {
                work.push(Box::pin(self.domain.carry_out(plan)));
            }
        }
        let results: Vec<CycleStats> = futures::stream::iter(work).buffer_unordered(self.concurrency).collect().await;
        for done in &results {
            stats.add(done);
        }
        stats.elapsed = started.elapsed();
        Ok(stats)
    }

    /// Records when prebuilds became claimable, once each. Only a full
    /// cycle (`complete`) sees every pool, so only it forgets prebuilds no
    /// longer eligible.
    async fn record_eligible(&self, planned: &[PrebuildPlan<'_>], complete: bool) {
        // Workspace → preset, for every prebuild claimable now.
        let eligible: HashMap<Uuid, Uuid> = planned
            .iter()
            .flat_map(|p| {
                p.state
                    .prebuilds
                    .iter()
                    .filter(move |b| reconcile::is_eligible(p.state, b, p.now))
                    .map(|b| (b.workspace_id, p.state.preset_id))
            })
            .collect();
        let fresh: Vec<(Uuid, Uuid)> = {
            let mut recorded = self.eligible_recorded.lock().expect("the eligible set is never poisoned");
            // Claimed or deleted prebuilds will not be eligible again: forget them.
            if complete {
                recorded.retain(|id| eligible.contains_key(id));
            }
            eligible.into_iter().filter(|(id, _)| !recorded.contains(id)).collect()
        };
        if fresh.is_empty() {
            return;
        }
        match self.domain.record_eligible(&fresh).await {
            Ok(()) => self
                .eligible_recorded
                .lock()
                .expect("the eligible set is never poisoned")
                .extend(fresh.iter().map(|(id, _)| *id)),
            Err(err) => tracing::warn!(error = %err, "cannot record eligible prebuilds"),
        }
    }

    /// Runs cycles every interval and whenever triggered, until `stop`.
    ///
    /// Triggers naming presets (or jobs of their prebuilds) are handled by a
    /// pass over those presets alone, at once: the first trigger of a burst
    /// starts a pass, and whatever arrives while it runs or within the
    /// debounce window after it is merged into one follow-up, so a burst of
    /// N claims causes a handful of passes, not N.
    /// Any other trigger, and the timer, ask for a full cycle, which runs in
    /// a task of its own (one at a time) after the debounce window, so
    /// passes over named presets go on while it runs; triggers arriving
    /// while it runs make one follow-up cycle.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let Some(mut triggers) = self.subscribe(&mut stop).await else { return };
            let config = self.domain.config().reconciler.clone();
            let mut next_full = Instant::now();
            let mut full: Option<JoinHandle<domain::Result<Option<CycleStats>>>> = None;
            let mut pending = Pending::default();
            // No pass over named presets before then: the debounce window after
            // the last one, or a short wait when presets' locks were held.
            let mut retry: Option<Instant> = None;
            loop {
                // While a full cycle runs, only a retry wakes the loop early.
                let full_due = if full.is_some() { None } else { Some(next_full) };
                let wake = match (retry, full_due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                tokio::select! {
                    _ = sleep_until(wake) => {}
                    event = triggers.recv() => {
                        let Some(event) = event else { break };
                        if pending.add(event) && full.is_none() {
                            // Full-cycle triggers within the window make one cycle.
                            next_full = next_full.min(Instant::now() + config.debounce);
                        }
                    }
                    done = join(&mut full) => {
                        full = None;
                        next_full = Instant::now() + match done {
                            Ok(Ok(Some(_))) => config.interval,
                            Ok(Ok(None)) => LOCK_RETRY.min(config.interval),
                            Ok(Err(err)) => {
                                tracing::warn!(error = %err, "reconciliation cycle failed");
                                config.interval
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "reconciliation cycle ended badly");
                                config.interval
                            }
                        };
                        // Asked for while it ran: once more, after the window.
                        if pending.full {
                            next_full = Instant::now() + config.debounce;
                        }
                    }
                    _ = stop.changed() => break,
                }
                // This pass will see everything announced so far.
                while let Some(event) = triggers.try_recv() {
                    if pending.add(event) && full.is_none() {
                        next_full = next_full.min(Instant::now() + config.debounce);
                    }
                }
                let now = Instant::now();
                if full.is_none() && now >= next_full {
                    pending.full = false;
                    let reconciler = self.clone();
                    full = Some(tokio::spawn(async move { reconciler.run_cycle().await }));
                }
                if retry.is_some_and(|at| now < at) {
                    continue;
                }
                retry = None;
                if pending.presets.is_empty() && pending.jobs.is_empty() {
                    continue;
                }
                let work = Pending {
                    full: false,
                    presets: std::mem::take(&mut pending.presets),
                    jobs: std::mem::take(&mut pending.jobs),
                };
                // The next pass waits out the debounce window, taking in what
                // arrives meanwhile: the rest of a burst makes one follow-up.
                match self.run_named(&work).await {
                    Ok(busy) if !busy.is_empty() => {
                        pending.presets.extend(busy);
                        retry = Some(Instant::now() + PRESET_RETRY.max(config.debounce));
                    }
                    Ok(_) => retry = Some(Instant::now() + config.debounce),
                    Err(err) => tracing::warn!(error = %err, "reconciliation of named presets failed"),
                }
            }
            // A full cycle under way is let finish: it holds locks others wait for.
            if let Some(task) = full {
                let _ = task.await;
            }
        })
    }

    /// A pass over the presets `work` names (and those of its jobs); returns
    /// those another pass held, to be looked at again after [`PRESET_RETRY`]:
    /// that pass may have read them before they changed.
    async fn run_named(&self, work: &Pending) -> domain::Result<Vec<Uuid>> {
        let mut presets = work.presets.clone();
        if !work.jobs.is_empty() {
            let jobs: Vec<Uuid> = work.jobs.iter().copied().collect();
            presets.extend(self.domain.presets_of_jobs(&jobs).await?);
        }
        if presets.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = presets.into_iter().collect();
        let (_, busy) = self.named_pass(&ids).await?;
        Ok(busy)
    }

    /// The trigger subscription, retried until it works or `stop`.
    async fn subscribe(&self, stop: &mut watch::Receiver<bool>) -> Option<Subscription> {
        loop {
            match self.domain.events().subscribe(RECONCILE_CHANNEL).await {
                Ok(subscription) => return Some(subscription),
                Err(err) => {
                    tracing::warn!(error = %err, "reconciler cannot subscribe to triggers; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(LOCK_RETRY) => {}
                        _ = stop.changed() => return None,
                    }
                }
            }
        }
    }
}

/// What the triggers received since the last pass ask for.
#[derive(Debug, Default)]
struct Pending {
    /// A full cycle.
    full: bool,
    presets: HashSet<Uuid>,
    /// Ended jobs, whose workspaces' presets are to be reconciled.
    jobs: HashSet<Uuid>,
}

impl Pending {
    /// Takes in a trigger; true when it asks for a full cycle.
    fn add(&mut self, event: Event) -> bool {
        match event {
            Event::Message(payload) => match Trigger::parse(&payload) {
                Trigger::Preset(id) => {
                    self.presets.insert(id);
                }
                Trigger::Job(id) => {
                    self.jobs.insert(id);
                }
                Trigger::All(_) => self.full = true,
            },
            // Announcements may have been missed: look at everything.
            Event::Gap => self.full = true,
        }
        self.full
    }
}

/// The plans of the presets of a snapshot needing any attention.
fn plans<'a>(raw: &'a PrebuildsSnapshot, snapshot: &'a Snapshot) -> Vec<PrebuildPlan<'a>> {
    let now = snapshot.now;
    raw.presets
        .iter()
        .zip(&snapshot.presets)
        .filter(|(_, state)| reconcile::needs_attention(state, now))
        .map(|(row, state)| PrebuildPlan {
            row,
            state,
            decision: reconcile::decide(state, now, &snapshot.settings),
            now,
        })
        .collect()
}

fn log_pass(pass: &'static str, stats: &CycleStats) {
    tracing::info!(
        pass,
        presets = stats.presets_total,
        reconciled = stats.presets_reconciled,
        skipped_idle = stats.presets_total - stats.presets_reconciled,
        actions = stats.actions,
        created = stats.created,
        deleted = stats.deleted,
        canceled = stats.canceled,
        snapshot_ms = stats.snapshot.as_millis() as u64,
        elapsed_ms = stats.elapsed.as_millis() as u64,
        "reconciliation cycle"
    );
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The end of the full cycle's task, or never while none runs.
async fn join<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}
