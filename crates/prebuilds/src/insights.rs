//! What each pool gives and costs over a window of time, computed from the
//! rows the store recorded: claim attempts (hits, misses by reason, the
//! hand-over), how long builds took to become ready (what users waited
//! for, cold and claimed), and the lives of prebuilds (the instance-hours
//! they spent unclaimed). Pure: the window's end (*now*) is passed in.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_states::{JobStatus, MissReason};

/// The window looked at: `[start, end]`, `end` being now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window of `length` ending at `now`.
    pub fn ending(now: DateTime<Utc>, length: std::time::Duration) -> Window {
        let length = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
        Window { start: now.checked_sub_signed(length).unwrap_or(DateTime::<Utc>::MIN_UTC), end: now }
    }

    pub fn hours(&self) -> f64 {
        seconds(self.end - self.start).max(0.0) / 3600.0
    }
}

/// The longest window insight looks at.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

/// Why a window's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("is empty; give a duration such as 7d, 24h or 90m")]
    Empty,
    #[error("{0:?} is not a duration such as 7d, 24h or 90m (units: s, m, h, d, w)")]
    Malformed(String),
    #[error("must be at least one second")]
    TooShort,
    #[error("must be at most 90d")]
    TooLong,
}

/// Parses a window such as `7d`, `24h`, `90m`, `1d12h` or `3600s`: one or
/// more numbers, each followed by its unit (`s`, `m`, `h`, `d`, `w`), at
/// least a second and at most [`MAX_WINDOW`].
pub fn parse_window(text: &str) -> Result<std::time::Duration, WindowError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(WindowError::Empty);
    }
    let malformed = || WindowError::Malformed(text.to_owned());
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(malformed()),
        };
        if digits.is_empty() {
            return Err(malformed());
        }
        // Anything past the bound is too long, however many digits it has.
        let n: u64 = digits.parse().unwrap_or(u64::MAX);
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(malformed());
    }
    let window = std::time::Duration::from_secs(total);
    if window < std::time::Duration::from_secs(1) {
        Err(WindowError::TooShort)
    } else if window > MAX_WINDOW {
        Err(WindowError::TooLong)
    } else {
        Ok(window)
    }
}

/// How a create request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss(MissReason),
}

/// A build and what its workspace's agents say about it, as recorded.
/// Agents' lifecycle times belong to the workspace's latest start build,
/// so a build superseded by a later start of its workspace says nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReadiness {
    /// When the build (its job) was queued: a cold create's start, or a claim's.
    pub created_at: DateTime<Utc>,
    pub job_status: JobStatus,
    pub completed_at: Option<DateTime<Utc>>,
    /// The workspace's agents, and how many of them have a `ready` time.
    pub agents: u32,
    pub agents_ready: u32,
    /// The earliest and latest `ready` times among the workspace's agents.
    pub first_ready_at: Option<DateTime<Utc>>,
    pub last_ready_at: Option<DateTime<Utc>>,
    /// A later start build of the workspace exists.
    pub superseded: bool,
}

impl BuildReadiness {
    /// Seconds from the build's creation until the workspace was usable:
    /// its job succeeded and every agent (none: the job's end) reported
    /// `ready` since the build was queued (a workspace stopped since still
    /// counts). `None` while that has not happened, when the build failed,
    /// or when a later start build has overwritten the agents' times.
    pub fn ready_seconds(&self) -> Option<f64> {
        if self.superseded || self.job_status != JobStatus::Succeeded || self.agents_ready < self.agents {
            return None;
        }
        let completed = self.completed_at?;
        let ready = if self.agents == 0 {
            completed
        } else {
            // Ready before this build was queued: the time of an earlier build
            // (a claimed prebuild's agent that has not re-initialised yet).
            if self.first_ready_at? < self.created_at {
                return None;
            }
            self.last_ready_at?.max(completed)
        };
        Some(seconds(ready - self.created_at).max(0.0))
    }
}

