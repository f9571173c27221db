//! Claiming prebuilds through the API: by preset, by matching parameters,
//! misses and their reasons, reinit claims, replacements, authorisation, and
//! racing claims.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use uuid::Uuid;
use warmspace_sdk::{
    ClaimStatsQuery, Client, CreateWorkspaceBuildRequest, PrebuildSettings, Role, StatusCode, Workspace,
};
use warmspace_server::testing::TestServer;
use warmspace_server::{Config, ReconcilerConfig};
use warmspace_store::workspaces::PREBUILDS_USER_ID;

async fn misses(server: &TestServer) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM claim_attempts WHERE NOT hit ORDER BY id")
        .fetch_all(&server.db.pool().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn claims_by_preset_and_by_matching_parameters_and_misses_say_why() {
    let server = TestServer::start_full(Config::default(), 2, false).await;
    let owner = server.owner().await;
    let alice = server.user(&owner, "alice", &[]).await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    let me = alice.user("me").await.unwrap();

    // By preset name: the prebuild is handed over, renamed, with a claim build initiated by the user.
    eligible(&server, &owner, 1).await;
    let pool_before = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap();
    let prebuild_id = pool_before.workspaces[0].id;
    let first = alice.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    assert!(claimed(&first));
    assert_eq!(first.id, prebuild_id, "the very prebuild, not a new workspace");
    assert_eq!((first.owner_id, first.name.as_str()), (me.id, "mine"));
    assert_eq!(first.latest_build.initiator_id, me.id);
    assert_eq!(first.latest_build.build_number, 2);
    assert_eq!(first.preset_id, Some(us));
    let (_, done) = finish(&alice, &first.latest_build).await;
    assert_eq!(done.job.priority, warmspace_sdk::JobPriority::User, "claim builds are a person's work");
    let values: BTreeMap<_, _> = done.parameters.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
    assert_eq!(values, BTreeMap::from([("cpus", "2"), ("region", "us")]));

    // By matching parameters, no preset named: the preset is recorded on the workspace.
    eligible(&server, &owner, 1).await;
    let second = alice
        .create_workspace("me", &request(&template, "second", None, &[("region", "us"), ("cpus", "2.0")]))
        .await
        .unwrap();
    assert!(claimed(&second), "{second:?}");
    assert_eq!(second.preset_id, Some(us));

    // One preset value different: a cold build, recorded as a parameter mismatch.
    eligible(&server, &owner, 1).await;
    let third = alice
        .create_workspace("me", &request(&template, "third", None, &[("region", "us"), ("cpus", "4")]))
        .await
        .unwrap();
    assert!(!claimed(&third));
    assert_eq!(third.latest_build.build_number, 1);
    // Nothing matches at all: no preset.
    let fourth = alice.create_workspace("me", &request(&template, "fourth", None, &[])).await.unwrap();
    assert!(!claimed(&fourth));
    // A preset without a pool.
    let eu = preset_id(&owner, &template, "eu").await;
    alice.create_workspace("me", &request(&template, "fifth", Some(eu), &[])).await.unwrap();
    // Pool emptied and not refilled (no cycle ran): no eligible prebuild.
    alice.create_workspace("me", &request(&template, "sixth", Some(us), &[])).await.unwrap();
    let seventh = alice.create_workspace("me", &request(&template, "seventh", Some(us), &[])).await.unwrap();
    assert!(!claimed(&seventh));
    // Paused.
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: true }).await.unwrap();
    alice.create_workspace("me", &request(&template, "eighth", Some(us), &[])).await.unwrap();
    assert_eq!(
        misses(&server).await,
        ["parameter_mismatch", "no_preset", "no_pool", "no_eligible", "paused"],
        "the sixth claimed the prebuild the previous cycles left"
    );

    let stats = owner.claim_stats(&ClaimStatsQuery::default()).await.unwrap();
    let us_stats = stats.iter().find(|s| s.preset_id == Some(us)).unwrap();
    assert_eq!((us_stats.hits, us_stats.misses), (3, 3));
    assert_eq!(us_stats.misses_by_reason.get(&warmspace_sdk::MissReason::Paused), Some(&1));
    assert!(us_stats.hit_p50_ms.is_some_and(|ms| ms > 0.0));
    // Every attempt is recorded, hits and misses.
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM claim_attempts").fetch_one(&server.db.pool().await).await.unwrap();
    assert_eq!(attempts, 8);
}

