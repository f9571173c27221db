//! The rules of people's workspaces' lifecycles, as pure functions over
//! plain data (the lifecycle executor reads rows, asks these, and queues
//! builds): a build's deadline from its time to live, the max deadline from
//! a template's autostop requirement in the owner's time zone, the activity
//! bump, a person's extension, and when an autostart schedule fires.
//!
//! Local times that a daylight-saving change skips (02:30 on the night
//! clocks go from 02:00 to 03:00) are read as the first instant after the
//! gap; local times that happen twice (clocks going back) as the first of
//! the two. So every wall-clock time happens exactly once a day.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use warmspace_states::{JobStatus, Transition};

use crate::schedule::{Schedule, ScheduleError};

/// Days of the week as the API names them, Monday first (bit 0 of a day mask).
pub const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// A build never has to stop within this long of its start because of the
/// autostop requirement: a workspace started at 01:50 with a requirement at
/// 02:00 runs until the next required day instead.
pub const MIN_RUN_BEFORE_REQUIREMENT: Duration = Duration::hours(1);

/// "Will stop soon" is said this long before a deadline.
pub const STOP_NOTICE_BEFORE: Duration = Duration::minutes(30);

/// An extension must leave the workspace at least this long.
pub const MIN_EXTENSION: Duration = Duration::minutes(30);

/// The week counting for `weeks > 1` starts on this Monday.
fn epoch_monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).expect("a valid date")
}

/// A template's autostop requirement: workspaces must stop at `hour`
/// o'clock (in their owner's time zone) on these days, every `weeks` weeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutostopRequirement {
    /// Bit 0 = Monday … bit 6 = Sunday; 0: no requirement.
    pub days_of_week: u8,
    /// 1: every week; `n`: every `n`th week counted from 1 January 2024.
    pub weeks: u32,
    /// 0 … 23.
    pub hour: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error("{0:?} is not a day of the week (mon … sun, or monday … sunday)")]
    Day(String),
    #[error("hour must be 0 … 23, not {0:?}")]
    Hour(String),
    #[error("weeks must be 1 … 16, not {0:?}")]
    Weeks(String),
    #[error("{0:?} is not understood (expected days=…, hour=… or weeks=…)")]
    Unknown(String),
}

impl AutostopRequirement {
    /// No requirement.
    pub const NONE: AutostopRequirement = AutostopRequirement { days_of_week: 0, weeks: 1, hour: 0 };

    /// Reads `days=sat,sun hour=2 [weeks=2]` (`days=none` for none).
    pub fn parse(text: &str) -> Result<AutostopRequirement, RequirementError> {
        let mut requirement = AutostopRequirement::NONE;
        for part in text.split_whitespace() {
            match part.split_once('=') {
                Some(("days", days)) => {
                    requirement.days_of_week = 0;
                    for day in days.split(',').filter(|d| !d.is_empty() && *d != "none") {
                        requirement.days_of_week |=
                            1 << day_index(day).ok_or_else(|| RequirementError::Day(day.into()))?;
                    }
                }
                Some(("hour", hour)) => {
                    requirement.hour =
                        hour.parse().ok().filter(|h| *h < 24).ok_or_else(|| RequirementError::Hour(hour.into()))?;
                }
                Some(("weeks", weeks)) => {
                    requirement.weeks = weeks
                        .parse()
                        .ok()
                        .filter(|w| (1..=16).contains(w))
                        .ok_or_else(|| RequirementError::Weeks(weeks.into()))?;
                }
                _ => return Err(RequirementError::Unknown(part.into())),
            }
        }
        Ok(requirement)
    }

    pub fn is_set(&self) -> bool {
        self.days_of_week & 0x7f != 0
    }

    /// Whether workspaces must stop on `date`.
    fn required_on(&self, date: NaiveDate) -> bool {
        let day = date.weekday().num_days_from_monday();
        let week = (date - epoch_monday()).num_days().div_euclid(7);
        self.days_of_week & (1 << day) != 0 && week.rem_euclid(i64::from(self.weeks.max(1))) == 0
    }
}

/// The index (Monday = 0) of a day named in full or by its first three letters.
pub fn day_index(name: &str) -> Option<u32> {
    let name = name.to_ascii_lowercase();
    DAYS.iter().position(|day| *day == name || (name.len() == 3 && day.starts_with(&name))).map(|i| i as u32)
}

