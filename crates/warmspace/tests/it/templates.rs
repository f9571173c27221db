//! `warmspace templates …` as a user types it: pushing (unchanged files make
//! no version; `--activate` as a bare flag), promoting a version, editing
//! settings, deleting.

use serde_json::Value;

use crate::common::*;

fn versions(config: &std::path::Path, template: &str) -> Vec<Value> {
    let listed = run(warmspace(config).args(["templates", "versions", "list", template, "-o", "json"]));
    serde_json::from_slice(&listed.stdout).unwrap()
}

fn template(config: &std::path::Path, name: &str) -> Option<Value> {
    let listed = run(warmspace(config).args(["templates", "list", "-o", "json"]));
    let templates: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    templates.into_iter().find(|t| t["name"] == name)
}

fn active_version_name(config: &std::path::Path, name: &str) -> String {
    let active = template(config, name).unwrap()["active_version_id"].clone();
    let listed = versions(config, name);
    listed.iter().find(|v| v["id"] == active).unwrap()["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_push_skips_unchanged_files_and_versions_are_promoted_edited_and_deleted() {
    let LoggedIn { server, config, db: _db, dir: _dir } = LoggedIn::start(&["--provisioner-daemons", "1"]).await;
    let push = |dir: &std::path::Path, extra: &[&str]| {
        run(warmspace(&config).args(["templates", "push", "t", "-d"]).arg(dir).args(extra))
    };

    let v1 = echo_template(1);
    push(v1.path(), &[]);
    // The same files again: nothing to do, and said so.
    let again = push(v1.path(), &[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("unchanged"), "{stdout}");
    assert_eq!(versions(&config, "t").len(), 1, "no version for identical files");

    // New files, not activated; then promoted by name.
    let v2 = echo_template(2);
    push(v2.path(), &["--activate=false"]);
    assert_eq!(versions(&config, "t").len(), 2);
    assert_eq!(active_version_name(&config, "t"), "v1");
    run(warmspace(&config).args(["templates", "versions", "promote", "-t", "t", "--template-version", "v2"]));
    assert_eq!(active_version_name(&config, "t"), "v2");

    // `--activate` as a bare flag.
    let v3 = echo_template(3);
    push(v3.path(), &["--activate"]);
    assert_eq!(active_version_name(&config, "t"), "v3");

    // Every setting the update API takes.
    run(warmspace(&config).args([
        "templates",
        "edit",
        "t",
        "--display-name",
        "The T",
        "--description",
        "Simulated",
        "--icon",
        "/icon/t.svg",
        "--default-ttl",
        "1h",
        "--autostop-requirement-weekdays",
        "saturday,sunday",
        "--autostop-requirement-weeks",
        "2",
        "--allow-user-autostart=false",
        "--failure-ttl",
        "10m",
        "--dormancy-threshold",
        "24h",
        "--dormancy-auto-deletion",
        "48h",
        "--agent-ready-timeout",
        "5m",
    ]));
    let edited = template(&config, "t").unwrap();
    assert_eq!((edited["display_name"].as_str(), edited["description"].as_str()), (Some("The T"), Some("Simulated")));
    assert_eq!(edited["icon"], "/icon/t.svg");
    // Field by field: settings added later do not change what this asserts.
    let settings = &edited["settings"];
    assert_eq!(settings["default_ttl_ms"], 3_600_000);
    assert_eq!(settings["autostop_requirement_days_of_week"], serde_json::json!(["saturday", "sunday"]));
    assert_eq!(settings["autostop_requirement_weeks"], 2);
    assert_eq!(settings["allow_user_autostart"], false);
    assert_eq!(settings["failure_ttl_ms"], 600_000);
    assert_eq!(settings["time_til_dormant_ms"], 86_400_000);
    assert_eq!(settings["time_til_dormant_autodelete_ms"], 172_800_000);
    assert_eq!(settings["agent_ready_timeout_ms"], 300_000);
    // The spelling: one requirement flag (in the owner's zone) and the short dormancy names.
    run(warmspace(&config).args([
        "templates",
        "edit",
        "t",
        "--default-ttl",
        "8h",
        "--autostop-requirement",
        "days=sat,sun hour=2",
        "--failure-ttl",
        "1h",
        "--dormancy",
        "30d",
        "--dormancy-auto-delete",
        "60d",
        "--allow-user-autostart",
    ]));
    let settings = template(&config, "t").unwrap()["settings"].clone();
    assert_eq!(settings["default_ttl_ms"], 8 * 3_600_000);
    assert_eq!(settings["autostop_requirement_days_of_week"], serde_json::json!(["saturday", "sunday"]));
    assert_eq!(settings["autostop_requirement_hour"], 2);
    assert_eq!(settings["autostop_requirement_weeks"], 2, "not named, so kept");
    assert_eq!(settings["allow_user_autostart"], true);
    assert_eq!(settings["failure_ttl_ms"], 3_600_000);
    assert_eq!(settings["time_til_dormant_ms"], 30 * 86_400_000i64);
    assert_eq!(settings["time_til_dormant_autodelete_ms"], 60 * 86_400_000i64);
    let err = run_failing(warmspace(&config).args(["templates", "edit", "t", "--autostop-requirement", "days=funday"]));
    assert!(err.contains("funday"), "{err}");
    // Only what is given changes.
    run(warmspace(&config).args(["templates", "edit", "t", "--description", "Still simulated"]));
    let edited = template(&config, "t").unwrap();
    assert_eq!(
        (edited["display_name"].as_str(), edited["description"].as_str()),
        (Some("The T"), Some("Still simulated"))
    );

    run(warmspace(&config).args(["templates", "delete", "t", "-y"]));
    assert!(template(&config, "t").is_none());
    server.terminate();
}
