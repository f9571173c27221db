//! 10 000 racing claims: no workspace is claimed twice, none half-way. In a
//! file (and so a test process) of its own, so its load does not slow the
//! timing-sensitive claim tests.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use warmspace_server::Config;
use warmspace_server::reconciler::ReconcilerConfig;
use warmspace_server::testing::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_racing_claims_never_claim_twice_nor_half_way() {
    // 10 000 claims straight at the claim transaction from 64 concurrent
    // connections (a miss there queues no cold build, so the daemons keep
    // refilling the pool meanwhile), then 1 000 through the HTTP API.
    const RACERS: usize = 64;
    let reconciler = ReconcilerConfig { interval: Duration::from_millis(200), ..ReconcilerConfig::default() };
    let server = TestServer::start_full(Config { reconciler, ..Config::default() }, 3, true).await;
    let owner = server.owner().await;
    // Reinit claims need no daemon, so the daemons only refill the pool.
    let template = push(
        &owner,
        "pool",
        &[("warmspace.hcl", &manifest(20, "reinit", "").replace("duration_ms = 1", "duration_ms = 0"))],
    )
    .await;
    let us = preset_id(&owner, &template, "us").await;
    eligible(&server, &owner, 20).await;
    let mut clients = Vec::new();
    for i in 0..RACERS {
        clients.push(server.user(&owner, &format!("racer{i}"), &[]).await);
    }
    let mut racers = Vec::new();
    for client in &clients {
        racers.push(client.user("me").await.unwrap().id);
    }
    let store_db = server.db.store().await;
    let pubsub = server.pubsub.clone();
    let values: BTreeMap<String, String> =
        [("cpus".to_owned(), "2".to_owned()), ("region".to_owned(), "us".to_owned())].into();
    let direct: Vec<bool> = futures::stream::iter(0..10_000usize)
        .map(|i| {
            let (store, values, user, pubsub) = (store_db.clone(), values.clone(), racers[i % RACERS], pubsub.clone());
            async move {
                let name = format!("direct-{i}");
                let claim = warmspace_store::claims::ClaimRequest {
                    preset_id: us,
                    template_id: template.id,
                    user_id: user,
                    name: &name,
                    ttl_ms: None,
                    autostart_schedule: None,
                    deadline: None,
                    max_deadline: None,
                    parameters: &values,
                    reinit: true,
                    elapsed_ms: 0.0,
                };
                let hit = store.claim_prebuild(&claim).await.unwrap().is_some();
                if hit {
                    // As the API does after commit: wake the reconciler to refill.
                    warmspace_server::reconciler::trigger(&pubsub, "claimed").await;
                } else {
                    // A moment for the pool to refill, as users arriving over time would give it.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                hit
            }
        })
        .buffer_unordered(RACERS)
        .collect()
        .await;
    let direct_hits = direct.iter().filter(|hit| **hit).count();
    println!("{direct_hits} of 10000 racing claims were hits");
    assert!(direct_hits > 20, "the pool was refilled while the claims raced ({direct_hits} hits)");

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

    let pool = server.store.pool();
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() };
    assert_eq!(count("SELECT count(*) FROM claim_attempts WHERE hit").await as usize, direct_hits + api_hits);
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
    assert_eq!(count("SELECT count(*) FROM workspaces WHERE name LIKE 'api-%'").await, 1000);
}