#[tokio::test]
async fn a_mismatch_is_charged_to_the_closest_preset_and_a_pool_less_preset_is_no_pool() {
    let server = TestServer::start_full(Config::default(), 1, false).await;
    let owner = server.owner().await;
    let manifest = "provisioner = \"echo\"\n\
         parameter \"region\" {\n  type = \"string\"\n  default = \"us\"\n}\n\
         parameter \"cpus\" {\n  type = \"number\"\n  default = 2\n}\n\
         preset \"us\" {\n  parameters = { region = \"us\", cpus = \"2\" }\n  prebuilds {\n    instances = 0\n  }\n}\n\
         preset \"eu\" {\n  parameters = { region = \"eu\", cpus = \"4\" }\n  prebuilds {\n    instances = 0\n  }\n}\n\
         preset \"eu-bare\" {\n  parameters = { region = \"eu\", cpus = \"2\" }\n}\n\
         echo {\n  duration_ms = 1\n}\n";
    let template = push(&owner, "closest", &[("warmspace.hcl", manifest)]).await;
    let (eu, bare) = (preset_id(&owner, &template, "eu").await, preset_id(&owner, &template, "eu-bare").await);

    // One value equal to eu's (region), none to us's: eu is the pool the request nearly asked for.
    owner
        .create_workspace("me", &request(&template, "near-eu", None, &[("region", "eu"), ("cpus", "8")]))
        .await
        .unwrap();
    // Named, but the preset keeps no pool.
    owner.create_workspace("me", &request(&template, "bare", Some(bare), &[])).await.unwrap();
    let charged: Vec<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT reason, preset_id FROM claim_attempts WHERE NOT hit ORDER BY id")
            .fetch_all(&server.db.pool().await)
            .await
            .unwrap();
    assert_eq!(charged, [("parameter_mismatch".to_owned(), Some(eu)), ("no_pool".to_owned(), Some(bare))]);
}

#[tokio::test]
async fn a_create_whose_cold_build_fails_records_no_miss() {
    let server = TestServer::start_full(Config::default(), 1, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(0, "rebuild", ""))]).await;
    let eu = preset_id(&owner, &template, "eu").await;
    owner.create_workspace("me", &request(&template, "taken", Some(eu), &[])).await.unwrap();
    // The same name again: the cold build cannot be written, and neither is its miss.
    let refused = owner.create_workspace("me", &request(&template, "taken", Some(eu), &[])).await;
    assert_eq!(api_status(refused).0, StatusCode::CONFLICT);
    assert_eq!(misses(&server).await, ["no_pool"]);
}

#[tokio::test]
async fn a_claim_queues_the_pool_s_refill_at_once_not_at_the_next_tick() {
    // With an hour between ticks, only the claim itself can have asked for the refill.
    let reconciler = ReconcilerConfig { interval: Duration::from_secs(3600), ..ReconcilerConfig::default() };
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, 2, true).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 1).await;
    let claimed_ws = owner.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    assert!(claimed(&claimed_ws));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while prebuild_count(&server).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no refill was queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refill: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT a.committed_at, j.created_at FROM claim_attempts a \
         JOIN workspaces w ON w.preset_id = a.preset_id AND w.owner_id = $1 \
         JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number = 1 \
         JOIN provisioner_jobs j ON j.id = b.job_id WHERE a.hit",
    )
    .bind(PREBUILDS_USER_ID)
    .fetch_one(&server.db.pool().await)
    .await
    .unwrap();
    assert!(refill.1 > refill.0, "the replacement was queued after the claim committed: {refill:?}");
}

