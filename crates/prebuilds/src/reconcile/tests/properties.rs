//! Invariants of `decide` over generated snapshots. The expected values are
//! recomputed here from the rules, plainly, rather than through the
//! implementation's own helpers.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use uuid::Uuid;

use super::kit::{self, job, minutes, preset, ws};
use crate::reconcile::{
    Action, Creation, Decision, JobStatus, LatestBuild, Prebuild, PresetState, Settings, Status, Transition, decide,
    needs_attention,
};

// --- generators -------------------------------------------------------------

fn settings() -> impl Strategy<Value = Settings> {
    (prop::bool::weighted(0.15), 0u64..30, 0u64..120, 0u32..5).prop_map(|(paused, interval, lookback, limit)| {
        Settings {
            paused,
            backoff_interval: minutes(interval),
            backoff_lookback: minutes(lookback),
            failure_hard_limit: limit,
            // No grace: an expired prebuild goes at once, as it did before
            // make before break (whose rules are checked below, on their own).
            replacement_grace: minutes(0),
        }
    })
}

/// A prebuild as minutes before `now`; turned into one by `at`.
#[derive(Debug, Clone)]
struct Gen {
    age: i64,
    transition: Transition,
    status: JobStatus,
    build_number: i32,
    /// Minutes before `now` that its latest build finished (only used if it has).
    finished: Option<i64>,
    agents_ready: bool,
}

fn gen_prebuild() -> impl Strategy<Value = Gen> {
    use JobStatus::*;
    use Transition::*;
    let transition = prop::sample::select(vec![Start, Start, Start, Stop, Delete]);
    let status =
        prop::sample::select(vec![Pending, Running, Canceling, Succeeded, Succeeded, Succeeded, Failed, Canceled]);
    // Small ages make ties on creation time likely.
    let age = prop_oneof![0i64..3, 0i64..600];
    (age, transition, status, 1i32..4, prop::option::weighted(0.9, 0i64..600), prop::bool::weighted(0.8)).prop_map(
        |(age, transition, status, build_number, finished, agents_ready)| Gen {
            age,
            transition,
            status,
            build_number,
            finished: finished.map(|f| f.min(age)),
            agents_ready,
        },
    )
}

fn before(now: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    now - TimeDelta::minutes(minutes)
}

impl Gen {
    fn at(&self, n: u128, now: DateTime<Utc>) -> Prebuild {
        let finished_at = if self.status.in_progress() { None } else { self.finished.map(|m| before(now, m)) };
        Prebuild {
            workspace_id: ws(n),
            created_at: before(now, self.age),
            latest: LatestBuild {
                transition: self.transition,
                status: self.status,
                job_id: job(n),
                build_number: self.build_number,
                finished_at,
            },
            agents_ready: self.agents_ready,
        }
    }
}

/// A preset and the instant to decide at.
fn snapshot() -> impl Strategy<Value = (PresetState, DateTime<Utc>)> {
    let shape = (prop::bool::weighted(0.8), prop::bool::weighted(0.1), 0u32..8, prop::bool::weighted(0.1));
    let times = (prop::option::of(0u64..300), prop::option::of(0i64..600), 0i64..(7 * 24 * 60));
    let zone = prop::option::of(prop::sample::select(vec![
        chrono_tz::America::New_York,
        chrono_tz::Europe::Berlin,
        chrono_tz::Australia::Sydney,
        chrono_tz::Asia::Kolkata,
    ]));
    let schedules = (zone, 0u32..8, 0u32..8);
    let history = (
        prop::collection::vec((0i64..150, prop::bool::weighted(0.4)), 0..6),
        prop::collection::vec(gen_prebuild(), 0..12),
    );
    // The store lists prebuilds in no particular order: ids are shuffled so
    // the order of the list says nothing about age or id.
    let ids = Just((1..=12).collect::<Vec<u128>>()).prop_shuffle();
    (shape, times, schedules, history, ids).prop_map(
        |(
            (active, deleted, instances, invalid),
            (ttl, invalidated, offset),
            (zone, day, evening),
            (creations, prebuilds),
            ids,
        )| {
            let now = kit::now() + TimeDelta::minutes(offset);
            let mut creations: Vec<Creation> = creations
                .into_iter()
                .enumerate()
                .map(|(i, (m, succeeded))| Creation {
                    workspace_id: Uuid::from_u128(1000 + i as u128),
                    finished_at: before(now, m),
                    succeeded,
                })
                .collect();
            creations.sort_by_key(|c| std::cmp::Reverse(c.finished_at));
            // Agents never time out here; that rule is checked on its own below.
            let mut p = preset().instances(instances).agent_ready_timeout(minutes(1 << 20));
            p.version_active = active;
            p.template_deleted = deleted;
            p.validation_failed = invalid;
            p.ttl = ttl.map(minutes);
            p.last_invalidated_at = invalidated.map(|m| before(now, m));
            p.creations = creations;
            p.prebuilds = prebuilds.iter().zip(ids).map(|(g, n)| g.at(n, now)).collect();
            if let Some(zone) = zone {
                p = p.zone(zone).schedule("* 9-17 * * 1-5", day).schedule("* 18-23 * * *", evening);
            }
            (p, now)
        },
    )
}

