//! `warmspace prebuilds insights` after a scripted trace with known times:
//! the server runs in the test's process on a clock the test moves forward,
//! the CLI is the real binary, and the test plays the workspaces' agent
//! through the agent API with the tokens the exec backend hands its script.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use warmspace_sdk::{AgentLifecycle, Client, JobStatus};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};

use crate::common::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The clock moves by minutes and hours; the real time the test spends
/// between two stamps (starting CLI processes, running exec builds on a
/// shared machine) is seconds at most, and is all a figure may differ from
/// the one worked out by hand.
const TOLERANCE_SECONDS: f64 = 30.0;

/// An exec template: claims re-initialise; one agent, `main`, whose token
/// the start script leaves in `tokens/<workspace id>` for the test.
fn template(tokens: &Path) -> tempfile::TempDir {
    let dir = template_dir(
        "provisioner = \"exec\"\nclaim = \"reinit\"\n\
         preset \"us\" {\n  prebuilds {\n    instances = 1\n  }\n}\n\
         agent \"main\" {}\nexec {\n  start  = \"start.sh\"\n  delete = \"start.sh\"\n}\n",
    );
    let tokens = tokens.display();
    script(
        &dir,
        "start.sh",
        &format!(
            "#!/bin/sh\nif [ \"$WARMSPACE_TRANSITION\" = start ]; then\n  \
             printf %s \"$WARMSPACE_AGENT_TOKEN_MAIN\" > \"{tokens}/$WARMSPACE_WORKSPACE_ID.tmp\"\n  \
             mv \"{tokens}/$WARMSPACE_WORKSPACE_ID.tmp\" \"{tokens}/$WARMSPACE_WORKSPACE_ID\"\nfi\n"
        ),
    );
    dir
}

/// The CLI, logged in to the in-process server as its owner; run off the runtime's threads.
async fn cli(config: &Path, args: &[&str]) -> Value {
    let (config, args): (PathBuf, Vec<String>) = (config.to_owned(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let output = run(warmspace(&config).args(&args));
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    })
    .await
    .unwrap()
}

/// The agent of a workspace, as its start script was given it, once the start build has succeeded.
async fn agent(server: &TestServer, owner: &Client, tokens: &Path, workspace: Uuid) -> Client {
    let file = tokens.join(workspace.to_string());
    eventually(Duration::from_secs(60), "the start build and its agent token", || async {
        file.exists() && owner.workspace(workspace).await.unwrap().latest_build.job.status == JobStatus::Succeeded
    })
    .await;
    server.client().with_agent_token(std::fs::read_to_string(&file).unwrap())
}

async fn ready(agent: &Client) {
    agent.agent_lifecycle(AgentLifecycle::Starting).await.unwrap();
    agent.agent_lifecycle(AgentLifecycle::Ready).await.unwrap();
}

async fn workspace_id(owner: &Client, name: &str) -> Uuid {
    owner.workspace_by_name("me", name).await.unwrap().id
}

/// The one prebuild of the pool not yet claimed.
async fn prebuild(owner: &Client, known: &[Uuid]) -> Uuid {
    let query = warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() };
    let listed = owner.workspaces(&query).await.unwrap().workspaces;
    listed.iter().map(|w| w.id).find(|id| !known.contains(id)).expect("a new prebuild")
}

