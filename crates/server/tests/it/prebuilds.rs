//! Prebuild reconciliation with real daemons (echo backend) and a real
//! database. Cycles are run by the tests, one at a time, so "in one cycle"
//! can be asserted; daemons run the builds the cycles queue.

use std::time::Duration;

use crate::common::*;
use warmspace_sdk::{Client, InvalidatePresetsRequest, PrebuildSettings, PresetPoolStatus, PresetStatus};
use warmspace_server::domain::{CycleStats, Domain};
use warmspace_server::reconciler::Reconciler;
use warmspace_server::testing::TestServer;
use warmspace_server::{Config, ReconcilerConfig};
use warmspace_store::workspaces::PREBUILDS_USER_ID;

/// An echo template with one preset keeping a pool of `instances`.
fn pool(instances: u32, extra: &str, echo: &str) -> String {
    format!(
        "provisioner = \"echo\"\npreset \"pool\" {{\n  prebuilds {{\n    instances = {instances}\n{extra}  }}\n}}\n\
         agent \"main\" {{}}\necho {{\n  duration_ms = 5\n{echo}}}\n"
    )
}

async fn server(daemons: usize, reconciler: ReconcilerConfig) -> (TestServer, Client) {
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, daemons, false).await;
    let owner = server.owner().await;
    (server, owner)
}

async fn cycle(server: &TestServer) -> CycleStats {
    server.reconciler.run_cycle().await.unwrap().expect("nobody else holds the lock")
}

async fn status(client: &Client, template: &str) -> Vec<PresetPoolStatus> {
    let all = client.prebuilds_status().await.unwrap().presets;
    all.into_iter().filter(|p| p.template_name == template).collect()
}

async fn active(client: &Client, template: &str) -> PresetPoolStatus {
    status(client, template).await.into_iter().find(|p| p.version_active).expect("an active preset")
}

/// Waits until the active preset's pool satisfies `check`.
async fn until(
    client: &Client,
    template: &str,
    what: &str,
    check: impl Fn(&PresetPoolStatus) -> bool,
) -> PresetPoolStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = active(client, template).await;
        if check(&now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {now:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_pool_of_three_fills_and_stays_at_three() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    push(&owner, "pool", &[("warmspace.hcl", &pool(3, "", ""))]).await;
    let first = cycle(&server).await;
    assert_eq!((first.created, first.deleted), (3, 0));
    // Eligible means built and every agent (simulated, through the agent API) ready.
    until(&owner, "pool", "three eligible prebuilds", |p| p.eligible == 3 && p.starting == 0).await;
    for _ in 0..3 {
        let again = cycle(&server).await;
        assert_eq!(again.actions, 0, "{again:?}");
    }
    assert_eq!(prebuild_count(&server).await, 3);
    let ws = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ws.count, 3);
    // Prebuilds carry no lifecycle fields.
    assert!(ws.workspaces.iter().all(|w| w.ttl_ms.is_none() && w.latest_build.deadline.is_none()));
    assert!(ws.workspaces.iter().all(|w| w.latest_build.initiator_id == PREBUILDS_USER_ID));
}

#[tokio::test]
async fn a_pool_cut_from_twenty_to_one_shrinks_in_one_cycle() {
    let (server, owner) = server(3, ReconcilerConfig::default()).await;
    push(&owner, "pool", &[("warmspace.hcl", &pool(20, "", ""))]).await;
    assert_eq!(cycle(&server).await.created, 20);
    until(&owner, "pool", "twenty running", |p| p.running == 20).await;
    sqlx::query("UPDATE template_version_presets SET desired_instances = 1")
        .execute(&server.db.pool().await)
        .await
        .unwrap();
    let shrink = cycle(&server).await;
    assert_eq!((shrink.deleted, shrink.created), (19, 0));
    until(&owner, "pool", "one left", |p| p.running == 1 && p.deleting == 0).await;
    assert_eq!(prebuild_count(&server).await, 1);
    // The one kept is the newest.
    let oldest_deleted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workspaces k, workspaces d WHERE k.owner_id = $1 AND NOT k.deleted AND d.deleted \
         AND d.created_at > k.created_at",
    )
    .bind(PREBUILDS_USER_ID)
    .fetch_one(&server.db.pool().await)
    .await
    .unwrap();
    assert_eq!(oldest_deleted, 0, "the oldest were deleted first");
}

#[tokio::test]
async fn expired_prebuilds_are_replaced_in_one_cycle() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    let expiry = "    expiration_policy {\n      ttl = 1\n    }\n";
    push(&owner, "pool", &[("warmspace.hcl", &pool(2, expiry, ""))]).await;
    cycle(&server).await;
    until(&owner, "pool", "two running", |p| p.running == 2).await;
    until(&owner, "pool", "both expired", |p| p.expired == 2).await;
    let replace = cycle(&server).await;
    assert_eq!((replace.deleted, replace.created), (2, 2), "delete and create in the same cycle");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM prebuild_events WHERE event = 'expired'")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(events, 2, "each prebuild's life is recorded");
}

