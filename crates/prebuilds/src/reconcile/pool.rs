//! Sorting a preset's prebuilds by what their latest build says about them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::time::{earlier_by, later_by};
use super::{Counts, JobStatus, Prebuild, PresetState, Transition};

/// What a prebuild's latest build makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A successful start: up, and claimable unless expired or its agents are not ready.
    Running,
    /// A build is queued or under way; nothing may be done to it until it ends.
    Busy(Transition),
    /// The latest build failed or was canceled; kept a while so its logs can be read.
    Failed,
    /// A successful stop: neither claimable nor counted, and nothing but the
    /// reconciler manages unclaimed prebuilds, so it would stay forever.
    Stopped,
    /// A successful delete: gone. The store should not list it; if it does,
    /// there is nothing left to do to it.
    Gone,
}

impl Prebuild {
    pub(super) fn phase(&self) -> Phase {
        let build = &self.latest;
        match (build.status, build.transition) {
            (status, transition) if status.in_progress() => Phase::Busy(transition),
            (JobStatus::Failed | JobStatus::Canceled, _) => Phase::Failed,
            (JobStatus::Succeeded, Transition::Start) => Phase::Running,
            (JobStatus::Succeeded, Transition::Stop) => Phase::Stopped,
            (JobStatus::Succeeded, Transition::Delete) => Phase::Gone,
            (JobStatus::Pending | JobStatus::Running | JobStatus::Canceling, _) => {
                unreachable!("in-progress statuses are matched first")
            }
        }
    }

    /// A creation no daemon has picked up yet: canceling it costs nothing.
    fn is_unpicked_creation(&self) -> bool {
        let build = &self.latest;
        build.build_number == 1 && build.transition == Transition::Start && build.status == JobStatus::Pending
    }

    /// Running past the preset's TTL, or created before its last invalidation.
    pub(super) fn is_expired(&self, preset: &PresetState, now: DateTime<Utc>) -> bool {
        self.expired_at(preset).is_some_and(|at| at <= now)
    }

    /// When it expires (expired): the end of its TTL, or the last
    /// invalidation if it was created before it, whichever comes first.
    pub(super) fn expired_at(&self, preset: &PresetState) -> Option<DateTime<Utc>> {
        let ttl_ends = preset.ttl.map(|ttl| later_by(self.created_at, ttl));
        let invalidated = preset.last_invalidated_at.filter(|at| self.created_at < *at);
        ttl_ends.into_iter().chain(invalidated).min()
    }

    /// Not expired yet, but within one typical build of its TTL's end: its
    /// replacement starts now, so it is eligible by the time this one expires.
    pub(super) fn is_expiring(&self, preset: &PresetState, now: DateTime<Utc>) -> bool {
        let lead = preset.typical_build.unwrap_or_default();
        !self.is_expired(preset, now) && self.expired_at(preset).is_some_and(|at| earlier_by(at, lead) <= now)
    }

    /// Running, but some agent is still not ready the template's
    /// `agent_ready_timeout` after the start build finished.
    pub(super) fn agents_timed_out(&self, preset: &PresetState, now: DateTime<Utc>) -> bool {
        self.phase() == Phase::Running
            && !self.agents_ready
            && later_by(self.started_at(), preset.agent_ready_timeout) <= now
    }

    /// When its agents should have become ready by, less the timeout: when
    /// its start build finished (its creation, if the store lost that).
    fn started_at(&self) -> DateTime<Utc> {
        self.latest.finished_at.unwrap_or(self.created_at)
    }

    /// When its latest build failed. A failed job always has an end time; if
    /// the store lost it, the creation time is the closest earlier bound.
    fn failed_at(&self) -> DateTime<Utc> {
        self.latest.finished_at.unwrap_or(self.created_at)
    }
}

