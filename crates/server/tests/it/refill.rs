//! A claim's refill: the claim names its preset, the reconciler's pass over
//! named presets reads and reconciles that preset alone, and creating a
//! preset's prebuilds costs the same statements however many there are.

use std::time::Duration;

use warmspace_sdk::CreateWorkspaceRequest;
use warmspace_server::domain::{RECONCILE_CHANNEL, Trigger};
use warmspace_server::testing::TestServer;
use warmspace_store::pubsub::Event;

use crate::common::*;

#[tokio::test]
async fn a_claim_names_its_preset_and_its_refill_reconciles_that_preset_alone() {
    // No daemons: the replacement stays queued, where it can be seen.
    let server = TestServer::start_full(quiet(), 0, false).await;
    let owner = server.owner().await;
    server.store.seed_pools(50, true).await.unwrap();
    let (template, preset) = server.store.seed_pool(3, 3).await.unwrap();
    let mut triggers = server.domain.events().subscribe(RECONCILE_CHANNEL).await.unwrap();

    let claimed = owner
        .create_workspace(
            "me",
            &CreateWorkspaceRequest {
                template_id: template,
                template_version_id: None,
                name: "mine".into(),
                rich_parameter_values: Vec::new(),
                template_version_preset_id: Some(preset),
                ttl_ms: None,
                autostart_schedule: None,
            },
        )
        .await
        .unwrap();
    assert!(claimed.claim_hand_over_ms.is_some(), "a prebuild was claimed");
    let trigger = tokio::time::timeout(Duration::from_secs(10), triggers.recv()).await.unwrap();
    let Some(Event::Message(payload)) = trigger else { panic!("no trigger: {trigger:?}") };
    assert_eq!(Trigger::parse(&payload), Trigger::Preset(preset), "the claim names its preset");

    let stats = server.reconciler.run_presets(&[preset]).await.unwrap().expect("nobody else holds the lock");
    assert_eq!((stats.presets_total, stats.presets_reconciled), (1, 1), "{stats:?}");
    assert_eq!(stats.created, 1, "the claimed prebuild's replacement is queued: {stats:?}");
    // The full cycle sees the other 50 presets, all with nothing to do.
    let full = server.reconciler.run_cycle().await.unwrap().expect("nobody else holds the lock");
    assert_eq!((full.presets_total, full.actions), (51, 0), "{full:?}");
}

#[tokio::test]
async fn a_job_names_no_preset_but_the_reconciler_finds_it() {
    let server = TestServer::start_full(quiet(), 0, false).await;
    let _owner = server.owner().await;
    let (_, preset) = server.store.seed_pool(2, 2).await.unwrap();
    let jobs: Vec<uuid::Uuid> = server.store.prebuild_jobs_of(preset).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(server.domain.presets_of_jobs(&jobs).await.unwrap(), vec![preset]);
    assert_eq!(Trigger::parse(&format!("job {}", jobs[0])), Trigger::Job(jobs[0]));
    assert_eq!(Trigger::parse("version activated"), Trigger::All("announced"));
}

// A current-thread runtime: the server under test runs its tasks on this
// thread, so the statements counted here are its own and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn creating_twenty_prebuilds_takes_as_many_statements_as_creating_one() {
    let statements = Statements::on_this_thread();
    // No daemons: nothing else runs on this thread while the passes are counted.
    let server = TestServer::start_full(quiet(), 0, false).await;
    let (_, one) = server.store.seed_pool(1, 0).await.unwrap();
    let (_, twenty) = server.store.seed_pool(20, 0).await.unwrap();

    let (for_one, stats) = statements.during(server.reconciler.run_presets(&[one])).await;
    assert_eq!(stats.unwrap().unwrap().created, 1);
    let (for_twenty, stats) = statements.during(server.reconciler.run_presets(&[twenty])).await;
    assert_eq!(stats.unwrap().unwrap().created, 20);
    println!("a pass creating 1 prebuild took {for_one} statements, one creating 20 took {for_twenty}");
    assert!(for_one > 0, "statements are counted");
    assert_eq!(for_one, for_twenty, "creations are set-based");
    assert_eq!(server.store.prebuild_jobs_of(twenty).await.unwrap().len(), 20, "twenty jobs queued");
}

#[tokio::test]
async fn a_claims_refill_is_queued_while_another_replica_holds_the_global_lock() {
    // The loop in the background, as in production; no daemons, so the
    // replacement stays queued.
    let server = TestServer::start_full(quiet(), 0, true).await;
    let owner = server.owner().await;
    let (template, preset) = server.store.seed_pool(3, 3).await.unwrap();
    // Another replica's full cycle, as far as this one can tell: the global
    // lock held, on a connection of its own, for the whole test.
    let mut other_replica = server.db.pool().await.acquire().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('warmspace.reconciler'))")
        .fetch_one(&mut *other_replica)
        .await
        .unwrap();
    assert!(held, "the other replica holds the global lock");
    assert_eq!(server.reconciler.run_cycle().await.unwrap(), None, "no full cycle can run here");

    let claimed = owner.create_workspace("me", &claim(template, preset, "mine")).await.unwrap();
    assert!(claimed.claim_hand_over_ms.is_some(), "a prebuild was claimed");
    // Only a pass over the claimed preset can queue its replacement: no full cycle can run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.store.prebuild_jobs_of(preset).await.unwrap().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the claim's replacement was not queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.store.prebuild_jobs_of(preset).await.unwrap().len(), 3, "exactly one replacement");
    sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *other_replica).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_cycle_racing_a_pass_over_its_preset_never_creates_beyond_desired() {
    const DESIRED: usize = 5;
    let server = TestServer::start_full(quiet(), 0, false).await;
    let _owner = server.owner().await;
    // Other presets, all full: the full cycle's snapshot takes a while to read,
    // long enough for the pass over the named preset to act meanwhile.
    server.store.seed_pools(300, true).await.unwrap();
    let (mut full_created, mut named_created) = (0, 0);
    for round in 0..8 {
        let (_, preset) = server.store.seed_pool(DESIRED as u32, 0).await.unwrap();
        let (full, named) = (server.reconciler.clone(), server.reconciler.clone());
        let full = tokio::spawn(async move { full.run_cycle().await.unwrap() });
        let named = tokio::spawn(async move { named.run_presets(&[preset]).await.unwrap() });
        let (full, named) = (full.await.unwrap(), named.await.unwrap());
        full_created += full.as_ref().map_or(0, |s| s.created);
        named_created += named.as_ref().map_or(0, |s| s.created);
        let queued = server.store.prebuild_jobs_of(preset).await.unwrap().len();
        assert_eq!(queued, DESIRED, "round {round}: full {full:?}, named {named:?}");
    }
    // Both sides did act, so the two really raced for the presets.
    println!("over 8 rounds the full cycles created {full_created}, the named passes {named_created}");
}

fn claim(template: uuid::Uuid, preset: uuid::Uuid, name: &str) -> CreateWorkspaceRequest {
    CreateWorkspaceRequest {
        template_id: template,
        template_version_id: None,
        name: name.into(),
        rich_parameter_values: Vec::new(),
        template_version_preset_id: Some(preset),
        ttl_ms: None,
        autostart_schedule: None,
    }
}