// --- the rules, restated --------------------------------------------------------

fn keeps_pool(preset: &PresetState) -> bool {
    preset.version_active && !preset.template_deleted
}

/// The generated schedules read off the local clock: weekdays 09–17, every evening 18–23.
fn expected_desired(preset: &PresetState, now: DateTime<Utc>) -> u32 {
    if !keeps_pool(preset) {
        return 0;
    }
    let Some(zone) = preset.timezone else { return preset.instances };
    let local = now.with_timezone(&zone).naive_local();
    let weekday = local.weekday().number_from_monday() <= 5;
    match local.hour() {
        9..=17 if weekday => preset.schedules[0].1,
        18..=23 => preset.schedules[1].1,
        _ => preset.instances,
    }
}

fn is_busy(p: &Prebuild) -> bool {
    matches!(p.latest.status, JobStatus::Pending | JobStatus::Running | JobStatus::Canceling)
}

fn is_running(p: &Prebuild) -> bool {
    p.latest.transition == Transition::Start && p.latest.status == JobStatus::Succeeded
}

fn is_expired(preset: &PresetState, p: &Prebuild, now: DateTime<Utc>) -> bool {
    let ttl = preset.ttl.is_some_and(|ttl| p.created_at + TimeDelta::from_std(ttl).unwrap() <= now);
    ttl || preset.last_invalidated_at.is_some_and(|at| p.created_at < at)
}

fn fresh_oldest_first(preset: &PresetState, now: DateTime<Utc>) -> Vec<&Prebuild> {
    let mut fresh: Vec<&Prebuild> =
        preset.prebuilds.iter().filter(|p| is_running(p) && !is_expired(preset, p, now)).collect();
    fresh.sort_by_key(|p| (p.created_at, p.workspace_id));
    fresh
}

fn starting(preset: &PresetState) -> usize {
    preset.prebuilds.iter().filter(|p| is_busy(p) && p.latest.transition == Transition::Start).count()
}

/// The creations that count for backoff and the hard limit (newest first):
/// those that ended after the preset was last invalidated.
fn counted(preset: &PresetState) -> Vec<&Creation> {
    preset.creations.iter().filter(|c| preset.last_invalidated_at.is_none_or(|at| c.finished_at > at)).collect()
}

fn hard_limited(preset: &PresetState, settings: &Settings) -> bool {
    let limit = settings.failure_hard_limit as usize;
    let creations = counted(preset);
    limit > 0 && creations.len() >= limit && creations[..limit].iter().all(|c| !c.succeeded)
}

fn backoff_until(preset: &PresetState, now: DateTime<Utc>, settings: &Settings) -> Option<DateTime<Utc>> {
    let lookback = TimeDelta::from_std(settings.backoff_lookback).unwrap();
    let failures: Vec<&Creation> =
        counted(preset).into_iter().filter(|c| !c.succeeded && c.finished_at > now - lookback).collect();
    let newest = failures.iter().map(|c| c.finished_at).max()?;
    Some(newest + TimeDelta::from_std(settings.backoff_interval).unwrap() * failures.len() as i32)
}

fn expected_status(preset: &PresetState, now: DateTime<Utc>, settings: &Settings) -> Status {
    match backoff_until(preset, now, settings) {
        _ if preset.validation_failed => Status::ValidationFailed,
        _ if hard_limited(preset, settings) => Status::HardLimited,
        Some(until) if now < until => Status::Backoff { until },
        _ => Status::Normal,
    }
}

