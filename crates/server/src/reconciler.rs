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
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;
use warmspace_prebuilds::reconcile;
use warmspace_store::pubsub::{Event, Subscription};

use crate::domain::{self, CycleStats, Domain, PrebuildPlan, RECONCILE_CHANNEL, Trigger};

/// When another replica held the lock, look again this soon: its cycle may
/// have started before the trigger we woke for.
const LOCK_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Reconciler {
    domain: Domain,
    /// Presets worked on at once: the reconciler's own pool, less the
    /// connection its lock holds.
    concurrency: usize,
    /// Eligible prebuilds whose `eligible` event this replica has recorded;
    /// only those still eligible are kept, so it stays as small as the pools.
    eligible_recorded: Arc<Mutex<HashSet<Uuid>>>,
    /// Cycles this replica has run (held the lock for).
    cycles: Arc<AtomicU64>,
}

impl Reconciler {
    /// A reconciler working through `domain` (whose store should be a pool
    /// of its own, so a busy cycle never starves requests), on at most
    /// `concurrency` presets at once.
    pub fn new(domain: Domain, concurrency: usize) -> Self {
        Reconciler {
            domain,
            concurrency: concurrency.max(1),
            eligible_recorded: Default::default(),
            cycles: Default::default(),
        }
    }

    /// Cycles this replica has run so far.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    /// Reads what a cycle decides from, and nothing else (a benchmark's baseline).
    pub async fn snapshot(&self) -> domain::Result<()> {
        self.domain.prebuilds_snapshot().await.map(drop)
    }

    /// One cycle, if this replica gets the reconciliation lock (`None` when
    /// another replica holds it).
    pub async fn run_cycle(&self) -> domain::Result<Option<CycleStats>> {
        self.locked(None).await
    }

    /// A pass over these presets alone, reading only their rows, if this
    /// replica gets the reconciliation lock (`None` when another holds it).
    pub async fn run_presets(&self, preset_ids: &[Uuid]) -> domain::Result<Option<CycleStats>> {
        self.locked(Some(preset_ids)).await
    }

    async fn locked(&self, only: Option<&[Uuid]>) -> domain::Result<Option<CycleStats>> {
        let Some(lock) = self.domain.try_lock_reconciler().await? else {
            return Ok(None);
        };
        // Should the cycle panic or its task be aborted, the lock's guard
        // closes its connection and PostgreSQL releases the lock.
        let stats = self.cycle(only).await;
        lock.release().await;
        self.cycles.fetch_add(1, Ordering::Relaxed);
        stats.map(Some)
    }

    async fn cycle(&self, only: Option<&[Uuid]>) -> domain::Result<CycleStats> {
        let started = std::time::Instant::now();
        let (raw, snapshot) = match only {
            None => self.domain.prebuilds_snapshot().await?,
            Some(preset_ids) => self.domain.presets_snapshot(preset_ids).await?,
        };
        let snapshot_elapsed = started.elapsed();
        let now = snapshot.now;
        let planned: Vec<PrebuildPlan> = raw
            .presets
            .iter()
            .zip(&snapshot.presets)
            .filter(|(_, state)| reconcile::needs_attention(state, now))
            .map(|(row, state)| PrebuildPlan {
                row,
                state,
                decision: reconcile::decide(state, now, &snapshot.settings),
                now,
            })
            .collect();
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
        let elapsed_ms = stats.elapsed.as_millis() as u64;
        let pass = if only.is_some() { "presets" } else { "full" };
        if stats.actions > 0 {
            tracing::info!(
                pass,
                presets = stats.presets_total,
                reconciled = stats.presets_reconciled,
                actions = stats.actions,
                created = stats.created,
                deleted = stats.deleted,
                canceled = stats.canceled,
                elapsed_ms,
                "reconciliation cycle"
            );
        } else {
            tracing::debug!(pass, presets = stats.presets_total, elapsed_ms, "reconciliation cycle");
        }
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
    /// Triggers are merged: whatever arrives during a cycle, or within the
    /// debounce window after the first trigger, is handled by one pass, so a
    /// burst of N claims causes one or two passes, not N. Triggers naming
    /// presets (or jobs of their prebuilds) are handled by a pass over those
    /// presets alone; any other trigger, and the timer, by a full cycle,
    /// which takes in the named presets too.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let Some(mut triggers) = self.subscribe(&mut stop).await else { return };
            let config = self.domain.config().reconciler.clone();
            let mut next_full = Instant::now();
            let mut pending = Pending::default();
            // When a pass over named presets found the lock held: look again then.
            let mut retry: Option<Instant> = None;
            loop {
                let wake = retry.map_or(next_full, |at| at.min(next_full));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => pending.full |= Instant::now() >= next_full,
                    event = triggers.recv() => {
                        let Some(event) = event else { return };
                        pending.add(event);
                        tokio::time::sleep(config.debounce).await;
                    }
                    _ = stop.changed() => return,
                }
                // This pass will see everything announced so far.
                while let Some(event) = triggers.try_recv() {
                    pending.add(event);
                }
                retry = None;
                let work = std::mem::take(&mut pending);
                if work.full {
                    next_full = Instant::now()
                        + match self.run_cycle().await {
                            Ok(Some(_)) => config.interval,
                            Ok(None) => LOCK_RETRY.min(config.interval),
                            Err(err) => {
                                tracing::warn!(error = %err, "reconciliation cycle failed");
                                config.interval
                            }
                        };
                } else if let Err(err) = self.run_named(&work, &mut pending, &mut retry).await {
                    tracing::warn!(error = %err, "reconciliation of named presets failed");
                }
            }
        })
    }

    /// A pass over the presets `work` names (and those of its jobs). When
    /// another replica holds the lock, they are kept in `pending` and
    /// looked at again after [`LOCK_RETRY`]: its pass may have begun before
    /// they changed.
    async fn run_named(
        &self,
        work: &Pending,
        pending: &mut Pending,
        retry: &mut Option<Instant>,
    ) -> domain::Result<()> {
        let mut presets = work.presets.clone();
        if !work.jobs.is_empty() {
            let jobs: Vec<Uuid> = work.jobs.iter().copied().collect();
            presets.extend(self.domain.presets_of_jobs(&jobs).await?);
        }
        if presets.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = presets.iter().copied().collect();
        if self.run_presets(&ids).await?.is_none() {
            pending.presets.extend(ids);
            *retry = Some(Instant::now() + LOCK_RETRY);
        }
        Ok(())
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
    fn add(&mut self, event: Event) {
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
    }
}
