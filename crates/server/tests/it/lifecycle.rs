//! The lifecycle executor (DESIGN §5.4) on the server's controllable clock:
//! autostop, autostart, failure TTL, dormancy and dormant auto-delete fire
//! for people's workspaces and never for unclaimed prebuilds — which the
//! tests make look due for every rule, so only the selection keeps them
//! out — and after a claim the template's rules apply from the claim on.
//! Ticks are run by the test (`server.lifecycle.tick()`); builds are
//! carried out by the server's real daemons.

use std::time::Duration;

use uuid::Uuid;
use warmspace_sdk::{
    BuildReason, Client, NotificationsQuery, StatusCode, Template, Transition, UpdateTemplateRequest,
    UpdateTemplateSettings, Workspace, WorkspaceStatus,
};
use warmspace_server::domain::TickStats;
use warmspace_server::lifecycle::LifecycleExecutor;
use warmspace_server::testing::TestServer;
use warmspace_server::{Config, LifecycleConfig};
use warmspace_store::lifecycle::LIFECYCLE_USER_ID;
use warmspace_store::workspaces::PREBUILDS_USER_ID;

use crate::common::*;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A server whose reconciler and executor run only when the test says.
async fn server() -> (TestServer, Client, Client) {
    let config = Config {
        lifecycle: LifecycleConfig { background: false, ..Default::default() },
        // The tests move the clock by days at a time.
        session_duration: chrono::Duration::days(365),
        ..Config::default()
    };
    let server = TestServer::start_full(config, 2, false).await;
    let owner = server.owner().await;
    let alice = server.user(&owner, "alice", &[]).await;
    (server, owner, alice)
}

async fn settings(client: &Client, template: &Template, settings: UpdateTemplateSettings) {
    client.update_template(template.id, &UpdateTemplateRequest { settings, ..Default::default() }).await.unwrap();
}

/// One tick, which must get the lock (nothing else ticks in these tests).
async fn tick(server: &TestServer) -> TickStats {
    server.lifecycle.tick().await.unwrap().expect("no other executor holds the lock")
}

/// The workspace once its latest build has finished.
async fn settled(client: &Client, id: Uuid) -> Workspace {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let w = client.workspace(id).await.unwrap();
        if !matches!(
            w.status,
            WorkspaceStatus::Pending
                | WorkspaceStatus::Starting
                | WorkspaceStatus::Stopping
                | WorkspaceStatus::Deleting
        ) {
            return w;
        }
        assert!(tokio::time::Instant::now() < deadline, "the build never finished: {w:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (transition, reason, initiator) of each of a workspace's builds, oldest first.
async fn builds(server: &TestServer, id: Uuid) -> Vec<(String, String, Uuid)> {
    sqlx::query_as(
        "SELECT transition, reason, initiator_id FROM workspace_builds WHERE workspace_id = $1 ORDER BY build_number",
    )
    .bind(id)
    .fetch_all(&server.db.pool().await)
    .await
    .unwrap()
}

/// Builds the executor ever queued for workspaces the prebuilds user owns.
async fn executor_builds_on_prebuilds(server: &TestServer) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM workspace_builds b JOIN workspaces w ON w.id = b.workspace_id \
         WHERE w.owner_id = $1 AND b.initiator_id = $2",
    )
    .bind(PREBUILDS_USER_ID)
    .bind(LIFECYCLE_USER_ID)
    .fetch_one(&server.db.pool().await)
    .await
    .unwrap()
}

/// Makes every unclaimed prebuild look due for every rule: a deadline long
/// past, an autostart schedule that fires every minute, unused for a year,
/// dormant for a year. Only the executor's selection can keep them out.
async fn make_prebuilds_look_due(server: &TestServer) {
    let db = server.db.pool().await;
    let now = server.clock.now();
    let long_ago = now - chrono::Duration::days(365);
    sqlx::query(
        "UPDATE workspace_builds b SET deadline = $2 FROM workspaces w \
         WHERE w.id = b.workspace_id AND w.owner_id = $1",
    )
    .bind(PREBUILDS_USER_ID)
    .bind(now - chrono::Duration::hours(1))
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("UPDATE workspaces SET autostart_schedule = '* * * * *', last_used_at = $2 WHERE owner_id = $1")
        .bind(PREBUILDS_USER_ID)
        .bind(long_ago)
        .execute(&db)
        .await
        .unwrap();
}

