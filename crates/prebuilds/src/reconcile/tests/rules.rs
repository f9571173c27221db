//! Each rule of DESIGN §5.1, and the §5.6 cases, on hand-built snapshots.

use chrono::TimeDelta;
use chrono_tz::America::New_York;

use super::kit::*;
use crate::reconcile::{Action, Counts, Creation, JobStatus, Status, Transition, decide, desired, needs_attention};

// --- desired ---------------------------------------------------------------

#[test]
fn desired_is_the_base_count_without_a_matching_schedule() {
    assert_eq!(desired(&preset().instances(4), now()), 4);
    // Weekends only; `now` is a Monday.
    let p = preset().instances(4).zone(New_York).schedule("* * * * 0,6", 9);
    assert_eq!(desired(&p, now()), 4);
}

#[test]
fn desired_follows_the_schedule_covering_now_in_the_preset_zone() {
    // `now` is 11:00 in New York, 15:00 UTC.
    let p = preset().instances(1).zone(New_York).schedule("* 9-12 * * 1-5", 5).schedule("* 13-17 * * 1-5", 2);
    assert_eq!(desired(&p, now()), 5);
    assert_eq!(desired(&p, now() + TimeDelta::hours(2)), 2);
    assert_eq!(desired(&p, now() + TimeDelta::hours(7)), 1);
    // The same schedules read in UTC: 15:00 is in the second one.
    let utc = preset().instances(1).zone(chrono_tz::UTC).schedule("* 9-12 * * 1-5", 5).schedule("* 13-17 * * 1-5", 2);
    assert_eq!(desired(&utc, now()), 2);
}

#[test]
fn schedules_are_not_evaluated_without_a_time_zone() {
    let p = preset().instances(1).schedule("* * * * *", 5);
    assert_eq!(desired(&p, now()), 1);
}

#[test]
fn a_preset_that_no_longer_keeps_a_pool_desires_nothing() {
    let p = preset().instances(3).zone(New_York).schedule("* * * * *", 5);
    assert_eq!(desired(&p, now()), 5);
    assert_eq!(desired(&p.clone().inactive(), now()), 0);
    assert_eq!(desired(&p.deleted_template(), now()), 0);
}

// --- filling and shrinking the pool ---------------------------------------

#[test]
fn an_empty_pool_is_filled_in_one_decision() {
    let d = preset().instances(3).decide();
    assert_eq!(d.actions, vec![Action::Create(3)]);
    assert_eq!(d.status, Status::Normal);
    assert_eq!(d.counts, Counts { desired: 3, ..Counts::default() });
}

#[test]
fn starting_prebuilds_count_towards_the_pool() {
    let d = preset().instances(3).with([running(1, 30), pending_creation(2, 1)]).decide();
    assert_eq!(d.actions, vec![Action::Create(1)]);
    let d = preset().instances(3).with([running(1, 30), pending_creation(2, 1), pending_creation(3, 1)]).decide();
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.counts.starting, 2);
}

#[test]
fn a_full_pool_is_left_alone() {
    let d = preset().instances(2).with([running(1, 30), running(2, 20)]).decide();
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.counts, Counts { desired: 2, running: 2, eligible: 2, ..Counts::default() });
}

/// §5.6: a customer cut 20 → 1 and kept 19.
#[test]
fn lowering_instances_from_20_to_1_deletes_19_at_once_oldest_first() {
    // Workspace n was created 100 - n minutes ago: 1 is the oldest, 20 the newest.
    let p = preset().instances(1).with((1..=20).map(|n| running(n, 100 - n as i64)));
    let d = p.decide();
    assert_eq!(d.actions, vec![Action::Delete(ids(&(1..=19).collect::<Vec<_>>()))]);
}

#[test]
fn surplus_ties_on_creation_time_are_broken_by_workspace_id() {
    let d = preset().instances(1).with([running(3, 10), running(2, 10), running(1, 10)]).decide();
    assert_eq!(d.deleted(), ids(&[1, 2]));
}

