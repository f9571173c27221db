//! Pool insight through the API: a pool's claims, misses and idle
//! instance-hours over a window, on the server's clock; who may read it;
//! windows it refuses; and its place in the OpenAPI document.

use std::time::Duration;

use uuid::Uuid;
use warmspace_sdk::{
    Client, MissReason, PrebuildInsights, PrebuildInsightsQuery, PresetInsight, Role, StatusCode, Template,
};
use warmspace_server::testing::TestServer;

use crate::common::*;

const HOUR: Duration = Duration::from_secs(3600);

fn us(insights: &PrebuildInsights) -> &PresetInsight {
    insights.presets.iter().find(|p| p.preset_name.as_deref() == Some("us") && p.version_active).unwrap()
}

fn window(text: &str) -> PrebuildInsightsQuery {
    PrebuildInsightsQuery { window: Some(text.into()) }
}

/// Clock advances are hours; what the test itself takes in real time
/// (builds, requests: well under a minute) is all the figures may differ by.
const REAL_TIME_HOURS: f64 = 1.0 / 60.0;

/// An owner with a `claim = "reinit"` template whose `us` preset keeps a pool of one.
async fn reinit_pool(server: &TestServer) -> (Client, Template, Uuid) {
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "reinit", ""))]).await;
    let preset = preset_id(&owner, &template, "us").await;
    (owner, template, preset)
}

/// The pool's prebuild becomes eligible (and is recorded so), stays warm two
/// hours, is claimed; a second request then misses (no cycle refills the
/// pool); an hour passes.
async fn warm_for_two_hours_claimed_then_missed(
    server: &TestServer,
    owner: &Client,
    template: &Template,
    preset: Uuid,
) {
    eligible(server, owner, 1).await;
    // The cycle after the one that saw it eligible records it so.
    server.reconciler.run_cycle().await.unwrap();
    server.clock.advance(2 * HOUR);
    let hit = owner.create_workspace("me", &request(template, "hit", Some(preset), &[])).await.unwrap();
    assert!(claimed(&hit));
    let miss = owner.create_workspace("me", &request(template, "miss", Some(preset), &[])).await.unwrap();
    assert!(!claimed(&miss));
    server.clock.advance(HOUR);
}

#[tokio::test]
async fn a_pool_s_claims_misses_and_idle_hours_over_a_window() {
    let server = TestServer::start_full(quiet(), 2, false).await;
    let (owner, template, preset) = reinit_pool(&server).await;

    // Nothing happened yet: the pool is listed with nothing to show.
    let empty = owner.prebuild_insights(&Default::default()).await.unwrap();
    assert_eq!(empty.window_seconds, 7 * 86_400);
    let pool = us(&empty);
    assert_eq!((pool.claims, pool.hits, pool.hit_rate, pool.prebuilds), (0, 0, None, 0));
    assert_eq!((pool.time_saved_seconds, pool.instance_hours_per_hit), (None, None));
    assert_eq!(pool.template_version_id, Some(template.active_version_id));

    // A prebuild, warm for two hours, claimed; then a miss (no cycle refilled the pool).
    warm_for_two_hours_claimed_then_missed(&server, &owner, &template, preset).await;

    let week = owner.prebuild_insights(&Default::default()).await.unwrap();
    let pool = us(&week);
    assert_eq!((pool.claims, pool.hits, pool.misses), (2, 1, 1));
    assert_eq!(pool.misses_by_reason, [(MissReason::NoEligible, 1)].into());
    assert_eq!(pool.hit_rate, Some(0.5));
    assert!(pool.hand_over_p50_ms.is_some() && pool.hand_over_p95_ms >= pool.hand_over_p50_ms);
    assert_eq!(pool.prebuilds, 1);
    assert!((pool.idle_instance_hours - 2.0).abs() < REAL_TIME_HOURS, "{pool:?}");
    assert_eq!(pool.instance_hours_per_hit, Some(pool.idle_instance_hours));
    // The claim (reinit, no agents) was ready at once; any cold sample took longer.
    assert!(pool.claim_ready_samples == 1 && pool.claim_ready_seconds.unwrap() < 60.0, "{pool:?}");
    assert!(pool.time_saved_seconds.is_none_or(|s| s >= 0.0));

    // 2.5 h back: half an hour of the prebuild's life is cut off; the claims are in.
    let clipped = owner.prebuild_insights(&window("150m")).await.unwrap();
    assert_eq!(clipped.window_seconds, 150 * 60);
    assert_eq!(clipped.until - clipped.since, chrono::Duration::minutes(150));
    let pool = us(&clipped);
    assert_eq!(pool.claims, 2);
    assert!((pool.idle_instance_hours - 1.5).abs() < REAL_TIME_HOURS, "{pool:?}");
    // The last half hour: no claims, no prebuild.
    let late = owner.prebuild_insights(&window("30m")).await.unwrap();
    let pool = us(&late);
    assert_eq!((pool.claims, pool.hit_rate, pool.prebuilds, pool.idle_instance_hours), (0, None, 0, 0.0));
}