async fn notification_kinds(client: &Client) -> Vec<String> {
    let inbox = client.notifications(&NotificationsQuery { unread: false, limit: Some(100) }).await.unwrap();
    let mut kinds: Vec<String> = inbox.notifications.into_iter().map(|n| n.kind).collect();
    kinds.reverse();
    kinds
}

fn close(a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>) -> bool {
    (a - b).num_seconds().abs() <= 5
}

#[tokio::test]
async fn autostop_autostart_dormancy_and_auto_delete_fire_for_a_person_and_never_for_the_pool() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "life", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    settings(&owner, &template, UpdateTemplateSettings { default_ttl_ms: Some(3_600_000), ..Default::default() }).await;
    eligible(&server, &owner, 1).await;
    let prebuild = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap()
        .workspaces[0]
        .id;
    make_prebuilds_look_due(&server).await;

    // A cold workspace (the pool-less preset): its deadline is the template's default TTL.
    let eu = preset_id(&owner, &template, "eu").await;
    let ws = alice.create_workspace("me", &request(&template, "mine", Some(eu), &[])).await.unwrap();
    assert!(close(ws.latest_build.deadline.unwrap(), server.clock.now() + chrono::Duration::hours(1)));
    assert_eq!(settled(&alice, ws.id).await.status, WorkspaceStatus::Running);

    // Before the deadline nothing happens; after it, an autostop by the system.
    server.clock.advance(50 * MINUTE);
    let stats = tick(&server).await;
    assert_eq!((stats.autostopped, stats.notices), (0, 1), "{stats:?}");
    // Once per deadline.
    server.clock.advance(MINUTE);
    assert_eq!(tick(&server).await.notices, 0);
    server.clock.advance(10 * MINUTE);
    let stats = tick(&server).await;
    assert_eq!(stats.autostopped, 1, "{stats:?}");
    let stopped = settled(&alice, ws.id).await;
    assert_eq!(stopped.status, WorkspaceStatus::Stopped);
    assert_eq!(
        (stopped.latest_build.transition, stopped.latest_build.reason, stopped.latest_build.initiator_id),
        (Transition::Stop, BuildReason::Autostop, LIFECYCLE_USER_ID)
    );
    assert_eq!(stopped.latest_build.initiator_name, "lifecycle");
    assert_eq!(executor_builds_on_prebuilds(&server).await, 0);

    // Autostart: a schedule that fires every minute starts it at the next tick,
    // with a fresh deadline.
    alice.set_workspace_autostart(ws.id, Some("* * * * *".into())).await.unwrap();
    server.clock.advance(2 * MINUTE);
    assert_eq!(tick(&server).await.autostarted, 1);
    let started = settled(&alice, ws.id).await;
    assert_eq!((started.status, started.latest_build.reason), (WorkspaceStatus::Running, BuildReason::Autostart));
    assert!(close(started.latest_build.deadline.unwrap(), server.clock.now() + chrono::Duration::hours(1)));
    assert_eq!(executor_builds_on_prebuilds(&server).await, 0);

    // Dormancy: unused for a day, it is stopped and marked dormant; it cannot
    // start until woken. Auto-delete two days later.
    settings(
        &owner,
        &template,
        UpdateTemplateSettings {
            time_til_dormant_ms: Some(DAY.as_millis() as i64),
            time_til_dormant_autodelete_ms: Some(2 * DAY.as_millis() as i64),
            ..Default::default()
        },
    )
    .await;
    alice.set_workspace_autostart(ws.id, None).await.unwrap();
    server.clock.advance(DAY);
    assert_eq!(tick(&server).await.dormant, 1);
    let dormant = settled(&alice, ws.id).await;
    assert_eq!((dormant.status, dormant.latest_build.reason), (WorkspaceStatus::Stopped, BuildReason::Dormancy));
    assert!(dormant.dormant_at.is_some());
    let (status, body) = api_status(build(&alice, &dormant, "start", &[]).await);
    assert_eq!(status, StatusCode::CONFLICT, "{body:?}");
    assert!(body.message.contains("dormant"), "{body:?}");
    // Nothing more is due for it until the auto-delete time.
    server.clock.advance(DAY);
    assert_eq!(tick(&server).await, TickStats { candidates: 0, ..Default::default() });
    server.clock.advance(DAY + MINUTE);
    assert_eq!(tick(&server).await.deleted, 1);
    let deleted = settled(&alice, ws.id).await;
    assert_eq!((deleted.status, deleted.latest_build.reason), (WorkspaceStatus::Deleted, BuildReason::Dormancy));
    assert!(deleted.deleting_at.is_some());

    // Every transition of the person's workspace, once each; none of the prebuild's.
    let history: Vec<(String, String)> = builds(&server, ws.id).await.into_iter().map(|(t, r, _)| (t, r)).collect();
    let expected = [
        ("start", "initiator"),
        ("stop", "autostop"),
        ("start", "autostart"),
        ("stop", "dormancy"),
        ("delete", "dormancy"),
    ];
    assert_eq!(history, expected.map(|(t, r)| (t.to_owned(), r.to_owned())));
    assert_eq!(builds(&server, prebuild).await.len(), 1, "the prebuild is the reconciler's alone");
    assert_eq!(executor_builds_on_prebuilds(&server).await, 0);
    let dormant_prebuilds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE owner_id = $1 AND dormant_at IS NOT NULL")
            .bind(PREBUILDS_USER_ID)
            .fetch_one(&server.db.pool().await)
            .await
            .unwrap();
    assert_eq!(dormant_prebuilds, 0);

    // The owner heard of each step: the coming stop (once), the stop, dormancy, the deletion date.
    let mut kinds = notification_kinds(&alice).await;
    kinds.sort();
    assert_eq!(
        kinds,
        ["workspace_autostop_soon", "workspace_autostopped", "workspace_deletion_scheduled", "workspace_dormant"]
    );
}