#[test]
fn surplus_is_taken_from_running_prebuilds_never_from_busy_ones() {
    // Desired 1: one running, one starting. The running one goes; the starting one stays.
    let d = preset().instances(1).with([running(1, 30), pending_creation(2, 1)]).decide();
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1]))]);
    // Desired 0 and only busy prebuilds: nothing to do until their builds end.
    let busy = [
        pending_creation(1, 1),
        later(2, 50, Transition::Start, JobStatus::Running),
        later(3, 50, Transition::Stop, JobStatus::Pending),
        later(4, 50, Transition::Delete, JobStatus::Running),
        later(5, 50, Transition::Start, JobStatus::Canceling),
    ];
    let d = preset().instances(0).with(busy).decide();
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.counts, Counts { starting: 3, stopping: 1, deleting: 1, ..Counts::default() });
}

// --- expiry -------------------------------------------------------------------

/// §5.1: a claimable prebuild never counts when expired; and replacement is
/// make before break: its successor is created first, and the expired one
/// stays while the successor is not eligible.
#[test]
fn an_expired_prebuild_is_replaced_make_before_break() {
    let p = preset().instances(2).ttl(minutes(60)).with([running(1, 61), running(2, 30)]);
    let d = p.decide();
    assert_eq!(d.actions, vec![Action::Create(1)]);
    assert_eq!(d.counts, Counts { desired: 2, running: 2, expired: 1, eligible: 1, ..Counts::default() });
    // The successor is being built: the expired one still stands in.
    let building = p.clone().with([pending_creation(3, 0)]);
    assert_eq!(building.decide().actions, vec![]);
    // The successor is eligible: now the expired one goes.
    let built = p.clone().with([running(3, 0)]);
    assert_eq!(built.decide().actions, vec![Action::Delete(ids(&[1]))]);
    // The successor never became eligible: past the grace (10 min past expiry), it goes anyway.
    let stuck = preset().instances(2).ttl(minutes(60)).with([running(1, 71), running(2, 30), pending_creation(3, 10)]);
    assert_eq!(stuck.decide().actions, vec![Action::Delete(ids(&[1]))]);
    let within = preset().instances(2).ttl(minutes(60)).with([running(1, 69), running(2, 30), pending_creation(3, 9)]);
    assert_eq!(within.decide().actions, vec![]);
}

/// An expiring prebuild's replacement starts one typical build before its
/// TTL ends; until then it is claimable as ever.
#[test]
fn an_expiring_prebuild_is_replaced_one_typical_build_ahead() {
    let p =
        |age| preset().instances(2).ttl(minutes(60)).typical_build(minutes(5)).with([running(1, age), running(2, 30)]);
    assert_eq!(p(54).decide().actions, vec![]);
    let d = p(55).decide();
    assert_eq!(d.actions, vec![Action::Create(1)]);
    assert_eq!(d.counts, Counts { desired: 2, running: 2, eligible: 2, ..Counts::default() });
    // Its successor is eligible before it expires: it goes, the pool never dipped.
    let replaced = p(57).with([running(3, 0)]).decide();
    assert_eq!(replaced.actions, vec![Action::Delete(ids(&[1]))]);
    assert_eq!(replaced.counts.eligible, 3);
}

#[test]
fn the_ttl_is_reached_at_exactly_created_at_plus_ttl() {
    let at = |age| preset().instances(1).ttl(minutes(60)).with([running(1, age)]).decide();
    assert_eq!(at(59).counts.expired, 0);
    assert_eq!(at(60).counts.expired, 1);
    assert_eq!(at(60).actions, vec![Action::Create(1)]);
}

/// A prebuild whose agents are not ready within the template's timeout
/// (10 min here) is a failed creation: replaced, and backed off from.
#[test]
fn a_prebuild_whose_agents_never_become_ready_is_a_failure_and_replaced() {
    let waiting = preset().instances(1).with([running(1, 9).agents_not_ready()]);
    let d = waiting.decide();
    assert_eq!(d.actions, vec![]);
    assert_eq!((d.counts.running, d.counts.eligible, d.counts.agents_not_ready), (1, 0, 0));

    let mut timed_out = preset().instances(1).with([running(1, 10).agents_not_ready()]);
    timed_out.creations = vec![Creation { workspace_id: ws(1), finished_at: ago(10), succeeded: true }];
    let d = timed_out.decide();
    assert_eq!(d.counts.agents_not_ready, 1);
    assert_eq!(d.status, Status::Backoff { until: ago(-5) });
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1]))], "replaced once the backoff has passed");
}