/// A preset's prebuilds at one instant, sorted by phase; every list is oldest
/// first (by creation, then workspace id), which is the order deletions go in.
pub(super) struct Pool<'a> {
    all: Vec<&'a Prebuild>,
    /// Running, not expired nor expiring, agents not timed out: the pool proper.
    pub fresh: Vec<&'a Prebuild>,
    /// Running, still claimable, but expiring within a typical build: being replaced.
    pub expiring: Vec<&'a Prebuild>,
    /// Running but expired: being replaced.
    pub expired: Vec<&'a Prebuild>,
    /// Running, but its agents never became ready in time: a failure, replaced.
    pub not_ready: Vec<&'a Prebuild>,
    /// Failed within the look-back window: kept for their logs.
    pub failed_recently: Vec<&'a Prebuild>,
    /// Failed before the look-back window: to be cleaned up.
    pub failed_long_ago: Vec<&'a Prebuild>,
    pub stopped: Vec<&'a Prebuild>,
}

impl<'a> Pool<'a> {
    pub fn new(preset: &'a PresetState, now: DateTime<Utc>, lookback: Duration) -> Pool<'a> {
        let mut all: Vec<&Prebuild> = preset.prebuilds.iter().collect();
        all.sort_by_key(|p| (p.created_at, p.workspace_id));
        // The same boundary as the backoff window: a failure stops being kept
        // exactly when it stops counting towards backoff.
        let window_start = earlier_by(now, lookback);
        let mut pool = Pool {
            all: all.clone(),
            fresh: Vec::new(),
            expiring: Vec::new(),
            expired: Vec::new(),
            not_ready: Vec::new(),
            failed_recently: Vec::new(),
            failed_long_ago: Vec::new(),
            stopped: Vec::new(),
        };
        for p in all {
            let list = match p.phase() {
                Phase::Running if p.agents_timed_out(preset, now) => &mut pool.not_ready,
                Phase::Running if p.is_expired(preset, now) => &mut pool.expired,
                Phase::Running if p.is_expiring(preset, now) => &mut pool.expiring,
                Phase::Running => &mut pool.fresh,
                Phase::Failed if p.failed_at() > window_start => &mut pool.failed_recently,
                Phase::Failed => &mut pool.failed_long_ago,
                Phase::Stopped => &mut pool.stopped,
                Phase::Busy(_) | Phase::Gone => continue,
            };
            list.push(p);
        }
        pool
    }

    /// Prebuilds with a build under way for `transition`.
    fn busy(&self, transition: Transition) -> usize {
        self.all.iter().filter(|p| p.phase() == Phase::Busy(transition)).count()
    }

    pub fn starting(&self) -> usize {
        self.busy(Transition::Start)
    }

    /// Creations queued but not picked up by any daemon.
    pub fn unpicked_creations(&self) -> impl Iterator<Item = &'a Prebuild> + '_ {
        self.all.iter().copied().filter(|p| p.is_unpicked_creation())
    }

    /// Every prebuild that exists and has no build under way.
    pub fn settled(&self) -> impl Iterator<Item = &'a Prebuild> + '_ {
        self.all.iter().copied().filter(|p| !matches!(p.phase(), Phase::Busy(_) | Phase::Gone))
    }

    /// The creations of prebuilds whose agents timed out, as the failures
    /// they are, failed when the timeout passed.
    pub fn timed_out_creations(&self, preset: &PresetState) -> Vec<(Uuid, DateTime<Utc>)> {
        self.not_ready.iter().map(|p| (p.workspace_id, later_by(p.started_at(), preset.agent_ready_timeout))).collect()
    }

    pub fn counts(&self, desired: u32) -> Counts {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let claimable = self.fresh.iter().chain(&self.expiring);
        Counts {
            desired,
            running: count(self.fresh.len() + self.expiring.len() + self.expired.len() + self.not_ready.len()),
            expired: count(self.expired.len()),
            agents_not_ready: count(self.not_ready.len()),
            eligible: count(claimable.filter(|p| p.agents_ready).count()),
            starting: count(self.starting()),
            stopping: count(self.busy(Transition::Stop)),
            deleting: count(self.busy(Transition::Delete)),
            failed: count(self.failed_recently.len() + self.failed_long_ago.len()),
        }
    }
}
