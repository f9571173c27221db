//! `GET /metrics` (issue 13, docs/metrics.md): every metric after a scripted
//! scenario, scraped over HTTP and read back with a Prometheus text-format
//! parser, and the Grafana dashboard's queries checked against it; scrapes
//! served from memory; the dedicated listener.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use warmspace_sdk::{Client, PresetStatus};
use warmspace_server::Config;
use warmspace_server::testing::TestServer;

use crate::common::*;

/// An echo template whose `us` preset keeps a pool of `instances`, whose
/// prebuilds run an agent, and whose claims rebuild `echo_volume.home`.
fn replacing_pool(instances: u32) -> String {
    format!(
        "provisioner = \"echo\"\nclaim = \"rebuild\"\n\
         parameter \"region\" {{\n  type = \"string\"\n  default = \"us\"\n}}\n\
         preset \"us\" {{\n  parameters = {{ region = \"us\" }}\n  prebuilds {{\n    instances = {instances}\n  }}\n}}\n\
         agent \"main\" {{}}\n\
         echo {{\n  duration_ms = 1\n  replace_on_claim = [\"echo_volume.home\"]\n}}\n"
    )
}

/// An echo template whose `broken` preset's creations all fail.
fn failing_pool(instances: u32) -> String {
    format!(
        "provisioner = \"echo\"\n\
         preset \"broken\" {{\n  prebuilds {{\n    instances = {instances}\n  }}\n}}\n\
         echo {{\n  duration_ms = 1\n  fail_on = [\"start\"]\n}}\n"
    )
}

/// One scrape: its text, and its samples by name and labels.
struct Scrape {
    text: String,
    samples: Vec<prometheus_parse::Sample>,
}

impl Scrape {
    async fn of(server: &TestServer) -> Scrape {
        let response = reqwest::get(server.metrics_url.join("metrics").unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let text = response.text().await.unwrap();
        let parsed =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the scrape parses");
        // The parser skips what it does not understand: every sample line
        // must have become a sample, so nothing was skipped.
        let sample_lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
        let parsed_lines: usize = parsed
            .samples
            .iter()
            .map(|s| match &s.value {
                // A histogram's buckets come back as one sample (its sum and count as two more).
                prometheus_parse::Value::Histogram(buckets) => buckets.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(parsed_lines, sample_lines, "every sample line parsed:\n{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let kind = line.rsplit(' ').next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
        }
        Scrape { text, samples: parsed.samples }
    }

    /// The value of the series `name` whose labels include `labels` (and
    /// are no more than they), if it is there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| {
                let have: BTreeMap<&str, &str> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                have == want
            })
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    // A histogram's observations: its +Inf bucket.
                    buckets.iter().find(|b| b.less_than.is_infinite()).map_or(0.0, |b| b.count)
                }
                other => panic!("{name}: unexpected {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} more than once");
        found.first().copied()
    }

    fn expect(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        assert_eq!(self.value(name, labels), Some(value), "{name} {labels:?} in\n{}", self.text);
    }

    /// Metric names, as their `# TYPE` lines and samples name them.
    fn names(&self) -> BTreeSet<String> {
        let typed = self.text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap());
        let sampled = self.text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(['{', ' ']).next().unwrap());
        typed.chain(sampled).filter(|n| !n.is_empty()).map(str::to_owned).collect()
    }
}