#[test]
fn invalidation_expires_what_was_created_before_it() {
    let p = preset().instances(3).invalidated(ago(10)).with([running(1, 30), running(2, 10), running(3, 5)]);
    let d = p.decide();
    // Created at the very instant of the invalidation: not before it, so kept.
    assert_eq!(d.counts.expired, 1);
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1])), Action::Create(1)]);
}

#[test]
fn an_expired_prebuild_with_a_build_under_way_is_not_touched() {
    // Only running prebuilds can expire; one being stopped is busy, not expired.
    let stopping = later(1, 500, Transition::Stop, JobStatus::Running);
    let d = preset().instances(1).ttl(minutes(60)).with([stopping]).decide();
    assert_eq!(d.actions, vec![Action::Create(1)]);
}

#[test]
fn expired_prebuilds_are_deleted_even_when_creation_is_blocked() {
    let p = preset().instances(1).ttl(minutes(60)).validation_failed().with([running(1, 90)]);
    let d = p.decide();
    assert_eq!(d.status, Status::ValidationFailed);
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1]))]);
}

#[test]
fn agents_not_ready_are_running_but_not_eligible() {
    let d = preset().instances(2).with([running(1, 5).agents_not_ready(), running(2, 5)]).decide();
    assert_eq!(d.counts, Counts { desired: 2, running: 2, eligible: 1, ..Counts::default() });
    assert_eq!(d.actions, vec![]);
}

// --- failed prebuilds ---------------------------------------------------------

#[test]
fn a_failed_prebuild_is_kept_for_the_look_back_then_cleaned_up() {
    let p =
        |failed_ago| preset().instances(1).creation(failed_ago, false).with([failed(1, failed_ago + 1, failed_ago)]);
    // Failed 59 minutes ago: kept, not counted as running, backoff over (59 - 5 min ago) so replaced.
    let d = p(59).decide();
    assert_eq!(d.counts, Counts { desired: 1, failed: 1, ..Counts::default() });
    assert_eq!(d.actions, vec![Action::Create(1)]);
    // At the look-back boundary it no longer counts for backoff, and stops being kept.
    let d = p(60).decide();
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1])), Action::Create(1)]);
}

#[test]
fn failed_and_canceled_builds_of_any_transition_are_failures() {
    let p = preset().with([
        later(1, 300, Transition::Delete, JobStatus::Failed).finished(120),
        later(2, 300, Transition::Stop, JobStatus::Canceled).finished(10),
        prebuild(3, 300, Transition::Start, JobStatus::Canceled).finished(90),
    ]);
    let d = p.decide();
    assert_eq!(d.counts.failed, 3);
    assert_eq!(d.deleted(), ids(&[1, 3]));
}

#[test]
fn a_stopped_prebuild_is_deleted_and_a_deleted_one_ignored() {
    let d = preset()
        .instances(1)
        .with([
            later(1, 30, Transition::Stop, JobStatus::Succeeded),
            later(2, 30, Transition::Delete, JobStatus::Succeeded),
        ])
        .decide();
    assert_eq!(d.actions, vec![Action::Delete(ids(&[1])), Action::Create(1)]);
    assert_eq!(d.counts, Counts { desired: 1, ..Counts::default() });
}

#[test]
fn all_deletions_go_in_one_action_expired_then_surplus_then_old_failures_then_stopped() {
    let p = preset().instances(1).ttl(minutes(120)).with([
        failed(1, 500, 300),
        later(2, 400, Transition::Stop, JobStatus::Succeeded),
        running(3, 200),
        running(4, 60),
        running(5, 50),
        running(6, 40),
        failed(7, 20, 20),
    ]);
    let d = p.decide();
    assert_eq!(d.actions, vec![Action::Delete(ids(&[3, 4, 5, 1, 2]))]);
}

// --- status: validation, hard limit, backoff -----------------------------------

#[test]
fn validation_failure_never_creates() {
    let d = preset().instances(2).validation_failed().decide();
    assert_eq!(d.status, Status::ValidationFailed);
    assert_eq!(d.actions, vec![]);
    // Reported even with nothing to create, and over any other status.
    let d = preset().validation_failed().creation(1, false).creation(2, false).creation(3, false).decide();
    assert_eq!(d.status, Status::ValidationFailed);
}

