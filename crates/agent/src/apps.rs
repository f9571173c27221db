//! App health checks: each app with a `healthcheck` is fetched (HTTP GET)
//! every `interval`; a 2xx or 3xx answer is healthy, `threshold` failures in
//! a row unhealthy, and until either it is `initializing`. An app without a
//! check is `disabled`. The agent reports every app's health when it starts,
//! then each change. Intervals run on tokio's clock, which tests can pause
//! and advance.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use warmspace_sdk::{AgentAppHealthRequest, App, AppHealth, Client, Healthcheck};

use crate::AgentError;

/// How long a check's request may take: its interval, but at least
/// [`MIN_CHECK_TIMEOUT`] (a busy machine answers a short interval's check
/// late, which is no reason to call the app unhealthy; the next check then
/// waits) and at most [`MAX_CHECK_TIMEOUT`].
const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// An app's health from its checks' results, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    threshold: u32,
    failures: u32,
    health: AppHealth,
}

impl Tracker {
    pub fn new(threshold: u32) -> Tracker {
        // A threshold of 0 would make an app unhealthy before any failure.
        Tracker { threshold: threshold.max(1), failures: 0, health: AppHealth::Initializing }
    }

    #[cfg(test)]
    pub fn health(&self) -> AppHealth {
        self.health
    }

    /// Takes one check's result; returns the new health when it changed.
    pub fn observe(&mut self, healthy: bool) -> Option<AppHealth> {
        let next = if healthy {
            self.failures = 0;
            AppHealth::Healthy
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.threshold { AppHealth::Unhealthy } else { self.health }
        };
        let changed = next != self.health;
        self.health = next;
        changed.then_some(next)
    }
}

/// Each app's health before any check ran.
pub fn initial(apps: &[App]) -> BTreeMap<String, AppHealth> {
    apps.iter()
        .map(|app| {
            let health = if app.healthcheck.is_some() { AppHealth::Initializing } else { AppHealth::Disabled };
            (app.name.clone(), health)
        })
        .collect()
}

/// Reports every app's initial health, then checks those with a health
/// check until the agent stops (or its token stops working).
pub async fn watch(client: &Client, apps: &[App]) -> Result<Infallible, AgentError> {
    if apps.is_empty() {
        // Most agents (every simulated one) have none: no HTTP client for them.
        return std::future::pending().await;
    }
    report(client, initial(apps)).await?;
    let http = http_client();
    let checks = apps.iter().filter_map(|app| Some((app.name.as_str(), app.healthcheck.as_ref()?)));
    let checks = checks.map(|(app, check)| {
        let probe = || probe(&http, &check.url, check.interval.clamp(MIN_CHECK_TIMEOUT, MAX_CHECK_TIMEOUT));
        let report = move |health: AppHealth| {
            tracing::info!(app, health = health.as_str(), "app health changed");
            report(client, BTreeMap::from([(app.to_owned(), health)]))
        };
        watch_one(check, probe, report)
    });
    futures::future::try_join_all(checks).await?;
    // No app has a check: nothing more to do.
    std::future::pending().await
}

/// Probes every `interval` of tokio's clock (the first at once) and
/// reports each change of health.
async fn watch_one<P, R>(
    check: &Healthcheck,
    mut probe: impl FnMut() -> P,
    mut report: impl FnMut(AppHealth) -> R,
) -> Result<(), AgentError>
where
    P: Future<Output = bool>,
    R: Future<Output = Result<(), AgentError>>,
{
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tracker = Tracker::new(check.threshold);
    loop {
        tick.tick().await;
        if let Some(health) = tracker.observe(probe().await) {
            report(health).await?;
        }
    }
}

/// One check: a 2xx or 3xx answer within `timeout` is healthy.
async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match http.get(url).timeout(timeout).send().await {
        Ok(response) => response.status().is_success() || response.status().is_redirection(),
        Err(err) => {
            tracing::debug!(url, error = %err, "a health check failed");
            false
        }
    }
}

