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
async fn expired_prebuilds_are_replaced_make_before_break() {
    let (server, owner) = server(2, ReconcilerConfig::default()).await;
    let expiry = "    expiration_policy {\n      ttl = 3600\n    }\n";
    push(&owner, "pool", &[("warmspace.hcl", &pool(2, expiry, ""))]).await;
    cycle(&server).await;
    until(&owner, "pool", "two eligible", |p| p.eligible == 2).await;
    server.clock.advance(Duration::from_secs(3600));
    let replace = cycle(&server).await;
    assert_eq!((replace.deleted, replace.created), (0, 2), "replacements first, the expired ones kept");
    assert_eq!(active(&owner, "pool").await.expired, 2);
    until(&owner, "pool", "the replacements eligible", |p| p.eligible == 2 && p.starting == 0).await;
    let retire = cycle(&server).await;
    assert_eq!((retire.deleted, retire.created), (2, 0), "the expired ones go once replaced");
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

/// The owner's notifications of `kind`, newest first.
async fn notices(client: &Client, kind: &str) -> Vec<warmspace_sdk::Notification> {
    let inbox = client.notifications(&warmspace_sdk::NotificationsQuery::default()).await.unwrap();
    inbox.notifications.into_iter().filter(|n| n.kind == kind).collect()
}

#[tokio::test]
async fn failures_are_told_in_one_digest_an_hour_and_the_hard_limit_once_per_run() {
    let config = ReconcilerConfig {
        failure_hard_limit: 5,
        backoff_interval: Duration::from_secs(3600),
        ..ReconcilerConfig::default()
    };
    let (server, owner) = server(2, config).await;
    let admin = server.user(&owner, "templates", &[warmspace_sdk::Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    let failing = pool(5, "", "  fail_on = [\"start\"]\n");
    let template = push(&owner, "pool", &[("warmspace.hcl", &failing)]).await;
    assert_eq!(cycle(&server).await.created, 5);
    until(&owner, "pool", "five failed creations", |p| p.failed == 5).await;
    assert_eq!(active(&owner, "pool").await.status, PresetStatus::HardLimited);

    cycle(&server).await;
    for client in [&owner, &admin] {
        let digests = notices(client, "prebuild_failures").await;
        assert_eq!(digests.len(), 1, "five failures, one digest: {digests:#?}");
        assert_eq!(digests[0].title, "5 prebuilds of preset pool (pool) failed");
        assert!(digests[0].content.contains("failed with: "), "{}", digests[0].content);
        assert!(digests[0].content.contains("template pool, version "), "named, not numbered: {}", digests[0].content);
        let limited = notices(client, "prebuild_hard_limited").await;
        assert_eq!(limited.len(), 1, "{limited:#?}");
        assert!(limited[0].content.contains("warmspace templates push pool"), "{}", limited[0].content);
        assert!(limited[0].content.contains("warmspace prebuilds invalidate --template pool --preset pool"));
    }
    assert!(member.notifications(&Default::default()).await.unwrap().notifications.is_empty());
    cycle(&server).await;
    assert_eq!(notices(&owner, "prebuild_failures").await.len(), 1, "nothing new to tell");
    assert_eq!(notices(&owner, "prebuild_hard_limited").await.len(), 1, "told once");

    // Invalidating retries the preset: its history starts afresh.
    owner.invalidate_presets(template.id, &InvalidatePresetsRequest { preset: None }).await.unwrap();
    assert_eq!(cycle(&server).await.created, 5, "no longer hard-limited");
    until(&owner, "pool", "five more failed creations", |p| p.failed == 10).await;
    cycle(&server).await;
    assert_eq!(notices(&owner, "prebuild_failures").await.len(), 1, "within the hour of the last digest");
    assert_eq!(notices(&owner, "prebuild_hard_limited").await.len(), 2, "a new run of failures");
    server.clock.advance(Duration::from_secs(3600));
    cycle(&server).await;
    let digests = notices(&owner, "prebuild_failures").await;
    assert_eq!(digests.len(), 2, "an hour after the last digest");
    assert_eq!(digests[0].title, "5 prebuilds of preset pool (pool) failed", "only those since the last digest");
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
    assert_eq!((replace.deleted, replace.created), (0, 2), "make before break");
    until(&owner, "pool", "the replacements eligible", |p| p.eligible == 2 && p.starting == 0).await;
    assert_eq!(cycle(&server).await.deleted, 2);
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

/// A reconciler on a timer so long that only a wake-up can explain any cycle after the first.
fn woken_only() -> ReconcilerConfig {
    ReconcilerConfig { interval: Duration::from_secs(24 * 3600), ..ReconcilerConfig::default() }
}

async fn prebuild_ids(server: &TestServer) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT id FROM workspaces WHERE owner_id = $1 AND NOT deleted ORDER BY id")
        .bind(PREBUILDS_USER_ID)
        .fetch_all(&server.db.pool().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_change_to_a_pool_wakes_the_reconciler() {
    let server = TestServer::start_with(Config { reconciler: woken_only(), ..Config::default() }, 2).await;
    let owner = server.owner().await;
    // Created: the first pool fills without waiting for the timer.
    let template = push(&owner, "pool", &[("warmspace.hcl", &pool(2, "", ""))]).await;
    until(&owner, "pool", "the new template's pool", |p| p.eligible == 2).await;

    // Invalidated: the pool is replaced.
    let before = prebuild_ids(&server).await;
    owner.invalidate_presets(template.id, &InvalidatePresetsRequest { preset: None }).await.unwrap();
    until(&owner, "pool", "a fresh pool", |p| p.eligible == 2 && p.expired == 0 && p.deleting == 0).await;
    let after = prebuild_ids(&server).await;
    assert!(after.iter().all(|id| !before.contains(id)), "every prebuild was replaced");

    // Paused, then resumed: a version activated while paused takes effect on resume.
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: true }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), pool(3, "", "")).unwrap();
    let v2 = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &v2).await;
    owner.set_active_version(template.id, v2.id).await.unwrap();
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: false }).await.unwrap();
    until(&owner, "pool", "the new version's pool", |p| p.eligible == 3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while prebuild_count(&server).await != 3 {
        assert!(tokio::time::Instant::now() < deadline, "the old version's pool was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deleted: the pool is wound down.
    owner.delete_template(template.id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while prebuild_count(&server).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the deleted template's pool was never wound down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_prebuild_becoming_eligible_wakes_the_reconciler_to_retire_the_one_it_replaces() {
    let server = TestServer::start_with(Config { reconciler: woken_only(), ..Config::default() }, 1).await;
    let owner = server.owner().await;
    // An exec template whose one agent the test plays: its start script leaves the agent's token behind.
    let tokens = tempfile::tempdir().unwrap();
    let start = format!(
        "#!/bin/sh\nif [ \"$WARMSPACE_TRANSITION\" = start ]; then\n  \
         printf %s \"$WARMSPACE_AGENT_TOKEN_MAIN\" > \"{dir}/$WARMSPACE_WORKSPACE_ID.tmp\"\n  \
         mv \"{dir}/$WARMSPACE_WORKSPACE_ID.tmp\" \"{dir}/$WARMSPACE_WORKSPACE_ID\"\nfi\n",
        dir = tokens.path().display()
    );
    let manifest = "provisioner = \"exec\"\npreset \"pool\" {\n  prebuilds {\n    instances = 1\n  }\n}\n\
                    agent \"main\" {}\nexec {\n  start  = \"start.sh\"\n  delete = \"start.sh\"\n}\n";
    let template = push(&owner, "pool", &[("warmspace.hcl", manifest), ("start.sh", &start)]).await;
    // Makes the prebuild's agent ready once its start build has left its token.
    let ready = |workspace: uuid::Uuid| {
        let (file, client) = (tokens.path().join(workspace.to_string()), server.client());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while !file.exists() {
                assert!(tokio::time::Instant::now() < deadline, "no agent token for {workspace}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let agent = client.with_agent_token(std::fs::read_to_string(&file).unwrap());
            agent.agent_lifecycle(warmspace_sdk::AgentLifecycle::Starting).await.unwrap();
            agent.agent_lifecycle(warmspace_sdk::AgentLifecycle::Ready).await.unwrap();
        }
    };
    until(&owner, "pool", "the first prebuild running", |p| p.running == 1).await;
    let first = prebuild_ids(&server).await;
    ready(first[0]).await;
    until(&owner, "pool", "the first prebuild eligible", |p| p.eligible == 1).await;

    owner.invalidate_presets(template.id, &InvalidatePresetsRequest { preset: None }).await.unwrap();
    // The replacement is built; the pass its build's end wakes finds its agent not ready, so the
    // expired prebuild stays, standing in for it.
    let before = server.reconciler.cycles();
    until(&owner, "pool", "the replacement running", |p| p.running == 2 && p.starting == 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server.reconciler.cycles() < before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the invalidation's cycle and the build's end's pass");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(active(&owner, "pool").await.expired, 1, "kept until its replacement is eligible");
    let replacement = prebuild_ids(&server).await.into_iter().find(|id| *id != first[0]).unwrap();
    // Nothing but the agent becoming ready happens now: that alone retires the expired prebuild.
    ready(replacement).await;
    until(&owner, "pool", "the expired prebuild retired", |p| p.expired == 0 && p.running == 1).await;
}

#[tokio::test]
async fn a_creation_canceled_by_hand_wakes_the_reconciler_to_replace_it() {
    // One daemon, busy for a minute with the first creation: the second waits.
    let server = TestServer::start_with(Config { reconciler: woken_only(), ..Config::default() }, 1).await;
    let owner = server.owner().await;
    let slow = pool(2, "", "").replace("duration_ms = 5", "duration_ms = 60000");
    push(&owner, "pool", &[("warmspace.hcl", &slow)]).await;
    until(&owner, "pool", "two creations", |p| p.starting == 2).await;
    let pending: uuid::Uuid = sqlx::query_scalar(
        "SELECT b.id FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id WHERE j.status = 'pending'",
    )
    .fetch_one(&server.db.pool().await)
    .await
    .unwrap();
    owner.cancel_build(pending).await.unwrap();
    // The canceled creation is a build that finished: its replacement is queued at once.
    until(&owner, "pool", "a replacement", |p| p.starting == 2 && p.failed == 1).await;
}

#[tokio::test]
async fn creations_canceled_before_any_daemon_took_them_are_removed_without_a_delete_build() {
    // One daemon, busy for a minute with the first creation: the others wait.
    let (server, owner) = server(1, ReconcilerConfig::default()).await;
    let slow = pool(3, "", "").replace("duration_ms = 5", "duration_ms = 60000");
    let template = push(&owner, "pool", &[("warmspace.hcl", &slow)]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), pool(0, "", "")).unwrap();
    let v2 = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &v2).await;
    assert_eq!(cycle(&server).await.created, 3);
    until(&owner, "pool", "one creation running", |p| p.starting == 3).await;
    owner.set_active_version(template.id, v2.id).await.unwrap();
    assert_eq!(cycle(&server).await.canceled, 2);
    let removed = cycle(&server).await;
    assert_eq!(removed.deleted, 2, "{removed:?}");
    // Nothing was ever built for them, so nothing is torn down: gone at once, no delete build queued.
    let db = server.db.pool().await;
    let (deleted, delete_builds): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE w.deleted), \
             (SELECT count(*) FROM workspace_builds WHERE transition = 'delete') \
         FROM workspaces w WHERE w.owner_id = $1",
    )
    .bind(PREBUILDS_USER_ID)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((deleted, delete_builds), (2, 0));
}

/// An exec template whose start script starts no agent: the build succeeds,
/// the agent never reports ready.
const AGENTLESS: &str = "provisioner = \"exec\"\npreset \"pool\" {\n  prebuilds {\n    instances = 1\n  }\n}\n\
    agent \"main\" {}\nexec {\n  start  = \"start.sh\"\n  delete = \"start.sh\"\n}\n";

#[tokio::test]
async fn a_prebuild_whose_agents_are_not_ready_in_time_is_a_failure_and_replaced() {
    let config = ReconcilerConfig { backoff_interval: Duration::from_secs(3600), ..ReconcilerConfig::default() };
    let (server, owner) = server(2, config).await;
    let start = "#!/bin/sh\necho 'the startup is broken: no agent'\n";
    let template = push(&owner, "pool", &[("warmspace.hcl", AGENTLESS), ("start.sh", start)]).await;
    assert_eq!(template.settings.agent_ready_timeout_ms, 600_000, "ten minutes unless set");
    let bad = owner
        .update_template(
            template.id,
            &warmspace_sdk::UpdateTemplateRequest {
                settings: warmspace_sdk::UpdateTemplateSettings {
                    agent_ready_timeout_ms: Some(0),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    let (status, response) = api_status(bad);
    assert_eq!(status, warmspace_sdk::StatusCode::BAD_REQUEST);
    assert_eq!(response.validations[0].field, "settings.agent_ready_timeout_ms");
    let two_minutes = warmspace_sdk::UpdateTemplateRequest {
        settings: warmspace_sdk::UpdateTemplateSettings { agent_ready_timeout_ms: Some(120_000), ..Default::default() },
        ..Default::default()
    };
    let updated = owner.update_template(template.id, &two_minutes).await.unwrap();
    assert_eq!(updated.settings.agent_ready_timeout_ms, 120_000);
    assert_eq!(owner.template(template.id).await.unwrap().settings.agent_ready_timeout_ms, 120_000);

    assert_eq!(cycle(&server).await.created, 1);
    until(&owner, "pool", "a running prebuild that is not ready", |p| p.running == 1 && p.starting == 0).await;
    assert_eq!(active(&owner, "pool").await.eligible, 0);
    assert_eq!(cycle(&server).await.actions, 0, "within the timeout it is waited for");

    server.clock.advance(Duration::from_secs(180));
    let timed_out = active(&owner, "pool").await;
    assert_eq!((timed_out.agents_not_ready, timed_out.eligible), (1, 0), "{timed_out:?}");
    // A failed creation: the preset backs off, and the prebuild goes.
    assert_eq!(timed_out.status, PresetStatus::Backoff);
    let removed = cycle(&server).await;
    assert_eq!((removed.deleted, removed.created), (1, 0));
    let reason: String = sqlx::query_scalar("SELECT reason FROM prebuild_events WHERE event = 'deleted'")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(reason, "agents_not_ready");
    // Deleted, it still counts as a failure (recorded with its deletion).
    until(&owner, "pool", "the prebuild gone", |p| p.running == 0 && p.deleting == 0).await;
    assert_eq!(active(&owner, "pool").await.status, PresetStatus::Backoff);
    // After the backoff it is replaced.
    server.clock.advance(Duration::from_secs(3600));
    assert_eq!(cycle(&server).await.created, 1);
}
