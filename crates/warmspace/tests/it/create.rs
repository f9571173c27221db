//! `warmspace create` as a user types it: the default preset, opting out of
//! it, and the one hand-over time the CLI and `prebuilds claims` both report.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// An echo template whose default preset `small` keeps one prebuild warm.
const POOLED: &str = "provisioner = \"echo\"\n\
    parameter \"region\" {\n  type = \"string\"\n  default = \"us\"\n}\n\
    preset \"small\" {\n  default = true\n  parameters = { region = \"us\" }\n  prebuilds {\n    instances = 1\n  }\n}\n\
    preset \"eu\" {\n  parameters = { region = \"eu\" }\n}\n\
    echo {\n  duration_ms = 1\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_claims_from_the_default_preset_and_reports_the_hand_over_prebuilds_claims_lists() {
    let LoggedIn { server, config, db: _db, dir: _dir } = LoggedIn::start(&["--provisioner-daemons", "2"]).await;
    let dir = template_dir(POOLED);
    run(warmspace(&config).args(["templates", "push", "pooled", "-d"]).arg(dir.path()));
    let client = admin_client(&server.url).await;
    eventually(Duration::from_secs(60), "a warm prebuild", || async {
        client.prebuilds_status().await.unwrap().presets.iter().any(|p| p.preset_name == "small" && p.eligible == 1)
    })
    .await;

    // No --preset: the default preset is used, said so, and its pool claimed from.
    let created = run(warmspace(&config).args(["create", "mine", "-t", "pooled"]));
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(stdout.contains("default preset small"), "{stdout}");
    let printed: f64 = stdout
        .split("handed over in ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no hand-over time in {stdout}"));

    // `--preset none`, in any case, opts out: a cold build, no preset applied.
    let cold = run(warmspace(&config).args(["create", "cold", "-t", "pooled", "--preset", "None"]));
    let stdout = String::from_utf8_lossy(&cold.stdout);
    assert!(!stdout.contains("Claimed") && !stdout.contains("default preset"), "{stdout}");

    // A --parameter that contradicts the default preset: the user's value wins, and no default preset applies.
    let eu = run(warmspace(&config).args(["create", "eu", "-t", "pooled", "--parameter", "region=eu"]));
    let stdout = String::from_utf8_lossy(&eu.stdout);
    assert!(stdout.contains("Not using the default preset small"), "{stdout}");
    let eu = client.workspace_by_name("me", "eu").await.unwrap();
    assert_eq!(eu.latest_build.parameters[0].value, "eu");

    // The hand-over the CLI printed is the one recorded and listed.
    let listed = run(warmspace(&config).args(["prebuilds", "claims", "-o", "json"]));
    let stats: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let small = stats.iter().find(|s| s["preset_name"] == "small").unwrap();
    assert_eq!(small["hits"], 1);
    assert_eq!(format!("{:.1}", small["hit_p50_ms"].as_f64().unwrap()), format!("{printed:.1}"));
    let unnamed = stats.iter().find(|s| s["preset_id"].is_null()).unwrap();
    assert_eq!(unnamed["misses_by_reason"], serde_json::json!({"no_preset": 1}));
    // The eu request repeated every value of the pool-less eu preset: matched by the server.
    let eu = stats.iter().find(|s| s["preset_name"] == "eu").unwrap();
    assert_eq!(eu["misses_by_reason"], serde_json::json!({"no_pool": 1}));
    server.terminate();
}