async fn report(client: &Client, apps: BTreeMap<String, AppHealth>) -> Result<(), AgentError> {
    let req = AgentAppHealthRequest { apps };
    crate::retry::report("the app health report", || client.agent_app_health(&req)).await
}

/// A redirect is an answer (the app is up), so none is followed.
fn http_client() -> reqwest::Client {
    warmspace_sdk::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("warmspace-agent/", env!("CARGO_PKG_VERSION"), " (health check)"))
        .build()
        .expect("an HTTP client with these settings always builds")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn initializing_until_the_first_success_or_threshold_failures() {
        let mut tracker = Tracker::new(3);
        assert_eq!(tracker.health(), AppHealth::Initializing);
        assert_eq!(tracker.observe(false), None);
        assert_eq!(tracker.observe(false), None);
        assert_eq!(tracker.observe(false), Some(AppHealth::Unhealthy));
        assert_eq!(tracker.observe(false), None);
        assert_eq!(tracker.observe(true), Some(AppHealth::Healthy));
        // Two failures are below the threshold: still healthy.
        assert_eq!(tracker.observe(false), None);
        assert_eq!(tracker.observe(false), None);
        assert_eq!(tracker.health(), AppHealth::Healthy);
        assert_eq!(tracker.observe(false), Some(AppHealth::Unhealthy));
    }

    proptest! {
        /// Unhealthy once the last `threshold` results all failed; otherwise
        /// healthy after any success (the latest one reset the count), and
        /// initializing before any; a change is reported exactly when it happens.
        #[test]
        fn health_follows_the_run_of_failures(threshold in 1u32..6, results in prop::collection::vec(any::<bool>(), 0..40)) {
            let mut tracker = Tracker::new(threshold);
            for (i, &ok) in results.iter().enumerate() {
                let before = tracker.health();
                let changed = tracker.observe(ok);
                prop_assert_eq!(changed, (before != tracker.health()).then_some(tracker.health()));
                let seen = &results[..=i];
                let trailing_failures = seen.iter().rev().take_while(|ok| !**ok).count();
                let expected = if trailing_failures >= threshold as usize {
                    AppHealth::Unhealthy
                } else if seen.contains(&true) {
                    AppHealth::Healthy
                } else {
                    AppHealth::Initializing
                };
                prop_assert_eq!(tracker.health(), expected, "after {:?}", seen);
            }
        }
    }

    /// Checks at 0 s, 5 s, 10 s and 15 s of a paused clock fail, fail, fail
    /// and succeed: unhealthy at 10 s (the third failure), healthy at 15 s.
    #[tokio::test(start_paused = true)]
    async fn checks_run_every_interval_and_report_changes_only() {
        let check = Healthcheck { url: "http://app/".into(), interval: Duration::from_secs(5), threshold: 3 };
        let start = tokio::time::Instant::now();
        let mut results = [false, false, false].into_iter();
        let reports = std::cell::RefCell::new(Vec::new());
        let probe = || std::future::ready(results.next().unwrap_or(true));
        let report = |health| {
            reports.borrow_mut().push((start.elapsed(), health));
            std::future::ready(Ok(()))
        };
        let watching = tokio::time::timeout(Duration::from_secs(16), watch_one(&check, probe, report)).await;
        assert!(watching.is_err(), "it watches until stopped");
        assert_eq!(
            reports.into_inner(),
            [(Duration::from_secs(10), AppHealth::Unhealthy), (Duration::from_secs(15), AppHealth::Healthy)]
        );
    }

    #[test]
    fn apps_without_a_check_are_disabled_from_the_start() {
        let app = |name: &str, check: bool| App {
            name: name.into(),
            display_name: name.into(),
            url: "http://localhost:1".into(),
            healthcheck: check.then(|| Healthcheck {
                url: "http://localhost:1/".into(),
                interval: Duration::from_secs(1),
                threshold: 1,
            }),
        };
        let health = initial(&[app("web", true), app("docs", false)]);
        assert_eq!(
            health.into_iter().collect::<Vec<_>>(),
            [("docs".to_owned(), AppHealth::Disabled), ("web".to_owned(), AppHealth::Initializing)]
        );
    }
}
