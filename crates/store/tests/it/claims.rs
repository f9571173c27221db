//! The claim's pick walks a preset's unclaimed prebuilds oldest first,
//! straight from the index `workspaces_prebuilds_by_age`, and stops at the
//! first it can lock: no sort of the pool, and about as many buffers for a
//! pool of 10 000 as for a pool of 10 — with the plan PostgreSQL keeps for the
//! prepared statement (generic) as with one made for the values (custom).

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;
use warmspace_states::{LoginType, UserStatus};
use warmspace_store::claims::ClaimRequest;
use warmspace_store::claims::claim_statement;
use warmspace_store::testing::TestDatabase;
use warmspace_store::{NewUser, PgConnectOptions};

/// The parameters' types, in the order the claimer binds them.
const TYPES: &str = "jsonb, timestamptz";

/// What the plan of the claim's pick says: whether it sorts the pool (a
/// sort above the scan of the pool's index), the rows that scan returned,
/// the rows it locked, and its buffers; and the whole statement's buffers.
#[derive(Debug)]
struct Pick {
    sorts_pool: bool,
    scanned: i64,
    locked: i64,
    buffers: i64,
    statement_buffers: i64,
}

/// Claims from `preset` as `user`, under `EXPLAIN (ANALYZE, BUFFERS)`, and
/// rolls back; `plan_cache_mode` chooses the plan.
async fn explain(options: &PgConnectOptions, mode: &str, preset: Uuid, template: Uuid, user: Uuid) -> Pick {
    let mut connection = PgConnection::connect_with(options).await.unwrap();
    let sql = claim_statement();
    for statement in
        [format!("SET plan_cache_mode = {mode}"), format!("PREPARE claim ({TYPES}) AS {sql}"), "BEGIN".into()]
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await.unwrap();
    }
    let explained: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim (jsonb_build_array(jsonb_build_object('i', 1, \
         'preset_id', '{preset}', 'owner_id', '{user}', 'name', 'explained', 'reinit', true, 'template_id', \
         '{template}', 'waited_ms', 0, 'build_id', gen_random_uuid(), 'job_id', gen_random_uuid(), 'parameters', \
         '{{}}'::jsonb)), now())"
    )))
    .fetch_one(&mut connection)
    .await
    .unwrap();
    sqlx::raw_sql("ROLLBACK").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    let pick = find(&explained[0]["Plan"], &|node| node["Subplan Name"] == "CTE pick").expect("the pick's plan");
    let pool = |node: &Value| node["Index Name"] == "workspaces_prebuilds_by_age";
    let sorts_pool = find(pick, &|node| node["Node Type"] == "Sort" && find(node, &pool).is_some()).is_some();
    let rows = |node: Option<&Value>| node.and_then(|n| n["Actual Rows"].as_i64()).unwrap_or(-1);
    Pick {
        sorts_pool,
        scanned: rows(find(pick, &pool)),
        locked: rows(find(pick, &|node| node["Node Type"] == "LockRows")),
        buffers: blocks(pick),
        statement_buffers: blocks(&explained[0]["Plan"]),
    }
}

fn blocks(node: &Value) -> i64 {
    node["Shared Hit Blocks"].as_i64().unwrap_or_default() + node["Shared Read Blocks"].as_i64().unwrap_or_default()
}

fn walk<'a>(node: &'a Value, visit: &mut impl FnMut(&'a Value)) {
    visit(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, visit);
    }
}

fn find<'a>(node: &'a Value, wanted: &impl Fn(&Value) -> bool) -> Option<&'a Value> {
    let mut found = None;
    walk(node, &mut |n| {
        if found.is_none() && wanted(n) {
            found = Some(n);
        }
    });
    found
}

#[tokio::test]
async fn a_claim_walks_the_pool_s_index_and_stops_at_the_first_prebuild_it_can_lock() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let raw = db.pool().await;
    let preset = store.seed_pools(1, false).await.unwrap()[0];
    let template = template_of(&raw, preset).await;
    let user = user(&store, "claimer").await;

    let mut seeded = 0;
    let mut smallest = None;
    for pool in [10, 1_000, 10_000] {
        store.seed_prebuilds(preset, pool - seeded).await.unwrap();
        seeded = pool;
        sqlx::query("ANALYZE").execute(&raw).await.unwrap();
        for mode in ["force_generic_plan", "force_custom_plan"] {
            let pick = explain(&db.options(), mode, preset, template, user).await;
            println!("pool of {pool}, {mode}: {pick:?}");
            assert!(!pick.sorts_pool, "the pool is walked in order, not sorted: {pick:?}");
            assert_eq!(
                (pick.scanned, pick.locked),
                (1, 1),
                "the pool's index, stopped at its first prebuild: {pick:?}"
            );
            // At 1 000 and more the pool's index has a root above its leaves: a buffer more.
            assert!(pick.buffers <= 20, "{pick:?}");
            // And so the whole claim: its writes do not depend on the pool's
            // size either (a scan of the pool, or of `workspaces`, would add
            // hundreds at 10 000; between runs the writes' own index pages
            // vary by a few dozen).
            let fewest = *smallest.get_or_insert(pick.statement_buffers);
            assert!(pick.statement_buffers <= fewest + 60, "{pick:?}, against {fewest} for a pool of 10");
        }
    }
}