#[tokio::test]
async fn a_failed_start_is_stopped_after_the_failure_ttl_but_a_failed_prebuild_is_left_to_the_reconciler() {
    let (server, owner, alice) = server().await;
    let failing = manifest(1, "rebuild", "  fail_on = [\"start\"]\n");
    let template = push(&owner, "broken", &[("warmspace.hcl", &failing)]).await;
    settings(&owner, &template, UpdateTemplateSettings { failure_ttl_ms: Some(3_600_000), ..Default::default() }).await;
    // One failed prebuild creation.
    server.reconciler.run_cycle().await.unwrap();
    let prebuild = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap()
        .workspaces[0]
        .id;
    assert_eq!(settled(&owner, prebuild).await.status, WorkspaceStatus::Failed);

    let eu = preset_id(&owner, &template, "eu").await;
    let ws = alice.create_workspace("me", &request(&template, "mine", Some(eu), &[])).await.unwrap();
    assert_eq!(settled(&alice, ws.id).await.status, WorkspaceStatus::Failed);

    server.clock.advance(59 * MINUTE);
    assert_eq!(tick(&server).await.failure_stopped, 0);
    server.clock.advance(2 * MINUTE);
    assert_eq!(tick(&server).await.failure_stopped, 1);
    let stopped = settled(&alice, ws.id).await;
    assert_eq!(
        (stopped.latest_build.transition, stopped.latest_build.reason),
        (Transition::Stop, BuildReason::FailureTtl)
    );
    assert_eq!(builds(&server, prebuild).await.len(), 1);
    assert_eq!(executor_builds_on_prebuilds(&server).await, 0);
    // Once stopped, nothing more.
    server.clock.advance(2 * HOUR);
    assert_eq!(tick(&server).await.failure_stopped, 0);
}

#[tokio::test]
async fn after_a_claim_the_template_s_rules_apply_from_the_claim_on() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    settings(
        &owner,
        &template,
        UpdateTemplateSettings {
            default_ttl_ms: Some(3_600_000),
            time_til_dormant_ms: Some(2 * HOUR.as_millis() as i64),
            ..Default::default()
        },
    )
    .await;
    eligible(&server, &owner, 1).await;
    make_prebuilds_look_due(&server).await;
    // The prebuild waits a long time unclaimed: nothing touches it.
    server.clock.advance(5 * HOUR);
    assert_eq!(tick(&server).await, TickStats { candidates: 0, ..Default::default() });
    assert_eq!(executor_builds_on_prebuilds(&server).await, 0);

    // Claimed: the deadline runs from the claim, not from the prebuild's creation.
    let us = preset_id(&owner, &template, "us").await;
    let ws = alice.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    assert!(claimed(&ws));
    assert!(close(ws.latest_build.deadline.unwrap(), server.clock.now() + chrono::Duration::hours(1)));
    assert_eq!(ws.autostart_schedule, None, "the pool's (forced) schedule does not come along");
    assert_eq!(settled(&alice, ws.id).await.status, WorkspaceStatus::Running);
    // Used at the claim: not dormant for its old age.
    assert_eq!(tick(&server).await.dormant, 0);

    server.clock.advance(61 * MINUTE);
    assert_eq!(tick(&server).await.autostopped, 1);
    assert_eq!(settled(&alice, ws.id).await.latest_build.reason, BuildReason::Autostop);
    server.clock.advance(HOUR);
    assert_eq!(tick(&server).await.dormant, 1);
    assert_eq!(builds(&server, ws.id).await.len(), 3, "prebuild start, claim, autostop");

    // Woken by its owner, it starts again, and waking counts as a use.
    assert!(alice.workspace(ws.id).await.unwrap().dormant_at.is_some());
    let woken = alice.set_workspace_dormant(ws.id, false).await.unwrap();
    assert_eq!(woken.dormant_at, None);
    let started = build(&alice, &woken, "start", &[]).await.unwrap();
    assert_eq!(finish(&alice, &started).await.1.status, WorkspaceStatus::Running);
    assert_eq!(tick(&server).await.dormant, 0);
}

