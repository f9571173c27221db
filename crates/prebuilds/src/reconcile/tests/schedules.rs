//! The desired count follows schedules on the wall clock of the preset's zone,
//! minute by minute, across daylight-saving changes. Expected values are
//! computed from the local hour and weekday, not from cron.

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::America::New_York;
use chrono_tz::Asia::Kolkata;
use chrono_tz::Australia::Sydney;
use chrono_tz::Europe::Berlin;
use chrono_tz::Tz;
use proptest::prelude::*;

use super::kit::preset;
use crate::reconcile::{PresetState, desired};

const ZONES: [Tz; 4] = [New_York, Berlin, Sydney, Kolkata];

/// Seven days from 00:00 UTC on these dates contain the 2026 changes: New York
/// springs forward on 8 March, Berlin on 29 March, Sydney falls back on 5 April.
const WEEKS: [(i32, u32, u32); 3] = [(2026, 3, 5), (2026, 3, 26), (2026, 4, 2)];

const MINUTES_PER_WEEK: i64 = 7 * 24 * 60;

fn week_minutes(start: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
    (0..MINUTES_PER_WEEK).map(move |m| start + TimeDelta::minutes(m))
}

fn week_start((y, m, d): (i32, u32, u32)) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// Office hours, a half hour every morning, and nothing on weekend nights
/// (a schedule may ask for 0); 1 otherwise.
fn office(zone: Tz) -> PresetState {
    preset()
        .instances(1)
        .zone(zone)
        .schedule("* 9-17 * * 1-5", 5)
        .schedule("30-59 7 * * *", 3)
        .schedule("* 0-2 * * 0,6", 0)
}

fn office_expected(local: NaiveDateTime) -> u32 {
    let workday = local.weekday().number_from_monday() <= 5;
    let (hour, minute) = (local.hour(), local.minute());
    if workday && (9..=17).contains(&hour) {
        5
    } else if hour == 7 && minute >= 30 {
        3
    } else if !workday && hour <= 2 {
        0
    } else {
        1
    }
}

#[test]
fn desired_follows_schedules_every_minute_of_a_week_across_zones_and_daylight_saving() {
    for zone in ZONES {
        let p = office(zone);
        for week in WEEKS {
            let start = week_start(week);
            for t in week_minutes(start) {
                let local = t.with_timezone(&zone).naive_local();
                assert_eq!(desired(&p, t), office_expected(local), "{t} is {local} in {zone}");
            }
        }
    }
}

#[test]
fn the_weeks_tested_do_contain_the_daylight_saving_changes() {
    let offset = |zone: Tz, t: DateTime<Utc>| t.with_timezone(&zone).offset().fix().local_minus_utc();
    let changes = |zone: Tz, week| {
        let start = week_start(week);
        offset(zone, start) != offset(zone, start + TimeDelta::minutes(MINUTES_PER_WEEK - 1))
    };
    assert!(changes(New_York, WEEKS[0]));
    assert!(changes(Berlin, WEEKS[1]));
    assert!(changes(Sydney, WEEKS[2]));
    assert!(WEEKS.iter().all(|&w| !changes(Kolkata, w)));
}

/// Fixed instants around New York's change, with offsets written out by hand.
#[test]
fn new_york_office_hours_move_an_hour_in_utc_when_the_clocks_change() {
    let p = office(New_York);
    let utc = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
    // Friday 6 March, EST (UTC-5): 13:59 UTC is 08:59, 14:00 UTC is 09:00.
    assert_eq!(desired(&p, utc(6, 13, 59)), 1);
    assert_eq!(desired(&p, utc(6, 14, 0)), 5);
    assert_eq!(desired(&p, utc(6, 22, 59)), 5);
    assert_eq!(desired(&p, utc(6, 23, 0)), 1);
    // Monday 9 March, EDT (UTC-4): 12:59 UTC is 08:59, 13:00 UTC is 09:00.
    assert_eq!(desired(&p, utc(9, 12, 59)), 1);
    assert_eq!(desired(&p, utc(9, 13, 0)), 5);
    assert_eq!(desired(&p, utc(9, 21, 59)), 5);
    assert_eq!(desired(&p, utc(9, 22, 0)), 1);
    // Sunday 8 March: 06:59 UTC is 01:59 EST, 07:00 UTC is 03:00 EDT (no 02:xx that night).
    assert_eq!(desired(&p, utc(8, 6, 59)), 0);
    assert_eq!(desired(&p, utc(8, 7, 0)), 1);
    // 07:30 every day: 12:30 UTC before the change, 11:30 UTC after.
    assert_eq!(desired(&p, utc(7, 12, 30)), 3);
    assert_eq!(desired(&p, utc(9, 11, 30)), 3);
    assert_eq!(desired(&p, utc(9, 12, 30)), 1);
}

/// Sydney falls back at 03:00 on Sunday 5 April 2026: 02:00–02:59 happens twice,
/// and a schedule covering it covers both.
#[test]
fn a_repeated_hour_is_covered_twice() {
    let p = office(Sydney);
    // 15:00–15:59 UTC on the 4th is 02:xx AEDT (UTC+11); 16:00–16:59 UTC is 02:xx AEST (UTC+10).
    let utc = |h, m| Utc.with_ymd_and_hms(2026, 4, 4, h, m, 0).unwrap();
    for (h, m) in [(15, 0), (15, 59), (16, 0), (16, 59)] {
        assert_eq!(desired(&p, utc(h, m)), 0, "{h}:{m} UTC");
    }
    assert_eq!(desired(&p, utc(17, 0)), 1);
}

/// A schedule "* a-b * * c-d": hours a to b on weekdays c to d (0 is Sunday).
#[derive(Debug, Clone, Copy)]
struct HoursOnDays {
    hours: (u32, u32),
    days: (u32, u32),
}

impl HoursOnDays {
    fn cron(self) -> String {
        format!("* {}-{} * * {}-{}", self.hours.0, self.hours.1, self.days.0, self.days.1)
    }

    fn covers(self, local: NaiveDateTime) -> bool {
        (self.hours.0..=self.hours.1).contains(&local.hour())
            && (self.days.0..=self.days.1).contains(&local.weekday().num_days_from_sunday())
    }
}

fn hours_on_days() -> impl Strategy<Value = HoursOnDays> {
    (0u32..24, 0u32..24, 0u32..7, 0u32..7)
        .prop_map(|(a, b, c, d)| HoursOnDays { hours: (a.min(b), a.max(b)), days: (c.min(d), c.max(d)) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn desired_is_the_schedule_covering_the_wall_clock_minute_else_the_base(
        schedule in hours_on_days(),
        zone in prop::sample::select(ZONES.to_vec()),
        base in 0u32..5,
        scheduled in 0u32..5,
        minute in 0i64..(366 * 24 * 60),
        second in 0i64..60,
    ) {
        let p = preset().instances(base).zone(zone).schedule(&schedule.cron(), scheduled);
        let t = week_start((2026, 1, 1)) + TimeDelta::minutes(minute) + TimeDelta::seconds(second);
        let local = t.with_timezone(&zone).naive_local();
        let expected = if schedule.covers(local) { scheduled } else { base };
        prop_assert_eq!(desired(&p, t), expected, "{} at {} ({} in {})", schedule.cron(), t, local, zone);
    }
}
