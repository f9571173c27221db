//! The store against a real PostgreSQL: migrations, pub/sub between
//! replicas, the built-in cluster, and the user queries' guarantees.

use std::time::Duration;

use futures::future::join_all;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::time::timeout;
use warmspace_authz::Role;
use warmspace_states::{LoginType, UserStatus};
use warmspace_store::embedded::{Cluster, ClusterOptions};
use warmspace_store::pubsub::{Event, PubSub};
use warmspace_store::testing::TestDatabase;
use warmspace_store::{MIGRATOR, NewUser, Store, StoreError, UserFilter};

const PREBUILDS_USER: uuid::Uuid = uuid::uuid!("c42fdf75-3097-471c-8c33-fb52454d81c0");

fn new_user(username: &str, email: &str) -> NewUser {
    NewUser {
        username: username.into(),
        email: email.into(),
        name: String::new(),
        login_type: LoginType::Password,
        hashed_password: Some("$argon2id$not-checked-here".into()),
        status: UserStatus::Active,
        roles: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_together_apply_each_migration_once() {
    let db = TestDatabase::empty().await;
    let replicas = join_all((0..4).map(|_| db.store())).await;
    let results = join_all(replicas.iter().map(|s| s.migrate())).await;
    for result in results {
        result.expect("every replica's migration succeeds");
    }
    let raw = db.pool().await;
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&raw).await.unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations").fetch_one(&raw).await.unwrap();
    assert_eq!(orgs, 1, "the default organization is created once");
}

#[tokio::test]
async fn prebuilds_user_is_seeded_hidden_and_cannot_log_in() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let user = store.user_by_id(PREBUILDS_USER).await.unwrap();
    assert_eq!(user.username, "prebuilds");
    assert!(user.is_system);
    assert_eq!(user.login_type, LoginType::None);
    assert!(user.hashed_password.is_none());
    assert!(user.roles.0.is_empty());
    assert!(!store.human_user_exists().await.unwrap());

    let all = UserFilter { limit: 100, ..Default::default() };
    assert_eq!(store.list_users(&all).await.unwrap().1, 0);
    let with_system = UserFilter { include_system: true, ..all };
    let (users, count) = store.list_users(&with_system).await.unwrap();
    // The prebuilds user and the lifecycle executor's.
    assert_eq!((users.len(), count), (2, 2));
    assert!(users.iter().all(|u| u.is_system && u.roles.0.is_empty()));

    // The schema itself refuses to give the system user a password or a role.
    let err = sqlx::query("UPDATE users SET rbac_roles = '{owner}' WHERE id = $1")
        .bind(PREBUILDS_USER)
        .execute(&db.pool().await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("users_system_cannot_login"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_of_racing_first_users_is_created() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut user = new_user(&format!("admin{i}"), &format!("admin{i}@example.com"));
            user.roles = vec![Role::Owner];
            store.create_first_user(user).await.unwrap()
        })
    });
    let created: Vec<_> = join_all(attempts).await.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].roles.0, vec![Role::Owner]);
    let (_, humans) = store.list_users(&UserFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(humans, 1);
}

#[tokio::test]
async fn duplicate_username_or_email_names_the_field() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    store.create_user(new_user("alice", "alice@example.com")).await.unwrap();
    let err = store.create_user(new_user("ALICE", "other@example.com")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { field: "username" }), "{err:?}");
    let err = store.create_user(new_user("bob", "Alice@Example.com")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { field: "email" }), "{err:?}");
}

/// Whatever slips past the domain's checks, the database's refusal names the
/// column and the problem, never carrying PostgreSQL's own text.
#[tokio::test]
async fn values_the_schema_refuses_name_their_field() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let mut long = new_user("carol", "carol@example.com");
    long.name = "x".repeat(200);
    let err = store.create_user(long).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { field, problem } if field == "name" && problem.contains("users_name_check")),
        "{err:?}"
    );
    let mut nul = new_user("dave", "dave@example.com");
    nul.name = "a\0b".into();
    let err = store.create_user(nul).await.unwrap_err();
    assert!(matches!(&err, StoreError::Refused { problem, .. } if problem.contains("NUL")), "{err:?}");
}

#[tokio::test]
async fn listing_filters_combine() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let mut owner = new_user("owner", "owner@example.com");
    owner.roles = vec![Role::Owner];
    store.create_user(owner).await.unwrap();
    let mut robot = new_user("robot", "robot@example.com");
    robot.login_type = LoginType::None;
    robot.hashed_password = None;
    robot.status = UserStatus::Suspended;
    store.create_user(robot).await.unwrap();
    store.create_user(new_user("under_score-free", "x_y@example.com")).await.unwrap_err();
    store.create_user(new_user("carol", "carol_1@example.com")).await.unwrap();

    let names = |filter: UserFilter| {
        let store = store.clone();
        async move {
            let filter = UserFilter { limit: 100, ..filter };
            let (users, count) = store.list_users(&filter).await.unwrap();
            assert_eq!(users.len() as i64, count);
            users.into_iter().map(|u| u.username).collect::<Vec<_>>()
        }
    };
    assert_eq!(names(UserFilter { role: Some(Role::Owner), ..Default::default() }).await, ["owner"]);
    assert_eq!(names(UserFilter { role: Some(Role::Member), ..Default::default() }).await, ["owner", "robot", "carol"]);
    assert_eq!(names(UserFilter { login_type: Some(LoginType::None), ..Default::default() }).await, ["robot"]);
    assert_eq!(names(UserFilter { status: Some(UserStatus::Active), ..Default::default() }).await, ["owner", "carol"]);
    // `_` is a literal in search text, not a LIKE wildcard.
    assert_eq!(names(UserFilter { text: Some("l_1".into()), ..Default::default() }).await, ["carol"]);
    assert!(names(UserFilter { text: Some("o_n".into()), ..Default::default() }).await.is_empty());
    let page = store.list_users(&UserFilter { limit: 1, offset: 1, ..Default::default() }).await.unwrap();
    assert_eq!((page.0.len(), page.1), (1, 3));
}