fn deleted(d: &Decision) -> Vec<Uuid> {
    d.actions.iter().flat_map(|a| if let Action::Delete(ids) = a { ids.clone() } else { vec![] }).collect()
}

fn created(d: &Decision) -> u32 {
    d.actions.iter().map(|a| if let Action::Create(n) = a { *n } else { 0 }).sum()
}

fn canceled(d: &Decision) -> Vec<Uuid> {
    d.actions.iter().flat_map(|a| if let Action::CancelPending(ids) = a { ids.clone() } else { vec![] }).collect()
}

/// Carries the decision out on the snapshot, as the server would: new
/// prebuilds start, deleted ones get a pending delete build, canceled
/// creations end canceled.
fn apply(preset: &PresetState, decision: &Decision, now: DateTime<Utc>) -> PresetState {
    let mut next = preset.clone();
    let mut fresh_ids = (1u128 << 80)..;
    for action in &decision.actions {
        match action {
            Action::CancelPending(jobs) => {
                for p in next.prebuilds.iter_mut().filter(|p| jobs.contains(&p.latest.job_id)) {
                    p.latest.status = JobStatus::Canceled;
                    p.latest.finished_at = Some(now);
                }
            }
            Action::Delete(ids) => {
                for p in next.prebuilds.iter_mut().filter(|p| ids.contains(&p.workspace_id)) {
                    let build_number = p.latest.build_number + 1;
                    let job_id = Uuid::from_u128(fresh_ids.next().unwrap());
                    let (transition, status) = (Transition::Delete, JobStatus::Pending);
                    p.latest = LatestBuild { transition, status, job_id, build_number, finished_at: None };
                }
            }
            Action::Create(n) => {
                for _ in 0..*n {
                    let (workspace_id, job_id) =
                        (Uuid::from_u128(fresh_ids.next().unwrap()), Uuid::from_u128(fresh_ids.next().unwrap()));
                    let (transition, status) = (Transition::Start, JobStatus::Pending);
                    let latest = LatestBuild { transition, status, job_id, build_number: 1, finished_at: None };
                    next.prebuilds.push(Prebuild { workspace_id, created_at: now, latest, agents_ready: false });
                }
            }
        }
    }
    next
}