/// One create request in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRow {
    pub template_id: Uuid,
    /// The preset the request used or was charged to; `None` when none applied.
    pub preset_id: Option<Uuid>,
    pub outcome: Outcome,
    /// The hand-over (for hits): request arrival to the claim's record.
    pub latency_ms: f64,
    /// A hit's claim build, a miss's cold build (`None` when it is gone).
    pub build: Option<BuildReadiness>,
}

/// One prebuild's life: from its `created` event to its first `claimed`,
/// `deleted` or `expired` event (`None`: still unclaimed and alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrebuildLife {
    pub preset_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl PrebuildLife {
    /// Hours of the life inside the window (a life not ended runs to the window's end).
    pub fn idle_hours(&self, window: &Window) -> f64 {
        let from = self.created_at.max(window.start);
        let to = self.ended_at.unwrap_or(window.end).min(window.end);
        (seconds(to - from) / 3600.0).max(0.0)
    }
}

/// What one preset's pool gave and cost in the window (or, with no preset,
/// the template's requests that no preset applied to).
#[derive(Debug, Clone, PartialEq)]
pub struct PresetInsight {
    pub template_id: Uuid,
    pub preset_id: Option<Uuid>,
    pub claims: u64,
    pub hits: u64,
    pub misses: u64,
    pub misses_by_reason: BTreeMap<MissReason, u64>,
    /// hits / claims; `None` with no claims.
    pub hit_rate: Option<f64>,
    pub hand_over_p50_ms: Option<f64>,
    pub hand_over_p95_ms: Option<f64>,
    /// The template's median cold build-to-ready time, and its sample count.
    pub cold_ready_seconds: Option<f64>,
    pub cold_ready_samples: u64,
    /// The median of this preset's claims' ready times, and its sample count.
    pub claim_ready_seconds: Option<f64>,
    pub claim_ready_samples: u64,
    /// See [`time_saved`].
    pub time_saved_seconds: Option<f64>,
    /// Prebuilds alive at some point in the window.
    pub prebuilds: u64,
    /// Instance-hours prebuilds spent unclaimed inside the window.
    pub idle_instance_hours: f64,
    /// `idle_instance_hours / hits`; `None` with no hits.
    pub instance_hours_per_hit: Option<f64>,
}

/// Time the hits saved their users: `hits × (cold − claim)` seconds, never
/// negative. `None` when there is no cold sample to compare with (or, with
/// hits, no claim that has become ready yet); `0` with no hits.
pub fn time_saved(hits: u64, cold_seconds: Option<f64>, claim_seconds: Option<f64>) -> Option<f64> {
    let cold = cold_seconds?;
    if hits == 0 {
        return Some(0.0);
    }
    let claim = claim_seconds?;
    Some(hits as f64 * (cold - claim).max(0.0))
}

/// The `p`-quantile (0 ≤ p ≤ 1) of `values`, interpolated between the
/// closest ranks as PostgreSQL's `percentile_cont` does; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64))
}

