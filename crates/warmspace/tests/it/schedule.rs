//! `warmspace create --ttl` and `warmspace schedule` against a server in the
//! test's process whose lifecycle executor ticks every 100 ms on a clock the
//! test moves forward; the CLI is the real binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use warmspace_sdk::{BuildReason, Client, WorkspaceStatus};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};
use warmspace_server::{Config, LifecycleConfig};

use crate::common::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The CLI as the logged-in owner; its output as JSON (or `Null`), run off the runtime's threads.
async fn cli(config: &Path, args: &[&str]) -> (Value, String) {
    let (config, args): (PathBuf, Vec<String>) = (config.to_owned(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let output = run(warmspace(&config).args(&args));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (serde_json::from_slice(&output.stdout).unwrap_or(Value::Null), text)
    })
    .await
    .unwrap()
}

fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_seconds().abs() <= 10
}

async fn deadline_shown(config: &Path) -> DateTime<Utc> {
    let (shown, _) = cli(config, &["schedule", "show", "ws", "-o", "json"]).await;
    serde_json::from_value(shown["deadline"].clone()).expect("a deadline")
}

async fn stopped_by_autostop(owner: &Client, builds: i32) {
    eventually(Duration::from_secs(60), "the autostop", || async {
        let w = owner.workspace_by_name("me", "ws").await.unwrap();
        w.status == WorkspaceStatus::Stopped
            && w.latest_build.reason == BuildReason::Autostop
            && w.latest_build.build_number == builds
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_a_ttl_stops_after_the_deadline_and_schedule_extend_moves_it() {
    let config = Config {
        lifecycle: LifecycleConfig { background: true, interval: Duration::from_millis(100) },
        ..Config::default()
    };
    let server = TestServer::start_full(config, 2, false).await;
    let owner = server.owner().await;
    let dir = temp_dir();
    let client_config = dir.path().join("client");
    let url = server.url.to_string();
    cli(&client_config, &["login", &url, "--email", OWNER_EMAIL, "--password", PASSWORD]).await;
    let files = echo_template(1);
    cli(&client_config, &["templates", "push", "echo", "-d", files.path().to_str().unwrap()]).await;

    // Created with a two-minute TTL: its deadline is two minutes away, and it stops after it.
    cli(&client_config, &["create", "ws", "-t", "echo", "--ttl", "2m"]).await;
    assert!(close(deadline_shown(&client_config).await, server.clock.now() + chrono::Duration::minutes(2)));
    let (_, table) = cli(&client_config, &["schedule", "show", "ws"]).await;
    assert!(table.contains("STOPS AFTER") && table.contains("2m"), "{table}");
    server.clock.advance(3 * MINUTE);
    stopped_by_autostop(&owner, 2).await;

    // Started again, then extended by an hour: the old deadline passes and it keeps running …
    cli(&client_config, &["start", "ws"]).await;
    let (_, said) = cli(&client_config, &["schedule", "extend", "ws", "1h"]).await;
    assert!(said.contains("now stops at"), "{said}");
    assert!(close(deadline_shown(&client_config).await, server.clock.now() + chrono::Duration::hours(1)));
    server.clock.advance(3 * MINUTE);
    // A tick of the test's own, after the move (the background loop may hold the lock: then again).
    while server.lifecycle.tick().await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    let w = owner.workspace_by_name("me", "ws").await.unwrap();
    assert_eq!((w.status, w.latest_build.build_number), (WorkspaceStatus::Running, 3));

    // … until the new one.
    server.clock.advance(58 * MINUTE);
    stopped_by_autostop(&owner, 4).await;

    // Schedules are validated by the server, and the messages name the problem.
    let err = run_failing(warmspace(&client_config).args(["schedule", "extend", "ws", "1h"]));
    assert!(err.contains("not running"), "{err}");
    let err = run_failing(warmspace(&client_config).args(["schedule", "start", "ws", "0 9 * *"]));
    assert!(err.contains("5 fields"), "{err}");
    let (_, said) = cli(&client_config, &["schedule", "start", "ws", "CRON_TZ=Europe/Berlin 0 9 * * 1-5"]).await;
    assert!(said.contains("CRON_TZ=Europe/Berlin 0 9 * * 1-5"), "{said}");
    let (shown, _) = cli(&client_config, &["schedule", "show", "ws", "-o", "json"]).await;
    assert!(shown["next_start"].is_string(), "{shown}");
    cli(&client_config, &["schedule", "stop", "ws", "manual"]).await;
    assert_eq!(owner.workspace_by_name("me", "ws").await.unwrap().ttl_ms, None);
}
