//! Reaching into workspaces through the agent's tunnel, with the exec
//! example's real agent process: `warmspace ssh`, OpenSSH after
//! `config-ssh`, `scp`, `port-forward`, the refusals, a second replica, and
//! the connection log that records it all.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use warmspace_sdk::{Client, ConnectionLogEntry, ConnectionLogPage, CreateUserRequest, LoginWithPasswordRequest};
use warmspace_store::testing::TestDatabase;

use crate::common::*;

const PASSWORD: &str = "a long password";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Creates workspace `name` with the CLI and waits for its agent; then
/// waits until an SSH command gets through (the tunnel opens beside the
/// agent's first reports).
async fn ready_workspace(example: &Example, client: &Client, name: &str) -> warmspace_sdk::Workspace {
    run(example.cli().args(["create", name, "--template", "local"]));
    let ws = client.workspace_by_name("me", name).await.unwrap();
    wait_ready(client, ws.id, ws.owner_id).await;
    eventually(Duration::from_secs(30), "an SSH command to get through", || async {
        example.cli().args(["ssh", name, "--", "true"]).output().unwrap().status.success()
    })
    .await;
    ws
}

/// The admin's view of the connection log, as `warmspace connections list -o json` prints it.
fn connections(example: &Example, filters: &[&str]) -> ConnectionLogPage {
    let listed = run(example.cli().args(["connections", "list", "-o", "json"]).args(filters));
    serde_json::from_slice(&listed.stdout).unwrap()
}

