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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_users_suspend_activate_and_edit_roles() {
    let tmp = temp_dir();
    let admin = tmp.path().join("admin");
    let (server, _db) = server_with_admin(&admin).await;
    run(warmspace(&admin).args(["users", "create", "--username", "dev", "--email", "dev@example.com"]));
    let user = |name: &str| {
        let listed = run(warmspace(&admin).args(["users", "list", "--search", name, "-o", "json"]));
        let users: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
        users.into_iter().find(|u| u["username"] == name).expect("listed")
    };

    assert_eq!(stdout(&run(warmspace(&admin).args(["users", "suspend", "dev"]))).trim(), "Suspended user dev.");
    assert_eq!(user("dev")["status"], "suspended");
    run(warmspace(&admin).args(["users", "activate", "dev"]));
    assert_eq!(user("dev")["status"], "active");
    let edited = run(warmspace(&admin).args(["users", "edit-roles", "dev", "--role", "template-admin"]));
    assert_eq!(stdout(&edited).trim(), "User dev now has the roles template-admin, member.");
    run(warmspace(&admin).args(["users", "edit-roles", "dev"]));
    assert_eq!(user("dev")["roles"], serde_json::json!(["member"]));
    // Refusals are sentences.
    let refused = run_failing(warmspace(&admin).args(["users", "suspend", "admin"]));
    assert!(refused.contains("You cannot suspend or reactivate yourself."), "{refused}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_and_listen_on_a_host_name_without_a_scheme() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let port = free_address().rsplit_once(':').unwrap().1.to_owned();
    let address = format!("localhost:{port}");
    // `--http-address localhost:PORT`: the host name is resolved.
    let mut server = ServerProcess::start_on(&address, &config, &["--postgres-url", db.url()], &[]);
    server.wait_healthy().await;

    // `login localhost:PORT`: a loopback host is spoken to over http.
    let logged_in = run(warmspace(&config).args([
        "login",
        &address,
        "--first-user-username",
        "admin",
        "--first-user-email",
        "admin@example.com",
        "--first-user-password",
        "a long password",
    ]));
    assert!(stdout(&logged_in).contains(&format!("Logged in to http://localhost:{port}/")), "{}", stdout(&logged_in));
    run(warmspace(&config).args(["users", "list"]));
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_read_as_sentences() {
    let tmp = temp_dir();
    let admin = tmp.path().join("admin");
    let (server, _db) = server_with_admin(&admin).await;
    run(warmspace(&admin)
        .args(["users", "create", "--username", "dev", "--email", "dev@example.com"])
        .args(["--password", "a member's password"]));
    let member = tmp.path().join("member");
    run(warmspace(&member).args([
        "login",
        &server.url,
        "--email",
        "dev@example.com",
        "--password",
        "a member's password",
    ]));

    // Refusals name what was refused and the role it needs.
    let stderr = run_failing(warmspace(&member).args(["prebuilds", "status"]));
    assert!(
        stderr.contains("error: You may not read prebuild status. It needs the template-admin or owner role."),
        "{stderr}"
    );
    // Claims are for template admins and owners: members see no one's.
    let stderr = run_failing(warmspace(&member).args(["prebuilds", "claims"]));
    assert!(
        stderr.contains("You may not read prebuild claims. It needs the template-admin or owner role."),
        "{stderr}"
    );
    run(warmspace(&admin).args(["prebuilds", "claims"]));
    let stderr =
        run_failing(warmspace(&member).args(["users", "create", "--username", "x", "--email", "x@example.com"]));
    assert!(stderr.contains("You may not create users. It needs the owner role."), "{stderr}");

    // A bad --search names the term and what is wrong with it.
    let stderr = run_failing(warmspace(&admin).args(["list", "--search", "colour:blue"]));
    assert!(stderr.contains("--search \"colour:blue\": unknown filter \"colour\""), "{stderr}");
    let stderr = run_failing(warmspace(&admin).args(["list", "--all", "--search", "owner:nobody"]));
    assert!(stderr.contains("--search \"owner:nobody\": no user \"nobody\""), "{stderr}");
    let stderr = run_failing(warmspace(&admin).args(["users", "list", "--search", "role:boss"]));
    assert!(stderr.contains("--search \"role:boss\": unknown role \"boss\""), "{stderr}");

    // A path naming nobody says whom; one naming no workspace says which.
    let stderr = run_failing(warmspace(&admin).args(["show", "nosuch/box"]));
    assert!(stderr.contains("User \"nosuch\" not found."), "{stderr}");
    let stderr = run_failing(warmspace(&admin).args(["show", "me/nosuch"]));
    assert!(stderr.contains("Workspace \"admin/nosuch\" not found."), "{stderr}");
    server.terminate();
}

#[test]
fn cli_help_shows_each_command_its_own_flags() {
    let tmp = temp_dir();
    let help = |args: &[&str]| stdout(&run(warmspace(tmp.path()).args(args).arg("--help")));

    let server = help(&["server"]);
    for client_flag in ["--url", "--token", "--global-config", "--output"] {
        assert!(!server.contains(client_flag), "`server --help` shows the client flag {client_flag}:\n{server}");
    }
    let agent = help(&["agent"]);
    let token = agent.lines().find(|l| l.trim_start().starts_with("--token")).unwrap_or_default();
    assert!(token.contains("The agent token"), "{agent}");
    for never_prompts in ["start", "stop", "create"] {
        let text = help(&[never_prompts]);
        assert!(!text.contains("--yes"), "`{never_prompts} --help` advertises --yes:\n{text}");
    }
    for prompts in ["delete", "update"] {
        assert!(help(&[prompts]).contains("--yes"));
    }
    // `create -y` is accepted (Coder's muscle memory): what fails is the missing login, not the flag.
    let stderr = run_failing(warmspace(tmp.path()).args(["create", "box", "-t", "docker", "-y"]));
    assert!(stderr.contains("not logged in"), "{stderr}");
}
