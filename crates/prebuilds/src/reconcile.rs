//! Reconciliation: from one consistent snapshot of every prebuild-configured
//! preset and its prebuilds, at an instant `now`, what to do. Pure: the
//! store builds the snapshot, the server carries out the actions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::schedule::Schedule;
pub use warmspace_states::{JobStatus, PresetStatus, Transition};

mod pool;
mod status;
#[cfg(test)]
mod tests;
mod time;

use pool::Pool;
use time::later_by;

/// Site-wide knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// While paused, nothing is created, deleted or canceled.
    pub paused: bool,
    /// Each recent failure pushes the next creation this much further.
    pub backoff_interval: Duration,
    /// Failures older than this no longer cause backoff (and failed prebuilds
    /// older than this are cleaned up).
    pub backoff_lookback: Duration,
    /// After this many consecutive failed creations, a preset stops creating
    /// until a new template version; 0 disables the limit.
    pub failure_hard_limit: u32,
    /// An expired prebuild is kept, while its replacement is not yet
    /// eligible, for at most this long past its expiry (make before break);
    /// then it goes even if the replacement never comes.
    pub replacement_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub now: DateTime<Utc>,
    pub settings: Settings,
    pub presets: Vec<PresetState>,
}

#[derive(Debug, Clone)]
pub struct PresetState {
    pub preset_id: Uuid,
    pub template_id: Uuid,
    pub template_version_id: Uuid,
    /// The preset's version is its template's active version.
    pub version_active: bool,
    pub template_deleted: bool,
    /// The pool size when no schedule matches (`prebuilds.instances`).
    pub instances: u32,
    /// Unclaimed prebuilds older than this are replaced.
    pub ttl: Option<Duration>,
    /// A running prebuild whose agents are not all ready this long after its
    /// start build finished is a failed creation (its template's setting).
    pub agent_ready_timeout: Duration,
    /// How long a creation typically takes to become eligible (the median of
    /// the preset's recent ones), if known: an expiring prebuild's
    /// replacement starts this long before it expires.
    pub typical_build: Option<Duration>,
    pub timezone: Option<Tz>,
    /// Never two covering the same minute (the import refused that).
    pub schedules: Vec<(Schedule, u32)>,
    /// Prebuilds created before this are expired.
    pub last_invalidated_at: Option<DateTime<Utc>>,
    /// A creation failed parameter validation: never retried.
    pub validation_failed: bool,
    /// The preset's finished prebuild creations (save those their daemon
    /// interrupted, which say nothing of the template), newest first: the newest
    /// `failure_hard_limit` of them, plus every failure within the look-back.
    pub creations: Vec<Creation>,
    /// The preset's prebuilds: unclaimed, not deleted.
    pub prebuilds: Vec<Prebuild>,
}

impl PresetState {
    /// The preset belongs to its template's active version and the template
    /// is not deleted: only such a preset keeps a pool; any other one is
    /// being wound down.
    pub fn keeps_pool(&self) -> bool {
        self.version_active && !self.template_deleted
    }