fn as_set(ids: Vec<Uuid>) -> HashSet<Uuid> {
    ids.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn never_creates_while_hard_limited_validation_failed_backing_off_or_paused(
        (p, now) in snapshot(), settings in settings(),
    ) {
        let d = decide(&p, now, &settings);
        let backing_off = backoff_until(&p, now, &settings).is_some_and(|until| now < until);
        if settings.paused {
            prop_assert!(d.actions.is_empty(), "paused: {:?}", d.actions);
        }
        if p.validation_failed || hard_limited(&p, &settings) || backing_off {
            prop_assert_eq!(created(&d), 0);
        }
        prop_assert_eq!(d.status, expected_status(&p, now, &settings));
    }

    #[test]
    fn creates_exactly_the_shortfall_when_allowed(
        (p, now) in snapshot(), settings in settings(),
    ) {
        let d = decide(&p, now, &settings);
        let supply = fresh_oldest_first(&p, now).len() + starting(&p);
        let want = expected_desired(&p, now) as usize;
        let allowed = !settings.paused && keeps_pool(&p) && d.status == Status::Normal;
        let expected = if allowed { want.saturating_sub(supply) } else { 0 };
        prop_assert_eq!(created(&d) as usize, expected);
    }

    #[test]
    fn only_settled_prebuilds_of_the_preset_are_deleted_and_only_its_unpicked_creations_canceled(
        (p, now) in snapshot(), settings in settings(),
    ) {
        let d = decide(&p, now, &settings);
        let deletions = deleted(&d);
        prop_assert_eq!(as_set(deletions.clone()).len(), deletions.len(), "deleted twice: {:?}", deletions);
        for id in &deletions {
            let prebuild = p.prebuilds.iter().find(|p| p.workspace_id == *id);
            prop_assert!(prebuild.is_some(), "{} is not one of the preset's prebuilds", id);
            prop_assert!(!is_busy(prebuild.unwrap()), "{} has a build in progress", id);
        }
        for job_id in canceled(&d) {
            let prebuild = p.prebuilds.iter().find(|p| p.latest.job_id == job_id);
            prop_assert!(prebuild.is_some(), "job {} is not a latest build of the preset", job_id);
            let build = prebuild.unwrap().latest;
            prop_assert!(!keeps_pool(&p), "canceled a creation of an active preset");
            prop_assert_eq!((build.build_number, build.transition, build.status), (1, Transition::Start, JobStatus::Pending));
        }
        // One action of a kind at most, none empty, in the order cancel, delete, create.
        let kinds: Vec<u8> = d.actions.iter().map(|a| match a {
            Action::CancelPending(_) => 0,
            Action::Delete(_) => 1,
            Action::Create(_) => 2,
        }).collect();
        prop_assert!(kinds.windows(2).all(|w| w[0] < w[1]), "{:?}", d.actions);
        prop_assert!(d.actions.iter().all(|a| !a.is_noop()), "{:?}", d.actions);
    }

    #[test]
    fn surplus_deletion_takes_exactly_the_oldest_running_ones(
        (p, now) in snapshot(), settings in settings(),
    ) {
        // Only a pool being kept, and not paused, has a surplus to shed.
        let p = PresetState { version_active: true, template_deleted: false, ..p };
        let settings = Settings { paused: false, ..settings };
        let d = decide(&p, now, &settings);
        let fresh = fresh_oldest_first(&p, now);
        let surplus = (fresh.len() + starting(&p)).saturating_sub(expected_desired(&p, now) as usize);
        let deleted = deleted(&d);
        let deleted_fresh: Vec<Uuid> =
            deleted.iter().copied().filter(|id| fresh.iter().any(|p| p.workspace_id == *id)).collect();
        let oldest: Vec<Uuid> = fresh.iter().take(surplus).map(|p| p.workspace_id).collect();
        prop_assert_eq!(deleted_fresh, oldest);
    }

    #[test]
    fn expired_old_failed_and_stopped_prebuilds_are_deleted_and_the_rest_kept(
        (p, now) in snapshot(), settings in settings(),
    ) {
        let settings = Settings { paused: false, ..settings };
        let d = decide(&p, now, &settings);
        let deleted = as_set(deleted(&d));
        let lookback = TimeDelta::from_std(settings.backoff_lookback).unwrap();
        let fresh = fresh_oldest_first(&p, now);
        for prebuild in &p.prebuilds {
            let id = prebuild.workspace_id;
            let build = prebuild.latest;
            let failed = matches!(build.status, JobStatus::Failed | JobStatus::Canceled);
            let failed_long_ago = failed && build.finished_at.unwrap_or(prebuild.created_at) <= now - lookback;
            let stopped = build.transition == Transition::Stop && build.status == JobStatus::Succeeded;
            let gone = build.transition == Transition::Delete && build.status == JobStatus::Succeeded;
            let expired = is_running(prebuild) && is_expired(&p, prebuild, now);
            let must_go = if keeps_pool(&p) { expired || failed_long_ago || stopped } else { !is_busy(prebuild) && !gone };
            let may_go = must_go || (keeps_pool(&p) && fresh.iter().any(|f| f.workspace_id == id));
            if must_go {
                prop_assert!(deleted.contains(&id), "{:?} kept", prebuild);
            }
            if !may_go {
                prop_assert!(!deleted.contains(&id), "{:?} deleted", prebuild);
            }
        }
    }

    #[test]
    fn carrying_out_a_decision_leaves_nothing_to_do(
        (p, now) in snapshot(), settings in settings(),
    ) {
        let first = decide(&p, now, &settings);
        let after = apply(&p, &first, now);
        let second = decide(&after, now, &settings);
        let just_canceled = canceled(&first);
        if just_canceled.is_empty() {
            prop_assert!(second.actions.is_empty(), "first {:?}, then {:?}", first.actions, second.actions);
        } else {
            // A canceled creation was busy when decided on, so it could not be
            // deleted with the rest; once canceled it is, and then all is done.
            let their_workspaces: Vec<Uuid> = p.prebuilds.iter()
                .filter(|p| just_canceled.contains(&p.latest.job_id)).map(|p| p.workspace_id).collect();
            prop_assert_eq!(second.actions.len(), 1, "{:?}", second.actions);
            prop_assert_eq!(as_set(deleted(&second)), as_set(their_workspaces));
            let third = decide(&apply(&after, &second, now), now, &settings);
            prop_assert!(third.actions.is_empty(), "{:?}", third.actions);
        }
    }

    #[test]
    fn counts_follow_the_definitions((p, now) in snapshot(), settings in settings()) {
        let c = decide(&p, now, &settings).counts;
        let count = |f: &dyn Fn(&Prebuild) -> bool| p.prebuilds.iter().filter(|x| f(x)).count() as u32;
        let busy_with = |t: Transition| count(&|x| is_busy(x) && x.latest.transition == t);
        prop_assert_eq!(c.desired, expected_desired(&p, now));
        prop_assert_eq!(c.running, count(&is_running));
        prop_assert_eq!(c.expired, count(&|x| is_running(x) && is_expired(&p, x, now)));
        prop_assert_eq!(c.eligible, count(&|x| is_running(x) && !is_expired(&p, x, now) && x.agents_ready));
        prop_assert_eq!(c.starting, busy_with(Transition::Start));
        prop_assert_eq!(c.stopping, busy_with(Transition::Stop));
        prop_assert_eq!(c.deleting, busy_with(Transition::Delete));
        prop_assert_eq!(c.failed, count(&|x| matches!(x.latest.status, JobStatus::Failed | JobStatus::Canceled)));
    }

    #[test]
    fn a_preset_that_needs_no_attention_gets_no_actions(
        (p, now) in snapshot(), settings in settings(), strip in any::<bool>(),
    ) {
        // Skippable presets are rare among generated ones: make some.
        let p = if strip { PresetState { prebuilds: vec![], ..p } } else { p };
        if !needs_attention(&p, now) {
            prop_assert!(decide(&p, now, &settings).actions.is_empty());
        }
    }
}

