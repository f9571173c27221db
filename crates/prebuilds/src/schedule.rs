//! Prebuild schedules: five-field cron expressions (minute, hour,
//! day-of-month, month, day-of-week) read as *ranges of time* in a preset's
//! time zone. `* 9-18 * * 1-5` covers 09:00:00 to 18:59:59 on weekdays: an
//! instant is covered when the minute containing it matches.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, Weekday};

#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("{0}")]
    Invalid(String),
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::FieldCount(fields));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| ScheduleError::Invalid(e.to_string()))?;
        Ok(Schedule { source: expression.trim().to_owned(), cron })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the minute containing the wall-clock time `local` is covered.
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        self.time_matches(local.hour(), local.minute()) && self.date_matches(local.date())
    }

    /// Whether `instant` is covered, reading it as wall-clock time in `zone`.
    pub fn matches(&self, instant: DateTime<Utc>, zone: Tz) -> bool {
        self.matches_local(instant.with_timezone(&zone).naive_local())
    }

    /// Whether some minute is covered by both schedules. A cron expression is
    /// a product of a minute set, an hour set and a set of dates, so two
    /// overlap exactly when each pair of sets meets. Dates are compared over
    /// 28 consecutive years, which hold every combination of weekday, month
    /// day and leap year the Gregorian calendar produces between 1901 and 2099.
    pub fn overlaps(&self, other: &Schedule) -> bool {
        let p = (&self.cron.pattern, &other.cron.pattern);
        let minutes = (0..60).any(|m| p.0.minute_match(m).unwrap_or(false) && p.1.minute_match(m).unwrap_or(false));
        let hours = (0..24).any(|h| p.0.hour_match(h).unwrap_or(false) && p.1.hour_match(h).unwrap_or(false));
        minutes && hours && {
            let first = NaiveDate::from_ymd_opt(2001, 1, 1).expect("a valid date");
            first.iter_days().take_while(|d| d.year() < 2029).any(|d| self.date_matches(d) && other.date_matches(d))
        }
    }

    pub(crate) fn time_matches(&self, hour: u32, minute: u32) -> bool {
        let p = &self.cron.pattern;
        p.hour_match(hour).unwrap_or(false) && p.minute_match(minute).unwrap_or(false)
    }

    pub(crate) fn date_matches(&self, date: NaiveDate) -> bool {
        let p = &self.cron.pattern;
        let weekday = Weekday::from_days_from_sunday(date.weekday().num_days_from_sunday());
        p.month_match(date.month()).unwrap_or(false)
            && p.day_match(date.year(), date.month(), date.day(), weekday).unwrap_or(false)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn at(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap().with_timezone(&Utc)
    }

    #[test]
    fn exactly_five_fields() {
        assert_eq!(Schedule::parse("* 8-18 * *").unwrap_err(), ScheduleError::FieldCount(4));
        assert_eq!(Schedule::parse("0 * 8-18 * * 1-5").unwrap_err(), ScheduleError::FieldCount(6));
        assert!(matches!(Schedule::parse("* 25 * * *"), Err(ScheduleError::Invalid(_))));
        assert!(matches!(Schedule::parse("* x * * *"), Err(ScheduleError::Invalid(_))));
        assert_eq!(Schedule::parse(" * 8-18 * * 1-5 ").unwrap().as_str(), "* 8-18 * * 1-5");
    }

    #[test]
    fn an_hour_range_covers_every_second_of_its_last_hour() {
        let ny = chrono_tz::America::New_York;
        let s = Schedule::parse("* 9-18 * * 1-5").unwrap();
        // Tuesday 24 November 2026.
        assert!(!s.matches(at(ny, 2026, 11, 24, 8, 59, 59), ny));
        assert!(s.matches(at(ny, 2026, 11, 24, 9, 0, 0), ny));
        assert!(s.matches(at(ny, 2026, 11, 24, 18, 59, 59), ny));
        assert!(!s.matches(at(ny, 2026, 11, 24, 19, 0, 0), ny));
        // Saturday.
        assert!(!s.matches(at(ny, 2026, 11, 28, 12, 0, 0), ny));
        // The same instant is 14:00 in London: outside in London's terms only when it should be.
        let london = chrono_tz::Europe::London;
        assert!(!s.matches(at(ny, 2026, 11, 24, 15, 0, 0), london));
    }

    #[test]
    fn wall_clock_follows_daylight_saving() {
        let ny = chrono_tz::America::New_York;
        let s = Schedule::parse("* 9 * * *").unwrap();
        // 14:30 UTC is 09:30 in New York in winter (EST) and 10:30 in summer (EDT).
        let winter = Utc.with_ymd_and_hms(2026, 3, 7, 14, 30, 0).unwrap();
        let summer = winter + Duration::days(2);
        assert!(s.matches(winter, ny));
        assert!(!s.matches(summer, ny));
        assert!(s.matches(summer - Duration::hours(1), ny));
    }

    #[test]
    fn overlap_examples() {
        let p = |e| Schedule::parse(e).unwrap();
        assert!(p("* 8-18 * * 1-5").overlaps(&p("* 18-20 * * 5")));
        assert!(!p("* 8-18 * * 1-5").overlaps(&p("* 8-14 * * 6")));
        assert!(!p("* 8-12 * * *").overlaps(&p("* 13-17 * * *")));
        assert!(!p("0-29 * * * *").overlaps(&p("30-59 * * * *")));
        // 29 February meets "Mondays" in some year.
        assert!(p("* * 29 2 *").overlaps(&p("* * * * 1")));
        // Days of month 1-7 (and not restricted by weekday) meet any weekday.
        assert!(p("* * 1-7 * *").overlaps(&p("* * * * 3")));
        assert!(!p("* * * 1 *").overlaps(&p("* * * 2 *")));
    }

    /// Small cron expressions whose coverage is fully visible in one week.
    fn weekly_cron() -> impl Strategy<Value = String> {
        let range = |max: u32| {
            prop_oneof![
                Just("*".to_owned()),
                (0..max, 0..max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
                (0..max).prop_map(|a| a.to_string()),
            ]
        };
        (range(60), range(24), range(7)).prop_map(|(m, h, d)| format!("{m} {h} * * {d}"))
    }

    fn week_minutes() -> impl Iterator<Item = NaiveDateTime> {
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(0, 0, 0).unwrap();
        (0..7 * 24 * 60).map(move |m| monday + Duration::minutes(m))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn overlap_means_a_shared_minute_exists(a in weekly_cron(), b in weekly_cron()) {
            let (sa, sb) = (Schedule::parse(&a).unwrap(), Schedule::parse(&b).unwrap());
            let shared = week_minutes().any(|t| sa.matches_local(t) && sb.matches_local(t));
            prop_assert_eq!(sa.overlaps(&sb), shared, "{} vs {}", a, b);
            prop_assert_eq!(sa.overlaps(&sb), sb.overlaps(&sa));
        }

        #[test]
        fn schedules_that_do_not_overlap_never_match_together(
            a in weekly_cron(), b in weekly_cron(), offset in 0i64..(60 * 24 * 365 * 30),
        ) {
            let (sa, sb) = (Schedule::parse(&a).unwrap(), Schedule::parse(&b).unwrap());
            let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
            let t = start + Duration::minutes(offset);
            if sa.matches_local(t) && sb.matches_local(t) {
                prop_assert!(sa.overlaps(&sb));
            }
        }
    }
}