/// An exec template whose start script leaves the agent's token where the
/// test can speak as the agent.
fn agent_template(tokens: &std::path::Path) -> [(&'static str, String); 3] {
    let manifest =
        "provisioner = \"exec\"\nagent \"main\" {}\nexec {\n  start = \"start.sh\"\n  stop = \"stop.sh\"\n}\n";
    let start = format!(
        "#!/bin/sh\nprintf %s \"$WARMSPACE_AGENT_TOKEN_MAIN\" > '{}/'\"$WARMSPACE_WORKSPACE_ID\"\n",
        tokens.display()
    );
    [("warmspace.hcl", manifest.into()), ("start.sh", start), ("stop.sh", "#!/bin/sh\ntrue\n".into())]
}

#[tokio::test]
async fn activity_pushes_the_deadline_never_past_the_max_deadline() {
    let (server, owner, alice) = server().await;
    let tokens = tempfile::tempdir().unwrap();
    let files = agent_template(tokens.path());
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let template = push(&owner, "agents", &files).await;
    // Workspaces must stop every day at 02:00 (UTC, alice's zone).
    let every_day: Vec<String> = warmspace_prebuilds::lifecycle::DAYS.iter().map(|d| d.to_string()).collect();
    settings(
        &owner,
        &template,
        UpdateTemplateSettings {
            default_ttl_ms: Some(3_600_000),
            autostop_requirement_days_of_week: Some(every_day),
            autostop_requirement_hour: Some(2),
            ..Default::default()
        },
    )
    .await;
    // From 10:00 UTC on, so that 02:00 is well ahead whenever the test runs.
    let now = server.clock.now();
    let ten = now.date_naive().and_hms_opt(10, 0, 0).unwrap().and_utc();
    let ten = if ten > now { ten } else { ten + chrono::Duration::days(1) };
    server.clock.advance((ten - now).to_std().unwrap());
    let ws = alice.create_workspace("me", &request(&template, "mine", None, &[])).await.unwrap();
    let max = ws.latest_build.max_deadline.expect("a max deadline from the autostop requirement");
    let now = server.clock.now();
    assert!(max > now + chrono::Duration::hours(1) && max <= now + chrono::Duration::hours(25), "{max} from {now}");
    assert_eq!(max.format("%H:%M").to_string(), "02:00");
    assert!(ws.latest_build.deadline.unwrap() <= max);
    assert_eq!(settled(&alice, ws.id).await.status, WorkspaceStatus::Running);
    let token = std::fs::read_to_string(tokens.path().join(ws.id.to_string())).unwrap();
    let agent = server.client().with_agent_token(&token);

    // A heartbeat with no session is not use.
    let before = alice.workspace(ws.id).await.unwrap().latest_build.deadline.unwrap();
    server.clock.advance(30 * MINUTE);
    agent.agent_heartbeat(None).await.unwrap();
    assert_eq!(alice.workspace(ws.id).await.unwrap().latest_build.deadline.unwrap(), before);
    // With a session it is: the deadline moves to an hour from now.
    agent.agent_heartbeat_with_sessions(None, 1).await.unwrap();
    let bumped = alice.workspace(ws.id).await.unwrap();
    assert!(close(bumped.latest_build.deadline.unwrap(), server.clock.now() + chrono::Duration::hours(1)));
    assert!(close(bumped.last_used_at, server.clock.now()));

    // Near the max deadline, activity moves it to the max deadline and no further.
    // Kept used (and running) on the way there.
    let mut steps = 0;
    while server.clock.now() + chrono::Duration::minutes(50) < max - chrono::Duration::minutes(20) {
        server.clock.advance(40 * MINUTE);
        agent.agent_heartbeat_with_sessions(None, 1).await.unwrap();
        assert_eq!(tick(&server).await.autostopped, 0, "used, so not stopped");
        steps += 1;
        assert!(steps < 40);
    }
    let remaining = (max - server.clock.now() - chrono::Duration::minutes(20)).to_std().unwrap_or_default();
    server.clock.advance(remaining);
    agent.agent_heartbeat_with_sessions(None, 1).await.unwrap();
    assert_eq!(alice.workspace(ws.id).await.unwrap().latest_build.deadline, Some(max));
    // An extension past the max deadline is refused; within it, allowed.
    let (status, body) = api_status(alice.extend_workspace(ws.id, 2 * 3_600_000).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "duration_ms"), "{body:?}");
    // The max deadline stops it, however used.
    server.clock.advance(21 * MINUTE);
    agent.agent_heartbeat_with_sessions(None, 1).await.unwrap();
    assert_eq!(tick(&server).await.autostopped, 1);
    assert_eq!(settled(&alice, ws.id).await.latest_build.reason, BuildReason::Autostop);

    // The database itself refuses a deadline after the max deadline.
    let err = sqlx::query(
        "UPDATE workspace_builds SET deadline = max_deadline + interval '1 second' WHERE workspace_id = $1",
    )
    .bind(ws.id)
    .execute(&server.db.pool().await)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("workspace_builds_deadline_within_max"), "{err}");
}

