//! The server and the CLI as Unix processes: signals, pipes whose reader
//! goes away, a data directory already in use, a database that cannot be
//! reached.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warmspace_sdk::{AgentLifecycle, Workspace, WorkspacesQuery};
use warmspace_store::testing::TestDatabase;

use crate::common::*;

/// "Exits at all rather than hanging": generous, never a latency target.
const EXITS: Duration = Duration::from_secs(60);

/// An echo template with one agent, whose builds take `duration_ms`.
fn echo_with_agent(duration_ms: u64) -> tempfile::TempDir {
    template_dir(&format!(
        "provisioner = \"echo\"\nagent \"main\" {{\n  startup_script = \"true\"\n}}\necho {{\n  duration_ms = {duration_ms}\n}}\n"
    ))
}

/// Logs in, pushes `template` as `t` and creates workspace `name` from it.
async fn workspace_from(config: &std::path::Path, url: &str, template: &tempfile::TempDir, name: &str) -> Workspace {
    login_admin(config, url);
    run(warmspace(config).args(["templates", "push", "t", "-d"]).arg(template.path()));
    let client = admin_client(url).await;
    let template = client.template_by_name("default", "t").await.unwrap();
    let req = workspace_request(template.id, name);
    client.create_workspace("me", &req).await.unwrap()
}

