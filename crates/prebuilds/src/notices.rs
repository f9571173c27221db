//! When template admins hear of a pool's trouble. A preset whose creations
//! keep failing would otherwise fill their inbox with one notice per failed
//! prebuild: failures are told in one digest per preset at most once per
//! [`FAILURE_NOTICE_EVERY`], and reaching the hard limit is told once per
//! run of failures.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::reconcile::Creation;

/// The least time between two failure digests of one preset.
pub const FAILURE_NOTICE_EVERY: Duration = Duration::from_secs(3600);

/// How far back failures never told of are still told (a server that was
/// down for a week does not report the whole week).
pub const FAILURE_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// Failures of one preset's creations since its last digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// When the preset's last digest was sent, if ever.
    pub last_notice_at: Option<DateTime<Utc>>,
    /// How many creations failed since then (within [`FAILURE_LOOKBACK`]).
    pub count: u32,
    /// When the newest of them failed.
    pub newest_at: DateTime<Utc>,
}

/// From when failures are counted for a digest sent at `now`: since the last
/// digest, but no further back than [`FAILURE_LOOKBACK`].
pub fn failures_since(last_notice_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let lookback = now - chrono::Duration::from_std(FAILURE_LOOKBACK).unwrap_or(chrono::Duration::MAX);
    last_notice_at.map_or(lookback, |at| at.max(lookback))
}

/// Whether a digest of `failures` is due at `now`: there are failures the
/// last digest did not tell of, and it was sent at least
/// [`FAILURE_NOTICE_EVERY`] ago.
pub fn failure_notice_due(failures: &Failures, now: DateTime<Utc>) -> bool {
    let every = chrono::Duration::from_std(FAILURE_NOTICE_EVERY).unwrap_or(chrono::Duration::MAX);
    failures.count > 0 && failures.last_notice_at.is_none_or(|at| failures.newest_at > at && now - at >= every)
}

/// When the preset's current run of `limit` failed creations began: the
/// end of the oldest of its newest `limit` creations. `None` unless all of
/// them failed (the preset is not hard-limited by its history).
pub fn hard_limit_since(creations: &[Creation], limit: u32) -> Option<DateTime<Utc>> {
    let limit = usize::try_from(limit).ok().filter(|&limit| limit > 0)?;
    let mut newest_first: Vec<&Creation> = creations.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.finished_at));
    let run = newest_first.get(..limit)?;
    run.iter().all(|c| !c.succeeded).then(|| run[limit - 1].finished_at)
}

/// Whether reaching the hard limit is still to be told: the preset is
/// hard-limited, and no notice was sent since its run of failures began
/// (a notice of an earlier run, before a success, does not count).
pub fn hard_limit_notice_due(creations: &[Creation], limit: u32, notified_at: Option<DateTime<Utc>>) -> bool {
    hard_limit_since(creations, limit).is_some_and(|since| notified_at.is_none_or(|at| at < since))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn creation(minute: i64, succeeded: bool) -> Creation {
        Creation { workspace_id: Uuid::from_u128(minute as u128), finished_at: at(minute), succeeded }
    }

    #[test]
    fn the_first_failure_is_told_at_once_and_the_next_an_hour_after_the_last_digest() {
        let first = Failures { last_notice_at: None, count: 1, newest_at: at(0) };
        assert!(failure_notice_due(&first, at(1)));
        let more = Failures { last_notice_at: Some(at(1)), count: 4, newest_at: at(30) };
        assert!(!failure_notice_due(&more, at(60)), "59 minutes after the last digest");
        assert!(failure_notice_due(&more, at(61)));
        let none_new = Failures { last_notice_at: Some(at(1)), count: 0, newest_at: at(0) };
        assert!(!failure_notice_due(&none_new, at(600)));
    }

    #[test]
    fn failures_are_counted_since_the_last_digest_or_a_day_back() {
        assert_eq!(failures_since(Some(at(10)), at(70)), at(10));
        assert_eq!(failures_since(None, at(70)), at(70 - 24 * 60));
        assert_eq!(failures_since(Some(at(-3000)), at(0)), at(-24 * 60));
    }

    #[test]
    fn a_hard_limit_is_told_once_per_run_of_failures() {
        let creations = [creation(30, false), creation(20, false), creation(10, false), creation(5, true)];
        assert!(hard_limit_notice_due(&creations, 3, None));
        assert!(!hard_limit_notice_due(&creations, 3, Some(at(31))), "told already");
        assert!(hard_limit_notice_due(&creations, 3, Some(at(9))), "told of an earlier run, before the success");
        assert!(!hard_limit_notice_due(&creations, 4, None), "a success among the newest four");
        assert!(!hard_limit_notice_due(&creations, 0, None), "no limit");
        assert!(!hard_limit_notice_due(&creations, 5, None), "fewer creations than the limit");
    }

    proptest! {
        /// Over any sequence of failures and cycles, digests are at least an
        /// hour apart, and every failure is told by a digest within an hour
        /// (plus one cycle) of happening.
        #[test]
        fn digests_are_an_hour_apart_and_miss_no_failure(
            failure_minutes in proptest::collection::btree_set(0i64..600, 1..40),
            cycle_every in 1i64..20,
        ) {
            let failures: Vec<i64> = failure_minutes.into_iter().collect();
            let mut last: Option<DateTime<Utc>> = None;
            let mut sent: Vec<i64> = Vec::new();
            let mut told = 0usize;
            let mut minute = 0;
            while minute <= 700 {
                let now = at(minute);
                let since = failures_since(last, now);
                let new: Vec<i64> = failures.iter().copied().filter(|&f| at(f) > since && at(f) <= now).collect();
                if let Some(&newest) = new.last() {
                    let digest = Failures { last_notice_at: last, count: new.len() as u32, newest_at: at(newest) };
                    if failure_notice_due(&digest, now) {
                        told += new.len();
                        sent.push(minute);
                        last = Some(now);
                    }
                }
                minute += cycle_every;
            }
            prop_assert!(sent.windows(2).all(|w| w[1] - w[0] >= 60), "digests at {sent:?}");
            prop_assert_eq!(told, failures.len(), "digests at {:?} for failures at {:?}", sent, failures);
        }
    }
}
