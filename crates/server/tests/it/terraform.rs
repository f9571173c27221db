//! The `terraform` backend end to end, with the real Terraform CLI from
//! `PATH` on built-in resources only (no provider download): the state a
//! build leaves is kept with the build in PostgreSQL, and another daemon,
//! on what could be another host, carries the workspace on from it.

use tokio::sync::watch;
use tokio::task::JoinHandle;
use warmspace_provisioner::{Daemon, DaemonConfig, HttpCoordinator};
use warmspace_sdk::{Client, DriftCheckStatus, JobStatus, PresetDriftCheck, WorkspaceResource};
use warmspace_server::Config;
use warmspace_server::testing::{OWNER_EMAIL, TestServer};

use crate::common::*;

const MANIFEST: &str = "provisioner = \"terraform\"\nparameter \"out_dir\" {\n  type = \"string\"\n}\n";

/// `terraform_data.workspace` exists while the workspace is started and
/// writes `<out_dir>/started` (its name and its owner's email), removing it
/// when destroyed — which Terraform only does if the state says it exists.
const MAIN_TF: &str = r#"
variable "warmspace_start_count" { type = number }
variable "warmspace_workspace_name" { type = string }
variable "warmspace_owner_email" { type = string }
variable "out_dir" { type = string }

resource "terraform_data" "workspace" {
  count = var.warmspace_start_count
  input = {
    file = "${var.out_dir}/started"
    text = "${var.warmspace_workspace_name} ${var.warmspace_owner_email}"
  }
  provisioner "local-exec" {
    command = "printf '%s' '${self.input.text}' > '${self.input.file}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm '${self.input.file}'"
  }
}
"#;

/// An external daemon named `name`, as `warmspace provisioner start` runs
/// one, with a key of its own; it stops when the returned sender says so.
async fn daemon(server: &TestServer, owner: &Client, name: &str) -> (watch::Sender<bool>, JoinHandle<()>) {
    let key = owner.create_provisioner_key(name).await.unwrap();
    let coordinator = HttpCoordinator::new(server.client().with_provisioner_key(key.secret));
    let config = DaemonConfig {
        name: name.into(),
        tags: Default::default(),
        poll_interval: std::time::Duration::from_millis(200),
        binary: "/nonexistent/warmspace".into(),
        stop_grace: warmspace_provisioner::DEFAULT_STOP_GRACE,
        shutdown_grace: warmspace_provisioner::DEFAULT_SHUTDOWN_GRACE,
        terraform_binary: warmspace_provisioner::DEFAULT_TERRAFORM_BINARY.into(),
        terraform_plugin_cache_dir: None,
    };
    let (stop, stopped) = watch::channel(false);
    let daemon = Daemon::new(coordinator, config);
    (stop, tokio::spawn(async move { daemon.run(stopped).await.unwrap() }))
}

/// The state kept with a build, by the addresses of the resources it holds.
async fn stored_state(server: &TestServer, build_id: uuid::Uuid) -> Vec<String> {
    let state: Option<Vec<u8>> = sqlx::query_scalar("SELECT provisioner_state FROM workspace_builds WHERE id = $1")
        .bind(build_id)
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.expect("the build kept a state")).unwrap();
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}.{}", r["type"].as_str().unwrap(), r["name"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_terraform_workspace_starts_on_one_daemon_and_stops_on_another_from_the_state_in_the_database() {
    // No in-process daemons: each build runs on the external daemon we start.
    let server = TestServer::start_with(Config::default(), 0).await;
    let owner = server.owner().await;
    let out = tempfile::tempdir().unwrap();
    let started = out.path().join("started");

    let (stop_first, first) = daemon(&server, &owner, "first").await;
    let template = push(&owner, "tf", &[("warmspace.hcl", MANIFEST), ("main.tf", MAIN_TF)]).await;
    let workspace = create(&owner, &template, "dev", &[("out_dir", out.path().to_str().unwrap())]).await;
    let (log, start) = finish(&owner, &workspace.latest_build).await;
    assert_eq!(start.job.status, JobStatus::Succeeded, "{:?}\n{log:#?}", start.job.error);
    assert_eq!(start.job.worker_name.as_deref(), Some("first"));
    assert_eq!(std::fs::read_to_string(&started).unwrap(), format!("dev {OWNER_EMAIL}"));
    assert_eq!(
        start.resources,
        [WorkspaceResource {
            address: "terraform_data.workspace[0]".into(),
            kind: "terraform_data".into(),
            replaced: false
        }]
    );
    assert_eq!(stored_state(&server, start.id).await, ["terraform_data.workspace"]);
    // Its timings are kept with it: each stage, then what the apply did to each resource.
    let timings = owner.build_timings(start.id).await.unwrap();
    let steps: Vec<(&str, &str, Option<&str>)> =
        timings.iter().map(|t| (t.stage.as_str(), t.action.as_str(), t.resource.as_deref())).collect();
    assert_eq!(
        steps,
        [
            ("init", "terraform init", None),
            ("plan", "terraform plan", None),
            ("apply", "terraform apply", None),
            ("apply", "create", Some("terraform_data.workspace[0]")),
        ]
    );
    assert!(log.iter().any(|line| line.contains("Creation complete")), "{log:#?}");
    stop_first.send(true).unwrap();
    first.await.unwrap();

    // The first daemon is gone with whatever it had on disk: the stop knows
    // of the workspace only from the state the server kept.
    let (_stop_second, _second) = daemon(&server, &owner, "second").await;
    let stop = build(&owner, &workspace, "stop", &[]).await.unwrap();
    let (log, stop) = finish(&owner, &stop).await;
    assert_eq!(stop.job.status, JobStatus::Succeeded, "{:?}\n{log:#?}", stop.job.error);
    assert_eq!(stop.job.worker_name.as_deref(), Some("second"));
    assert!(!started.exists(), "the stop did not destroy the workspace:\n{log:#?}");
    assert!(stop.resources.is_empty(), "{:?}", stop.resources);
    assert_eq!(stored_state(&server, stop.id).await, Vec::<String>::new());
}