/// Every preset's insight over the window, one per preset named in
/// `presets` (template, preset) or met in `claims` and `lives`, in that
/// order (then by first appearance). Claims and lives outside the window
/// are the caller's to leave out; lives are clipped to it here.
pub fn insights(
    window: &Window,
    presets: &[(Uuid, Uuid)],
    claims: &[ClaimRow],
    lives: &[PrebuildLife],
) -> Vec<PresetInsight> {
    // The order rows come out in, and each preset's template.
    let mut keys: Vec<(Uuid, Option<Uuid>)> = presets.iter().map(|&(t, p)| (t, Some(p))).collect();
    let mut template_of: BTreeMap<Uuid, Uuid> = presets.iter().map(|&(t, p)| (p, t)).collect();
    for claim in claims {
        if let Some(preset) = claim.preset_id {
            template_of.entry(preset).or_insert(claim.template_id);
        }
        let key = (claim.template_id, claim.preset_id);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    // The cold samples of each template: misses' builds that became ready.
    let mut cold: BTreeMap<Uuid, Vec<f64>> = BTreeMap::new();
    for claim in claims {
        if let (Outcome::Miss(_), Some(ready)) =
            (claim.outcome, claim.build.as_ref().and_then(BuildReadiness::ready_seconds))
        {
            cold.entry(claim.template_id).or_default().push(ready);
        }
    }
    let mut idle: BTreeMap<Uuid, (u64, f64)> = BTreeMap::new();
    for life in lives {
        let hours = life.idle_hours(window);
        let overlaps = life.created_at <= window.end && life.ended_at.is_none_or(|end| end >= window.start);
        let entry = idle.entry(life.preset_id).or_default();
        entry.0 += u64::from(overlaps);
        entry.1 += hours;
        // A preset met only in lives: its template is unknown here unless named.
        if let Some(&template) = template_of.get(&life.preset_id) {
            let key = (template, Some(life.preset_id));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.into_iter()
        .map(|(template_id, preset_id)| {
            let mine: Vec<&ClaimRow> =
                claims.iter().filter(|c| c.template_id == template_id && c.preset_id == preset_id).collect();
            let mut misses_by_reason = BTreeMap::new();
            let (mut hits, mut hand_overs, mut claim_ready) = (0u64, Vec::new(), Vec::new());
            for claim in &mine {
                match claim.outcome {
                    Outcome::Hit => {
                        hits += 1;
                        hand_overs.push(claim.latency_ms);
                        if let Some(ready) = claim.build.as_ref().and_then(BuildReadiness::ready_seconds) {
                            claim_ready.push(ready);
                        }
                    }
                    Outcome::Miss(reason) => *misses_by_reason.entry(reason).or_insert(0) += 1,
                }
            }
            let claims_n = mine.len() as u64;
            let samples = cold.get(&template_id).map(Vec::as_slice).unwrap_or_default();
            let cold_ready_seconds = percentile(samples, 0.5);
            let claim_ready_seconds = percentile(&claim_ready, 0.5);
            let (prebuilds, idle_instance_hours) = preset_id.and_then(|p| idle.get(&p).copied()).unwrap_or((0, 0.0));
            PresetInsight {
                template_id,
                preset_id,
                claims: claims_n,
                hits,
                misses: claims_n - hits,
                misses_by_reason,
                hit_rate: (claims_n > 0).then(|| hits as f64 / claims_n as f64),
                hand_over_p50_ms: percentile(&hand_overs, 0.5),
                hand_over_p95_ms: percentile(&hand_overs, 0.95),
                cold_ready_seconds,
                cold_ready_samples: samples.len() as u64,
                claim_ready_seconds,
                claim_ready_samples: claim_ready.len() as u64,
                time_saved_seconds: time_saved(hits, cold_ready_seconds, claim_ready_seconds),
                prebuilds,
                idle_instance_hours,
                instance_hours_per_hit: (hits > 0).then(|| idle_instance_hours / hits as f64),
            }
        })
        .collect()
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds().map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    const TEMPLATE: Uuid = Uuid::from_u128(1);
    const US: Uuid = Uuid::from_u128(2);
    const EU: Uuid = Uuid::from_u128(3);

    fn ready(created: i64, completed: i64, agents_ready: Option<i64>) -> BuildReadiness {
        BuildReadiness {
            created_at: t(created),
            job_status: JobStatus::Succeeded,
            completed_at: Some(t(completed)),
            agents: 1,
            agents_ready: u32::from(agents_ready.is_some()),
            first_ready_at: agents_ready.map(t),
            last_ready_at: agents_ready.map(t),
            superseded: false,
        }
    }

    fn claim(preset: Option<Uuid>, outcome: Outcome, latency_ms: f64, build: Option<BuildReadiness>) -> ClaimRow {
        ClaimRow { template_id: TEMPLATE, preset_id: preset, outcome, latency_ms, build }
    }

    #[test]
    fn windows_parse_with_units_and_are_bounded() {
        let secs = |s: u64| Ok(std::time::Duration::from_secs(s));
        assert_eq!(parse_window("7d"), secs(7 * 86_400));
        assert_eq!(parse_window("24h"), secs(86_400));
        assert_eq!(parse_window("90m"), secs(5400));
        assert_eq!(parse_window("1d12h"), secs(86_400 + 43_200));
        assert_eq!(parse_window(" 2w "), secs(14 * 86_400));
        assert_eq!(parse_window("90d"), secs(90 * 86_400));
        assert_eq!(parse_window("91d"), Err(WindowError::TooLong));
        assert_eq!(parse_window("99999999999999999999999d"), Err(WindowError::TooLong));
        assert_eq!(parse_window("0s"), Err(WindowError::TooShort));
        assert_eq!(parse_window(""), Err(WindowError::Empty));
        for bad in ["7", "d", "7x", "-1d", "7 d", "1.5h", "h7"] {
            assert!(matches!(parse_window(bad), Err(WindowError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn ready_time_waits_for_the_job_and_every_agent_of_this_build() {
        assert_eq!(ready(0, 1, Some(30)).ready_seconds(), Some(1800.0));
        // Agents ready before the job ended: the job's end is when it was usable.
        assert_eq!(ready(0, 10, Some(5)).ready_seconds(), Some(600.0));
        // Not ready yet; ready only from an earlier build; failed; superseded.
        assert_eq!(ready(0, 1, None).ready_seconds(), None);
        assert_eq!(ready(10, 10, Some(5)).ready_seconds(), None);
        assert_eq!(BuildReadiness { job_status: JobStatus::Failed, ..ready(0, 1, Some(2)) }.ready_seconds(), None);
        assert_eq!(BuildReadiness { superseded: true, ..ready(0, 1, Some(2)) }.ready_seconds(), None);
        assert_eq!(
            BuildReadiness { agents: 2, agents_ready: 1, ..ready(0, 1, Some(2)) }.ready_seconds(),
            None,
            "one agent of two is not ready"
        );
        // Two agents: ready when the later one was; one of them only from an earlier build.
        let two = BuildReadiness { agents: 2, agents_ready: 2, first_ready_at: Some(t(2)), ..ready(0, 1, Some(9)) };
        assert_eq!(two.ready_seconds(), Some(540.0));
        assert_eq!(BuildReadiness { first_ready_at: Some(t(-1)), ..two }.ready_seconds(), None);
        // No agents: ready when the job ended.
        let agentless = BuildReadiness { agents: 0, ..ready(0, 3, None) };
        assert_eq!(agentless.ready_seconds(), Some(180.0));
    }

    #[test]
    fn a_worked_example() {
        // Window: 06:00 back to midnight.
        let window = Window { start: t(0), end: t(360) };
        let claims = vec![
            // Cold builds of the template: 30 and 50 minutes (median 40), one still not ready.
            claim(Some(US), Outcome::Miss(MissReason::NoEligible), 5.0, Some(ready(10, 11, Some(40)))),
            claim(None, Outcome::Miss(MissReason::NoPreset), 5.0, Some(ready(20, 21, Some(70)))),
            claim(Some(US), Outcome::Miss(MissReason::NoEligible), 5.0, Some(ready(100, 101, None))),
            // Two hits ready in 2 and 4 minutes (median 3), hand-overs 10 and 20 ms.
            claim(Some(US), Outcome::Hit, 10.0, Some(ready(120, 120, Some(122)))),
            claim(Some(US), Outcome::Hit, 20.0, Some(ready(200, 200, Some(204)))),
            claim(Some(EU), Outcome::Miss(MissReason::NoPool), 1.0, None),
        ];
        let lives = [
            // Before the window, claimed at 02:00: 2 h inside.
            PrebuildLife { preset_id: US, created_at: t(-60), ended_at: Some(t(120)) },
            // 03:20 to now: 2 h 40 min.
            PrebuildLife { preset_id: US, created_at: t(200), ended_at: None },
            // Ended before the window: nothing.
            PrebuildLife { preset_id: US, created_at: t(-300), ended_at: Some(t(-200)) },
        ];
        let out = insights(&window, &[(TEMPLATE, US)], &claims, &lives);
        assert_eq!(out.iter().map(|i| i.preset_id).collect::<Vec<_>>(), [Some(US), None, Some(EU)]);
        let us = &out[0];
        assert_eq!((us.claims, us.hits, us.misses), (4, 2, 2));
        assert_eq!(us.misses_by_reason, BTreeMap::from([(MissReason::NoEligible, 2)]));
        assert_eq!(us.hit_rate, Some(0.5));
        assert_eq!(us.hand_over_p50_ms, Some(15.0));
        assert_eq!(us.hand_over_p95_ms, Some(19.5));
        assert_eq!((us.cold_ready_seconds, us.cold_ready_samples), (Some(2400.0), 2));
        assert_eq!((us.claim_ready_seconds, us.claim_ready_samples), (Some(180.0), 2));
        assert_eq!(us.time_saved_seconds, Some(2.0 * (2400.0 - 180.0)));
        assert_eq!(us.prebuilds, 2);
        assert!((us.idle_instance_hours - (2.0 + 160.0 / 60.0)).abs() < 1e-9, "{}", us.idle_instance_hours);
        assert!((us.instance_hours_per_hit.unwrap() - (2.0 + 160.0 / 60.0) / 2.0).abs() < 1e-9);
        // No preset: misses only, the template's cold time, nothing saved.
        let none = &out[1];
        assert_eq!((none.claims, none.hits, none.hit_rate), (1, 0, Some(0.0)));
        assert_eq!(none.time_saved_seconds, Some(0.0));
        assert_eq!((none.idle_instance_hours, none.instance_hours_per_hit), (0.0, None));
    }

    #[test]
    fn time_saved_is_never_negative_and_unknown_without_a_cold_sample() {
        assert_eq!(time_saved(3, None, Some(10.0)), None);
        assert_eq!(time_saved(0, None, None), None);
        assert_eq!(time_saved(0, Some(100.0), None), Some(0.0));
        assert_eq!(time_saved(2, Some(100.0), None), None, "hits whose claims are not ready yet");
        assert_eq!(time_saved(2, Some(100.0), Some(130.0)), Some(0.0));
        assert_eq!(time_saved(2, Some(100.0), Some(40.0)), Some(120.0));
    }

    #[test]
    fn a_pool_with_no_claims_has_no_hit_rate_and_costs_its_idle_hours() {
        let window = Window { start: t(0), end: t(60) };
        let lives = [PrebuildLife { preset_id: US, created_at: t(-10), ended_at: None }];
        let out = insights(&window, &[(TEMPLATE, US)], &[], &lives);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].claims, out[0].hit_rate, out[0].instance_hours_per_hit), (0, None, None));
        assert_eq!((out[0].prebuilds, out[0].idle_instance_hours), (1, 1.0));
        assert_eq!((out[0].cold_ready_seconds, out[0].time_saved_seconds), (None, None));
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Hit),
            Just(Outcome::Miss(MissReason::NoEligible)),
            Just(Outcome::Miss(MissReason::NoPreset)),
            Just(Outcome::Miss(MissReason::Backoff)),
        ]
    }

    fn claim_row() -> impl Strategy<Value = ClaimRow> {
        (
            0..2u128,
            proptest::option::of(2..4u128),
            outcome(),
            0.0..1e4f64,
            proptest::option::of((0..600i64, 0..600i64, proptest::option::of(0..600i64))),
        )
            .prop_map(|(template, preset, outcome, latency_ms, build)| ClaimRow {
                template_id: Uuid::from_u128(template),
                preset_id: preset.map(Uuid::from_u128),
                outcome,
                latency_ms,
                build: build.map(|(created, completed, agents)| ready(created, created + completed, agents)),
            })
    }

    fn life() -> impl Strategy<Value = PrebuildLife> {
        (2..4u128, -1000..1000i64, proptest::option::of(0..2000i64)).prop_map(|(preset, created, length)| {
            PrebuildLife {
                preset_id: Uuid::from_u128(preset),
                created_at: t(created),
                ended_at: length.map(|l| t(created + l)),
            }
        })
    }

    proptest! {
        #[test]
        fn the_figures_hold_together(
            start in -500..500i64,
            length in 1..1000i64,
            claims in proptest::collection::vec(claim_row(), 0..40),
            lives in proptest::collection::vec(life(), 0..40),
        ) {
            let window = Window { start: t(start), end: t(start + length) };
            let presets = [(Uuid::from_u128(0), Uuid::from_u128(2)), (Uuid::from_u128(1), Uuid::from_u128(3))];
            let out = insights(&window, &presets, &claims, &lives);
            prop_assert_eq!(out.iter().map(|i| i.claims).sum::<u64>(), claims.len() as u64, "every claim is counted once");
            for i in &out {
                prop_assert_eq!(i.hits + i.misses, i.claims);
                prop_assert_eq!(i.misses_by_reason.values().sum::<u64>(), i.misses);
                if let Some(rate) = i.hit_rate {
                    prop_assert!((0.0..=1.0).contains(&rate));
                } else {
                    prop_assert_eq!(i.claims, 0);
                }
                prop_assert!(i.time_saved_seconds.is_none_or(|s| s >= 0.0));
                prop_assert!(i.idle_instance_hours >= 0.0);
                prop_assert!(i.idle_instance_hours <= window.hours() * i.prebuilds as f64 + 1e-9,
                    "idle hours {} over {} prebuilds in {} h", i.idle_instance_hours, i.prebuilds, window.hours());
                if let (Some(p50), Some(p95)) = (i.hand_over_p50_ms, i.hand_over_p95_ms) {
                    prop_assert!(p50 <= p95);
                }
            }
        }

        #[test]
        fn a_life_is_clipped_to_the_window(
            start in -500..500i64,
            length in 0..1000i64,
            life in life(),
        ) {
            let window = Window { start: t(start), end: t(start + length) };
            let hours = life.idle_hours(&window);
            prop_assert!(hours >= 0.0 && hours <= window.hours() + 1e-9);
            let whole = life.ended_at.unwrap_or(window.end).max(life.created_at) - life.created_at;
            prop_assert!(hours <= seconds(whole) / 3600.0 + 1e-9);
            // A life wholly inside the window counts whole.
            if life.created_at >= window.start && life.ended_at.is_some_and(|e| e <= window.end) {
                prop_assert!((hours - seconds(life.ended_at.unwrap() - life.created_at) / 3600.0).abs() < 1e-9);
            }
            // Splitting the window in two splits the hours.
            let mid = window.start + (window.end - window.start) / 2;
            let halves = life.idle_hours(&Window { start: window.start, end: mid })
                + life.idle_hours(&Window { start: mid, end: window.end });
            prop_assert!((halves - hours).abs() < 1e-9);
        }

        #[test]
        fn percentiles_lie_within_the_values(values in proptest::collection::vec(-1e6..1e6f64, 1..50), p in 0.0..=1.0f64) {
            let q = percentile(&values, p).unwrap();
            let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            prop_assert!(q >= min && q <= max);
            prop_assert!(percentile(&values, 0.5).unwrap() <= percentile(&values, 1.0).unwrap());
        }

        #[test]
        fn parsed_windows_are_within_bounds(text in "[0-9]{0,4}[smhdwx]?[0-9]{0,3}[smhdw]?") {
            if let Ok(window) = parse_window(&text) {
                prop_assert!(window >= std::time::Duration::from_secs(1) && window <= MAX_WINDOW);
            }
        }
    }
}