    /// Whether a finished creation counts for backoff and the hard limit.
    /// Invalidating a preset starts its history afresh: an operator who
    /// mended what made creations fail (outside the template) invalidates
    /// to have the pool retried at once.
    pub fn counts_creation(&self, creation: &Creation) -> bool {
        self.last_invalidated_at.is_none_or(|at| creation.finished_at > at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creation {
    /// The prebuild it created (claimed since, or deleted, perhaps).
    pub workspace_id: Uuid,
    pub finished_at: DateTime<Utc>,
    pub succeeded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prebuild {
    pub workspace_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub latest: LatestBuild,
    /// Every agent of the workspace reports `ready` (true when it has none).
    pub agents_ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestBuild {
    pub transition: Transition,
    pub status: JobStatus,
    /// The build's job; for canceling creations nobody picked up yet.
    pub job_id: Uuid,
    pub build_number: i32,
    /// When the job finished, if it has.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a preset's pool looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub desired: u32,
    /// Latest build a successful start.
    pub running: u32,
    /// Running, but past the TTL or created before the last invalidation.
    pub expired: u32,
    /// Running, but its agents were not ready within the template's
    /// `agent_ready_timeout`: a failed creation, being replaced.
    pub agents_not_ready: u32,
    /// Running, not expired, agents ready: claimable.
    pub eligible: u32,
    /// In progress, by transition.
    pub starting: u32,
    pub stopping: u32,
    pub deleting: u32,
    /// Latest build failed or was canceled (kept a while for its logs).
    pub failed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Normal,
    /// Failed creations within the look-back: no creation before `until`.
    Backoff {
        until: DateTime<Utc>,
    },
    /// The last `failure_hard_limit` creations all failed.
    HardLimited,
    /// A creation failed parameter validation.
    ValidationFailed,
}

impl Status {
    /// The status without its details, as stored and shown.
    pub fn kind(self) -> PresetStatus {
        match self {
            Status::Normal => PresetStatus::Normal,
            Status::Backoff { .. } => PresetStatus::Backoff,
            Status::HardLimited => PresetStatus::HardLimited,
            Status::ValidationFailed => PresetStatus::ValidationFailed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Cancel creation jobs no daemon has picked up (their preset's version is no longer active).
    CancelPending(Vec<Uuid>),
    /// Delete these prebuilds (workspace ids), in this order.
    Delete(Vec<Uuid>),
    /// Create this many prebuilds.
    Create(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub preset_id: Uuid,
    pub counts: Counts,
    pub status: Status,
    /// In the order they should be carried out.
    pub actions: Vec<Action>,
}

/// The preset's desired pool size at `now`: 0 unless its version is active
/// and its template alive; else the instances of the schedule covering now
/// (in the preset's zone), else its base instances.
pub fn desired(preset: &PresetState, now: DateTime<Utc>) -> u32 {
    if !preset.keeps_pool() {
        return 0;
    }
    // Schedules are wall-clock ranges: without a zone there is no wall clock
    // to read them against, so only the base count applies.
    let scheduled = preset.timezone.and_then(|zone| {
        // The import refuses overlapping schedules, so at most one matches.
        preset.schedules.iter().find(|(schedule, _)| schedule.matches(now, zone)).map(|&(_, instances)| instances)
    });
    scheduled.unwrap_or(preset.instances)
}

/// Whether a preset can be skipped before any per-preset work: nothing to
/// create, nothing running, nothing in progress, nothing expired or failed.
///
/// Every action `decide` can take concerns an existing prebuild or a
/// shortfall against the desired count, so a preset with no prebuilds and
/// nothing desired has nothing to do (an inactive preset desires nothing).
pub fn needs_attention(preset: &PresetState, now: DateTime<Utc>) -> bool {
    !preset.prebuilds.is_empty() || desired(preset, now) > 0
}

/// Running past the preset's TTL, or created before its last invalidation.
pub fn is_expired(preset: &PresetState, prebuild: &Prebuild, now: DateTime<Utc>) -> bool {
    prebuild.is_expired(preset, now)
}

/// Expired, or expiring within one typical build: its replacement is due.
pub fn is_due_for_replacement(preset: &PresetState, prebuild: &Prebuild, now: DateTime<Utc>) -> bool {
    prebuild.is_expired(preset, now) || prebuild.is_expiring(preset, now)
}

/// Running, but its agents were not all ready in time: a failure.
pub fn agents_timed_out(preset: &PresetState, prebuild: &Prebuild, now: DateTime<Utc>) -> bool {
    prebuild.agents_timed_out(preset, now)
}

/// Claimable: running, not expired, every agent ready.
pub fn is_eligible(preset: &PresetState, prebuild: &Prebuild, now: DateTime<Utc>) -> bool {
    prebuild.phase() == pool::Phase::Running && !prebuild.is_expired(preset, now) && prebuild.agents_ready
}

/// The decision for one preset.
///
/// Counts and status are always computed (they feed gauges and the API, and
/// must read the same whether or not reconciliation is paused); actions only
/// when not paused.
pub fn decide(preset: &PresetState, now: DateTime<Utc>, settings: &Settings) -> Decision {
    let desired = desired(preset, now);
    let pool = Pool::new(preset, now, settings.backoff_lookback);
    let status = status::status(preset, &pool.timed_out_creations(preset), now, settings);
    let actions = if settings.paused {
        Vec::new()
    } else if preset.keeps_pool() {
        maintain(&pool, preset, desired, status, now, settings.replacement_grace)
    } else {
        wind_down(&pool)
    };
    Decision { preset_id: preset.preset_id, counts: pool.counts(desired), status, actions }
}

/// A preset that no longer keeps a pool: stop the creations nobody has
/// started, and delete everything that is not busy. Prebuilds with a build
/// under way (including the creations just canceled) are left to a later
/// cycle, once their build has ended.
fn wind_down(pool: &Pool) -> Vec<Action> {
    let cancel = pool.unpicked_creations().map(|p| p.latest.job_id).collect();
    let delete = pool.settled().map(|p| p.workspace_id).collect();
    non_empty(vec![Action::CancelPending(cancel), Action::Delete(delete)])
}

/// A preset that keeps a pool: replace what expired (make before break),
/// shrink to the desired count at once, clean up failures, and fill the
/// shortfall unless the status forbids creating.
fn maintain(
    pool: &Pool,
    preset: &PresetState,
    desired: u32,
    status: Status,
    now: DateTime<Utc>,
    grace: Duration,
) -> Vec<Action> {
    let desired = desired as usize;
    // Prebuilds being started will be running soon: counting them keeps the
    // next cycle from creating the same shortfall again. Expired and
    // expiring ones do not count: their replacements are what is created.
    let supply = pool.fresh.len() + pool.starting();
    // The surplus can only come out of running prebuilds: deleting a busy one
    // would race its build. `fresh` is oldest first.
    let surplus = supply.saturating_sub(desired);
    let shortfall = desired.saturating_sub(supply);
    let create = if status == Status::Normal { shortfall } else { 0 };
    // Make before break: an old prebuild (expired, or expiring within a
    // typical build) stays while the pool needs it to stand in for a
    // replacement not yet eligible, unless it has been expired longer than
    // the grace. Expiring ones (still claimable) are kept before expired
    // ones, and the newest before older ones.
    let ready_kept = pool.fresh.iter().skip(surplus).filter(|p| p.agents_ready).count();
    let mut stand_ins = desired.saturating_sub(ready_kept);
    let mut old_leaving = Vec::new();
    for old in pool.expiring.iter().rev().chain(pool.expired.iter().rev()) {
        let past_grace = old.expired_at(preset).is_some_and(|at| later_by(at, grace) <= now);
        if stand_ins > 0 && !past_grace {
            stand_ins -= 1;
        } else {
            old_leaving.push(*old);
        }
    }
    old_leaving.reverse();
    let delete = old_leaving
        .into_iter()
        .chain(pool.fresh.iter().take(surplus).copied())
        .chain(pool.not_ready.iter().copied())
        .chain(pool.failed_long_ago.iter().copied())
        .chain(pool.stopped.iter().copied());
    let create = u32::try_from(create).unwrap_or(u32::MAX);
    non_empty(vec![Action::Delete(delete.map(|p| p.workspace_id).collect()), Action::Create(create)])
}

/// Drops the actions that would do nothing.
fn non_empty(actions: Vec<Action>) -> Vec<Action> {
    actions.into_iter().filter(|action| !action.is_noop()).collect()
}

impl Action {
    /// Carrying it out would change nothing.
    pub fn is_noop(&self) -> bool {
        match self {
            Action::CancelPending(ids) | Action::Delete(ids) => ids.is_empty(),
            Action::Create(n) => *n == 0,
        }
    }
}