/// A pooled preset whose prebuilds' `apply` fails, as a broken template's would.
const FAILING_MANIFEST: &str =
    "provisioner = \"terraform\"\npreset \"pool\" {\n  prebuilds {\n    instances = 1\n  }\n}\n";
const FAILING_TF: &str = r#"
resource "terraform_data" "disk" {
  provisioner "local-exec" {
    command = "echo 'the volume quota is exhausted' >&2; exit 7"
  }
}
"#;

#[tokio::test]
async fn a_failing_apply_fails_the_prebuild_with_terraforms_error_and_counts_toward_backoff_and_the_hard_limit() {
    let reconciler = warmspace_server::ReconcilerConfig {
        backoff_interval: std::time::Duration::from_secs(3600),
        failure_hard_limit: 2,
        ..Default::default()
    };
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, 1, false).await;
    let owner = server.owner().await;
    push(&owner, "broken", &[("warmspace.hcl", FAILING_MANIFEST), ("main.tf", FAILING_TF)]).await;
    let pool = async || {
        let status = owner.prebuilds_status().await.unwrap();
        status.presets.into_iter().find(|p| p.template_name == "broken").unwrap()
    };
    let until = async |what: &str, check: &dyn Fn(&warmspace_sdk::PresetPoolStatus) -> bool| {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let now = pool().await;
            if check(&now) {
                return now;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {now:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };

    server.reconciler.run_cycle().await.unwrap();
    until("the prebuild to fail", &|p| p.failed == 1).await;
    let prebuilds = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap();
    let build = &prebuilds.workspaces[0].latest_build;
    let error = build.job.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("terraform apply failed: Error: local-exec provisioner error"), "{error}");
    assert!(error.contains("the volume quota is exhausted"), "{error}");
    let log: Vec<String> = owner.build_logs(build.id).await.unwrap().into_iter().map(|l| l.output).collect();
    assert!(log.iter().any(|l| l.contains("the volume quota is exhausted")), "{log:#?}");
    let backing_off = until("backoff", &|p| p.status == warmspace_sdk::PresetStatus::Backoff).await;
    assert!(backing_off.backoff_until.is_some());

    // After the backoff, a second failure in a row reaches the hard limit.
    server.clock.advance(std::time::Duration::from_secs(2 * 3600));
    server.reconciler.run_cycle().await.unwrap();
    until("the hard limit", &|p| p.status == warmspace_sdk::PresetStatus::HardLimited).await;
}

