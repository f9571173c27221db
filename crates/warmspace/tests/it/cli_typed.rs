//! What a person types and reads: addresses as people write them, flags and
//! their help, errors as sentences.

use crate::common::*;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use warmspace_store::testing::TestDatabase;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A server on a fresh database with the admin logged in (in `config`).
async fn server_with_admin(config: &Path) -> (ServerProcess, TestDatabase) {
    let db = TestDatabase::new().await;
    let mut server = ServerProcess::start(config, &["--postgres-url", db.url()]);
    server.wait_healthy().await;
    login_admin(config, &server.url);
    (server, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_users_create_prints_a_generated_password_once() {
    let tmp = temp_dir();
    let admin = tmp.path().join("admin");
    let (server, _db) = server_with_admin(&admin).await;

    let created = run(warmspace(&admin).args(["users", "create", "--username", "dev", "--email", "dev@example.com"]));
    let lines: Vec<String> = stdout(&created).lines().filter(|l| l.contains("Password")).map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "the generated password is printed once: {}", stdout(&created));

    let created = run(warmspace(&admin)
        .args(["users", "create", "--username", "ops", "--email", "ops@example.com"])
        .args(["-o", "json"]));
    let user: Value = serde_json::from_slice(&created.stdout).expect("-o json prints JSON");
    assert_eq!(user["username"], "ops");
    let password = user["password"].as_str().expect("-o json carries the generated password as a field");
    // It is the password the user was given: they can log in with it.
    let ops = tmp.path().join("ops");
    run(warmspace(&ops).args(["login", &server.url, "--email", "ops@example.com", "--password", password]));

    // A password the admin chose is not echoed back.
    let created = run(warmspace(&admin)
        .args(["users", "create", "--username", "qa", "--email", "qa@example.com"])
        .args(["--password", "a chosen password", "-o", "json"]));
    let user: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(user.get("password"), None);
    server.terminate();
}