/// The generators reach every status, every zone, cancellations and surpluses often enough
/// for the properties above to mean something.
#[test]
fn generated_snapshots_reach_every_case() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut statuses, mut zones, mut cancels, mut surpluses) = (HashSet::new(), HashSet::<Tz>::new(), 0, 0);
    for _ in 0..2000 {
        let (p, now) = snapshot().new_tree(&mut runner).unwrap().current();
        let s = settings().new_tree(&mut runner).unwrap().current();
        let d = decide(&p, now, &s);
        statuses.insert(std::mem::discriminant(&d.status));
        zones.extend(p.timezone);
        cancels += usize::from(!canceled(&d).is_empty());
        let fresh = fresh_oldest_first(&p, now).len();
        surpluses +=
            usize::from(keeps_pool(&p) && !s.paused && fresh + starting(&p) > expected_desired(&p, now) as usize);
    }
    assert_eq!(statuses.len(), 4, "every status is generated");
    assert_eq!(zones.len(), 4);
    assert!(cancels > 20 && surpluses > 20, "cancels {cancels}, surpluses {surpluses}");
}

// --- make before break and agents that never become ready ---------------------------

/// A snapshot with a replacement grace, a typical build time and an agent
/// readiness timeout of its own.
fn replacing() -> impl Strategy<Value = (PresetState, DateTime<Utc>, Settings)> {
    (snapshot(), settings(), 0u64..30, prop::option::of(0u64..30), 1u64..90).prop_map(
        |((mut p, now), mut s, grace, typical, timeout)| {
            s.replacement_grace = minutes(grace);
            p.typical_build = typical.map(minutes);
            p.agent_ready_timeout = minutes(timeout);
            (p, now, s)
        },
    )
}

fn later_by(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    t + TimeDelta::from_std(d).unwrap()
}

/// When a prebuild expires: its TTL's end, or the invalidation it predates.
fn expires_at(preset: &PresetState, p: &Prebuild) -> Option<DateTime<Utc>> {
    let ttl = preset.ttl.map(|ttl| later_by(p.created_at, ttl));
    let invalidated = preset.last_invalidated_at.filter(|at| p.created_at < *at);
    [ttl, invalidated].into_iter().flatten().min()
}

fn timed_out(preset: &PresetState, p: &Prebuild, now: DateTime<Utc>) -> bool {
    let since = p.latest.finished_at.unwrap_or(p.created_at);
    is_running(p) && !p.agents_ready && later_by(since, preset.agent_ready_timeout) <= now
}

/// Expired, or expiring within one typical build.
fn is_old(preset: &PresetState, p: &Prebuild, now: DateTime<Utc>) -> bool {
    let lead = preset.typical_build.unwrap_or_default();
    is_running(p)
        && !timed_out(preset, p, now)
        && expires_at(preset, p).is_some_and(|at| at - TimeDelta::from_std(lead).unwrap() <= now)
}

