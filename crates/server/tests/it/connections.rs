//! One connection budget: `--postgres-max-connections` is the most
//! connections a server ever has open to its database — its main pool, the
//! reconciler's, the pub/sub listener, and anything else it might open —
//! however hard it is driven.
//!
//! The count comes from PostgreSQL itself (`pg_stat_activity`), sampled
//! while the server works, so a part that opened connections of its own
//! outside the budget would be seen whatever it named them. Each test has a
//! database of its own; the harness's connections and the sampler's are left
//! out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sqlx::{ConnectOptions, Connection};
use warmspace_sdk::{Client, LogEvent, Role, Workspace};
use warmspace_server::testing::TestServer;
use warmspace_server::{Config, ReconcilerConfig};
use warmspace_store::testing::HARNESS_APPLICATION;

use crate::common::*;

/// The flag under test: small, so that a handful of busy requests fill it.
const MAX_CONNECTIONS: u32 = 8;
const SAMPLER: &str = "connection-sampler";

/// The most connections the server was seen holding, and who they were.
#[derive(Debug, Default)]
struct Peak {
    count: i64,
    /// `application_name` of each connection at the peak.
    holders: Vec<String>,
    /// Every `application_name` seen at any sample.
    names: BTreeSet<String>,
    samples: u64,
}

/// Samples the database's client connections on a connection of its own,
/// as fast as it can, until stopped.
async fn sample(options: sqlx::postgres::PgConnectOptions, stop: Arc<AtomicBool>) -> Peak {
    let mut conn = options.application_name(SAMPLER).connect().await.expect("the sampler connects");
    let mut peak = Peak::default();
    while !stop.load(Ordering::Relaxed) {
        // Name first (what the assertion is about), then enough to tell
        // which backend it was should the budget be exceeded.
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws(' ', coalesce(application_name, ''), pid, state, backend_start::time, left(query, 60)) \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' \
               AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM $1 \
             ORDER BY 1",
        )
        .bind(HARNESS_APPLICATION)
        .fetch_all(&mut conn)
        .await
        .expect("sampling pg_stat_activity");
        peak.samples += 1;
        peak.names.extend(holders.iter().filter_map(|h| h.split(' ').next()).map(str::to_owned));
        if holders.len() as i64 > peak.count {
            peak.count = holders.len() as i64;
            peak.holders = holders;
        }
    }
    conn.close().await.ok();
    peak
}

/// Follows a build's log to its end, as `warmspace` does after a create.
async fn follow(client: Client, workspace: Workspace) {
    let mut events = Box::pin(client.follow_build_logs(workspace.latest_build.id).await.expect("following a build"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(event) = tokio::time::timeout_at(deadline, events.next()).await.expect("the build ends in time") {
        if let LogEvent::End(_) = event.expect("a log event") {
            return;
        }
    }
    panic!("the log of {} ended without its end", workspace.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_never_opens_more_connections_than_its_budget() {
    const CLAIMERS: usize = 24;
    const COLD: usize = 16;
    const POOL: u32 = 12;
    // Cycles run on their own every 100 ms as well as when triggered.
    let reconciler = ReconcilerConfig { interval: Duration::from_millis(100), ..ReconcilerConfig::default() };
    let config = Config { max_connections: MAX_CONNECTIONS, reconciler, ..Config::default() };
    let server = TestServer::start_full(config, 4, true).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(server.db.options(), Arc::clone(&stop)));

    let owner = server.owner().await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(server.user(&owner, &format!("member{i}"), &[Role::TemplateAdmin]).await);
    }
    // Prebuilds whose simulated agents hold re-init streams open, claimed
    // with `reinit`; builds that take a little while, so followers wait.
    let manifest = manifest(POOL, "reinit", "")
        .replace("echo {", "agent \"main\" {\n  startup_script = \"echo hi\"\n}\necho {")
        .replace("duration_ms = 1", "duration_ms = 30");
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest)]).await;
    let us = preset_id(&owner, &template, "us").await;
    let eu = preset_id(&owner, &template, "eu").await;
    until_eligible(&owner, POOL).await;

    // Inbox streams, open throughout.
    let mut inboxes = Vec::new();
    for client in members.iter().chain([&owner]) {
        inboxes.push(Box::pin(client.watch_notifications().await.expect("watching the inbox")));
    }

    let mut work = tokio::task::JoinSet::new();
    // Claims (more than the pool holds: the rest are cold builds), each
    // followed to its end.
    for i in 0..CLAIMERS {
        let client = members[i % members.len()].clone();
        let req = request(&template, &format!("claim-{i}"), Some(us), &[]);
        work.spawn(async move {
            let workspace = client.create_workspace("me", &req).await.expect("a claim or its cold build");
            follow(client, workspace).await;
        });
    }
    // Cold creates from the pool-less preset, followed too.
    for i in 0..COLD {
        let client = members[i % members.len()].clone();
        let req = request(&template, &format!("cold-{i}"), Some(eu), &[("region", "eu")]);
        work.spawn(async move {
            let workspace = client.create_workspace("me", &req).await.expect("a cold create");
            follow(client, workspace).await;
        });
    }
    // Cycles asked for directly too, besides the server's own loop.
    for _ in 0..2 {
        let reconciler = server.reconciler.clone();
        work.spawn(async move {
            for _ in 0..20 {
                reconciler.run_cycle().await.expect("a reconciliation cycle");
            }
        });
    }
    // Notifications, each announced to the open inbox streams.
    for i in 0..10 {
        let domain = server.domain.clone();
        work.spawn(async move {
            domain.notify_template_admins("load", &format!("note {i}"), "Sent under load.", None).await;
        });
    }
    while let Some(done) = work.join_next().await {
        done.expect("every request succeeds");
    }
    // Every inbox stream received what was sent while the server was busy.
    for inbox in &mut inboxes {
        for _ in 0..10 {
            let note = tokio::time::timeout(Duration::from_secs(30), inbox.next()).await.expect("a notification");
            note.expect("the inbox stream is open").expect("a notification");
        }
    }
    // The pool refills from what the claims took.
    until_eligible(&owner, POOL).await;

    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    println!("peak of {MAX_CONNECTIONS} allowed over {} samples: {peak:?}", peak.samples);
    assert!(
        peak.count <= i64::from(MAX_CONNECTIONS),
        "the server held {} connections with --postgres-max-connections {MAX_CONNECTIONS}: {:?}",
        peak.count,
        peak.holders
    );
    // The sampler saw the server at work, every part of it named.
    for part in ["warmspace-main", "warmspace-reconciler", "warmspace-listener"] {
        assert!(peak.names.contains(part), "no {part} connection was seen: {:?}", peak.names);
    }
    assert!(peak.count >= 4, "the server was never busy enough to test its budget: {peak:?}");
}
