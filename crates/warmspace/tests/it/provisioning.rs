//! Provisioning end to end: the server's own daemons and external
//! `warmspace provisioner start` processes sharing the job queue.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use futures::{StreamExt, stream};
use warmspace_sdk::{
    Client, CreateWorkspaceBuildRequest, CreateWorkspaceRequest, JobStatus, Workspace, WorkspacesQuery,
};
use warmspace_store::testing::TestDatabase;

const WORKSPACES: usize = 200;

async fn count(client: &Client, q: &str) -> i64 {
    client.workspaces(&WorkspacesQuery { q: Some(q.into()), limit: Some(1000), offset: None }).await.unwrap().count
}

/// Waits until all `expected` workspaces show `status`, failing fast if any build failed.
async fn all_reach(client: &Client, status: &str, expected: i64) {
    eventually(Duration::from_secs(240), &format!("{expected} workspaces {status}"), || async {
        assert_eq!(count(client, "status:failed").await, 0, "a build failed");
        count(client, &format!("status:{status}")).await == expected
    })
    .await;
}

async fn transition_all(client: &Client, workspaces: &[Workspace], transition: &str) {
    stream::iter(workspaces)
        .for_each_concurrent(25, |w| async move {
            let req = CreateWorkspaceBuildRequest {
                transition: transition.parse().expect("a transition"),
                template_version_id: None,
                rich_parameter_values: vec![],
            };
            client.create_build(w.id, &req).await.unwrap();
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_workspaces_through_in_process_and_external_daemons() {
    let LoggedIn { server, db, config, dir: _dir } = LoggedIn::start(&["--provisioner-daemons", "3"]).await;
    let key = provisioner_key(&config, "ci");
    let _external: Vec<ExternalDaemon> =
        (1..=2).map(|n| ExternalDaemon::start(&config, &server.url, &key, &format!("external-{n}"))).collect();
    let template_files = echo_template(5);
    run(warmspace(&config).args(["templates", "push", "fast", "-d"]).arg(template_files.path()));

    let client = admin_client(&server.url).await;
    let template = client.template_by_name("default", "fast").await.unwrap();
    let workspaces: Vec<Workspace> = stream::iter(0..WORKSPACES)
        .map(|i| {
            let client = &client;
            async move {
                let req = workspace_request(template.id, format!("ws-{i}"));
                client.create_workspace("me", &req).await.unwrap()
            }
        })
        .buffer_unordered(25)
        .collect()
        .await;
    let n = WORKSPACES as i64;
    all_reach(&client, "running", n).await;
    transition_all(&client, &workspaces, "stop").await;
    all_reach(&client, "stopped", n).await;
    transition_all(&client, &workspaces, "start").await;
    all_reach(&client, "running", n).await;
    transition_all(&client, &workspaces, "delete").await;
    eventually(Duration::from_secs(240), "every workspace deleted", || async { count(&client, "").await == 0 }).await;

    // Every job ran exactly once: one acquisition each, all succeeded.
    let store = db.pool().await;
    let acquisitions: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(l.id) FROM provisioner_jobs j LEFT JOIN provisioner_job_logs l \
         ON l.job_id = j.id AND l.output LIKE 'Job acquired by %' GROUP BY j.id",
    )
    .fetch_all(&store)
    .await
    .unwrap();
    assert_eq!(acquisitions.len(), 4 * WORKSPACES + 1, "four builds per workspace and one import");
    assert!(acquisitions.iter().all(|(n,)| *n == 1), "a job was run more or less than once");

    let listed = run(warmspace(&config).args(["provisioner", "jobs", "list", "-o", "json", "--limit", "1000"]));
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs.len(), 4 * WORKSPACES + 1);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"));
    let workers: BTreeSet<&str> = jobs.iter().map(|j| j["worker_name"].as_str().unwrap()).collect();
    assert!(workers.iter().any(|w| w.starts_with("external-")), "external daemons took jobs: {workers:?}");
    assert!(workers.iter().any(|w| !w.starts_with("external-")), "in-process daemons took jobs: {workers:?}");
    let table = run(warmspace(&config).args(["provisioner", "jobs", "list", "--limit", "5"]));
    assert!(String::from_utf8_lossy(&table.stdout).contains("WORKER"));
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_external_daemon_s_job_fails_when_its_lease_expires() {
    let LoggedIn { server, config, db: _db, dir: _dir } =
        LoggedIn::start(&["--provisioner-daemons", "0", "--provisioner-lease", "2s"]).await;
    let key = provisioner_key(&config, "ci");
    let mut first = ExternalDaemon::start(&config, &server.url, &key, "doomed");
    let (slow, fast) = (echo_template(120_000), echo_template(5));
    run(warmspace(&config).args(["templates", "push", "slow", "-d"]).arg(slow.path()));
    run(warmspace(&config).args(["templates", "push", "fast", "-d"]).arg(fast.path()));

    let client = admin_client(&server.url).await;
    let create = |template: &'static str, name: &'static str| {
        let client = client.clone();
        async move {
            let template = client.template_by_name("default", template).await.unwrap();
            let req = workspace_request(template.id, name);
            client.create_workspace("me", &req).await.unwrap().latest_build
        }
    };
    let stuck = create("slow", "stuck").await;
    eventually(Duration::from_secs(30), "the doomed daemon to start the build", || async {
        client.build(stuck.id).await.unwrap().job.status == JobStatus::Running
    })
    .await;
    first.kill_hard();

    eventually(Duration::from_secs(30), "the job to fail once its lease expired", || async {
        client.build(stuck.id).await.unwrap().job.status == JobStatus::Failed
    })
    .await;
    let job = client.build(stuck.id).await.unwrap().job;
    assert!(job.error.as_deref().unwrap().contains("doomed stopped renewing its lease"), "{:?}", job.error);
    let log = client.build_logs(stuck.id).await.unwrap();
    assert!(log.last().unwrap().output.contains("stopped heartbeating"), "{log:#?}");

    let _second = ExternalDaemon::start(&config, &server.url, &key, "successor");
    let next = create("fast", "next").await;
    eventually(Duration::from_secs(30), "the new daemon to run the next build", || async {
        client.build(next.id).await.unwrap().job.status == JobStatus::Succeeded
    })
    .await;
    assert_eq!(client.build(next.id).await.unwrap().job.worker_name.as_deref(), Some("successor"));
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_mid_claims_leaves_every_workspace_claimed_or_in_the_pool() {
    let LoggedIn { server, db, config, dir: _dir } = LoggedIn::start(&[]).await;
    let pool = template_dir(
        "provisioner = \"echo\"\nclaim = \"reinit\"\npreset \"pool\" {\n  prebuilds {\n    instances = 30\n  }\n}\n\
         echo {\n  duration_ms = 0\n}\n",
    );
    run(warmspace(&config).args(["templates", "push", "pool", "-d"]).arg(pool.path()));
    let client = admin_client(&server.url).await;
    eventually(Duration::from_secs(60), "a full pool", || async {
        client.prebuilds_status().await.unwrap().presets.iter().any(|p| p.eligible >= 30)
    })
    .await;
    let template = client.template_by_name("default", "pool").await.unwrap();
    let preset = client.template_version_presets(template.active_version_id).await.unwrap()[0].id;

    // Claims in flight from many clients while the server is killed.
    let claims: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let req = CreateWorkspaceRequest {
                    template_version_preset_id: Some(preset),
                    ..workspace_request(template.id, format!("mine-{i}"))
                };
                client.create_workspace("me", &req).await
            })
        })
        .collect();
    // Kill once some claims have committed, while the rest are in flight.
    let store = db.pool().await;
    eventually(Duration::from_secs(30), "the first claims to commit", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM claim_attempts").fetch_one(&store).await.unwrap() >= 5
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let mut answered = 0;
    for claim in claims {
        if claim.await.unwrap().is_ok() {
            answered += 1;
        }
    }
    println!("{answered} of 200 claims were answered before the kill");

    let prebuilds = "c42fdf75-3097-471c-8c33-fb52454d81c0";
    let half_done: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM workspaces w WHERE EXISTS (SELECT 1 FROM workspace_builds b WHERE b.workspace_id = w.id \
         AND b.build_number = 1 AND b.initiator_id = '{prebuilds}') \
         AND ((w.owner_id <> '{prebuilds}') <> EXISTS (SELECT 1 FROM workspace_builds c WHERE c.workspace_id = w.id \
              AND c.reason = 'claim') \
           OR (w.owner_id <> '{prebuilds}') <> EXISTS (SELECT 1 FROM claim_attempts a WHERE a.workspace_id = w.id \
              AND a.hit) \
           OR (w.owner_id <> '{prebuilds}') <> (w.name LIKE 'mine-%'))"
    )))
    .fetch_one(&store)
    .await
    .unwrap();
    assert_eq!(half_done, 0, "every workspace is either fully claimed or still in the pool");
    let claimed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM claim_attempts WHERE hit").fetch_one(&store).await.unwrap();
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM claim_attempts").fetch_one(&store).await.unwrap();
    println!("{claimed} claims committed, {attempts} requests recorded, of 200 sent");
    assert!(claimed >= 5, "claims had committed when the server died");
    assert!(attempts < 200, "the server died before answering every request");
}

