//! Whether a preset may create prebuilds, from its creation history.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::time::{earlier_by, later_by};
use super::{Creation, PresetState, Settings, Status};

/// The preset's status at `now`. It does not depend on whether anything needs
/// creating (nor on the desired count): a preset whose base count is 0 but
/// whose schedule asks for more must still back off, and operators want to
/// see a blocked preset as blocked before it next needs a prebuild.
///
/// `timed_out` are prebuilds whose agents never became ready, with when
/// that became a failure: their creations count as failed from then on.
pub(super) fn status(
    preset: &PresetState,
    timed_out: &[(Uuid, DateTime<Utc>)],
    now: DateTime<Utc>,
    settings: &Settings,
) -> Status {
    // Most permanent first: validation failure is never retried; a hard
    // limit lasts until a new version; backoff passes by itself.
    if preset.validation_failed {
        return Status::ValidationFailed;
    }
    let creations: Vec<Creation> = preset
        .creations
        .iter()
        .map(|c| match timed_out.iter().find(|(id, _)| *id == c.workspace_id) {
            Some(&(_, at)) => Creation { finished_at: at, succeeded: false, ..*c },
            None => *c,
        })
        .filter(|c| preset.counts_creation(c))
        .collect();
    if hard_limited(&creations, settings.failure_hard_limit) {
        return Status::HardLimited;
    }
    match backoff_until(&creations, now, settings) {
        Some(until) if now < until => Status::Backoff { until },
        _ => Status::Normal,
    }
}

/// The newest `limit` creations all failed (there must be that many); a limit
/// of 0 disables the check.
fn hard_limited(creations: &[Creation], limit: u32) -> bool {
    if limit == 0 {
        return false;
    }
    // The store sends them newest first; sorting again costs little and keeps
    // a mis-ordered snapshot from hiding a success.
    let mut newest_first: Vec<&Creation> = creations.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.finished_at));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    newest_first.len() >= limit && newest_first.iter().take(limit).all(|c| !c.succeeded)
}

/// When the next creation may start, if failures within the look-back window
/// delay it: each such failure pushes it one more interval past the newest.
fn backoff_until(creations: &[Creation], now: DateTime<Utc>, settings: &Settings) -> Option<DateTime<Utc>> {
    let window_start = earlier_by(now, settings.backoff_lookback);
    let failures: Vec<DateTime<Utc>> =
        creations.iter().filter(|c| !c.succeeded && c.finished_at > window_start).map(|c| c.finished_at).collect();
    let newest = failures.iter().max()?;
    let times = u32::try_from(failures.len()).unwrap_or(u32::MAX);
    let delay = settings.backoff_interval.checked_mul(times).unwrap_or(std::time::Duration::MAX);
    Some(later_by(*newest, delay))
}