#[tokio::test]
async fn a_zero_ttl_clears_the_deadline_unless_a_max_deadline_applies() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "zero", &[("warmspace.hcl", &manifest(0, "rebuild", ""))]).await;
    let mut req = request(&template, "plain", None, &[]);
    req.ttl_ms = Some(3_600_000);
    let plain = alice.create_workspace("me", &req).await.unwrap();
    settled(&alice, plain.id).await;
    let cleared = alice.set_workspace_ttl(plain.id, Some(0)).await.unwrap();
    assert_eq!((cleared.ttl_ms, cleared.latest_build.deadline), (None, None));

    settings(
        &owner,
        &template,
        UpdateTemplateSettings { autostop_requirement_days_of_week: Some(vec!["sunday".into()]), ..Default::default() },
    )
    .await;
    req.name = "bounded".into();
    let bounded = alice.create_workspace("me", &req).await.unwrap();
    settled(&alice, bounded.id).await;
    let max = bounded.latest_build.max_deadline.unwrap();
    let kept = alice.set_workspace_ttl(bounded.id, Some(0)).await.unwrap();
    assert_eq!((kept.ttl_ms, kept.latest_build.deadline), (None, Some(max)));
    assert_eq!(tick(&server).await.autostopped, 0);
    // Unclaimed prebuilds' schedules stay refused; bad values name their field.
    let (status, body) = api_status(alice.set_workspace_ttl(bounded.id, Some(-1)).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "ttl_ms"));
    let (status, body) = api_status(alice.extend_workspace(bounded.id, 60_000).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "duration_ms"));
}

#[tokio::test]
async fn two_executors_on_one_database_transition_each_workspace_once() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "many", &[("warmspace.hcl", &manifest(0, "rebuild", ""))]).await;
    settings(&owner, &template, UpdateTemplateSettings { default_ttl_ms: Some(3_600_000), ..Default::default() }).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let ws = alice.create_workspace("me", &request(&template, &format!("ws-{i}"), None, &[])).await.unwrap();
        ids.push(ws.id);
    }
    for id in &ids {
        settled(&alice, *id).await;
    }
    // A second replica's executor: a domain of its own over its own pool, on the same database.
    let other = LifecycleExecutor::new(server.domain.with_store(server.store.clone()));
    let both = || async {
        for _ in 0..3 {
            let (a, b) = tokio::join!(server.lifecycle.tick(), other.tick());
            a.unwrap();
            b.unwrap();
        }
    };
    for _ in 0..2 {
        // Past the deadlines: each workspace stopped once.
        server.clock.advance(61 * MINUTE);
        both().await;
        for id in &ids {
            assert_eq!(settled(&alice, *id).await.status, WorkspaceStatus::Stopped);
        }
        // An autostart schedule that fired: each started once.
        for id in &ids {
            alice.set_workspace_autostart(*id, Some("* * * * *".into())).await.unwrap();
        }
        server.clock.advance(2 * MINUTE);
        both().await;
        for id in &ids {
            assert_eq!(settled(&alice, *id).await.status, WorkspaceStatus::Running);
            alice.set_workspace_autostart(*id, None).await.unwrap();
        }
    }
    for id in &ids {
        let reasons: Vec<String> = builds(&server, *id).await.into_iter().map(|(_, r, _)| r).collect();
        assert_eq!(reasons, ["initiator", "autostop", "autostart", "autostop", "autostart"], "{id}");
    }
}