fn close(actual: &Value, expected: f64, tolerance: f64) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("a number, not {actual}"));
    assert!((actual - expected).abs() <= tolerance, "{actual} is not {expected} ± {tolerance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_after_a_scripted_trace_give_the_hit_rate_time_saved_and_idle_hours_worked_out_by_hand() {
    // No polling, no reaping: nothing runs while the clock moves (each build has ended by then).
    let mut quiet = warmspace_server::Config::default();
    quiet.provisioning.poll_interval = Duration::from_secs(3600);
    quiet.provisioning.reap_interval = Duration::from_secs(3600);
    let server = TestServer::start_full(quiet, 2, false).await;
    let owner = server.owner().await;
    let dir = temp_dir();
    let (config, tokens) = (dir.path().join("client"), dir.path().join("tokens"));
    std::fs::create_dir_all(&tokens).unwrap();
    let url = server.url.to_string();
    cli(&config, &["login", &url, "--email", OWNER_EMAIL, "--password", PASSWORD]).await;
    let files = template(&tokens);
    cli(&config, &["templates", "push", "insight", "-d", files.path().to_str().unwrap()]).await;

    // 0:00 — the pool is empty: a cold build, whose agent is ready at 0:30.
    cli(&config, &["create", "cold", "-t", "insight", "--preset", "us"]).await;
    let cold = workspace_id(&owner, "cold").await;
    let cold_agent = agent(&server, &owner, &tokens, cold).await;
    server.clock.advance(30 * MINUTE);
    ready(&cold_agent).await;

    // 0:30 — a prebuild is made and ready; it waits two hours.
    server.reconciler.run_cycle().await.unwrap();
    let first = prebuild(&owner, &[]).await;
    ready(&agent(&server, &owner, &tokens, first).await).await;
    server.clock.advance(120 * MINUTE);

    // 2:30 — claimed; its agent re-initialises for the new owner and is ready at 2:32.
    cli(&config, &["create", "hit", "-t", "insight", "--preset", "us"]).await;
    assert_eq!(workspace_id(&owner, "hit").await, first, "the prebuild was claimed");
    server.clock.advance(2 * MINUTE);
    ready(&agent(&server, &owner, &tokens, first).await).await;

    // 2:32 — the replacement is made, but its agent never reports ready:
    // the next request misses, and its cold build never becomes ready either.
    server.reconciler.run_cycle().await.unwrap();
    let second = prebuild(&owner, &[first]).await;
    agent(&server, &owner, &tokens, second).await;
    cli(&config, &["create", "late", "-t", "insight", "--preset", "us"]).await;
    server.clock.advance(88 * MINUTE);

    // 4:00 — the week: three requests, one hit.
    let week = cli(&config, &["prebuilds", "insights", "-o", "json"]).await;
    assert_eq!(week["window_seconds"], 7 * 86_400);
    let presets = week["presets"].as_array().unwrap();
    assert_eq!(presets.len(), 1, "{week:#}");
    let us = &presets[0];
    assert_eq!((us["template_name"].as_str(), us["preset_name"].as_str()), (Some("insight"), Some("us")));
    assert_eq!((&us["claims"], &us["hits"], &us["misses"]), (&Value::from(3), &Value::from(1), &Value::from(2)));
    assert_eq!(us["misses_by_reason"], serde_json::json!({"no_eligible": 2}));
    assert_eq!(us["hit_rate"].as_f64(), Some(1.0 / 3.0));
    // Cold: created 0:00, ready 0:30 (the late one never was). Claim: 2:30 to 2:32.
    assert_eq!((&us["cold_ready_samples"], &us["claim_ready_samples"]), (&Value::from(1), &Value::from(1)));
    close(&us["cold_ready_seconds"], 1800.0, TOLERANCE_SECONDS);
    close(&us["claim_ready_seconds"], 120.0, TOLERANCE_SECONDS);
    // Saved: 1 hit × (30 min − 2 min) = 28 min.
    close(&us["time_saved_seconds"], 1680.0, 2.0 * TOLERANCE_SECONDS);
    // Idle: the first prebuild 0:30–2:30 (2 h), the second 2:32–4:00 (1 h 28 min).
    let idle = 2.0 + 88.0 / 60.0;
    assert_eq!(us["prebuilds"], 2);
    close(&us["idle_instance_hours"], idle, TOLERANCE_SECONDS / 3600.0);
    close(&us["instance_hours_per_hit"], idle, TOLERANCE_SECONDS / 3600.0);

    // The last hour (3:00–4:00): no request, so no rate and no cold sample to
    // compare with (time saved unknown); an hour of the second prebuild.
    let hour = cli(&config, &["prebuilds", "insights", "--since", "1h", "-o", "json"]).await;
    assert_eq!(hour["window_seconds"], 3600);
    let us = &hour["presets"][0];
    assert_eq!(
        (&us["claims"], &us["hit_rate"], &us["time_saved_seconds"]),
        (&Value::from(0), &Value::Null, &Value::Null)
    );
    assert_eq!(us["prebuilds"], 1);
    close(&us["idle_instance_hours"], 1.0, TOLERANCE_SECONDS / 3600.0);

    // The table says the same for people.
    let table = tokio::task::spawn_blocking(move || {
        let output = run(warmspace(&config).args(["prebuilds", "insights"]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(table.contains("HIT RATE") && table.contains("IDLE H"), "{table}");
    let row = table.lines().find(|l| l.contains("insight")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("33%") && row.contains(" 3.4"), "{row}");
}