async fn recv_message(sub: &mut warmspace_store::pubsub::Subscription) -> String {
    loop {
        match timeout(Duration::from_secs(10), sub.recv()).await.expect("a message within 10 s") {
            Some(Event::Message(m)) => return m,
            Some(Event::Gap) => continue,
            None => panic!("pub/sub stopped"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_replica_reaches_subscribers_on_every_replica() {
    let db = TestDatabase::new().await;
    let (a, b) = (db.store().await, db.store().await);
    let pubsub_a = PubSub::start(db.options(), &a);
    let pubsub_b = PubSub::start(db.options(), &b);

    let mut on_b = pubsub_b.subscribe("workspace_claims").await.unwrap();
    let mut on_a = pubsub_a.subscribe("workspace_claims").await.unwrap();
    let mut other = pubsub_b.subscribe("something_else").await.unwrap();

    pubsub_a.publish("workspace_claims", "claimed 42").await.unwrap();
    assert_eq!(recv_message(&mut on_b).await, "claimed 42");
    assert_eq!(recv_message(&mut on_a).await, "claimed 42");
    // Other channels hear nothing of it: the next thing they hear is their own.
    pubsub_a.publish("something_else", "own").await.unwrap();
    assert_eq!(recv_message(&mut other).await, "own");

    assert!(pubsub_a.publish("workspace_claims", &"x".repeat(8000)).await.is_err());
    assert!(pubsub_a.subscribe(&"c".repeat(64)).await.is_err());

    // Closing ends this replica's subscriptions and nothing else's.
    pubsub_a.close().await;
    assert_eq!(timeout(Duration::from_secs(5), on_a.recv()).await.unwrap(), None);
    assert!(pubsub_a.subscribe("workspace_claims").await.is_err());
    pubsub_b.publish("workspace_claims", "still here").await.unwrap();
    assert_eq!(recv_message(&mut on_b).await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_at_once_each_arrive_once_even_when_they_repeat_one_another() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let pubsub = PubSub::start(db.options(), &store);
    let mut sub = pubsub.subscribe("jobs").await.unwrap();

    // Sent in batches, and PostgreSQL delivers a message repeated within one
    // transaction once: three hundred daemons woken by "1" must not be one.
    const SENDERS: usize = 300;
    let sends: Vec<_> = (0..SENDERS)
        .map(|_| {
            let pubsub = pubsub.clone();
            tokio::spawn(async move { pubsub.publish("jobs", "1").await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    // Messages sent together arrive together, in order.
    let together = ["a", "b", "c"].map(|p| ("jobs".to_owned(), p.to_owned()));
    pubsub.publish_all(together.to_vec()).await.unwrap();

    let mut ones = 0;
    loop {
        match recv_message(&mut sub).await.as_str() {
            "1" => ones += 1,
            first => {
                assert_eq!(first, "a");
                break;
            }
        }
    }
    assert_eq!(ones, SENDERS);
    assert_eq!([recv_message(&mut sub).await, recv_message(&mut sub).await], ["b", "c"]);
    assert!(pubsub.publish_all(vec![("jobs".into(), "ok".into()), ("".into(), "bad".into())]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_losing_its_connection() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let pubsub = PubSub::start(db.options(), &store);
    let mut sub = pubsub.subscribe("events").await.unwrap();
    pubsub.publish("events", "before").await.unwrap();
    assert_eq!(recv_message(&mut sub).await, "before");

    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&db.pool().await)
    .await
    .unwrap();
    assert_eq!(killed, 1, "exactly one listening connection per process");

    // The subscriber is told it may have missed messages...
    let gap = timeout(Duration::from_secs(10), sub.recv()).await.expect("a gap event");
    assert_eq!(gap, Some(Event::Gap));
    // ...and hears new ones once reconnected.
    pubsub.publish("events", "after").await.unwrap();
    assert_eq!(recv_message(&mut sub).await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_cluster_keeps_data_across_restarts_and_leaves_no_process() {
    let dir = warmspace_store::testing::cluster_temp_dir();
    let options = ClusterOptions { durable: false, ..ClusterOptions::new(dir.path().join("pg")) };

    let cluster = Cluster::start(options.clone()).await.unwrap();
    let pid = cluster.pid().unwrap();
    let store = Store::connect(cluster.connect_options("postgres"), 2).await.unwrap();
    store.migrate().await.unwrap();
    store.create_user(new_user("kept", "kept@example.com")).await.unwrap();
    store.close().await;
    cluster.stop().await.unwrap();
    assert!(kill(Pid::from_raw(pid as i32), None).is_err(), "postmaster {pid} is gone");
    assert!(!dir.path().join("pg/data/postmaster.pid").exists());
    // No TCP: the only way in was the socket in our directory, and it is gone too.
    assert!(!dir.path().join("pg/run/.s.PGSQL.5432").exists());

    let cluster = Cluster::start(options).await.unwrap();
    let store = Store::connect(cluster.connect_options("postgres"), 2).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.user_by_username("kept").await.unwrap().email, "kept@example.com");
    let raw = sqlx::PgPool::connect_with(cluster.connect_options("postgres")).await.unwrap();
    let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&raw).await.unwrap();
    assert_eq!(listen, "");
    raw.close().await;
    store.close().await;
    cluster.stop().await.unwrap();
}