#[test]
fn the_last_n_creations_failing_hard_limits_the_preset() {
    // Old failures, outside the look-back: no backoff, only the hard limit.
    let limited = preset().instances(2).creation(100, false).creation(200, false).creation(300, false);
    let d = limited.decide();
    assert_eq!(d.status, Status::HardLimited);
    assert_eq!(d.actions, vec![]);
    // Reported with nothing to create too.
    assert_eq!(limited.clone().instances(0).decide().status, Status::HardLimited);
    // Existing prebuilds are still managed.
    assert_eq!(
        limited.clone().ttl(minutes(60)).with([running(1, 90)]).decide().actions,
        vec![Action::Delete(ids(&[1]))]
    );
}

#[test]
fn a_success_among_the_last_n_creations_or_too_few_of_them_is_not_a_hard_limit() {
    let recent_success = preset().instances(1).creation(100, true).creation(200, false).creation(300, false);
    assert_eq!(recent_success.decide().status, Status::Normal);
    let older_success =
        preset().instances(1).creation(100, false).creation(200, false).creation(300, false).creation(400, true);
    assert_eq!(older_success.decide().status, Status::HardLimited);
    let too_few = preset().instances(1).creation(100, false).creation(200, false);
    assert_eq!(too_few.decide().status, Status::Normal);
    assert_eq!(too_few.decide().actions, vec![Action::Create(1)]);
}

#[test]
fn invalidation_forgets_the_failures_before_it_hard_limit_and_backoff_alike() {
    let limited = preset().instances(1).creation(100, false).creation(200, false).creation(300, false);
    assert_eq!(limited.clone().invalidated(ago(50)).decide().actions, vec![Action::Create(1)]);
    assert_eq!(limited.clone().invalidated(ago(50)).decide().status, Status::Normal);
    // Failures after the invalidation count again: two of the four, so no hard limit, but a backoff.
    let after = preset().instances(1).creation(2, false).creation(100, false).creation(200, false);
    let after = after.creation(300, false).invalidated(ago(150));
    assert_eq!(after.decide().status, Status::Backoff { until: ago(2 - 5) });
    let backing_off = preset().instances(1).creation(2, false);
    assert_eq!(backing_off.clone().invalidated(ago(1)).decide().status, Status::Normal);
}

#[test]
fn a_hard_limit_of_zero_is_no_limit() {
    let p = preset().instances(1).creation(100, false).creation(200, false).creation(300, false);
    let d = decide(&p, now(), &crate::reconcile::Settings { failure_hard_limit: 0, ..settings() });
    assert_eq!(d.status, Status::Normal);
    assert_eq!(d.actions, vec![Action::Create(1)]);
}

#[test]
fn the_hard_limit_reads_the_history_newest_first_even_if_sent_out_of_order() {
    // Read in the order given, the first three all failed; by time, the newest succeeded.
    let p = preset().instances(1).creation(300, false).creation(200, false).creation(400, false).creation(100, true);
    assert_eq!(p.decide().status, Status::Normal);
}

#[test]
fn each_failure_in_the_look_back_adds_one_interval_after_the_newest() {
    // Two failures, newest 2 minutes ago: blocked until 2 × 5 min after it.
    let p = preset().instances(1).creation(2, false).creation(30, false).creation(90, true);
    let d = p.decide();
    assert_eq!(d.status, Status::Backoff { until: ago(2 - 10) });
    assert_eq!(d.actions, vec![]);
    // One instant before the end: still backing off; at the end: creating.
    let just_before = decide(&p, ago(-8) - TimeDelta::seconds(1), &settings());
    assert_eq!(just_before.status, Status::Backoff { until: ago(-8) });
    let at_the_end = decide(&p, ago(-8), &settings());
    assert_eq!(at_the_end.status, Status::Normal);
    assert_eq!(at_the_end.actions, vec![Action::Create(1)]);
}

#[test]
fn successes_and_failures_outside_the_look_back_do_not_back_off() {
    let p = preset().instances(1).creation(1, true).creation(61, false).creation(120, false);
    assert_eq!(p.decide().status, Status::Normal);
    // A failure exactly one look-back ago is outside it.
    assert_eq!(preset().instances(1).creation(60, false).decide().status, Status::Normal);
    assert_eq!(preset().instances(1).creation(59, false).decide().status, Status::Normal, "59 + 5 min ago");
    assert_eq!(preset().instances(1).creation(4, false).decide().status, Status::Backoff { until: ago(-1) });
}

