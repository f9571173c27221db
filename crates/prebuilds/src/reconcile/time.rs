//! Instant arithmetic that saturates instead of panicking: durations come
//! from operator settings and may be absurdly large.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// `t + d`, or the end of representable time.
pub(super) fn later_by(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d).ok().and_then(|d| t.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, or the start of representable time.
pub(super) fn earlier_by(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d).ok().and_then(|d| t.checked_sub_signed(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