fn past_grace(preset: &PresetState, p: &Prebuild, now: DateTime<Utc>, s: &Settings) -> bool {
    expires_at(preset, p).is_some_and(|at| later_by(at, s.replacement_grace) <= now)
}

/// Running, neither old nor timed out.
fn is_healthy(preset: &PresetState, p: &Prebuild, now: DateTime<Utc>) -> bool {
    is_running(p) && !timed_out(preset, p, now) && !is_old(preset, p, now)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Old prebuilds within their grace are deleted only when what stays
    /// (eligible healthy ones and old stand-ins) still covers the desired
    /// count: with replacements not yet eligible, none goes.
    #[test]
    fn old_prebuilds_within_the_grace_go_only_once_replacements_are_eligible((p, now, s) in replacing()) {
        if !keeps_pool(&p) || s.paused {
            return Ok(());
        }
        let d = decide(&p, now, &s);
        let gone = as_set(deleted(&d));
        let desired = expected_desired(&p, now) as usize;
        let stays = |x: &&Prebuild| !gone.contains(&x.workspace_id);
        let ready_after = p.prebuilds.iter().filter(|x| is_healthy(&p, x, now) && x.agents_ready).filter(stays).count();
        let old_after = p.prebuilds.iter().filter(|x| is_old(&p, x, now)).filter(stays).count();
        let old_in_grace = p.prebuilds.iter().filter(|x| is_old(&p, x, now) && !past_grace(&p, x, now, &s)).count();
        prop_assert!(
            ready_after + old_after >= desired.min(ready_after + old_in_grace),
            "ready {ready_after}, old kept {old_after}, old within grace {old_in_grace}, desired {desired}: {d:?}"
        );
        let nothing_eligible = p.prebuilds.iter().all(|x| !(is_healthy(&p, x, now) && x.agents_ready));
        if nothing_eligible && old_in_grace <= desired {
            for x in p.prebuilds.iter().filter(|x| is_old(&p, x, now) && gone.contains(&x.workspace_id)) {
                prop_assert!(past_grace(&p, x, now, &s), "{x:?} went within its grace: {d:?}");
            }
        }
    }

    /// Creations never exceed the desired count plus the old prebuilds not
    /// yet replaced: what is created fills exactly the shortfall of healthy
    /// and starting prebuilds, never counting old ones as supply.
    #[test]
    fn creations_never_exceed_desired_plus_old_not_yet_replaced((p, now, s) in replacing()) {
        let d = decide(&p, now, &s);
        let healthy = p.prebuilds.iter().filter(|x| is_healthy(&p, x, now)).count();
        let old = p.prebuilds.iter().filter(|x| is_old(&p, x, now)).count();
        let after = healthy + starting(&p) + created(&d) as usize + old;
        let desired = expected_desired(&p, now) as usize;
        prop_assert!(created(&d) as usize <= desired.saturating_sub(healthy + starting(&p)));
        if created(&d) > 0 {
            prop_assert!(after <= desired + old, "{after} > {desired} + {old}");
        }
    }

    /// A running prebuild whose agents are not ready within the timeout is
    /// counted apart, deleted (unless paused), and its creation is a failure.
    #[test]
    fn prebuilds_whose_agents_never_became_ready_are_failures_and_deleted((p, now, s) in replacing()) {
        let d = decide(&p, now, &s);
        let timed: Vec<&Prebuild> = p.prebuilds.iter().filter(|x| timed_out(&p, x, now)).collect();
        prop_assert_eq!(d.counts.agents_not_ready as usize, timed.len());
        if !s.paused {
            let gone = as_set(deleted(&d));
            prop_assert!(timed.iter().all(|x| gone.contains(&x.workspace_id)));
        }
    }
}

#[test]
fn a_timed_out_creation_counts_toward_the_hard_limit() {
    let mut p = preset().instances(1).with([kit::running(1, 30).agents_not_ready()]);
    p.creations = vec![
        Creation { workspace_id: ws(1), finished_at: kit::ago(30), succeeded: true },
        Creation { workspace_id: ws(8), finished_at: kit::ago(40), succeeded: false },
        Creation { workspace_id: ws(9), finished_at: kit::ago(50), succeeded: false },
    ];
    assert_eq!(decide(&p, kit::now(), &kit::settings()).status, Status::HardLimited);
}