/// §5.6: backoff and hard limit use the schedule-aware desired count.
#[test]
fn a_preset_with_base_0_and_a_schedule_of_3_backs_off() {
    let p = preset().instances(0).zone(New_York).schedule("* 9-17 * * 1-5", 3).creation(1, false);
    let d = p.decide();
    assert_eq!(d.counts.desired, 3);
    assert_eq!(d.status, Status::Backoff { until: ago(1 - 5) });
    assert_eq!(d.actions, vec![]);
    let hard =
        preset().instances(0).zone(New_York).schedule("* 9-17 * * 1-5", 3).creation(100, false).creation(110, false);
    let d = hard.creation(120, false).decide();
    assert_eq!(d.status, Status::HardLimited);
    assert_eq!(d.actions, vec![]);
    // Once backoff is over, the scheduled count is created.
    let d = decide(&p, now() + TimeDelta::minutes(10), &settings());
    assert_eq!(d.actions, vec![Action::Create(3)]);
}

// --- pause ------------------------------------------------------------------------

#[test]
fn while_paused_nothing_is_done_but_counts_and_status_are_reported() {
    let p = preset().instances(3).ttl(minutes(60)).creation(1, false).with([running(1, 90), running(2, 5)]);
    let d = decide(&p, now(), &paused());
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.status, Status::Backoff { until: ago(1 - 5) });
    assert_eq!(d.counts, Counts { desired: 3, running: 2, expired: 1, eligible: 1, ..Counts::default() });
    let inactive = preset().inactive().with([running(1, 5), pending_creation(2, 1)]);
    assert_eq!(decide(&inactive, now(), &paused()).actions, vec![]);
}

// --- presets that no longer keep a pool --------------------------------------------

#[test]
fn an_inactive_preset_cancels_unpicked_creations_and_deletes_everything_settled() {
    let p = preset().instances(3).inactive().ttl(minutes(60)).with([
        running(1, 10),
        running(2, 90),    // expired (§5.6: deleted too)
        failed(3, 20, 19), // failed recently: deleted all the same
        later(4, 20, Transition::Stop, JobStatus::Succeeded),
        pending_creation(5, 1),                                // canceled
        prebuild(6, 2, Transition::Start, JobStatus::Running), // picked up: left to finish
        later(7, 30, Transition::Start, JobStatus::Pending),   // a restart, not a creation
        later(8, 30, Transition::Delete, JobStatus::Pending),  // already going
        prebuild(9, 3, Transition::Start, JobStatus::Canceled).finished(2),
    ]);
    let d = p.decide();
    assert_eq!(d.counts.desired, 0);
    assert_eq!(d.actions, vec![Action::CancelPending(vec![job(5)]), Action::Delete(ids(&[2, 3, 4, 1, 9]))]);
}

#[test]
fn a_deleted_template_winds_its_presets_down_like_an_inactive_version() {
    let p = preset().instances(3).deleted_template().with([running(1, 10), pending_creation(2, 1)]);
    assert_eq!(p.decide().actions, vec![Action::CancelPending(vec![job(2)]), Action::Delete(ids(&[1]))]);
}

#[test]
fn an_inactive_preset_with_only_busy_prebuilds_waits() {
    let p = preset().inactive().with([later(1, 30, Transition::Delete, JobStatus::Running)]);
    assert_eq!(p.decide().actions, vec![]);
}

// --- skipping presets ---------------------------------------------------------------

#[test]
fn only_presets_with_prebuilds_or_a_desired_count_need_attention() {
    assert!(!needs_attention(&preset().inactive(), now()));
    assert!(!needs_attention(&preset().inactive().instances(3), now()));
    assert!(!needs_attention(&preset().deleted_template().instances(3), now()));
    assert!(!needs_attention(&preset().instances(0), now()));
    assert!(!needs_attention(&preset().instances(0).zone(New_York).schedule("* * * * 0", 3), now()));
    // Skipped even when blocked or with history: decide would do nothing.
    assert!(!needs_attention(&preset().validation_failed().creation(1, false), now()));

    assert!(needs_attention(&preset().instances(1), now()));
    assert!(needs_attention(&preset().instances(0).zone(New_York).schedule("* * * * 1", 3), now()));
    assert!(needs_attention(&preset().inactive().with([running(1, 5)]), now()));
    assert!(needs_attention(&preset().with([failed(1, 5, 5)]), now()));
    assert!(needs_attention(&preset().with([later(1, 5, Transition::Delete, JobStatus::Running)]), now()));
}