/// Waits for `child` to exit, for at most `limit`; returns its status and stderr.
fn exit_within(child: &mut std::process::Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status, stderr);
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("the daemon was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_daemon_with_a_bad_key_exits_saying_so_but_waits_out_an_unreachable_server() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let config = tmp.path().join("client");
    let address = free_address();
    let args = ["--postgres-url", db.url(), "--provisioner-daemons", "0"];
    let mut server = ServerProcess::start_on(&address, &config, &args, &[]);
    server.wait_healthy().await;
    login_admin(&config, &server.url);
    let key = provisioner_key(&config, "ci");

    // A key that was never issued, and a real key's id with the wrong secret.
    let (id, _secret) = key.split_once('-').unwrap();
    for bad in ["not-a-key".to_owned(), format!("{id}-{}", "x".repeat(32))] {
        let mut daemon = warmspace(&config)
            .args(["provisioner", "start", "--url", &server.url, "--key", &bad])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (status, stderr) = exit_within(&mut daemon, Duration::from_secs(30));
        assert!(!status.success(), "{status}");
        assert!(stderr.contains("invalid provisioner key"), "{stderr}");
    }

    // A good key, with no server to answer yet: the daemon waits for it, then takes work.
    server.terminate();
    let _daemon = ExternalDaemon::start(&config, &format!("http://{address}"), &key, "patient");
    let mut server = ServerProcess::start_on(&address, &config, &args, &[]);
    server.wait_healthy().await;
    let template = echo_template(5);
    run(warmspace(&config).args(["templates", "push", "fast", "-d"]).arg(template.path()));
    let listed = run(warmspace(&config).args(["provisioner", "jobs", "list", "-o", "json"]));
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs[0]["worker_name"], "patient", "{jobs:#?}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_result_the_server_refuses_fails_the_job_at_once_with_the_reason() {
    let LoggedIn { server, config, db: _db, dir: _dir } = LoggedIn::start(&["--provisioner-daemons", "0"]).await;
    let key = provisioner_key(&config, "ci");
    let _daemon = ExternalDaemon::start(&config, &server.url, &key, "external");
    // A state file whose upload exceeds what the server accepts in one request (64 MiB).
    let template = template_dir("provisioner = \"exec\"\nexec {\n  start = \"start.sh\"\n}\n");
    script(&template, "start.sh", "#!/bin/sh\nhead -c 60000000 /dev/zero > \"$WARMSPACE_STATE_FILE\"\n");
    run(warmspace(&config).args(["templates", "push", "huge", "-d"]).arg(template.path()));

    let client = admin_client(&server.url).await;
    let template = client.template_by_name("default", "huge").await.unwrap();
    let req = workspace_request(template.id, "huge");
    let build = client.create_workspace("me", &req).await.unwrap().latest_build;
    eventually(Duration::from_secs(120), "the build to end", || async {
        client.build(build.id).await.unwrap().job.status.is_finished()
    })
    .await;
    let job = client.build(build.id).await.unwrap().job;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("the server refused the job's result") && error.contains("413"), "{error}");
    server.terminate();
}