/// Waits until the workspace's build job is running on a daemon.
async fn wait_running_build(db: &TestDatabase) {
    let pool = db.pool().await;
    eventually(EXITS, "a running build", || async {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM provisioner_jobs WHERE type = 'workspace_build' AND status = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        running == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_log_reader_died_still_stops_on_ctrl_c_with_agents_connected() {
    let db = TestDatabase::new().await;
    let (example, first) = Example::start(db.url()).await;
    first.terminate();
    let (mut server, stdout, stderr) = example.serve_piped().await;
    // The example keeps one prebuild, whose real agent process holds its
    // re-init stream open, waiting for a claim.
    let client = admin_client(&server.url).await;
    let prebuilds = WorkspacesQuery { q: Some("owner:prebuilds".into()), limit: None, offset: None };
    eventually(EXITS, "a prebuild whose agent is ready", || async {
        let listed = client.workspaces(&prebuilds).await.unwrap().workspaces;
        listed
            .iter()
            .any(|w| !w.agents.is_empty() && w.agents.iter().all(|a| a.lifecycle_state == AgentLifecycle::Ready))
    })
    .await;

    // `warmspace server | tee log`, then Ctrl-C: tee is gone, every write to the pipes fails.
    drop(stdout);
    drop(stderr);
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(EXITS);
    assert!(status.success(), "the server exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_logs_carry_no_colours_when_stderr_is_not_a_terminal() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let (mut server, _stdout, stderr) =
        ServerProcess::start_piped(&free_address(), &tmp.path().join("client"), &["--postgres-url", db.url()], &[]);
    let stderr = Logs::read(stderr);
    server.wait_healthy().await;
    server.terminate();
    stderr.wait_for("warmspace server stopped").await;
    let log = stderr.text();
    assert!(!log.contains('\x1b'), "no escape sequences in a log that is not a terminal:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_a_running_build_its_grace_then_fails_it_and_exits() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    // The grace through its environment variable, as every server flag.
    let (mut server, _stdout, _stderr) = ServerProcess::start_piped(
        &free_address(),
        &config,
        &["--postgres-url", db.url()],
        &[("WARMSPACE_SHUTDOWN_GRACE", "1s")],
    );
    server.wait_healthy().await;
    let ten_minutes = echo_with_agent(600_000);
    workspace_from(&config, &server.url, &ten_minutes, "slow").await;
    wait_running_build(&db).await;

    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(EXITS);
    assert!(status.success(), "the server exited with {status}");
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM provisioner_jobs WHERE type = 'workspace_build'")
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert_eq!(status, "failed", "the abandoned build is failed, not left running");
    let error = error.unwrap_or_default();
    assert!(error.contains("shut down"), "the error says why: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_server_at_once() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let (mut server, _stdout, stderr) = ServerProcess::start_piped(
        &free_address(),
        &config,
        &["--postgres-url", db.url(), "--shutdown-grace", "10m"],
        &[],
    );
    let stderr = Logs::read(stderr);
    server.wait_healthy().await;
    let ten_minutes = echo_with_agent(600_000);
    workspace_from(&config, &server.url, &ten_minutes, "slow").await;
    wait_running_build(&db).await;

    server.signal(Signal::SIGTERM);
    stderr.wait_for("shutting down").await;
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(EXITS);
    assert!(!status.success(), "an interrupted shutdown says so in its status: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut first = ServerProcess::start(&config, &["--data-dir", data_arg]);
    first.wait_healthy().await;

    let stderr =
        run_failing(warmspace(&config).args(["server", "--data-dir", data_arg, "--http-address", &free_address()]));
    let expected = format!("is in use by warmspace (pid {})", first.child.id());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("built-in PostgreSQL started"), "{stderr}");

    // A server killed with SIGKILL leaves no stale lock behind: once its
    // PostgreSQL has followed it, the next server starts.
    let postmaster: i32 = std::fs::read_to_string(data.join("postgres/data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    first.signal(Signal::SIGKILL);
    first.wait_exit(EXITS);
    eventually(EXITS, "the killed server's PostgreSQL gone", || async {
        kill(Pid::from_raw(postmaster), None).is_err()
    })
    .await;
    let mut next = ServerProcess::start(&config, &["--data-dir", data_arg]);
    next.wait_healthy().await;
    next.terminate();
}

#[test]
fn an_unreachable_postgres_url_names_the_cause() {
    let tmp = temp_dir();
    let closed = free_address();
    let url = format!("postgres://warmspace:secret@{closed}/x");
    let stderr = run_failing(warmspace(&tmp.path().join("client")).args([
        "server",
        "--postgres-url",
        &url,
        "--http-address",
        &free_address(),
    ]));
    assert!(stderr.to_lowercase().contains("connection refused"), "{stderr}");
    assert!(stderr.contains(&closed), "the message names where it tried: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_named() {
    let db = TestDatabase::new().await;
    let mut url = url::Url::parse(db.url()).unwrap();
    url.set_path("/warmspace_no_such_database");
    let tmp = temp_dir();
    let stderr = run_failing(warmspace(&tmp.path().join("client")).args([
        "server",
        "--postgres-url",
        url.as_str(),
        "--http-address",
        &free_address(),
    ]));
    assert!(stderr.contains("database \"warmspace_no_such_database\" does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_output_pipe_is_closed_exits_quietly() {
    let LoggedIn { server, config, db: _db, dir: _dir } = LoggedIn::start(&[]).await;

    // `warmspace users list | head -0`: the reader is gone before anything is written.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let output = warmspace(&config)
        .args(["users", "list"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let quiet = output.status.code() == Some(0) || output.status.signal() == Some(Signal::SIGPIPE as i32);
    assert!(quiet, "exited with {}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    server.terminate();
}

/// A pool's creations cut off by a server stop say nothing about the
/// template: after the restart the preset is neither backing off nor
/// hard-limited (three interrupted creations used to reach the default hard
/// limit of 3), and the pool fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_a_server_stop_interrupted_are_not_held_against_the_pool() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    // Each creation waits for this file: it runs until the test lets it finish.
    let gate = tmp.path().join("gate");
    let template = template_dir(
        "provisioner = \"exec\"\n\
         preset \"warm\" {\n  prebuilds {\n    instances = 3\n  }\n}\n\
         exec {\n  start = \"start.sh\"\n}\n",
    );
    script(&template, "start.sh", "#!/bin/sh\nwhile [ ! -e \"$GATE\" ]; do sleep 0.05; done\n");
    let address = free_address();
    let args = ["--postgres-url", db.url(), "--shutdown-grace", "0s", "--prebuild-daemon-share", "1"];
    let env = [("GATE", gate.to_str().unwrap())];

    let mut server = ServerProcess::start_on(&address, &config, &args, &env);
    server.wait_healthy().await;
    login_admin(&config, &server.url);
    run(warmspace(&config).args(["templates", "push", "gated", "-d"]).arg(template.path()));
    let pool = db.pool().await;
    eventually(EXITS, "three creations running", || async {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM provisioner_jobs WHERE type = 'workspace_build' AND status = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        running == 3
    })
    .await;
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(EXITS).success());
    let interrupted: Vec<String> =
        sqlx::query_scalar("SELECT error FROM provisioner_jobs WHERE type = 'workspace_build' AND status = 'failed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(interrupted.len(), 3, "{interrupted:?}");
    assert!(interrupted.iter().all(|e| e.contains("shut down")), "{interrupted:?}");

    let mut server = ServerProcess::start_on(&address, &config, &args, &env);
    server.wait_healthy().await;
    let client = admin_client(&server.url).await;
    let status = client.prebuilds_status().await.unwrap();
    let preset = status.presets.iter().find(|p| p.preset_name == "warm").expect("the preset's status");
    assert_eq!(preset.status, warmspace_sdk::PresetStatus::Normal, "{preset:#?}");

    std::fs::write(&gate, "").unwrap();
    eventually(EXITS, "the pool to fill", || async {
        let status = client.prebuilds_status().await.unwrap();
        status.presets.iter().any(|p| p.preset_name == "warm" && p.version_active && p.eligible == 3)
    })
    .await;
    server.terminate();
}

/// The JSON log's events whose message is `message`, as their fields.
fn events(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|event| event["fields"].clone())
        .filter(|fields| fields["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_has_a_line_per_reconciliation_cycle_and_per_claim_hit_or_miss() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let (mut server, _stdout, stderr) = ServerProcess::start_piped(
        &free_address(),
        &config,
        &["--postgres-url", db.url(), "--log-format", "json"],
        &[],
    );
    let stderr = Logs::read(stderr);
    server.wait_healthy().await;
    login_admin(&config, &server.url);
    let pool = template_dir(
        "provisioner = \"echo\"\npreset \"pool\" {\n  prebuilds {\n    instances = 1\n  }\n}\necho {\n  duration_ms = 5\n}\n",
    );
    run(warmspace(&config).args(["templates", "push", "pool", "-d"]).arg(pool.path()));
    let client = admin_client(&server.url).await;
    eventually(EXITS, "an eligible prebuild", || async {
        client.prebuilds_status().await.unwrap().presets.iter().any(|p| p.eligible == 1)
    })
    .await;
    let preset = client.prebuilds_status().await.unwrap().presets[0].preset_id;
    // Paused, the pool is not refilled: the second request misses, and says why.
    run(warmspace(&config).args(["prebuilds", "pause"]));
    let template = client.template_by_name("default", "pool").await.unwrap();
    for name in ["first", "second"] {
        let mut req = workspace_request(template.id, name);
        req.template_version_preset_id = Some(preset);
        client.create_workspace("me", &req).await.unwrap();
    }
    stderr.wait_for("building cold").await;
    server.terminate();
    let log = stderr.text();

    let hits = events(&log, "prebuild claimed");
    assert_eq!(hits.len(), 1, "{log}");
    assert_eq!((hits[0]["claim"].as_str(), hits[0]["preset"].as_str()), (Some("hit"), Some("pool")));
    assert_eq!(hits[0]["template"], "pool");
    assert!(hits[0]["hand_over_ms"].as_f64().is_some(), "{:?}", hits[0]);
    let misses = events(&log, "no prebuild to claim; building cold");
    assert_eq!(misses.len(), 1, "{log}");
    assert_eq!((misses[0]["claim"].as_str(), misses[0]["reason"].as_str()), (Some("miss"), Some("paused")));
    let cycles = events(&log, "reconciliation cycle");
    let full =
        cycles.iter().find(|c| c["pass"] == "full" && c["created"] == 1).expect("the cycle that filled the pool");
    for stat in ["presets", "reconciled", "skipped_idle", "actions", "deleted", "canceled", "elapsed_ms"] {
        assert!(full[stat].is_u64(), "{stat} in {full:?}");
    }
}