#[tokio::test]
async fn failing_creations_back_off_stop_at_the_hard_limit_and_resume_on_a_new_version() {
    let config = ReconcilerConfig { backoff_interval: Duration::from_secs(3600), ..ReconcilerConfig::default() };
    let (server, owner) = server(2, config).await;
    let failing = pool(1, "", "  fail_on = [\"start\"]\n");
    let template = push(&owner, "pool", &[("warmspace.hcl", &failing)]).await;
    assert_eq!(cycle(&server).await.created, 1);
    until(&owner, "pool", "the creation to fail", |p| p.failed == 1).await;
    let backing_off = until(&owner, "pool", "backoff", |p| p.status == PresetStatus::Backoff).await;
    assert!(backing_off.backoff_until.is_some());
    assert_eq!(cycle(&server).await.created, 0, "no creation while backing off");
    assert_eq!(active(&owner, "pool").await.failed, 1, "the failed prebuild is kept for its logs");

    // Three failed creations in a row reach the hard limit.
    sqlx::query("UPDATE template_version_presets SET desired_instances = 3")
        .execute(&server.db.pool().await)
        .await
        .unwrap();
    // Two hours later, the backoff has passed.
    server.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(cycle(&server).await.created, 3);
    until(&owner, "pool", "hard limited", |p| p.status == PresetStatus::HardLimited).await;
    assert_eq!(cycle(&server).await.created, 0, "nothing is created once hard-limited");

    // A new version's presets start afresh.
    let fixed = pool(1, "", "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), &fixed).unwrap();
    let v2 = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &v2).await;
    owner.set_active_version(template.id, v2.id).await.unwrap();
    let resumed = cycle(&server).await;
    assert_eq!(resumed.created, 1);
    until(&owner, "pool", "the new version's pool", |p| p.running == 1 && p.status == PresetStatus::Normal).await;
}

#[tokio::test]
async fn invalidation_replaces_the_pool() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &pool(2, "", ""))]).await;
    cycle(&server).await;
    until(&owner, "pool", "two running", |p| p.running == 2).await;
    let done = owner.invalidate_presets(template.id, &InvalidatePresetsRequest { preset: None }).await.unwrap();
    assert_eq!(done.invalidated, ["pool"]);
    let replace = cycle(&server).await;
    assert_eq!((replace.deleted, replace.created), (2, 2));
    let refused =
        owner.invalidate_presets(template.id, &InvalidatePresetsRequest { preset: Some("nope".into()) }).await;
    assert_eq!(api_status(refused).0, warmspace_sdk::StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn activating_a_new_version_cancels_unpicked_creations_and_moves_the_pool() {
    // One daemon, busy for a minute with the first creation: the others wait.
    let (server, owner) = server(1, ReconcilerConfig::default()).await;
    let slow = pool(3, "", "").replace("duration_ms = 5", "duration_ms = 60000");
    let template = push(&owner, "pool", &[("warmspace.hcl", &slow)]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), pool(2, "", "")).unwrap();
    let v2 = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &v2).await;

    assert_eq!(cycle(&server).await.created, 3);
    until(&owner, "pool", "one creation running", |p| p.starting == 3).await;
    owner.set_active_version(template.id, v2.id).await.unwrap();
    let moved = cycle(&server).await;
    assert_eq!(moved.canceled, 2, "the two creations no daemon picked up are canceled");
    assert_eq!(moved.created, 2, "the new version's pool is queued");
    let old = status(&owner, "pool").await.into_iter().find(|p| !p.version_active).unwrap();
    assert_eq!(old.desired, 0);
    let canceled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM provisioner_jobs WHERE status = 'canceled' AND priority = 1")
            .fetch_one(&server.db.pool().await)
            .await
            .unwrap();
    assert_eq!(canceled, 2);
}

#[tokio::test]
async fn pause_stops_everything_and_resume_restarts_it() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    push(&owner, "pool", &[("warmspace.hcl", &pool(2, "", ""))]).await;
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: true }).await.unwrap();
    assert!(owner.prebuilds_status().await.unwrap().reconciliation_paused);
    let paused = cycle(&server).await;
    assert_eq!(paused.actions, 0);
    assert_eq!(prebuild_count(&server).await, 0);
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: false }).await.unwrap();
    assert_eq!(cycle(&server).await.created, 2);
    until(&owner, "pool", "two running", |p| p.running == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_never_create_more_than_desired() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    push(&owner, "pool", &[("warmspace.hcl", &pool(5, "", ""))]).await;
    // A second replica: its own pool and pub/sub on the same database.
    let other_store = server.db.store().await;
    let other_pubsub = warmspace_store::pubsub::PubSub::start(server.db.options(), &other_store);
    let other = Reconciler::new(Domain::new(other_store, other_pubsub, Default::default()), 5);
    let mut racers = Vec::new();
    for i in 0..20 {
        let reconciler = if i % 2 == 0 { server.reconciler.clone() } else { other.clone() };
        racers.push(tokio::spawn(async move { reconciler.run_cycle().await.unwrap() }));
    }
    let mut created = 0;
    for racer in racers {
        created += racer.await.unwrap().map(|s| s.created).unwrap_or(0);
    }
    assert_eq!(created, 5);
    assert_eq!(prebuild_count(&server).await, 5);
    until(&owner, "pool", "five running", |p| p.running == 5).await;
    for reconciler in [&server.reconciler, &other] {
        if let Some(stats) = reconciler.run_cycle().await.unwrap() {
            assert_eq!(stats.created, 0);
        }
    }
    assert_eq!(prebuild_count(&server).await, 5);
}