#[tokio::test]
async fn template_admins_and_owners_read_insights_members_do_not_and_bad_windows_are_refused() {
    let server = TestServer::start_full(quiet(), 0, false).await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    admin.prebuild_insights(&Default::default()).await.unwrap();
    let (status, response) = api_status(member.prebuild_insights(&Default::default()).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(response.message.contains("read prebuild insights"), "{response:?}");

    for bad in ["", "7", "seven days", "-1d", "91d", "0s", "1.5h"] {
        let (status, response) = api_status(owner.prebuild_insights(&window(bad)).await);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {response:?}");
        assert_eq!(response.validations[0].field, "window", "{bad:?}: {response:?}");
    }
    for good in ["90d", "24h", "1d12h", "1s"] {
        owner.prebuild_insights(&window(good)).await.unwrap();
    }
}

#[tokio::test]
async fn insights_are_described_in_the_openapi_document() {
    let server = TestServer::start_full(quiet(), 0, false).await;
    let doc: serde_json::Value = crate::common::openapi_document(&server).await;
    let get = &doc["paths"]["/api/v2/prebuilds/insights"]["get"];
    assert!(get.is_object(), "the insights route is missing");
    assert_eq!(get["parameters"][0]["name"], "window");
    for schema in ["PrebuildInsights", "PresetInsight"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}

/// What the dashboard's pool chart draws (`Domain::pool_history`): a sample
/// every 15 minutes of the last day, derived from the prebuild's recorded
/// life and the claim attempts, on the server's clock.
#[tokio::test]
async fn a_pool_s_history_over_the_last_day() {
    let server = TestServer::start_full(quiet(), 2, false).await;
    let (owner, template, preset) = reinit_pool(&server).await;
    warm_for_two_hours_claimed_then_missed(&server, &owner, &template, preset).await;

    let actor = server.domain.authenticate(owner.token()).await.unwrap();
    let history = server.domain.pool_history(&actor).await.unwrap();
    let pool = history.iter().find(|p| p.preset_id == preset).expect("the pool's history");
    assert_eq!(pool.samples.len(), 97, "every 15 minutes over a day, both ends included");
    assert_eq!(pool.samples.last().unwrap().at, pool.until);
    let column = |f: fn(&warmspace_server::domain::PoolSample) -> u32| pool.samples.iter().map(f).collect::<Vec<_>>();
    // Samples 84 … 96 are the last three hours (84: just after the prebuild became eligible).
    let (desired, eligible) = (column(|s| s.desired), column(|s| s.eligible));
    assert_eq!(&desired[80..], &[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "none before the version existed");
    assert_eq!(&eligible[80..], &[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], "claimed after two hours");
    assert!(desired[..80].iter().chain(&eligible[..80]).all(|n| *n == 0));
    // The claim and the miss, in the 15 minutes that end an hour ago.
    let (hits, misses) = (column(|s| s.hits), column(|s| s.misses));
    assert_eq!((hits.iter().sum::<u32>(), hits[92]), (1, 1), "{hits:?}");
    assert_eq!((misses.iter().sum::<u32>(), misses[92]), (1, 1), "{misses:?}");

    // Like the insights, for template admins and owners only.
    let member = server.user(&owner, "member", &[]).await;
    let member = server.domain.authenticate(member.token()).await.unwrap();
    assert!(server.domain.pool_history(&member).await.is_err());
    assert!(server.domain.recent_claims(&member, 10).await.is_err());
    let claims = server.domain.recent_claims(&actor, 10).await.unwrap();
    assert_eq!(
        claims.iter().map(|c| (c.workspace_name.as_deref(), c.hit)).collect::<Vec<_>>(),
        [(Some("miss"), false), (Some("hit"), true)]
    );
    assert!(server.domain.recent_claims(&actor, 0).await.is_err(), "a limit of at least 1");
}