/// Waits until the log's newest entry matching `filters` is closed (and, for SSH, has its exit code).
async fn closed_entry(example: &Example, filters: &[&str]) -> ConnectionLogEntry {
    let mut found = None;
    eventually(Duration::from_secs(30), "the connection to be closed in the log", || {
        let page = connections(example, filters);
        let entry = page.entries.into_iter().next();
        let done = entry.as_ref().is_some_and(|e| {
            e.ended_at.is_some() && (e.kind != warmspace_sdk::ConnectionType::Ssh || e.exit_code.is_some())
        });
        if done {
            found = entry;
        }
        async move { done }
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_scp_and_port_forward_reach_a_workspace_and_the_connection_log_records_them() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start(db.url()).await;
    let client = admin_client(&server.url).await;
    let ws = ready_workspace(&example, &client, "box").await;

    // An open session is use of the workspace: the agent's heartbeats (every 10 s) tell the server.
    let before = client.workspace(ws.id).await.unwrap().last_used_at;
    let long = run(example.cli().args(["ssh", "box", "--", "sleep 12; echo used"]));
    assert_eq!(text(&long.stdout), "used\n");
    let after = client.workspace(ws.id).await.unwrap().last_used_at;
    assert!(after > before, "last used {before} before a 12 s session, {after} after");

    // A command's output and exit status; the manifest's environment.
    let hi = example.cli().args(["ssh", "box", "--", "echo", "hi"]).output().unwrap();
    assert!(hi.status.success(), "{}", describe(&hi));
    assert_eq!(text(&hi.stdout), "hi\n");
    let three = example.cli().args(["ssh", "box", "--", "exit", "3"]).output().unwrap();
    assert_eq!(three.status.code(), Some(3), "{}", describe(&three));
    let env = run(example.cli().args(["ssh", "box", "--", "echo", "$WARMSPACE_WORKSPACE_NAME:$WARMSPACE_OWNER_NAME"]));
    assert_eq!(text(&env.stdout), "box:admin\n");
    // Standard input reaches the command, standard error comes back apart.
    let mut cat = example
        .cli()
        .args(["ssh", "box", "--", "cat; echo oops >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"typed in\n").unwrap();
    let cat = cat.wait_with_output().unwrap();
    assert_eq!(
        (text(&cat.stdout).as_str(), text(&cat.stderr).as_str()),
        ("typed in\n", "oops\n"),
        "{}",
        describe(&cat)
    );

    let last = closed_entry(&example, &["--type", "ssh", "--workspace", "box"]).await;
    assert_eq!(
        (last.username.as_str(), last.workspace_name.as_str(), last.agent_name.as_str()),
        ("admin", "box", "main")
    );
    assert_eq!(last.workspace_id, ws.id);
    assert_eq!(last.client_address, "127.0.0.1");
    let ssh = connections(&example, &["--type", "ssh", "--workspace", "box", "--status", "completed"]);
    let codes: Vec<_> = ssh.entries.iter().map(|e| e.exit_code).collect();
    // Newest first: cat, the environment, exit 3, echo hi, and the readiness probes before them.
    assert_eq!(codes[..4], [Some(0), Some(0), Some(3), Some(0)], "{ssh:#?}");
    assert_eq!(ssh.count as usize, ssh.entries.len());

    // OpenSSH, through the ProxyCommand `config-ssh` writes; the file's other hosts stay.
    let dir = temp_dir();
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, "Host elsewhere\n  User nobody\n").unwrap();
    let config_arg = ssh_config.to_str().unwrap();
    run(example.cli().args(["config-ssh", "--ssh-config-file", config_arg]));
    run(example.cli().args(["config-ssh", "--ssh-config-file", config_arg]));
    let written = std::fs::read_to_string(&ssh_config).unwrap();
    assert!(written.starts_with("Host elsewhere\n  User nobody\n"), "{written}");
    assert_eq!(written.matches("Host warmspace.*").count(), 1, "{written}");
    let openssh =
        |args: &[&str]| Command::new("ssh").arg("-F").arg(&ssh_config).args(args).stdin(Stdio::null()).output();
    let ok = openssh(&["warmspace.box", "true"]).unwrap();
    assert!(ok.status.success(), "{}", describe(&ok));
    let seven = openssh(&["warmspace.box", "echo from openssh; exit 7"]).unwrap();
    assert_eq!(
        (seven.status.code(), text(&seven.stdout).as_str()),
        (Some(7), "from openssh\n"),
        "{}",
        describe(&seven)
    );
    assert_eq!(closed_entry(&example, &["--type", "ssh"]).await.exit_code, Some(7));
    // With a terminal: the command runs in a pty.
    let pty = openssh(&["-tt", "warmspace.box", "tty; exit 5"]).unwrap();
    assert_eq!(pty.status.code(), Some(5), "{}", describe(&pty));
    assert!(text(&pty.stdout).starts_with("/dev/pts/"), "{}", describe(&pty));

    // scp in the legacy protocol (`-O`), which runs `scp -t` in the workspace.
    let source = dir.path().join("source.txt");
    std::fs::write(&source, "copied in\n").unwrap();
    let target = dir.path().join("target.txt");
    let scp = Command::new("scp")
        .args(["-O", "-F", config_arg, source.to_str().unwrap()])
        .arg(format!("warmspace.box:{}", target.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(scp.status.success(), "{}", describe(&scp));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "copied in\n");

    // scp's default protocol, SFTP, served by the agent: a file in, and back out.
    let remote_dir = dir.path().join("remote");
    std::fs::create_dir(&remote_dir).unwrap();
    let contents = "through sftp\n".repeat(20_000);
    std::fs::write(&source, &contents).unwrap();
    let scp = |from: &str, to: &str| {
        Command::new("scp").args(["-F", config_arg, from, to]).stdin(Stdio::null()).output().unwrap()
    };
    let inward = scp(source.to_str().unwrap(), &format!("warmspace.box:{}/in.txt", remote_dir.display()));
    assert!(inward.status.success(), "{}", describe(&inward));
    assert_eq!(std::fs::read_to_string(remote_dir.join("in.txt")).unwrap(), contents);
    let back = dir.path().join("back.txt");
    let outward = scp(&format!("warmspace.box:{}/in.txt", remote_dir.display()), back.to_str().unwrap());
    assert!(outward.status.success(), "{}", describe(&outward));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), contents);
    assert_eq!(closed_entry(&example, &["--type", "ssh"]).await.exit_code, Some(0));
    // sftp in batch mode: it starts in the agent's home, and lists a directory.
    let batch = dir.path().join("batch");
    std::fs::write(&batch, format!("pwd\nls -1 {}\n", remote_dir.display())).unwrap();
    let sftp = Command::new("sftp")
        .args(["-F", config_arg, "-b", batch.to_str().unwrap(), "warmspace.box"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(sftp.status.success(), "{}", describe(&sftp));
    let home = std::fs::canonicalize(std::env::var("HOME").unwrap()).unwrap();
    let listed = text(&sftp.stdout);
    assert!(listed.contains(&format!("Remote working directory: {}\n", home.display())), "{listed}");
    assert!(listed.lines().any(|line| line.ends_with("/in.txt")), "{listed}");
    assert_eq!(closed_entry(&example, &["--type", "ssh"]).await.exit_code, Some(0));

    // A port opened inside the workspace (this machine's loopback), forwarded.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                tokio::io::copy(&mut r, &mut w).await.ok();
            });
        }
    });
    let mut forwarding = tokio::process::Command::from(example.cli())
        .args(["port-forward", "box", "--tcp", &format!("0:{remote}")])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(forwarding.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let local: u16 = line.split_once("127.0.0.1:").unwrap().1.split(' ').next().unwrap().parse().unwrap();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local)).await.unwrap();
    conn.write_all(b"ping through the tunnel").await.unwrap();
    let mut back = [0u8; 23];
    conn.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping through the tunnel");
    drop(conn);
    let forward = closed_entry(&example, &["--type", "port_forward"]).await;
    assert_eq!((forward.port, forward.username.as_str()), (Some(remote), "admin"));
    forwarding.kill().await.unwrap();

    // Filters: by owner, and a time range that ends before everything.
    assert_eq!(connections(&example, &["--owner", "admin", "--type", "port_forward"]).count, 1);
    let before = connections(&example, &["--until", "2000-01-01T00:00:00Z"]);
    assert_eq!((before.count, before.entries.len()), (0, 0));
    let page = connections(&example, &["--limit", "1"]);
    assert!(page.entries.len() == 1 && page.count > 1, "{page:?}");

    // Through a second replica on the same database: it relays to the replica holding the tunnel.
    let mut replica = ServerProcess::start(&temp_dir().path().join("client"), &["--postgres-url", db.url()]);
    replica.wait_healthy().await;
    let relayed = example
        .cli()
        .env("WARMSPACE_URL", &replica.url)
        .args(["ssh", "box", "--", "echo", "relayed"])
        .output()
        .unwrap();
    assert!(relayed.status.success(), "{}", describe(&relayed));
    assert_eq!(text(&relayed.stdout), "relayed\n");
    assert_eq!(closed_entry(&example, &["--type", "ssh"]).await.exit_code, Some(0));

    // A replica stopping cleanly closes the connections it still carries before it exits.
    let (mut long, entry) = long_session(&example, &replica.url).await;
    replica.terminate();
    let page = connections(&example, &["--type", "ssh", "--limit", "1000"]);
    let closed = page.entries.iter().find(|e| e.id == entry.id).unwrap();
    assert_eq!(closed.close_reason.as_deref(), Some("replica stopped"), "{closed:?}");
    long.wait().unwrap();

    // One killed outright leaves them behind: the surviving replica closes them once its heartbeat is old.
    let mut replica = ServerProcess::start(&temp_dir().path().join("client"), &["--postgres-url", db.url()]);
    replica.wait_healthy().await;
    let (mut long, entry) = long_session(&example, &replica.url).await;
    replica.child.kill().unwrap();
    replica.child.wait().unwrap();
    long.wait().unwrap();
    let mut closed = None;
    eventually(Duration::from_secs(60), "the killed replica's connection to be closed", || {
        let page = connections(&example, &["--type", "ssh", "--limit", "1000"]);
        closed = page.entries.into_iter().find(|e| e.id == entry.id && e.ended_at.is_some());
        let done = closed.is_some();
        async move { done }
    })
    .await;
    assert_eq!(closed.unwrap().close_reason.as_deref(), Some("replica stopped"));
}