/// The template whose active version has `preset`.
async fn template_of(raw: &sqlx::PgPool, preset: Uuid) -> Uuid {
    sqlx::query_scalar(
        "SELECT v.template_id FROM template_version_presets p JOIN template_versions v ON v.id = p.template_version_id \
         WHERE p.id = $1",
    )
    .bind(preset)
    .fetch_one(raw)
    .await
    .unwrap()
}

async fn user(store: &warmspace_store::Store, name: &str) -> Uuid {
    let user = NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        name: String::new(),
        login_type: LoginType::None,
        hashed_password: None,
        status: UserStatus::Active,
        roles: Vec::new(),
    };
    store.create_user(user).await.unwrap().id
}

fn request(preset: Uuid, template: Uuid, user: Uuid, name: &str) -> ClaimRequest {
    ClaimRequest {
        preset_id: preset,
        template_id: template,
        user_id: user,
        name: name.into(),
        ttl_ms: None,
        autostart_schedule: None,
        deadline: None,
        max_deadline: None,
        parameters: [("region".to_owned(), name.to_owned())].into(),
        reinit: true,
        arrived: std::time::Instant::now(),
    }
}

/// Claims made at the same moment share one statement, whatever their
/// presets: each gets a prebuild of its own preset, the first to ask the
/// oldest, until the pool runs dry; and one the database refuses (a name
/// its user already has) fails alone.
#[tokio::test]
async fn claims_made_together_share_one_statement_and_a_refused_one_fails_alone() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let raw = db.pool().await;
    let presets = store.seed_pools(2, false).await.unwrap();
    let (a, b) = (presets[0], presets[1]);
    let (template_a, template_b) = (template_of(&raw, a).await, template_of(&raw, b).await);
    store.seed_prebuilds(a, 3).await.unwrap();
    store.seed_prebuilds(b, 1).await.unwrap();
    let oldest = |preset: Uuid| {
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM workspaces WHERE preset_id = $1 ORDER BY created_at, id")
            .bind(preset)
            .fetch_all(&raw)
    };
    let (pool_a, pool_b) = (oldest(a).await.unwrap(), oldest(b).await.unwrap());
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(user(&store, &format!("person{i}")).await);
    }

    // Four claims of a pool of three, two of a pool of one.
    let asked = [(a, 0, "one"), (b, 1, "two"), (a, 2, "three"), (a, 3, "four"), (b, 4, "five"), (a, 0, "six")];
    let claims = asked.iter().map(|&(preset, who, name)| {
        let template = if preset == a { template_a } else { template_b };
        store.claim_prebuild(request(preset, template, people[who], name))
    });
    let claimed: Vec<Option<Uuid>> =
        futures::future::join_all(claims).await.into_iter().map(|c| c.unwrap().map(|c| c.workspace.id)).collect();
    assert_eq!(
        claimed,
        [Some(pool_a[0]), Some(pool_b[0]), Some(pool_a[1]), Some(pool_a[2]), None, None],
        "each claim its own prebuild, the first to ask the oldest, until the pool runs dry"
    );
    let ids: Vec<Uuid> = claimed.iter().flatten().copied().collect();
    let (owners, values, transactions): (Vec<Uuid>, Vec<String>, i64) = (
        sqlx::query_scalar("SELECT owner_id FROM workspaces WHERE id = ANY ($1) ORDER BY array_position($1, id)")
            .bind(&ids)
            .fetch_all(&raw)
            .await
            .unwrap(),
        sqlx::query_scalar(
            "SELECT p.value FROM workspace_builds b JOIN workspace_build_parameters p ON p.workspace_build_id = b.id \
             WHERE b.workspace_id = ANY ($1) AND b.reason = 'claim' ORDER BY array_position($1, b.workspace_id)",
        )
        .bind(&ids)
        .fetch_all(&raw)
        .await
        .unwrap(),
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM workspaces WHERE id = ANY ($1)")
            .bind(&ids)
            .fetch_one(&raw)
            .await
            .unwrap(),
    );
    assert_eq!(owners, [people[0], people[1], people[2], people[3]], "each prebuild went to whoever claimed it");
    assert_eq!(values, ["one", "two", "three", "four"], "each claim build has its own claim's values");
    assert_eq!(transactions, 1, "four claims written by {transactions} transactions");

    // A name its user already has fails that claim alone.
    store.seed_prebuilds(a, 2).await.unwrap();
    let again = [request(a, template_a, people[0], "one"), request(a, template_a, people[1], "seven")];
    let results = futures::future::join_all(again.into_iter().map(|r| store.claim_prebuild(r))).await;
    assert!(
        matches!(results[0], Err(warmspace_store::StoreError::Conflict { field: "name" })),
        "{:?}",
        results[0].as_ref().map(|c| c.as_ref().map(|c| c.workspace.id))
    );
    assert!(matches!(&results[1], Ok(Some(c)) if c.workspace.name == "seven"));
}