/// The instant a wall-clock time in `zone` names: in a gap, the first
/// instant after it; when it happens twice, the first time.
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are whole minutes long, and no zone has one longer than a day.
            let mut probe = local;
            for _ in 0..24 * 60 {
                probe += Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    // The gap ends at the first valid minute: that minute's instant.
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// The latest a workspace started at `start` may run: the first time the
/// requirement asks it to stop, at least [`MIN_RUN_BEFORE_REQUIREMENT`]
/// after `start`. `None` when the requirement names no day.
pub fn max_deadline(start: DateTime<Utc>, requirement: &AutostopRequirement, zone: Tz) -> Option<DateTime<Utc>> {
    if !requirement.is_set() {
        return None;
    }
    let earliest = start + MIN_RUN_BEFORE_REQUIREMENT;
    let first_day = earliest.with_timezone(&zone).date_naive() - Duration::days(1);
    let time = NaiveTime::from_hms_opt(requirement.hour.min(23), 0, 0).expect("a valid time");
    // Every required day comes round within `weeks` weeks.
    first_day
        .iter_days()
        .take(7 * requirement.weeks.max(1) as usize + 3)
        .filter(|date| requirement.required_on(*date))
        .map(|date| resolve_local(zone, date.and_time(time)))
        .find(|t| *t >= earliest)
}

/// A build's deadline: `ttl` after `start`, never after `max_deadline`. The
/// zero rule: no time to live (none, or zero) means no deadline of its own,
/// so the max deadline (if any) is the deadline.
pub fn deadline(
    start: DateTime<Utc>,
    ttl: Option<Duration>,
    max_deadline: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match ttl.filter(|ttl| *ttl > Duration::zero()) {
        None => max_deadline,
        Some(ttl) => {
            let own = start + ttl;
            Some(max_deadline.map_or(own, |max| own.min(max)))
        }
    }
}

/// The deadline after activity at `now`: pushed to `now + ttl` when that is
/// later (by at least a twentieth of the TTL, so that a steady stream of
/// heartbeats does not rewrite it every time), never past `max_deadline`.
/// `None` when it does not move: no deadline, no TTL, or the deadline has
/// passed already (the stop is due; activity does not undo it).
pub fn bumped_deadline(
    deadline: Option<DateTime<Utc>>,
    max_deadline: Option<DateTime<Utc>>,
    ttl: Option<Duration>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (deadline, ttl) = (deadline?, ttl.filter(|ttl| *ttl > Duration::zero())?);
    if deadline <= now {
        return None;
    }
    let wanted = now + ttl;
    let capped = max_deadline.map_or(wanted, |max| wanted.min(max));
    let worth_it = capped - deadline >= ttl / 20 || Some(capped) == max_deadline;
    (capped > deadline && worth_it).then_some(capped)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    #[error("the new deadline must be at least 30 minutes from now")]
    TooSoon,
    #[error("the new deadline would be after the max deadline ({0}) the template's autostop requirement sets")]
    PastMaxDeadline(DateTime<Utc>),
}

/// The deadline a person sets by extending the workspace to `by` from `now`
/// (Coder's `schedule extend`): at least [`MIN_EXTENSION`] away, and never
/// after `max_deadline`.
pub fn extended_deadline(
    now: DateTime<Utc>,
    by: Duration,
    max_deadline: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, ExtendError> {
    if by < MIN_EXTENSION {
        return Err(ExtendError::TooSoon);
    }
    let deadline = now + by;
    match max_deadline {
        Some(max) if deadline > max => Err(ExtendError::PastMaxDeadline(max)),
        _ => Ok(deadline),
    }
}

/// Whether "will stop soon" is due at `now` for a build with `deadline`
/// (when none was sent for this very deadline yet).
pub fn stop_notice_due(
    deadline: Option<DateTime<Utc>>,
    notified_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    deadline.is_some_and(|d| now < d && d - now <= STOP_NOTICE_BEFORE && notified_for != Some(d))
}

/// An autostart schedule: `[CRON_TZ=<zone> ]<minute> <hour> <day> <month>
/// <weekday>`. Without a zone it is read in the owner's. It fires at the
/// start of every minute it names.
#[derive(Debug, Clone)]
pub struct Autostart {
    zone: Option<Tz>,
    cron: Schedule,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutostartError {
    #[error("expected CRON_TZ=<zone> <cron>")]
    Prefix,
    #[error("{0:?} is not an IANA time zone")]
    Zone(String),
    #[error("{0}")]
    Cron(#[from] ScheduleError),
}

/// How far ahead the next autostart is looked for.
const AUTOSTART_HORIZON_DAYS: usize = 400;

impl Autostart {
    pub fn parse(text: &str) -> Result<Autostart, AutostartError> {
        let text = text.trim();
        let (zone, cron) = match text.strip_prefix("CRON_TZ=") {
            Some(rest) => {
                let (zone, cron) = rest.split_once(' ').ok_or(AutostartError::Prefix)?;
                (Some(zone.parse::<Tz>().map_err(|_| AutostartError::Zone(zone.into()))?), cron)
            }
            None => (None, text),
        };
        Ok(Autostart { zone, cron: Schedule::parse(cron)? })
    }

    /// The zone the schedule is read in: its own, else the owner's.
    pub fn zone(&self, owner_zone: Tz) -> Tz {
        self.zone.unwrap_or(owner_zone)
    }

    /// The first time the schedule fires after `after` (never earlier than
    /// it, nor later than `until`), read in its zone or else `owner_zone`.
    pub fn first_firing(&self, after: DateTime<Utc>, until: DateTime<Utc>, owner_zone: Tz) -> Option<DateTime<Utc>> {
        if until <= after {
            return None;
        }
        let zone = self.zone(owner_zone);
        // From the day before (an instant in a gap resolves forward) to the day after.
        let first = after.with_timezone(&zone).date_naive() - Duration::days(1);
        let days = usize::try_from((until - after).num_days()).unwrap_or(0) + 3;
        for date in first.iter_days().take(days.min(AUTOSTART_HORIZON_DAYS + 3)) {
            if !self.cron.date_matches(date) {
                continue;
            }
            for minute_of_day in 0..24 * 60 {
                let (hour, minute) = (minute_of_day / 60, minute_of_day % 60);
                if !self.cron.time_matches(hour, minute) {
                    continue;
                }
                let local = date.and_time(NaiveTime::from_hms_opt(hour, minute, 0).expect("a valid time"));
                let at = resolve_local(zone, local);
                if at > after && at <= until {
                    return Some(at);
                }
            }
        }
        None
    }

    /// The next time the schedule fires after `now` (within about a year).
    pub fn next_firing(&self, now: DateTime<Utc>, owner_zone: Tz) -> Option<DateTime<Utc>> {
        self.first_firing(now, now + Duration::days(AUTOSTART_HORIZON_DAYS as i64), owner_zone)
    }
}

/// What the executor knows of one person's workspace at a tick: its latest
/// build (finished), its settings and its template's rules.
#[derive(Debug, Clone)]
pub struct WorkspaceState {
    pub transition: Transition,
    pub job_status: JobStatus,
    pub build_created_at: DateTime<Utc>,
    pub job_completed_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    /// The deadline the owner was told "will stop soon" of.
    pub stop_notice_for: Option<DateTime<Utc>>,
    /// Its autostart schedule, if it has one the template allows.
    pub autostart: Option<Autostart>,
    pub owner_zone: Tz,
    pub last_used_at: DateTime<Utc>,
    pub dormant_at: Option<DateTime<Utc>>,
    pub deleting_at: Option<DateTime<Utc>>,
    /// Zero: the rule is off.
    pub failure_ttl: Duration,
    pub time_til_dormant: Duration,
    pub dormant_autodelete: Duration,
}

/// What is due for a workspace at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    /// Its schedule fired (at this instant) while it was stopped: start it.
    Autostart(DateTime<Utc>),
    /// Running past its deadline: stop it.
    Autostop,
    /// Its latest start failed longer ago than the failure TTL: stop it.
    FailureTtl,
    /// Unused longer than the dormancy threshold: mark it dormant (and stop it if it runs).
    Dormant { stop: bool },
    /// Dormant longer than the auto-delete threshold: delete it.
    DormantDelete,
    /// It will stop at this deadline within 30 minutes: tell its owner.
    StopNotice(DateTime<Utc>),
}

/// The one action due for `w` at `now`, if any; `last_tick` is when the
/// previous tick ran (autostart looks at what fired since then, and since
/// the workspace's latest build). The most drastic comes first: deleting a
/// dormant workspace, then dormancy, then the stops, then autostart.
pub fn decide(w: &WorkspaceState, last_tick: DateTime<Utc>, now: DateTime<Utc>) -> Option<LifecycleAction> {
    if !matches!(w.job_status, JobStatus::Succeeded | JobStatus::Failed) {
        return None;
    }
    let positive = |d: Duration| d > Duration::zero();
    let running = w.transition == Transition::Start && w.job_status == JobStatus::Succeeded;
    if let Some(dormant_at) = w.dormant_at {
        let deleted = w.transition == Transition::Delete && w.job_status == JobStatus::Succeeded;
        let due = positive(w.dormant_autodelete) && dormant_at + w.dormant_autodelete <= now;
        return (due && w.deleting_at.is_none() && !deleted).then_some(LifecycleAction::DormantDelete);
    }
    if positive(w.time_til_dormant) && w.last_used_at + w.time_til_dormant <= now {
        return Some(LifecycleAction::Dormant { stop: w.transition == Transition::Start });
    }
    if running && w.deadline.is_some_and(|d| d <= now) {
        return Some(LifecycleAction::Autostop);
    }
    if w.transition == Transition::Start && w.job_status == JobStatus::Failed && positive(w.failure_ttl) {
        let failed_at = w.job_completed_at.unwrap_or(w.build_created_at);
        if failed_at + w.failure_ttl <= now {
            return Some(LifecycleAction::FailureTtl);
        }
    }
    if w.transition == Transition::Stop && w.job_status == JobStatus::Succeeded {
        let since = last_tick.max(w.build_created_at);
        if let Some(at) = w.autostart.as_ref().and_then(|a| a.first_firing(since, now, w.owner_zone)) {
            return Some(LifecycleAction::Autostart(at));
        }
    }
    if running && stop_notice_due(w.deadline, w.stop_notice_for, now) {
        return w.deadline.map(LifecycleAction::StopNotice);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin, UTC};
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
    }

    type At = Option<DateTime<Utc>>;
    type T = DateTime<Utc>;

    fn requirement(text: &str) -> AutostopRequirement {
        AutostopRequirement::parse(text).unwrap()
    }

    fn state(transition: Transition, job_status: JobStatus, at: DateTime<Utc>) -> WorkspaceState {
        WorkspaceState {
            transition,
            job_status,
            build_created_at: at,
            job_completed_at: Some(at),
            deadline: None,
            stop_notice_for: None,
            autostart: None,
            owner_zone: UTC,
            last_used_at: at,
            dormant_at: None,
            deleting_at: None,
            failure_ttl: Duration::zero(),
            time_til_dormant: Duration::zero(),
            dormant_autodelete: Duration::zero(),
        }
    }

    #[test]
    fn decide_table() {
        use JobStatus::{Failed, Running, Succeeded};
        use LifecycleAction::{Autostop, Dormant, DormantDelete, FailureTtl, StopNotice};
        use Transition::{Delete, Start, Stop};
        let t0 = utc(2026, 11, 30, 9, 0);
        let (h, m, d) = (Duration::hours, Duration::minutes, Duration::days);
        let now = t0 + h(8);
        let last_tick = now - m(1);
        let running = state(Start, Succeeded, t0);
        let stopped = state(Stop, Succeeded, t0);
        let daily_at_5pm = Autostart::parse("0 17 * * *").unwrap();
        // (what, state, expected)
        let cases: Vec<(&str, WorkspaceState, Option<LifecycleAction>)> = vec![
            ("running, no deadline", running.clone(), None),
            ("past its deadline", WorkspaceState { deadline: Some(now - m(1)), ..running.clone() }, Some(Autostop)),
            ("at its deadline", WorkspaceState { deadline: Some(now), ..running.clone() }, Some(Autostop)),
            (
                "20 minutes to go",
                WorkspaceState { deadline: Some(now + m(20)), ..running.clone() },
                Some(StopNotice(now + m(20))),
            ),
            (
                "20 minutes to go, told already",
                WorkspaceState { deadline: Some(now + m(20)), stop_notice_for: Some(now + m(20)), ..running.clone() },
                None,
            ),
            ("an hour to go", WorkspaceState { deadline: Some(now + h(1)), ..running.clone() }, None),
            (
                "a build in progress",
                WorkspaceState { job_status: Running, deadline: Some(now - h(1)), ..running.clone() },
                None,
            ),
            ("stopped past a deadline", WorkspaceState { deadline: Some(now - h(1)), ..stopped.clone() }, None),
            (
                "failed start past the failure TTL",
                WorkspaceState { failure_ttl: h(1), ..state(Start, Failed, now - h(2)) },
                Some(FailureTtl),
            ),
            (
                "failed start within the failure TTL",
                WorkspaceState { failure_ttl: h(3), ..state(Start, Failed, now - h(2)) },
                None,
            ),
            ("failed start, no failure TTL", state(Start, Failed, now - h(2)), None),
            (
                "failed stop: not the failure TTL's",
                WorkspaceState { failure_ttl: h(1), ..state(Stop, Failed, t0) },
                None,
            ),
            (
                "autostart fired since the last tick",
                WorkspaceState { autostart: Some(daily_at_5pm.clone()), ..stopped.clone() },
                Some(LifecycleAction::Autostart(utc(2026, 11, 30, 17, 0))),
            ),
            (
                "autostart fired before the last tick",
                WorkspaceState { autostart: Some(Autostart::parse("58 16 * * *").unwrap()), ..stopped.clone() },
                None,
            ),
            (
                "autostart fired before the workspace was stopped",
                WorkspaceState { autostart: Some(daily_at_5pm.clone()), build_created_at: now, ..stopped.clone() },
                None,
            ),
            (
                "autostart of a running workspace",
                WorkspaceState { autostart: Some(daily_at_5pm.clone()), ..running.clone() },
                None,
            ),
            (
                "unused past the dormancy threshold, running",
                WorkspaceState { time_til_dormant: h(7), ..running.clone() },
                Some(Dormant { stop: true }),
            ),
            (
                "unused past the dormancy threshold, stopped",
                WorkspaceState { time_til_dormant: h(7), ..stopped.clone() },
                Some(Dormant { stop: false }),
            ),
            ("used within the threshold", WorkspaceState { time_til_dormant: h(9), ..running.clone() }, None),
            (
                "dormant: no autostart",
                WorkspaceState { autostart: Some(daily_at_5pm), dormant_at: Some(t0), ..stopped.clone() },
                None,
            ),
            (
                "dormant past auto-delete",
                WorkspaceState { dormant_at: Some(now - d(2)), dormant_autodelete: d(1), ..stopped.clone() },
                Some(DormantDelete),
            ),
            (
                "dormant, deleting already",
                WorkspaceState {
                    dormant_at: Some(now - d(2)),
                    deleting_at: Some(now - d(1)),
                    dormant_autodelete: d(1),
                    ..stopped.clone()
                },
                None,
            ),
            (
                "dormant, deleted",
                WorkspaceState {
                    dormant_at: Some(now - d(2)),
                    dormant_autodelete: d(1),
                    ..state(Delete, Succeeded, t0)
                },
                None,
            ),
            (
                "dormant within auto-delete",
                WorkspaceState { dormant_at: Some(now - h(2)), dormant_autodelete: d(1), ..stopped },
                None,
            ),
        ];
        for (what, w, expected) in cases {
            assert_eq!(decide(&w, last_tick, now), expected, "{what}");
        }
    }

    #[test]
    fn requirements_parse_and_refuse() {
        assert_eq!(
            requirement("days=sat,sun hour=2"),
            AutostopRequirement { days_of_week: 0b110_0000, weeks: 1, hour: 2 }
        );
        assert_eq!(requirement("days=monday,Fri weeks=2").days_of_week, 0b1_0001);
        assert_eq!(requirement("days=none"), AutostopRequirement::NONE);
        assert_eq!(requirement(""), AutostopRequirement::NONE);
        assert_eq!(AutostopRequirement::parse("days=sat,funday"), Err(RequirementError::Day("funday".into())));
        assert_eq!(AutostopRequirement::parse("hour=24"), Err(RequirementError::Hour("24".into())));
        assert_eq!(AutostopRequirement::parse("weeks=0"), Err(RequirementError::Weeks("0".into())));
        assert_eq!(AutostopRequirement::parse("when=later"), Err(RequirementError::Unknown("when=later".into())));
        assert_eq!(day_index("sun"), Some(6));
        assert_eq!(day_index("su"), None);
    }

    #[test]
    fn deadline_table() {
        let start = utc(2026, 11, 30, 9, 0);
        let h = Duration::hours;
        // (ttl, max deadline, expected)
        let cases: &[(Option<Duration>, At, At)] = &[
            (Some(h(8)), None, Some(start + h(8))),
            (Some(h(8)), Some(start + h(10)), Some(start + h(8))),
            (Some(h(8)), Some(start + h(3)), Some(start + h(3))),
            // The zero rule: no TTL leaves the max deadline as the deadline, or none.
            (None, None, None),
            (Some(Duration::zero()), None, None),
            (None, Some(start + h(3)), Some(start + h(3))),
            (Some(Duration::zero()), Some(start + h(3)), Some(start + h(3))),
        ];
        for (ttl, max, expected) in cases {
            assert_eq!(deadline(start, *ttl, *max), *expected, "ttl {ttl:?}, max {max:?}");
        }
    }

    #[test]
    fn max_deadline_table() {
        let sat_sun_2 = requirement("days=sat,sun hour=2");
        // (start, zone, requirement, expected)
        let cases: Vec<(DateTime<Utc>, Tz, AutostopRequirement, At)> = vec![
            // Monday 30 November 2026 → Saturday 5 December 02:00.
            (utc(2026, 11, 30, 9, 0), UTC, sat_sun_2, Some(utc(2026, 12, 5, 2, 0))),
            // In Berlin (UTC+1 in winter) 02:00 is 01:00 UTC.
            (utc(2026, 11, 30, 9, 0), Berlin, sat_sun_2, Some(utc(2026, 12, 5, 1, 0))),
            // In New York (UTC-5) 02:00 is 07:00 UTC.
            (utc(2026, 11, 30, 9, 0), New_York, sat_sun_2, Some(utc(2026, 12, 5, 7, 0))),
            // Started on Saturday at 01:30: 02:00 is within the hour, so Sunday.
            (utc(2026, 12, 5, 1, 30), UTC, sat_sun_2, Some(utc(2026, 12, 6, 2, 0))),
            // Started Saturday 00:59: 02:00 is more than an hour away.
            (utc(2026, 12, 5, 0, 59), UTC, sat_sun_2, Some(utc(2026, 12, 5, 2, 0))),
            // Started Sunday 03:00: the next Saturday.
            (utc(2026, 12, 6, 3, 0), UTC, sat_sun_2, Some(utc(2026, 12, 12, 2, 0))),
            // Every day at midnight.
            (
                utc(2026, 11, 30, 9, 0),
                UTC,
                requirement("days=mon,tue,wed,thu,fri,sat,sun hour=0"),
                Some(utc(2026, 12, 1, 0, 0)),
            ),
            // No days: no max deadline.
            (utc(2026, 11, 30, 9, 0), UTC, AutostopRequirement::NONE, None),
            // Every second week, counted from Monday 1 January 2024: the week
            // of 30 November 2026 is week 152 (even), so its Saturday.
            (utc(2026, 11, 30, 9, 0), UTC, requirement("days=sat hour=2 weeks=2"), Some(utc(2026, 12, 5, 2, 0))),
            // From Saturday 12:00 that week on, the next even week's Saturday.
            (utc(2026, 12, 5, 12, 0), UTC, requirement("days=sat hour=2 weeks=2"), Some(utc(2026, 12, 19, 2, 0))),
            // DST: Berlin springs forward at 02:00 on Sunday 29 March 2026:
            // 02:00 does not exist; the requirement falls at 03:00 CEST (01:00 UTC).
            (utc(2026, 3, 28, 12, 0), Berlin, requirement("days=sun hour=2"), Some(utc(2026, 3, 29, 1, 0))),
            // Berlin falls back at 03:00 on Sunday 25 October 2026: 02:00
            // happens twice; the first (CEST, 00:00 UTC) counts.
            (utc(2026, 10, 24, 12, 0), Berlin, requirement("days=sun hour=2"), Some(utc(2026, 10, 25, 0, 0))),
            // The day after, 02:00 is CET again (01:00 UTC).
            (utc(2026, 10, 25, 12, 0), Berlin, requirement("days=mon hour=2"), Some(utc(2026, 10, 26, 1, 0))),
        ];
        for (start, zone, req, expected) in cases {
            assert_eq!(max_deadline(start, &req, zone), expected, "start {start}, {zone}, {req:?}");
        }
    }

    #[test]
    fn activity_bump_table() {
        let now = utc(2026, 11, 30, 12, 0);
        let (h, m) = (Duration::hours, Duration::minutes);
        // (deadline, max deadline, ttl, expected)
        let cases: &[(At, At, Option<Duration>, At)] = &[
            // Pushed to now + ttl.
            (Some(now + m(10)), None, Some(h(1)), Some(now + h(1))),
            // Never past the max deadline.
            (Some(now + m(10)), Some(now + m(30)), Some(h(1)), Some(now + m(30))),
            // Already at the max deadline: nothing to do.
            (Some(now + m(30)), Some(now + m(30)), Some(h(1)), None),
            // Already later than now + ttl (a person extended it): kept.
            (Some(now + h(3)), None, Some(h(1)), None),
            // A move smaller than a twentieth of the TTL is not worth a write.
            (Some(now + m(58)), None, Some(h(1)), None),
            (Some(now + m(56)), None, Some(h(1)), Some(now + h(1))),
            // No deadline or no TTL: nothing to push.
            (None, None, Some(h(1)), None),
            (Some(now + m(10)), None, None, None),
            // The deadline has passed: the stop is due, activity does not undo it.
            (Some(now - m(1)), None, Some(h(1)), None),
        ];
        for (deadline, max, ttl, expected) in cases {
            assert_eq!(bumped_deadline(*deadline, *max, *ttl, now), *expected, "{deadline:?} {max:?} {ttl:?}");
        }
    }

    #[test]
    fn extension_table() {
        let now = utc(2026, 11, 30, 12, 0);
        let h = Duration::hours;
        assert_eq!(extended_deadline(now, h(2), None), Ok(now + h(2)));
        assert_eq!(extended_deadline(now, h(2), Some(now + h(2))), Ok(now + h(2)));
        assert_eq!(extended_deadline(now, h(3), Some(now + h(2))), Err(ExtendError::PastMaxDeadline(now + h(2))));
        assert_eq!(extended_deadline(now, Duration::minutes(29), None), Err(ExtendError::TooSoon));
    }

    #[test]
    fn stop_notice_table() {
        let now = utc(2026, 11, 30, 12, 0);
        let m = Duration::minutes;
        assert!(stop_notice_due(Some(now + m(30)), None, now));
        assert!(stop_notice_due(Some(now + m(1)), None, now));
        assert!(!stop_notice_due(Some(now + m(31)), None, now));
        assert!(!stop_notice_due(Some(now + m(20)), Some(now + m(20)), now), "once per deadline");
        assert!(stop_notice_due(Some(now + m(20)), Some(now - m(40)), now), "a new deadline, a new notice");
        assert!(!stop_notice_due(Some(now), None, now), "past: the stop itself says so");
        assert!(!stop_notice_due(None, None, now));
    }

    #[test]
    fn autostart_parses_with_and_without_a_zone() {
        let berlin = Autostart::parse("CRON_TZ=Europe/Berlin 0 9 * * 1-5").unwrap();
        assert_eq!(berlin.zone(UTC), Berlin);
        assert_eq!(Autostart::parse("0 9 * * 1-5").unwrap().zone(New_York), New_York);
        assert_eq!(
            Autostart::parse("CRON_TZ=Mars/Olympus 0 9 * * *").unwrap_err(),
            AutostartError::Zone("Mars/Olympus".into())
        );
        assert_eq!(Autostart::parse("CRON_TZ=Europe/Berlin").unwrap_err(), AutostartError::Prefix);
        assert!(matches!(Autostart::parse("0 9 * *"), Err(AutostartError::Cron(ScheduleError::FieldCount(4)))));
    }

    #[test]
    fn autostart_firing_table() {
        let weekdays_9 = "CRON_TZ=Europe/Berlin 0 9 * * 1-5";
        // (schedule, owner zone, after, until, expected first firing)
        let cases: Vec<(&str, Tz, T, T, At)> = vec![
            // Monday 30 November 2026, 09:00 Berlin = 08:00 UTC.
            (weekdays_9, UTC, utc(2026, 11, 30, 7, 59), utc(2026, 11, 30, 8, 0), Some(utc(2026, 11, 30, 8, 0))),
            // The window is open at its start: a firing at `after` was the previous tick's.
            (weekdays_9, UTC, utc(2026, 11, 30, 8, 0), utc(2026, 11, 30, 8, 1), None),
            (weekdays_9, UTC, utc(2026, 11, 30, 8, 1), utc(2026, 11, 30, 9, 0), None),
            // Saturday: nothing all day.
            (weekdays_9, UTC, utc(2026, 12, 5, 0, 0), utc(2026, 12, 6, 0, 0), None),
            // A long window finds the first firing.
            (weekdays_9, UTC, utc(2026, 12, 4, 9, 0), utc(2026, 12, 9, 0, 0), Some(utc(2026, 12, 7, 8, 0))),
            // Without CRON_TZ, the owner's zone: 09:00 New York = 14:00 UTC.
            ("0 9 * * *", New_York, utc(2026, 11, 30, 13, 0), utc(2026, 11, 30, 14, 0), Some(utc(2026, 11, 30, 14, 0))),
            ("0 9 * * *", UTC, utc(2026, 11, 30, 8, 30), utc(2026, 11, 30, 9, 0), Some(utc(2026, 11, 30, 9, 0))),
            // Summer time: 09:00 Berlin is 07:00 UTC.
            (weekdays_9, UTC, utc(2026, 6, 1, 6, 30), utc(2026, 6, 1, 7, 30), Some(utc(2026, 6, 1, 7, 0))),
            // Spring forward in Berlin (29 March 2026, 02:00 → 03:00): 02:30
            // does not exist that night; it fires once, when the gap ends (01:00 UTC).
            (
                "CRON_TZ=Europe/Berlin 30 2 * * *",
                UTC,
                utc(2026, 3, 29, 0, 0),
                utc(2026, 3, 29, 3, 0),
                Some(utc(2026, 3, 29, 1, 0)),
            ),
            // Fall back in Berlin (25 October 2026, 03:00 → 02:00): 02:30
            // happens twice; it fires at the first (00:30 UTC) …
            (
                "CRON_TZ=Europe/Berlin 30 2 * * *",
                UTC,
                utc(2026, 10, 25, 0, 0),
                utc(2026, 10, 25, 3, 0),
                Some(utc(2026, 10, 25, 0, 30)),
            ),
            // … and not again at the second (01:30 UTC).
            ("CRON_TZ=Europe/Berlin 30 2 * * *", UTC, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3, 0), None),
            // An empty or backward window never fires.
            ("* * * * *", UTC, utc(2026, 11, 30, 8, 0), utc(2026, 11, 30, 8, 0), None),
            ("* * * * *", UTC, utc(2026, 11, 30, 8, 0), utc(2026, 11, 30, 7, 0), None),
        ];
        for (schedule, owner_zone, after, until, expected) in cases {
            let autostart = Autostart::parse(schedule).unwrap();
            assert_eq!(autostart.first_firing(after, until, owner_zone), expected, "{schedule} in ({after}, {until}]");
        }
        let next = Autostart::parse(weekdays_9).unwrap().next_firing(utc(2026, 12, 4, 9, 0), UTC);
        assert_eq!(next, Some(utc(2026, 12, 7, 8, 0)));
    }

    #[test]
    fn local_times_resolve_once() {
        // New York springs forward on 8 March 2026 (02:00 → 03:00 EST → EDT).
        let gap = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(resolve_local(New_York, gap), local(New_York, 2026, 3, 8, 3, 0));
        // And falls back on 1 November 2026 (02:00 EDT → 01:00 EST): 01:30 is the first.
        let twice = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap().and_hms_opt(1, 30, 0).unwrap();
        assert_eq!(resolve_local(New_York, twice), utc(2026, 11, 1, 5, 30));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Splitting a window in two never changes whether (or when first) a
        /// schedule fires: ticks at any times see each firing exactly once.
        #[test]
        fn firings_are_seen_once_whatever_the_ticks(
            minute in 0u32..60, hour in 0u32..24, start in 0i64..(60 * 24 * 400), a in 1i64..3000, b in 1i64..3000,
            zone in prop_oneof![Just(Berlin), Just(New_York), Just(UTC)],
        ) {
            let autostart = Autostart::parse(&format!("{minute} {hour} * * *")).unwrap();
            let t0 = utc(2026, 1, 1, 0, 0) + Duration::minutes(start);
            let (t1, t2) = (t0 + Duration::minutes(a), t0 + Duration::minutes(a + b));
            let whole = autostart.first_firing(t0, t2, zone);
            let split = autostart.first_firing(t0, t1, zone).or_else(|| autostart.first_firing(t1, t2, zone));
            prop_assert_eq!(whole, split);
            // A daily schedule fires in any 25-hour window: the local day a
            // clock falls back is 25 hours long (20:35 Berlin is 18:35 UTC on
            // 24 October 2026 and 19:35 UTC the next day).
            let day = autostart.first_firing(t0, t0 + Duration::hours(25), zone);
            prop_assert!(day.is_some());
            let again = autostart.first_firing(day.unwrap(), day.unwrap() + Duration::hours(20), zone);
            prop_assert!(again.is_none(), "fired twice within a day: {:?} and {:?}", day, again);
        }

        /// The deadline never passes the max deadline, and the bump never moves it past either.
        #[test]
        fn deadlines_stay_within_the_max(
            ttl_min in 0i64..5000, max_min in proptest::option::of(1i64..20000), bump_at in 0i64..20000,
        ) {
            let start = utc(2026, 11, 30, 9, 0);
            let max = max_min.map(|m| start + Duration::minutes(m));
            let ttl = Some(Duration::minutes(ttl_min));
            let d = deadline(start, ttl, max);
            if let (Some(d), Some(max)) = (d, max) { prop_assert!(d <= max); }
            if let Some(bumped) = bumped_deadline(d, max, ttl, start + Duration::minutes(bump_at)) {
                prop_assert!(max.is_none_or(|max| bumped <= max));
                prop_assert!(bumped > d.unwrap());
            }
        }
    }
}