/// Scrapes until `check` holds of a scrape: what daemons and agents finish
/// on their own is observed a moment after the API shows it finished.
async fn scrape_until(server: &TestServer, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = Scrape::of(server).await;
        if check(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {what} in\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const ORG: (&str, &str) = ("organization_name", "default");

#[tokio::test]
async fn after_a_scripted_scenario_every_metric_has_its_value_and_labels() {
    let mut config = Config::default();
    // Collections happen when the test asks for them, and at start.
    config.metrics.collect_interval = Duration::from_secs(3600);
    let server = TestServer::start_full(config, 2, false).await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;
    // Fail a preset to its hard limit (3 failed creations).
    push(&owner, "broken", &[("warmspace.hcl", &failing_pool(3))]).await;
    assert_eq!(server.reconciler.run_cycle().await.unwrap().unwrap().created, 3);
    until_status(&owner, "broken", PresetStatus::HardLimited).await;

    // Fill a pool (its cycles create nothing more for the hard-limited preset).
    let template = push(&owner, "pool", &[("warmspace.hcl", &replacing_pool(2))]).await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 2).await;
    // Claim twice; each claim build replaces a warm resource.
    for name in ["first", "second"] {
        let claimed_ws = member.create_workspace("me", &request(&template, name, Some(us), &[])).await.unwrap();
        assert!(claimed(&claimed_ws));
        let (_, build) = finish(&member, &claimed_ws.latest_build).await;
        assert!(build.resources.iter().any(|r| r.replaced));
    }
    // Miss once: the pool is empty (no cycle refilled it).
    let cold = member.create_workspace("me", &request(&template, "cold", Some(us), &[])).await.unwrap();
    assert!(!claimed(&cold));
    finish(&member, &cold.latest_build).await;

    let before = Scrape::of(&server).await;
    assert_eq!(
        before.value(
            "warmspace_prebuilt_workspaces_claimed_total",
            &[ORG, ("template_name", "pool"), ("preset_name", "us")]
        ),
        None,
        "collected metrics are the last collection's (at start, before any claim)"
    );
    server.clock.advance(Duration::from_secs(60));
    let collected_after = server.clock.now().timestamp() as f64;
    server.domain.collect_metrics().await.unwrap();

    let us_labels = [ORG, ("template_name", "pool"), ("preset_name", "us")];
    let broken_labels = [ORG, ("template_name", "broken"), ("preset_name", "broken")];
    // What daemons and agents end is observed a moment after the API says so.
    let s = scrape_until(&server, "the claims' creations and agents", |s| {
        let claim_creations = [us_labels.as_slice(), &[("type", "claim")]].concat();
        let ready = |claim| [ORG, ("template_name", "pool"), ("transition", "start"), ("claim", claim)];
        s.value("warmspace_workspace_creation_duration_seconds", &claim_creations) == Some(2.0)
            && s.value("warmspace_workspace_build_ready_duration_seconds", &ready("true")) == Some(2.0)
            && s.value("warmspace_workspace_build_ready_duration_seconds", &ready("false")) == Some(3.0)
    })
    .await;

    // Counters, from the database.
    s.expect("warmspace_prebuilt_workspaces_created_total", &us_labels, 2.0);
    s.expect("warmspace_prebuilt_workspaces_failed_total", &us_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_claimed_total", &us_labels, 2.0);
    s.expect("warmspace_prebuilt_workspaces_resource_replacements_total", &us_labels, 2.0);
    s.expect(
        "warmspace_prebuilt_workspaces_claim_misses_total",
        &[&us_labels[..], &[("reason", "no_eligible")]].concat(),
        1.0,
    );
    s.expect("warmspace_prebuilt_workspaces_created_total", &broken_labels, 3.0);
    s.expect("warmspace_prebuilt_workspaces_failed_total", &broken_labels, 3.0);
    s.expect("warmspace_prebuilt_workspaces_claimed_total", &broken_labels, 0.0);
    let misses = s.samples.iter().filter(|x| x.metric == "warmspace_prebuilt_workspaces_claim_misses_total").count();
    assert_eq!(misses, 1, "one miss, one series");

    // Pool gauges, as the reconciler sees the pools.
    s.expect("warmspace_prebuilt_workspaces_desired", &us_labels, 2.0);
    s.expect("warmspace_prebuilt_workspaces_running", &us_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_eligible", &us_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_preset_hard_limited", &us_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_preset_validation_failed", &us_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_desired", &broken_labels, 3.0);
    s.expect("warmspace_prebuilt_workspaces_running", &broken_labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_preset_hard_limited", &broken_labels, 1.0);
    s.expect("warmspace_prebuilt_workspaces_preset_validation_failed", &broken_labels, 0.0);
    s.expect("warmspace_prebuilds_reconciliation_paused", &[], 0.0);
    let updated = s.value("warmspace_prebuilt_workspaces_metrics_last_updated", &[]).unwrap();
    assert!((collected_after..=server.clock.now().timestamp() as f64).contains(&updated), "{updated}");

    // The queue: 3 failed creations; 2 prebuild creations, 2 claims and a
    // cold build succeeded; 2 imports.
    let jobs = |status: &str, kind: &str| s.value("warmspace_provisioner_jobs", &[("status", status), ("type", kind)]);
    assert_eq!(jobs("failed", "workspace_build"), Some(3.0));
    assert_eq!(jobs("succeeded", "workspace_build"), Some(5.0));
    assert_eq!(jobs("succeeded", "template_version_import"), Some(2.0));
    assert_eq!(jobs("pending", "workspace_build"), None, "no series for what has no job");
    s.expect("warmspace_provisioner_daemons_live", &[], 2.0);

    // Histograms, observed in this process.
    s.expect("warmspace_prebuilt_workspaces_claim_duration_seconds", &us_labels, 2.0);
    let creation = |kind: &'static str| [&us_labels[..], &[("type", kind)]].concat();
    s.expect("warmspace_workspace_creation_duration_seconds", &creation("prebuild"), 2.0);
    s.expect("warmspace_workspace_creation_duration_seconds", &creation("claim"), 2.0);
    s.expect("warmspace_workspace_creation_duration_seconds", &creation("regular"), 1.0);
    let broken_creations = [&broken_labels[..], &[("type", "prebuild")]].concat();
    assert_eq!(
        s.value("warmspace_workspace_creation_duration_seconds", &broken_creations),
        None,
        "failures are not creations"
    );
    // Build to ready: the two prebuilds and the cold build; the two claims.
    let ready = |claim: &'static str| [ORG, ("template_name", "pool"), ("transition", "start"), ("claim", claim)];
    s.expect("warmspace_workspace_build_ready_duration_seconds", &ready("false"), 3.0);
    s.expect("warmspace_workspace_build_ready_duration_seconds", &ready("true"), 2.0);
    let wait = |labels: &[(&'static str, &'static str)], kind: &'static str, initiator: &'static str| {
        [labels, &[("job_type", kind), ("initiator", initiator)]].concat()
    };
    s.expect("warmspace_provisioner_job_queue_wait_seconds", &wait(&us_labels, "workspace_build", "prebuild"), 2.0);
    // Two claim builds and the cold build, all of preset `us`.
    s.expect("warmspace_provisioner_job_queue_wait_seconds", &wait(&us_labels, "workspace_build", "user"), 3.0);
    s.expect("warmspace_provisioner_job_queue_wait_seconds", &wait(&broken_labels, "workspace_build", "prebuild"), 3.0);
    // Imports: of versions no template has yet, by a person.
    let imports = [
        ORG,
        ("template_name", ""),
        ("preset_name", ""),
        ("job_type", "template_version_import"),
        ("initiator", "user"),
    ];
    s.expect("warmspace_provisioner_job_queue_wait_seconds", &imports, 2.0);

    // Reconciliation: the cycles this test ran, and the last one's stats
    // (it found the pool full: nothing created).
    let full_cycles = s.value("warmspace_prebuilds_reconciliation_duration_seconds", &[("pass", "full")]).unwrap();
    assert!(full_cycles >= 2.0, "{full_cycles}");
    s.expect("warmspace_prebuilds_reconciliation_last_cycle_presets", &[], 2.0);
    let reconciled = s.value("warmspace_prebuilds_reconciliation_last_cycle_presets_reconciled", &[]).unwrap();
    let skipped = s.value("warmspace_prebuilds_reconciliation_last_cycle_presets_skipped", &[]).unwrap();
    assert_eq!(reconciled + skipped, 2.0);
    s.expect("warmspace_prebuilds_reconciliation_last_cycle_actions", &[("kind", "created")], 0.0);
    for kind in ["deleted", "canceled"] {
        assert!(s.value("warmspace_prebuilds_reconciliation_last_cycle_actions", &[("kind", kind)]).is_some());
    }

    // The Grafana dashboard queries only what the server exports.
    check_dashboard(&s);
}

#[tokio::test]
async fn a_new_version_replaces_the_old_ones_hard_limit() {
    let mut config = quiet();
    config.reconciler.backoff_interval = Duration::from_secs(3600);
    let server = TestServer::start_full(config, 2, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "broken", &[("warmspace.hcl", &failing_pool(3))]).await;
    server.reconciler.run_cycle().await.unwrap().unwrap();
    until_status(&owner, "broken", PresetStatus::HardLimited).await;
    server.domain.collect_metrics().await.unwrap();
    let labels = [ORG, ("template_name", "broken"), ("preset_name", "broken")];
    Scrape::of(&server).await.expect("warmspace_prebuilt_workspaces_preset_hard_limited", &labels, 1.0);

    // A fixed version of the same preset: its verdict is the only one served.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), failing_pool(0)).unwrap();
    let v2 = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &v2).await;
    owner.set_active_version(template.id, v2.id).await.unwrap();
    server.domain.collect_metrics().await.unwrap();
    let s = Scrape::of(&server).await;
    s.expect("warmspace_prebuilt_workspaces_preset_hard_limited", &labels, 0.0);
    s.expect("warmspace_prebuilt_workspaces_desired", &labels, 0.0);
    // The old version's failures still count.
    s.expect("warmspace_prebuilt_workspaces_failed_total", &labels, 3.0);
}

/// Waits until the active preset of `template` has status `want`.
async fn until_status(client: &Client, template: &str, want: PresetStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.prebuilds_status().await.unwrap();
        let preset = status.presets.iter().find(|p| p.template_name == template && p.version_active).unwrap();
        if preset.status == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {want:?}: {preset:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// A current-thread runtime: the server under test runs its tasks on this
// thread, so the statements counted here are its own and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn a_thousand_scrapes_run_no_statement_and_show_the_last_collection() {
    let statements = Statements::on_this_thread();
    // Nothing in the background: no polling, no reaping, no cycles, and
    // collections only at start and when the test asks.
    let server = TestServer::start_full(quiet(), 1, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(0, "reinit", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    server.store.seed_prebuilds(us, 3).await.unwrap();
    server.clock.advance(Duration::from_secs(30));
    let first_collection = server.clock.now().timestamp() as f64;
    let (collecting, collected) = statements.during(server.domain.collect_metrics()).await;
    collected.unwrap();
    assert!(collecting > 0, "a collection reads the database");

    let client = reqwest::Client::new();
    let url = server.metrics_url.join("metrics").unwrap();
    let (counted, last) = statements
        .during(async {
            let mut last = String::new();
            for _ in 0..1000 {
                last = client.get(url.clone()).send().await.unwrap().text().await.unwrap();
            }
            last
        })
        .await;
    assert_eq!(counted, 0, "scrapes are served from memory");
    let labels = [ORG, ("template_name", "pool"), ("preset_name", "us")];
    assert!(last.contains("warmspace_prebuilt_workspaces_running{"), "{last}");
    let s = Scrape::of(&server).await;
    s.expect("warmspace_prebuilt_workspaces_running", &labels, 3.0);
    let updated = s.value("warmspace_prebuilt_workspaces_metrics_last_updated", &[]).unwrap();
    assert!((first_collection..=server.clock.now().timestamp() as f64).contains(&updated));

    // More prebuilds are seen at the next collection, not before.
    server.store.seed_prebuilds(us, 2).await.unwrap();
    Scrape::of(&server).await.expect("warmspace_prebuilt_workspaces_running", &labels, 3.0);
    server.clock.advance(Duration::from_secs(30));
    server.domain.collect_metrics().await.unwrap();
    let s = Scrape::of(&server).await;
    s.expect("warmspace_prebuilt_workspaces_running", &labels, 5.0);
    let later = s.value("warmspace_prebuilt_workspaces_metrics_last_updated", &[]).unwrap();
    assert!(later >= updated + 30.0, "the collection's time is the server clock's: {updated} then {later}");
}

#[tokio::test]
async fn with_a_prometheus_address_metrics_are_served_there_only_and_without_a_session() {
    let mut config = quiet();
    config.metrics.prometheus_address = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_full(config, 0, false).await;
    assert_ne!(server.metrics_url, server.url);
    let s = Scrape::of(&server).await;
    s.expect("warmspace_prebuilds_reconciliation_paused", &[], 0.0);
    let on_api = reqwest::get(server.url.join("metrics").unwrap()).await.unwrap();
    assert_eq!(on_api.status(), 404, "not on the API's address once it has its own");

    let plain = TestServer::start_full(quiet(), 0, false).await;
    assert_eq!(plain.metrics_url, plain.url);
    let response = reqwest::get(plain.url.join("metrics").unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "on the API's address by default, with no session");
}

/// Every metric name in the Grafana dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/warmspace.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array(), "a Grafana dashboard");
    let mut exprs = Vec::new();
    fn walk(value: &serde_json::Value, exprs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => exprs.push(expr.clone()),
                        _ => walk(value, exprs),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let name = regex_lite_names(&exprs.join(" "));
    assert!(!name.is_empty());
    name
}

/// The `warmspace_…` identifiers in `text`.
fn regex_lite_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("warmspace_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(text[start..end].to_owned());
        i = end;
    }
    names
}

/// Every metric the Grafana dashboard queries is in `scrape` (one taken
/// after a scenario that observed every histogram at least once: a
/// histogram with no observation has no series).
fn check_dashboard(scrape: &Scrape) {
    let exported = scrape.names();
    for name in dashboard_metrics() {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        assert!(
            exported.contains(&name) || exported.contains(base),
            "the dashboard queries {name}, which the server does not export: {exported:#?}"
        );
    }
}
