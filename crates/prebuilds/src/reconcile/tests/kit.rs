//! Builders that make hand-written snapshots readable: times are minutes
//! before a fixed `now`, ids are small numbers.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::reconcile::{
    Action, Creation, Decision, JobStatus, LatestBuild, Prebuild, PresetState, Settings, Transition, decide,
};
use crate::schedule::Schedule;

/// Monday 9 March 2026, 15:00 UTC: 11:00 in New York (daylight time since the 8th).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 9, 15, 0, 0).unwrap()
}

/// `minutes` before `now` (after it when negative).
pub fn ago(minutes: i64) -> DateTime<Utc> {
    now() - TimeDelta::minutes(minutes)
}

pub fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Backoff 5 min per failure, look-back 1 h, hard limit 3, replacement grace 10 min.
pub fn settings() -> Settings {
    Settings {
        paused: false,
        backoff_interval: minutes(5),
        backoff_lookback: minutes(60),
        failure_hard_limit: 3,
        replacement_grace: minutes(10),
    }
}

pub fn paused() -> Settings {
    Settings { paused: true, ..settings() }
}

/// Workspace `n`.
pub fn ws(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// The job of workspace `n`'s latest build.
pub fn job(n: u128) -> Uuid {
    Uuid::from_u128((1 << 64) + n)
}

pub fn ids(ns: &[u128]) -> Vec<Uuid> {
    ns.iter().copied().map(ws).collect()
}

/// Workspace `n`, created `age` minutes ago, whose latest build (build 1) is
/// `transition` with `status`; finished when created if it has finished.
pub fn prebuild(n: u128, age: i64, transition: Transition, status: JobStatus) -> Prebuild {
    let finished_at = (!status.in_progress()).then(|| ago(age));
    Prebuild {
        workspace_id: ws(n),
        created_at: ago(age),
        latest: LatestBuild { transition, status, job_id: job(n), build_number: 1, finished_at },
        agents_ready: true,
    }
}

/// Up, agents ready: claimable unless expired.
pub fn running(n: u128, age: i64) -> Prebuild {
    prebuild(n, age, Transition::Start, JobStatus::Succeeded)
}

/// A creation queued and not yet picked up.
pub fn pending_creation(n: u128, age: i64) -> Prebuild {
    prebuild(n, age, Transition::Start, JobStatus::Pending)
}

/// A creation that failed `failed` minutes ago.
pub fn failed(n: u128, age: i64, failed: i64) -> Prebuild {
    prebuild(n, age, Transition::Start, JobStatus::Failed).finished(failed)
}

/// Later builds of a prebuild: build 2 or more.
pub fn later(n: u128, age: i64, transition: Transition, status: JobStatus) -> Prebuild {
    prebuild(n, age, transition, status).build_number(2)
}

impl Prebuild {
    pub fn build_number(mut self, number: i32) -> Self {
        self.latest.build_number = number;
        self
    }

    pub fn finished(mut self, minutes_ago: i64) -> Self {
        self.latest.finished_at = Some(ago(minutes_ago));
        self
    }

    pub fn agents_not_ready(mut self) -> Self {
        self.agents_ready = false;
        self
    }
}

/// An active preset with an empty pool of size 0 and no history.
pub fn preset() -> PresetState {
    PresetState {
        preset_id: Uuid::from_u128(0xAAAA),
        template_id: Uuid::from_u128(0xBBBB),
        template_version_id: Uuid::from_u128(0xCCCC),
        version_active: true,
        template_deleted: false,
        instances: 0,
        ttl: None,
        agent_ready_timeout: minutes(10),
        typical_build: None,
        timezone: None,
        schedules: Vec::new(),
        last_invalidated_at: None,
        validation_failed: false,
        creations: Vec::new(),
        prebuilds: Vec::new(),
    }
}

impl PresetState {
    pub fn instances(mut self, n: u32) -> Self {
        self.instances = n;
        self
    }

    pub fn inactive(mut self) -> Self {
        self.version_active = false;
        self
    }

    pub fn deleted_template(mut self) -> Self {
        self.template_deleted = true;
        self
    }

    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn invalidated(mut self, at: DateTime<Utc>) -> Self {
        self.last_invalidated_at = Some(at);
        self
    }

    pub fn zone(mut self, zone: Tz) -> Self {
        self.timezone = Some(zone);
        self
    }

    pub fn schedule(mut self, cron: &str, instances: u32) -> Self {
        self.schedules.push((Schedule::parse(cron).unwrap(), instances));
        self
    }

    pub fn typical_build(mut self, d: Duration) -> Self {
        self.typical_build = Some(d);
        self
    }

    pub fn agent_ready_timeout(mut self, d: Duration) -> Self {
        self.agent_ready_timeout = d;
        self
    }

    pub fn validation_failed(mut self) -> Self {
        self.validation_failed = true;
        self
    }

    /// Appends a finished creation: call newest first, as the store sends them.
    pub fn creation(mut self, minutes_ago: i64, succeeded: bool) -> Self {
        // Creations of prebuilds no longer in the pool.
        let workspace_id = Uuid::from_u128((2 << 64) + self.creations.len() as u128);
        self.creations.push(Creation { workspace_id, finished_at: ago(minutes_ago), succeeded });
        self
    }

    pub fn with(mut self, prebuilds: impl IntoIterator<Item = Prebuild>) -> Self {
        self.prebuilds.extend(prebuilds);
        self
    }

    /// The decision at `now` with the default settings.
    pub fn decide(&self) -> Decision {
        decide(self, now(), &settings())
    }
}

impl Decision {
    /// The workspaces deleted, in order (at most one `Delete` is allowed).
    pub fn deleted(&self) -> Vec<Uuid> {
        self.only(|a| if let Action::Delete(ids) = a { Some(ids.clone()) } else { None }).unwrap_or_default()
    }

    /// The jobs canceled.
    pub fn canceled(&self) -> Vec<Uuid> {
        self.only(|a| if let Action::CancelPending(ids) = a { Some(ids.clone()) } else { None }).unwrap_or_default()
    }

    /// How many prebuilds are created.
    pub fn created(&self) -> u32 {
        self.only(|a| if let Action::Create(n) = a { Some(*n) } else { None }).unwrap_or(0)
    }

    fn only<T>(&self, pick: impl Fn(&Action) -> Option<T>) -> Option<T> {
        let mut found = self.actions.iter().filter_map(pick);
        let first = found.next();
        assert!(found.next().is_none(), "one action of a kind at most: {:?}", self.actions);
        first
    }
}