/// A pooled preset whose `home` is replaced whenever the owner changes —
/// unless `fixed`, when it ignores that change — and whose `config`
/// follows the owner in place (never a replacement).
fn drift_template(fixed: bool) -> [(&'static str, String); 2] {
    let lifecycle = if fixed { "  lifecycle {\n    ignore_changes = [triggers_replace]\n  }\n" } else { "" };
    let main_tf = format!(
        "variable \"warmspace_owner_name\" {{ type = string }}\n\
         resource \"terraform_data\" \"home\" {{\n  triggers_replace = var.warmspace_owner_name\n{lifecycle}}}\n\
         resource \"terraform_data\" \"config\" {{\n  input = var.warmspace_owner_name\n}}\n"
    );
    [("warmspace.hcl", FAILING_MANIFEST.to_owned()), ("main.tf", main_tf)]
}

/// Runs cycles until the pool of `version` has a finished drift check.
async fn drift_checked(server: &TestServer, owner: &warmspace_sdk::Client, version: uuid::Uuid) -> PresetDriftCheck {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        server.reconciler.run_cycle().await.unwrap();
        let status = owner.prebuilds_status().await.unwrap();
        let pool = status.presets.into_iter().find(|p| p.template_version_id == version).unwrap();
        if let Some(check) = pool.drift_check.clone().filter(|c| c.status != DriftCheckStatus::Pending) {
            return check;
        }
        assert!(tokio::time::Instant::now() < deadline, "no drift check finished: {pool:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_drift_check_flags_claim_replacements_once_per_preset_until_invalidated_and_not_when_fixed() {
    // An external daemon runs the builds and the checks, over the HTTP API
    // (the examples' tests cover daemons inside the server).
    let server = TestServer::start_full(Config::default(), 0, false).await;
    let owner = server.owner().await;
    let (_stop, _daemon) = daemon(&server, &owner, "checker").await;
    let naive = drift_template(false);
    let files: Vec<(&str, &str)> = naive.iter().map(|(name, text)| (*name, text.as_str())).collect();
    let template = push(&owner, "drift", &files).await;

    let check = drift_checked(&server, &owner, template.active_version_id).await;
    assert_eq!(check.status, DriftCheckStatus::Done, "{check:#?}");
    assert_eq!(check.replaced, ["terraform_data.home"]);
    let message = check.message.unwrap();
    assert!(message.starts_with("claims will replace `terraform_data.home` — it depends on the owner"), "{message}");
    assert!(message.contains("lifecycle { ignore_changes = … }"), "{message}");
    // No endpoint serves a job's log by its id alone: read it where it is kept.
    let log: Vec<String> = sqlx::query_scalar("SELECT output FROM provisioner_job_logs WHERE job_id = $1 ORDER BY id")
        .bind(check.job_id)
        .fetch_all(&server.db.pool().await)
        .await
        .unwrap();
    assert!(log.iter().any(|l| l == "a claim would replace terraform_data.home"), "{log:#?}");
    // Only planned: the prebuild was not rebuilt, and its pool stays claimable.
    let prebuild = owner.workspace(check.workspace_id).await.unwrap();
    assert_eq!(prebuild.latest_build.build_number, 1);
    // Once per preset: later cycles queue no other check.
    server.reconciler.run_cycle().await.unwrap();
    let checks: i64 = sqlx::query_scalar("SELECT count(*) FROM provisioner_jobs WHERE type = 'prebuild_drift_check'")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(checks, 1);
    let worker: Option<String> = sqlx::query_scalar("SELECT worker_name FROM provisioner_jobs WHERE id = $1")
        .bind(check.job_id)
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(worker.as_deref(), Some("checker"));
    // The dashboard's Prebuilds page flags the preset.
    let browser = crate::browser::Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, warmspace_server::testing::PASSWORD).await;
    browser.goto("/prebuilds").await;
    let flagged = browser.text("#drift").await;
    assert!(flagged.contains("drift / pool: claims will replace `terraform_data.home`"), "{flagged}");
    browser.screenshot("dashboard-prebuilds-drift").await;
    browser.finish().await;

    // Invalidating the preset checks it again, on the prebuild that replaces the old one.
    let first = check.job_id;
    let request = warmspace_sdk::InvalidatePresetsRequest { preset: None };
    owner.invalidate_presets(template.id, &request).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let again = loop {
        let check = drift_checked(&server, &owner, template.active_version_id).await;
        if check.job_id != first {
            break check;
        }
        assert!(tokio::time::Instant::now() < deadline, "the invalidated preset was not checked again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(again.replaced, ["terraform_data.home"]);
    assert_ne!(again.workspace_id, check.workspace_id, "the replacement prebuild was checked");

    // The fixed version's pool is checked afresh, and nothing is flagged.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in drift_template(true) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let fixed = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &fixed).await;
    owner.set_active_version(template.id, fixed.id).await.unwrap();
    let check = drift_checked(&server, &owner, fixed.id).await;
    assert_eq!(check.status, DriftCheckStatus::Done, "{check:#?}");
    assert_eq!((check.replaced, check.message), (Vec::<String>::new(), None));
}

#[tokio::test]
async fn build_timings_and_drift_checks_are_described_in_the_openapi_document() {
    let server = TestServer::start_full(quiet(), 0, false).await;
    let doc: serde_json::Value = openapi_document(&server).await;
    assert!(doc["paths"]["/api/v2/workspacebuilds/{build}/timings"]["get"].is_object(), "the timings route");
    for schema in ["BuildTiming", "PresetDriftCheck", "DriftCheckStatus"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}
