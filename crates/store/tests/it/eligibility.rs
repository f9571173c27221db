//! Which prebuilds a claim may take is one rule, written twice: in SQL (the
//! claim locks one of them) and in the pure reconciliation logic (which
//! counts and records them). On the same rows, the two must agree.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use warmspace_prebuilds::reconcile::{self, Settings};
use warmspace_states::{AgentLifecycle, JobStatus, Transition};
use warmspace_store::testing::TestDatabase;

/// Latest-build transitions, job statuses, ages and agents, every combination.
const AGES_MIN: [i64; 3] = [0, 45, 120];
const AGENTS: [Option<AgentLifecycle>; 3] = [None, Some(AgentLifecycle::Ready), Some(AgentLifecycle::Starting)];

#[tokio::test]
async fn the_claim_s_sql_and_the_reconciler_s_pure_rule_agree_on_every_kind_of_prebuild() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let raw = db.pool().await;
    // Presets with and without a TTL (an hour), invalidated half an hour ago or never.
    let presets = store.seed_pools(4, false).await.unwrap();
    let policies = [(None, false), (Some(3600), false), (None, true), (Some(3600), true)];
    let per_preset = (Transition::ALL.len() * JobStatus::ALL.len() * AGES_MIN.len() * AGENTS.len()) as u32;
    for (preset, (ttl, invalidated)) in presets.iter().zip(policies) {
        sqlx::query(
            "UPDATE template_version_presets SET ttl_seconds = $2, \
             last_invalidated_at = CASE WHEN $3 THEN now() - interval '30 minutes' END WHERE id = $1",
        )
        .bind(preset)
        .bind(ttl)
        .bind(invalidated)
        .execute(&raw)
        .await
        .unwrap();
        store.seed_prebuilds(*preset, per_preset).await.unwrap();
        let prebuilds: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT w.id, b.job_id FROM workspaces w JOIN workspace_builds b ON b.workspace_id = w.id \
             WHERE w.preset_id = $1 ORDER BY w.created_at",
        )
        .bind(preset)
        .fetch_all(&raw)
        .await
        .unwrap();
        let mut combinations = Transition::ALL.iter().flat_map(|t| {
            JobStatus::ALL
                .iter()
                .flat_map(move |s| AGES_MIN.iter().flat_map(move |age| AGENTS.iter().map(move |a| (*t, *s, *age, *a))))
        });
        for (workspace, job) in prebuilds {
            let (transition, status, age, agent) = combinations.next().unwrap();
            shape(&raw, workspace, job, transition, status, age, agent).await;
        }
    }

    let snapshot = store.prebuilds_snapshot(3, Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    let settings = Settings {
        paused: false,
        backoff_interval: Duration::from_secs(15),
        backoff_lookback: Duration::from_secs(3600),
        failure_hard_limit: 3,
        replacement_grace: Duration::from_secs(600),
    };
    let pure = snapshot.to_snapshot(settings);
    let mut eligible_somewhere = 0;
    for preset in &presets {
        let state = pure.presets.iter().find(|p| p.preset_id == *preset).expect("the preset is in the snapshot");
        let by_rule: BTreeSet<Uuid> = state
            .prebuilds
            .iter()
            .filter(|b| reconcile::is_eligible(state, b, pure.now))
            .map(|b| b.workspace_id)
            .collect();
        let by_sql: BTreeSet<Uuid> = store.eligible_prebuilds(*preset).await.unwrap().into_iter().collect();
        assert_eq!(by_sql, by_rule, "preset {preset}");
        eligible_somewhere += by_sql.len();
    }
    // Not agreeing on nothing: some prebuilds are eligible, most are not.
    assert!(eligible_somewhere > 0 && eligible_somewhere < 4 * per_preset as usize, "{eligible_somewhere}");
}

/// Makes a seeded prebuild `age` minutes old, with a latest build of
/// `transition` whose job is `status`, and optionally one agent in `agent`.
async fn shape(
    raw: &sqlx::PgPool,
    workspace: Uuid,
    job: Uuid,
    transition: Transition,
    status: JobStatus,
    age: i64,
    agent: Option<AgentLifecycle>,
) {
    sqlx::query("UPDATE workspaces SET created_at = now() - make_interval(mins => $2::int) WHERE id = $1")
        .bind(workspace)
        .bind(age as i32)
        .execute(raw)
        .await
        .unwrap();
    sqlx::query("UPDATE workspace_builds SET transition = $2 WHERE workspace_id = $1")
        .bind(workspace)
        .bind(transition)
        .execute(raw)
        .await
        .unwrap();
    // Each status with the columns the schema requires of it.
    let (started, completed, leased) = match status {
        JobStatus::Pending => (false, false, false),
        JobStatus::Running | JobStatus::Canceling => (true, false, true),
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled => (true, true, false),
    };
    sqlx::query(
        "UPDATE provisioner_jobs SET status = $2, \
             started_at = CASE WHEN $3 THEN now() END, completed_at = CASE WHEN $4 THEN now() END, \
             worker_id = CASE WHEN $3 THEN gen_random_uuid() END, worker_name = CASE WHEN $3 THEN 'w' END, \
             lease_expires_at = CASE WHEN $5 THEN now() + interval '1 hour' END, created_at = now() \
         WHERE id = $1",
    )
    .bind(job)
    .bind(status)
    .bind(started)
    .bind(completed)
    .bind(leased)
    .execute(raw)
    .await
    .unwrap();
    if let Some(lifecycle) = agent {
        let token: String = Uuid::new_v4().simple().to_string()[..10].to_owned();
        sqlx::query(
            "INSERT INTO workspace_agents (workspace_id, name, token_id, hashed_secret, lifecycle_state, ready_at) \
             VALUES ($1, 'main', $2, sha256('x'), $3, CASE WHEN $3 = 'ready' THEN now() END)",
        )
        .bind(workspace)
        .bind(token)
        .bind(lifecycle)
        .execute(raw)
        .await
        .unwrap();
    }
}
