//! The connection log's `app` entries: which entry a new request to an app
//! continues, on the store's clock.

use std::time::Duration;

use uuid::Uuid;
use warmspace_states::ConnectionType;
use warmspace_store::connections::{AppSessionKey, ConnectionParties, NewConnection};
use warmspace_store::testing::TestDatabase;
use warmspace_store::workspaces::PREBUILDS_USER_ID;
use warmspace_store::{Clock, Store};

fn app_entry(workspace_id: Uuid, agent_id: Uuid, app: &str, client: &str) -> NewConnection {
    NewConnection {
        id: Uuid::new_v4(),
        kind: ConnectionType::App,
        parties: ConnectionParties {
            user_id: PREBUILDS_USER_ID,
            username: "prebuilds".into(),
            workspace_id,
            workspace_name: "w".into(),
            workspace_owner_id: PREBUILDS_USER_ID,
            workspace_owner_name: "prebuilds".into(),
            agent_id,
            agent_name: "main".into(),
        },
        client_address: client.into(),
        port: None,
        // The log keeps no link to replicas: any will do.
        replica_id: Uuid::new_v4(),
        app: Some(app.into()),
    }
}

/// A seeded prebuild's id (the log's entries need a workspace to name).
async fn a_workspace(db: &TestDatabase, store: &Store) -> Uuid {
    let preset = store.seed_pools(1, false).await.unwrap()[0];
    store.seed_prebuilds(preset, 1).await.unwrap();
    sqlx::query_scalar("SELECT id FROM workspaces WHERE preset_id = $1")
        .bind(preset)
        .fetch_one(&db.pool().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_continues_the_latest_app_entry_that_ended_within_the_window() {
    let db = TestDatabase::new().await;
    let clock = Clock::default();
    let store = db.store().await.with_clock(clock.clone());
    let workspace = a_workspace(&db, &store).await;
    let agent = Uuid::new_v4();
    let window = chrono::TimeDelta::minutes(5);
    let key = |app, client| AppSessionKey { user_id: PREBUILDS_USER_ID, agent_id: agent, app, client_address: client };

    // Nothing to continue yet; an entry still in its first request is not continued either.
    let first = app_entry(workspace, agent, "web", "10.0.0.1");
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), clock.now() - window).await.unwrap(), None);
    store.open_connection(&first).await.unwrap();
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), clock.now() - window).await.unwrap(), None);
    store.end_app_connection(first.id, "HTTP 200 OK", Some(200)).await.unwrap();

    // Within the window, the same person, app and address continue it; another app or address does not.
    clock.advance(Duration::from_secs(4 * 60));
    let since = clock.now() - window;
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), since).await.unwrap(), Some(first.id));
    assert_eq!(store.app_session(&key("docs", "10.0.0.1"), since).await.unwrap(), None);
    assert_eq!(store.app_session(&key("web", "10.0.0.2"), since).await.unwrap(), None);
    store.end_app_connection(first.id, "HTTP 404 Not Found", Some(404)).await.unwrap();

    // Each request moves the entry's end: 4 more minutes are still within 5 of the last one.
    clock.advance(Duration::from_secs(4 * 60));
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), clock.now() - window).await.unwrap(), Some(first.id));
    // A WebSocket's entry (status 101) is never continued.
    let socket = app_entry(workspace, agent, "web", "10.0.0.1");
    store.open_connection(&socket).await.unwrap();
    store.end_app_connection(socket.id, "closed", Some(101)).await.unwrap();
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), clock.now() - window).await.unwrap(), Some(first.id));

    // Past the window, a request starts a new entry.
    clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(store.app_session(&key("web", "10.0.0.1"), clock.now() - window).await.unwrap(), None);

    // The schema keeps an app to app entries.
    let mut nameless = app_entry(workspace, agent, "web", "10.0.0.1");
    nameless.app = None;
    assert!(store.open_connection(&nameless).await.is_err());
    let mut forward = app_entry(workspace, agent, "web", "10.0.0.1");
    forward.kind = ConnectionType::PortForward;
    forward.port = Some(22);
    assert!(store.open_connection(&forward).await.is_err());
}