#[tokio::test]
async fn a_burst_of_claims_is_reconciled_in_a_handful_of_cycles_and_the_pool_refills() {
    const BURST: usize = 100;
    // Cycles come from triggers only (an hour between ticks); triggers that
    // arrive during a cycle or its debounce window make one follow-up cycle.
    let reconciler = ReconcilerConfig { interval: Duration::from_secs(3600), ..ReconcilerConfig::default() };
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, 3, true).await;
    let owner = server.owner().await;
    let manifest = manifest(BURST as u32, "reinit", "").replace("duration_ms = 1", "duration_ms = 0");
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest)]).await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, BURST as u32).await;
    let actor = {
        let login = warmspace_sdk::LoginWithPasswordRequest {
            email: warmspace_server::testing::OWNER_EMAIL.into(),
            password: warmspace_server::testing::PASSWORD.into(),
        };
        let session = server.domain.login(login).await.unwrap();
        server.domain.authenticate(Some(&session.session_token)).await.unwrap()
    };

    let before = server.reconciler.cycles();
    let claims = (0..BURST).map(|i| {
        let (domain, actor) = (server.domain.clone(), actor.clone());
        let req = request(&template, &format!("burst-{i}"), Some(us), &[]);
        tokio::spawn(async move { domain.create_workspace(&actor, "me", req).await.unwrap().claimed })
    });
    for claim in futures::future::join_all(claims).await {
        assert!(claim.unwrap(), "the warm pool had a prebuild for every claim");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while prebuild_count(&server).await < BURST as i64 {
        assert!(tokio::time::Instant::now() < deadline, "the claimed prebuilds were not all replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cycles = server.reconciler.cycles() - before;
    println!("{BURST} claims were answered by {cycles} reconciliation cycles");
    // How many passes a burst takes depends on how long its claims keep
    // arriving against one pass plus the debounce window: 3 or 4 on a quiet
    // machine, 12 seen with a load average of 12. What must not happen is a
    // pass per claim (or per replacement build finishing).
    assert!(cycles <= BURST as u64 / 5, "{BURST} claims caused {cycles} cycles");
    until_eligible(&owner, BURST as u32).await;
}
#[tokio::test]
async fn a_reinit_claim_completes_in_its_transaction_and_the_agent_reinitialises() {
    let server = TestServer::start_full(Config::default(), 2, false).await;
    let owner = server.owner().await;
    let with_agent =
        manifest(1, "reinit", "").replace("echo {", "agent \"main\" {\n  startup_script = \"echo hi\"\n}\necho {");
    let template = push(&owner, "pool", &[("warmspace.hcl", &with_agent)]).await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 1).await;
    let claimed_ws = owner.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    assert!(claimed(&claimed_ws));
    let job = &claimed_ws.latest_build.job;
    assert_eq!(job.status, warmspace_sdk::JobStatus::Succeeded, "no daemon needed");
    assert_eq!(job.worker_name.as_deref(), Some("claim (reinit)"));
    // The prebuild's simulated agent re-initialises for the new owner.
    let me = owner.user("me").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agent = owner.workspace(claimed_ws.id).await.unwrap().agents[0].clone();
        if agent.serving_owner_id == Some(me.id) && agent.lifecycle_state == warmspace_sdk::AgentLifecycle::Ready {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent never re-initialised: {agent:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = owner.agent_logs(claimed_ws.agents[0].id).await.unwrap();
    assert_eq!(logs.iter().filter(|l| l.output == "Simulated the startup script").count(), 2, "{logs:#?}");
}

/// The statements one claim request runs, whatever the pool's size: the
/// session's lookup; one read of the template with the version, its presets
/// and its parameters; the claim itself; and, once it has committed, one
/// statement announcing it together with the pool's reconcile trigger.
const CLAIM_STATEMENTS: usize = 4;

// A current-thread runtime: the server under test runs its tasks on this
// thread, so the statements counted here are its own and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn a_claim_runs_as_few_statements_from_a_pool_of_200_as_from_a_pool_of_10_and_shows_what_a_read_shows() {
    let statements = Statements::on_this_thread();
    // Nothing in the background: no timer, no polling, no reaping, no cycles.
    let server = TestServer::start_full(quiet(), 1, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(0, "reinit", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    let raw = server.db.pool().await;
    // The oldest prebuild, the one the first claim takes, has an agent, ready.
    server.store.seed_prebuilds(us, 10).await.unwrap();
    sqlx::query(
        "INSERT INTO workspace_agents (workspace_id, name, token_id, hashed_secret, lifecycle_state, ready_at) \
         SELECT id, 'main', 'AgentToken', sha256('secret'), 'ready', now() FROM workspaces \
         WHERE preset_id = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(us)
    .execute(&raw)
    .await
    .unwrap();
    let ttl = Some(3_600_000);
    let claim = |name: &'static str| {
        let req = warmspace_sdk::CreateWorkspaceRequest { ttl_ms: ttl, ..request(&template, name, Some(us), &[]) };
        let owner = owner.clone();
        async move { owner.create_workspace("me", &req).await.unwrap() }
    };

    let (from_10, first) = statements.during(claim("from-ten")).await;
    assert!(claimed(&first));
    assert_eq!(first.agents.len(), 1, "the claimed prebuild's agent is shown");
    server.store.seed_prebuilds(us, 190).await.unwrap();
    let (from_200, second) = statements.during(claim("from-two-hundred")).await;
    assert!(claimed(&second));
    println!("a claim from a pool of 10 ran {from_10} statements, from a pool of 200 {from_200}");
    assert_eq!(from_10, from_200, "a claim's statements do not grow with its pool");
    assert!(from_10 <= CLAIM_STATEMENTS, "{from_10} statements for one claim");

    // The response is built from what the claim's statement returned: it
    // is what reading the workspace shows, but for the hand-over time.
    for response in [first, second] {
        let hand_over = response.claim_hand_over_ms.expect("a claim says its hand-over");
        assert!(hand_over > 0.0);
        let read = owner.workspace(response.id).await.unwrap();
        assert_eq!(Workspace { claim_hand_over_ms: None, ..response.clone() }, read);
        let b = &read.latest_build;
        assert_eq!(
            (b.build_number, b.reason, b.template_version_preset_id),
            (2, warmspace_sdk::BuildReason::Claim, Some(us))
        );
        assert_eq!(b.job.status, warmspace_sdk::JobStatus::Succeeded);
        assert_eq!(read.ttl_ms, ttl);
        assert!(b.deadline.is_some());
        let values: BTreeMap<_, _> = b.parameters.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
        assert_eq!(values, BTreeMap::from([("cpus", "2"), ("region", "us")]));
    }
}

#[tokio::test]
async fn a_prebuild_whose_row_a_foreign_key_check_holds_is_still_claimed() {
    let server = TestServer::start_full(quiet(), 1, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(0, "reinit", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    server.store.seed_prebuilds(us, 1).await.unwrap();
    // What inserting a row that references the prebuild does (recording its
    // `eligible` event, say) until that transaction ends: a key-share lock.
    let mut other = server.db.pool().await.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM workspaces WHERE preset_id = $1 FOR KEY SHARE")
        .bind(us)
        .execute(&mut *other)
        .await
        .unwrap();
    let created = owner.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    assert!(claimed(&created), "the only prebuild is claimed, not skipped as if another claim held it");
    other.rollback().await.unwrap();
}

#[tokio::test]
async fn a_claim_that_replaces_warm_resources_warns_and_tells_template_admins() {
    let server = TestServer::start_full(Config::default(), 2, false).await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    let replacing = manifest(1, "rebuild", "  replace_on_claim = [\"echo_volume.home\"]\n");
    let template = push(&owner, "pool", &[("warmspace.hcl", &replacing)]).await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 1).await;
    let claimed_ws = member.create_workspace("me", &request(&template, "mine", Some(us), &[])).await.unwrap();
    let (lines, build) = finish(&member, &claimed_ws.latest_build).await;
    assert!(lines.iter().any(|l| l.contains("warning") && l.contains("echo_volume.home")), "{lines:#?}");
    assert!(build.resources.iter().any(|r| r.address == "echo_volume.home" && r.replaced));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = admin.notifications(&Default::default()).await.unwrap();
        if let Some(n) = inbox.notifications.iter().find(|n| n.kind == "prebuild_resources_replaced") {
            assert!(n.content.contains("echo_volume.home"), "{n:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the template admin was not told");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(member.notifications(&Default::default()).await.unwrap().notifications.is_empty());
}

#[tokio::test]
async fn who_may_read_delete_and_reschedule_prebuilds_and_workspaces() {
    let server = TestServer::start_full(Config::default(), 2, false).await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(3, "rebuild", ""))]).await;
    eligible(&server, &owner, 3).await;
    let pool: Vec<Workspace> = owner
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap()
        .workspaces;
    // A regular workspace belonging to somebody else than the actors below (except owner).
    let other = server.user(&owner, "other", &[]).await;
    let regular =
        other.create_workspace("me", &request(&template, "regular", None, &[("region", "eu")])).await.unwrap();
    finish(&other, &regular.latest_build).await;

    let delete = |client: Client, id: Uuid| async move {
        let req = CreateWorkspaceBuildRequest {
            transition: warmspace_sdk::Transition::Delete,
            template_version_id: None,
            rich_parameter_values: vec![],
        };
        client.create_build(id, &req).await.map(|_| ()).map_err(|e| e.status().unwrap())
    };
    let read = |client: Client, id: Uuid| async move {
        client.workspace(id).await.map(|_| ()).map_err(|e| e.status().unwrap())
    };
    let ttl = |client: Client, id: Uuid| async move {
        client.set_workspace_ttl(id, Some(3_600_000)).await.map(|_| ()).map_err(|e| e.status().unwrap())
    };
    use StatusCode as S;
    let ok = Ok(());
    // (who, what, on, expected)
    let cases: Vec<(&str, &str, &str, Result<(), S>)> = vec![
        ("owner", "read", "prebuild", ok),
        ("owner", "ttl", "prebuild", Err(S::CONFLICT)),
        ("owner", "read", "regular", ok),
        ("admin", "read", "prebuild", ok),
        ("admin", "ttl", "prebuild", Err(S::CONFLICT)),
        ("admin", "read", "regular", ok),
        ("admin", "delete", "regular", Err(S::FORBIDDEN)),
        ("admin", "ttl", "regular", Err(S::FORBIDDEN)),
        ("member", "read", "prebuild", Err(S::NOT_FOUND)),
        ("member", "delete", "prebuild", Err(S::NOT_FOUND)),
        ("member", "ttl", "prebuild", Err(S::NOT_FOUND)),
        ("member", "read", "regular", Err(S::NOT_FOUND)),
        ("member", "delete", "regular", Err(S::NOT_FOUND)),
        ("member", "ttl", "regular", Err(S::NOT_FOUND)),
        ("admin", "delete", "prebuild", ok),
        ("owner", "delete", "prebuild", ok),
        ("owner", "ttl", "regular", ok),
        ("owner", "delete", "regular", ok),
    ];
    let mut prebuilds = pool.iter().map(|w| w.id);
    let mut prebuild = prebuilds.next().unwrap();
    for (who, what, on, expected) in cases {
        let client = match who {
            "owner" => owner.clone(),
            "admin" => admin.clone(),
            _ => member.clone(),
        };
        let id = if on == "prebuild" { prebuild } else { regular.id };
        let got = match what {
            "read" => read(client, id).await,
            "delete" => delete(client, id).await,
            _ => ttl(client, id).await,
        };
        assert_eq!(got, expected, "{who} {what} {on}");
        if what == "delete" && on == "prebuild" && got.is_ok() {
            prebuild = prebuilds.next().unwrap();
        }
    }
    // Members do not see the pool in listings either.
    let listed = member
        .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(listed.count, 0);
}
