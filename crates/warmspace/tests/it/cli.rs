//! The `warmspace` binary end to end: real server processes, the built-in
//! PostgreSQL, and the CLI as a user types it.

use crate::common::*;

use std::path::PathBuf;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::Value;
use warmspace_store::MIGRATOR;
use warmspace_store::testing::TestDatabase;

fn usernames(json: &[u8]) -> Vec<String> {
    let users: Vec<Value> = serde_json::from_slice(json).expect("users list -o json prints a JSON array");
    users.iter().map(|u| u["username"].as_str().unwrap().to_owned()).collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let is_zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
        if cmdline.contains(needle) && !is_zombie {
            found.push(cmdline);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_postgres_server_login_list_stop_and_restart() {
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let data: PathBuf = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();

    let mut server = ServerProcess::start(&config, &["--data-dir", data_arg]);
    server.wait_healthy().await;
    let url = server.url.clone();

    login_admin(&config, &url);
    let listed = run(warmspace(&config).args(["users", "list", "-o", "json"]));
    assert_eq!(usernames(&listed.stdout), ["admin"], "the admin, and not the prebuilds user");
    let with_system = run(warmspace(&config).args(["users", "list", "--include-system", "-o", "json"]));
    assert_eq!(usernames(&with_system.stdout), ["prebuilds", "lifecycle", "admin"]);
    run(warmspace(&config).args(["users", "create", "--username", "dev", "--email", "dev@example.com"]));

    let postmaster_pid: i32 = std::fs::read_to_string(data.join("postgres/data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    server.terminate();
    assert!(kill(Pid::from_raw(postmaster_pid), None).is_err(), "the postmaster is gone after SIGTERM");
    assert_eq!(processes_mentioning(data_arg), Vec::<String>::new(), "no postgres process is left");

    // Started again on the same data directory, it finds the same users, and
    // the saved session still works (sessions live in the database).
    let mut server = ServerProcess::start(&config, &["--data-dir", data_arg]);
    server.wait_healthy().await;
    let listed = run(warmspace(&config).args(["users", "list", "-o", "json", "--url", &server.url]));
    assert_eq!(usernames(&listed.stdout), ["admin", "dev"]);
    // Logging in again with the first-user flags just logs in.
    login_admin(&config, &server.url);
    server.terminate();
    assert!(processes_mentioning(data_arg).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_both_serve_and_migrate_once() {
    let db = TestDatabase::empty().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let mut a = ServerProcess::start(&config, &["--postgres-url", db.url()]);
    let mut b = ServerProcess::start(&config, &["--postgres-url", db.url()]);
    a.wait_healthy().await;
    b.wait_healthy().await;

    let store = db.pool().await;
    let applied: i64 = sqlx_count(&store, "SELECT count(*) FROM _sqlx_migrations").await;
    assert_eq!(applied as usize, MIGRATOR.iter().count(), "each migration recorded once");
    assert_eq!(sqlx_count(&store, "SELECT count(*) FROM organizations").await, 1);

    // What one replica writes, the other serves: they share nothing but the database.
    login_admin(&config, &a.url);
    let listed = run(warmspace(&config).args(["users", "list", "-o", "json", "--url", &b.url]));
    assert_eq!(usernames(&listed.stdout), ["admin"]);
    a.terminate();
    b.terminate();
}

async fn sqlx_count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[test]
fn missing_postgres_binaries_say_what_to_install() {
    let tmp = temp_dir();
    let stderr = run_failing(
        warmspace(&tmp.path().join("client"))
            .args(["server", "--data-dir", tmp.path().join("data").to_str().unwrap()])
            .args(["--http-address", &free_address()])
            .env("WARMSPACE_POSTGRES_BIN_DIR", tmp.path().join("no-such-dir")),
    );
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(stderr.contains("--postgres-url"), "{stderr}");
}

#[test]
fn commands_do_not_prompt_without_a_terminal() {
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let stderr = run_failing(warmspace(&config).args(["users", "list"]));
    assert!(stderr.contains("warmspace login"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_without_flags_and_without_a_terminal_fails_fast() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let mut server = ServerProcess::start(&config, &["--postgres-url", db.url()]);
    server.wait_healthy().await;
    let stderr = run_failing(warmspace(&config).args(["login", &server.url]));
    assert!(stderr.contains("--first-user-username is required"), "{stderr}");
    // Environment variables stand in for the flags.
    run(warmspace(&config)
        .args(["login", &server.url])
        .env("WARMSPACE_FIRST_USER_USERNAME", "admin")
        .env("WARMSPACE_FIRST_USER_EMAIL", "admin@example.com")
        .env("WARMSPACE_FIRST_USER_PASSWORD", "a long password"));
    // WARMSPACE_URL and WARMSPACE_SESSION_TOKEN override the saved session.
    let stderr = run_failing(
        warmspace(&config)
            .args(["users", "list"])
            .env("WARMSPACE_SESSION_TOKEN", format!("{}-{}", "a".repeat(10), "b".repeat(22))),
    );
    assert!(stderr.contains("Invalid session token"), "{stderr}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_the_example_template_shows_its_presets() {
    let LoggedIn { server, config, db: _db, dir: _dir } = LoggedIn::start(&["--provisioner-daemons", "2"]).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/echo");

    let pushed = run(warmspace(&config).args(["templates", "push", "example", "--directory", example]));
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    assert!(stdout.contains("Parsing warmspace.hcl"), "the import log is followed: {stdout}");
    assert!(stdout.contains("Created template example"), "{stdout}");

    let listed = run(warmspace(&config).args(["templates", "presets", "list", "example", "-o", "json"]));
    let presets: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let small = presets.iter().find(|p| p["name"] == "us-small").unwrap();
    assert_eq!(small["default"], true);
    assert_eq!(small["description"], "US East, 2 CPUs");
    assert_eq!(small["icon"], "/icon/us.svg");
    assert_eq!(
        small["parameters"],
        serde_json::json!([{"name": "cpus", "value": "2"}, {"name": "region", "value": "us"}])
    );
    assert_eq!(small["prebuilds"]["instances"], 1);
    assert_eq!(small["prebuilds"]["ttl_seconds"], 86400);
    assert_eq!(small["prebuilds"]["scheduling"]["timezone"], "America/New_York");
    assert_eq!(
        small["prebuilds"]["scheduling"]["schedules"],
        serde_json::json!([{"cron": "* 8-18 * * 1-5", "instances": 3}, {"cron": "* 8-14 * * 6", "instances": 1}])
    );
    let table = run(warmspace(&config).args(["templates", "presets", "list", "example"]));
    assert!(String::from_utf8_lossy(&table.stdout).contains("* 8-14 * * 6 → 1"));

    // The same files again make no version; a broken push fails and changes nothing.
    let again = run(warmspace(&config).args(["templates", "push", "example", "--directory", example]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"));
    let broken = temp_dir();
    std::fs::write(broken.path().join("warmspace.hcl"), "provisioner = \"echo\"\nfavourite_colour = \"blue\"\n")
        .unwrap();
    let stderr = run_failing(warmspace(&config).args(["templates", "push", "example", "-d"]).arg(broken.path()));
    assert!(stderr.contains("unknown key \"favourite_colour\""), "{stderr}");
    let versions = run(warmspace(&config).args(["templates", "versions", "list", "example", "-o", "json"]));
    let versions: Vec<Value> = serde_json::from_slice(&versions.stdout).unwrap();
    let statuses: Vec<&str> = versions.iter().map(|v| v["job"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "failed"]);

    let jobs = run(warmspace(&config).args(["provisioner", "jobs", "list", "-o", "json"]));
    let jobs: Vec<Value> = serde_json::from_slice(&jobs.stdout).unwrap();
    // The imports, and (the example keeping a pool) prebuild builds.
    let imports: Vec<&Value> = jobs.iter().filter(|j| j["type"] == "template_version_import").collect();
    assert_eq!(imports.len(), 2);
    assert!(imports.iter().all(|j| j["worker_name"].as_str().is_some_and(|n| !n.is_empty())));
    server.terminate();
}