/// A `warmspace ssh box -- sleep 600` through the replica at `url`, once
/// the log shows it ongoing (the only ongoing SSH connection), and its entry.
async fn long_session(example: &Example, url: &str) -> (std::process::Child, ConnectionLogEntry) {
    let long = example
        .cli()
        .env("WARMSPACE_URL", url)
        .args(["ssh", "box", "--", "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ongoing = ["--type", "ssh", "--status", "ongoing"];
    eventually(Duration::from_secs(30), "the long session in the log", || {
        let count = connections(example, &ongoing).count;
        async move { count == 1 }
    })
    .await;
    (long, connections(example, &ongoing).entries.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_workspace_s_owner_may_connect_and_never_to_an_unclaimed_prebuild() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start(db.url()).await;
    let admin = admin_client(&server.url).await;
    admin
        .create_user(&CreateUserRequest {
            username: "bob".into(),
            email: "bob@example.com".into(),
            name: String::new(),
            password: Some(PASSWORD.into()),
            login_type: Default::default(),
            roles: vec![],
            status: Default::default(),
        })
        .await
        .unwrap();
    let session = admin
        .login(&LoginWithPasswordRequest { email: "bob@example.com".into(), password: PASSWORD.into() })
        .await
        .unwrap();
    let as_bob = || {
        let mut cmd = example.cli();
        cmd.env("WARMSPACE_SESSION_TOKEN", &session.session_token);
        cmd
    };
    let bob = Client::new(server.url.parse().unwrap()).with_token(session.session_token.clone());
    run(as_bob().args(["create", "bobs", "--template", "local"]));
    let bobs = bob.workspace_by_name("me", "bobs").await.unwrap();
    wait_ready(&bob, bobs.id, bobs.owner_id).await;
    eventually(Duration::from_secs(30), "bob's SSH command to get through", || async {
        as_bob().args(["ssh", "bobs", "--", "true"]).output().unwrap().status.success()
    })
    .await;

    // Interactive, in a terminal (`script` gives the CLI one): a login shell in a pty, its exit status passed on.
    let line = format!("{BIN} ssh bobs --url {} --token {}", server.url, session.session_token);
    let mut terminal = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut terminal.stdin.take().unwrap(), b"echo $((6 * 7))\nexit 4\n").unwrap();
    let terminal = terminal.wait_with_output().unwrap();
    assert_eq!(terminal.status.code(), Some(4), "{}", describe(&terminal));
    assert!(text(&terminal.stdout).contains("42"), "{}", describe(&terminal));

    // The deployment owner may see bob's workspace but not enter it.
    let refused = run_failing(example.cli().args(["ssh", "bob/bobs", "--", "true"]));
    assert!(refused.contains("Only the owner of workspace bob/bobs may connect to it"), "{refused}");
    assert!(refused.contains("--allow-owner-ssh"), "{refused}");
    // Bob cannot even see the admin's workspaces.
    run(example.cli().args(["create", "mine", "--template", "local"]));
    let hidden = run_failing(as_bob().args(["ssh", "admin/mine", "--", "true"]));
    assert!(hidden.contains("not found"), "{hidden}");

    // The pool's prebuild is nobody's to enter, not even the deployment owner's.
    let prebuild = a_prebuild(&admin).await;
    let refused = run_failing(example.cli().args(["ssh", &format!("prebuilds/{}", prebuild.name), "--", "true"]));
    assert!(refused.contains("unclaimed prebuild"), "{refused}");

    // The API refuses what is not a connection, and bad filters, with a clear error.
    let plain = bob.request(reqwest::Method::GET, &format!("api/v2/workspaces/{}/connect?type=ssh", bobs.id)).unwrap();
    let plain = plain.send().await.unwrap();
    assert_eq!(plain.status(), reqwest::StatusCode::UPGRADE_REQUIRED);
    assert!(plain.text().await.unwrap().contains("Upgrade: warmspace-tunnel"));
    let bad = run_failing(as_bob().args(["connections", "list", "--limit", "0"]));
    assert!(bad.contains("limit"), "{bad}");
    let bad = run_failing(as_bob().args([
        "connections",
        "list",
        "--since",
        "2030-01-01T00:00:00Z",
        "--until",
        "2020-01-01T00:00:00Z",
    ]));
    assert!(bad.contains("started_before"), "{bad}");

    // A stopped workspace cannot be reached, and says so.
    run(as_bob().args(["stop", "bobs"]));
    let stopped = run_failing(as_bob().args(["ssh", "bobs", "--", "true"]));
    assert!(stopped.contains("is not running"), "{stopped}");

    // Only bob's own connections are his to see; the owner sees them all, refused ones not among them.
    let mine = run(as_bob().args(["connections", "list", "-o", "json"]));
    let mine: ConnectionLogPage = serde_json::from_slice(&mine.stdout).unwrap();
    assert!(mine.count > 0 && mine.entries.iter().all(|e| e.username == "bob"), "{mine:?}");
    let all = run(example.cli().args(["connections", "list", "-o", "json", "--user", "bob"]));
    let all: ConnectionLogPage = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all.count, mine.count);
    let admins = run(example.cli().args(["connections", "list", "-o", "json", "--user", "admin"]));
    let admins: ConnectionLogPage = serde_json::from_slice(&admins.stdout).unwrap();
    assert_eq!(admins.count, 0, "refused attempts are not connections: {admins:?}");
}