#[tokio::test]
async fn schedules_of_unclaimed_prebuilds_stay_refused_and_members_cannot_touch_others() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    eligible(&server, &owner, 1).await;
    let prebuild = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap()
        .workspaces[0]
        .id;
    assert_eq!(api_status(owner.extend_workspace(prebuild, 3_600_000).await).0, StatusCode::CONFLICT);
    assert_eq!(api_status(owner.set_workspace_dormant(prebuild, true).await).0, StatusCode::CONFLICT);
    let eu = preset_id(&owner, &template, "eu").await;
    let mine = alice.create_workspace("me", &request(&template, "mine", Some(eu), &[])).await.unwrap();
    let stranger = server.user(&owner, "carol", &[]).await;
    assert_eq!(api_status(stranger.extend_workspace(mine.id, 3_600_000).await).0, StatusCode::NOT_FOUND);
    assert_eq!(api_status(stranger.set_workspace_dormant(mine.id, false).await).0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_autostop_requirement_is_read_in_the_owner_s_time_zone() {
    let (_server, owner, alice) = server().await;
    let template = push(&owner, "zones", &[("warmspace.hcl", &manifest(0, "rebuild", ""))]).await;
    let every_day: Vec<String> = warmspace_prebuilds::lifecycle::DAYS.iter().map(|d| d.to_string()).collect();
    settings(
        &owner,
        &template,
        UpdateTemplateSettings {
            autostop_requirement_days_of_week: Some(every_day),
            autostop_requirement_hour: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(alice.user("me").await.unwrap().timezone, "UTC");
    let (status, body) = api_status(alice.set_user_timezone("me", "Mars/Olympus").await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "timezone"));
    assert_eq!(alice.set_user_timezone("me", "Asia/Tokyo").await.unwrap().timezone, "Asia/Tokyo");
    let ws = alice.create_workspace("me", &request(&template, "tokyo", None, &[])).await.unwrap();
    let max = ws.latest_build.max_deadline.unwrap();
    // 02:00 in Tokyo (UTC+9, no daylight saving) is 17:00 UTC.
    assert_eq!(max.format("%H:%M").to_string(), "17:00");
    assert_eq!(ws.latest_build.deadline, Some(max), "no TTL: the max deadline is the deadline");
    // Members set only their own zone.
    let (status, _) = api_status(alice.set_user_timezone("admin", "Asia/Tokyo").await);
    assert!(status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND, "{status}");
    assert_eq!(owner.set_user_timezone("alice", "Europe/Berlin").await.unwrap().timezone, "Europe/Berlin");
}

#[tokio::test]
async fn autostart_builds_the_active_version_when_the_template_requires_it() {
    let (server, owner, alice) = server().await;
    let template = push(&owner, "versions", &[("warmspace.hcl", &manifest(0, "rebuild", ""))]).await;
    let first = template.active_version_id;
    let mut req = request(&template, "mine", None, &[]);
    req.ttl_ms = Some(3_600_000);
    req.autostart_schedule = Some("* * * * *".into());
    let ws = alice.create_workspace("me", &req).await.unwrap();
    settled(&alice, ws.id).await;
    // A second version becomes the active one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), manifest(0, "rebuild", "  fail_on = []\n")).unwrap();
    let second = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &second).await;
    owner.set_active_version(template.id, second.id).await.unwrap();

    // Stopped at its deadline, started by its schedule: on the version it had …
    let cycle = async |want: Uuid| {
        server.clock.advance(61 * MINUTE);
        assert_eq!(tick(&server).await.autostopped, 1);
        settled(&alice, ws.id).await;
        server.clock.advance(2 * MINUTE);
        assert_eq!(tick(&server).await.autostarted, 1);
        let started = settled(&alice, ws.id).await;
        assert_eq!((started.status, started.latest_build.reason), (WorkspaceStatus::Running, BuildReason::Autostart));
        assert_eq!(started.latest_build.template_version_id, want);
    };
    cycle(first).await;
    // … and on the active version once the template requires it.
    settings(&owner, &template, UpdateTemplateSettings { require_active_version: Some(true), ..Default::default() })
        .await;
    cycle(second.id).await;
}
