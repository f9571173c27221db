//! Where "now" comes from.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The time every time-dependent rule reads: whether a prebuild's TTL has
/// passed, a preset still backs off, a lease has run out, a session has
/// expired, an agent is still connected; and the deadlines computed from
/// now. In production it is the system clock. Tests move it forward with
/// [`Clock::advance`] to see what happens later, instead of waiting.
///
/// The times those rules compare against are stamped by this clock too (a
/// job's creation, start, end and lease, a daemon's last sighting, a
/// workspace's creation and last use, an agent's connection and lifecycle, a
/// session's use), so moving it forward makes them age together. A job's
/// start and end are never stamped before the stamp they follow
/// (`greatest(now, …)`), so the schema's ordering checks hold even between
/// replicas whose clocks differ a little. Other history (`updated_at`, a
/// notification's time) is the database's. Clones share one clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Added to the system time, in microseconds.
    offset_us: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_us.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_clock_and_only_move_forward_when_told() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = clock.now();
        other.advance(std::time::Duration::from_secs(3600));
        let after = clock.now();
        assert!(after - before >= chrono::Duration::hours(1));
        assert!(after - before < chrono::Duration::hours(1) + chrono::Duration::seconds(5));
    }
}
