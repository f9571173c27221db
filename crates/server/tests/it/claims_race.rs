//! Racing claims: no workspace is claimed twice, none half-way. First 10 000
//! claims race through the domain's `create_workspace` (the function the API
//! handler calls) for 10 000 warm prebuilds, from 64 concurrent callers all
//! after the same oldest one; then 1 000 requests race through the HTTP API
//! for a pool of 20 that the reconciler and daemons refill meanwhile.

use std::time::Duration;

use futures::StreamExt;
use warmspace_sdk::{LoginWithPasswordRequest, PrebuildSettings};
use warmspace_server::domain::Actor;
use warmspace_server::testing::{PASSWORD, TestServer};
use warmspace_server::{Config, ReconcilerConfig};

use crate::common::*;

const RACERS: usize = 64;
const DIRECT: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_never_claim_twice_nor_half_way() {
    let reconciler = ReconcilerConfig { interval: Duration::from_millis(200), ..ReconcilerConfig::default() };
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, 3, true).await;
    let owner = server.owner().await;
    let mut clients = Vec::new();
    let mut actors: Vec<Actor> = Vec::new();
    for i in 0..RACERS {
        let username = format!("racer{i}");
        clients.push(server.user(&owner, &username, &[]).await);
        let login = LoginWithPasswordRequest { email: format!("{username}@example.com"), password: PASSWORD.into() };
        let session = server.domain.login(login).await.unwrap();
        actors.push(server.domain.authenticate(Some(&session.session_token)).await.unwrap());
    }

    // 10 000 warm prebuilds, all claimed at once. Reconciliation is paused
    // so that nothing but the claims touches the pool.
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: true }).await.unwrap();
    let race = push(&owner, "race", &[("warmspace.hcl", &manifest(0, "reinit", ""))]).await;
    let race_us = preset_id(&owner, &race, "us").await;
    server.store.seed_prebuilds(race_us, DIRECT as u32).await.unwrap();
    let direct: Vec<bool> = futures::stream::iter(0..DIRECT)
        .map(|i| {
            let (domain, actor) = (server.domain.clone(), actors[i % RACERS].clone());
            let req = request(&race, &format!("direct-{i}"), Some(race_us), &[]);
            async move { domain.create_workspace(&actor, "me", req).await.unwrap().claimed }
        })
        .buffer_unordered(RACERS)
        .collect()
        .await;
    if !direct.iter().all(|hit| *hit) {
        let misses: Vec<(String, i64)> =
            sqlx::query_as("SELECT reason, count(*) FROM claim_attempts WHERE NOT hit GROUP BY reason")
                .fetch_all(&server.db.pool().await)
                .await
                .unwrap();
        panic!("every claim finds a prebuild (there were as many as claims), but some missed: {misses:?}");
    }

    // A pool of 20 the reconciler refills while 1 000 API requests race for it.
    owner.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: false }).await.unwrap();
    let template = push(
        &owner,
        "pool",
        &[("warmspace.hcl", &manifest(20, "reinit", "").replace("duration_ms = 1", "duration_ms = 0"))],
    )
    .await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 20).await;
    let through_api: Vec<bool> = futures::stream::iter(0..1_000usize)
        .map(|i| {
            let client = clients[i % RACERS].clone();
            let req = request(&template, &format!("api-{i}"), Some(us), &[]);
            async move { claimed(&client.create_workspace("me", &req).await.unwrap()) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let api_hits = through_api.iter().filter(|hit| **hit).count();
    println!("{api_hits} of 1000 API requests were hits");
    assert!(api_hits >= 20, "at least the warm pool was handed out ({api_hits} hits)");

    let pool = server.db.pool().await;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM claim_attempts WHERE hit").await as usize, DIRECT + api_hits);
    // Claimed twice: two hits, two claim builds or two claimed events on one workspace.
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT workspace_id FROM claim_attempts WHERE hit GROUP BY 1 HAVING count(*) > 1) t"
        )
        .await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM (SELECT workspace_id FROM workspace_builds WHERE reason = 'claim' GROUP BY 1 HAVING count(*) > 1) t").await, 0);
    assert_eq!(count("SELECT count(*) FROM (SELECT workspace_id FROM prebuild_events WHERE event = 'claimed' GROUP BY 1 HAVING count(*) > 1) t").await, 0);
    // Half-done: ownership moved without a claim build and a recorded hit, or the reverse.
    assert_eq!(
        count(
            "SELECT count(*) FROM workspaces w WHERE EXISTS (SELECT 1 FROM workspace_builds b WHERE b.workspace_id = w.id \
             AND b.build_number = 1 AND b.initiator_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0') \
             AND ((w.owner_id <> 'c42fdf75-3097-471c-8c33-fb52454d81c0') \
                  <> EXISTS (SELECT 1 FROM workspace_builds c WHERE c.workspace_id = w.id AND c.reason = 'claim') \
                  OR (w.owner_id <> 'c42fdf75-3097-471c-8c33-fb52454d81c0') \
                  <> EXISTS (SELECT 1 FROM claim_attempts a WHERE a.workspace_id = w.id AND a.hit))"
        )
        .await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM workspaces WHERE name LIKE 'direct-%'").await as usize, DIRECT);
    assert_eq!(count("SELECT count(*) FROM workspaces WHERE name LIKE 'api-%'").await, 1000);
}
