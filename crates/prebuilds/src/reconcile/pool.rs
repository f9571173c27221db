//! Sorting a preset's prebuilds by what their latest build says about them.

use std::time::Duration;

use chrono::{DateTime, Utc};

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
        let past_ttl = preset.ttl.is_some_and(|ttl| later_by(self.created_at, ttl) <= now);
        let invalidated = preset.last_invalidated_at.is_some_and(|at| self.created_at < at);
        past_ttl || invalidated
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
    /// Running and not expired: the pool proper.
    pub fresh: Vec<&'a Prebuild>,
    /// Running but expired: to be replaced.
    pub expired: Vec<&'a Prebuild>,
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
            expired: Vec::new(),
            failed_recently: Vec::new(),
            failed_long_ago: Vec::new(),
            stopped: Vec::new(),
        };
        for p in all {
            let list = match p.phase() {
                Phase::Running if p.is_expired(preset, now) => &mut pool.expired,
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

    pub fn counts(&self, desired: u32) -> Counts {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Counts {
            desired,
            running: count(self.fresh.len() + self.expired.len()),
            expired: count(self.expired.len()),
            eligible: count(self.fresh.iter().filter(|p| p.agents_ready).count()),
            starting: count(self.starting()),
            stopping: count(self.busy(Transition::Stop)),
            deleting: count(self.busy(Transition::Delete)),
            failed: count(self.failed_recently.len() + self.failed_long_ago.len()),
        }
    }
}
