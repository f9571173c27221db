//! A replica that died without cleaning up: once its heartbeat is old, the
//! surviving replica forgets the agent tunnels it held (a connection then
//! finds no tunnel, instead of dialling the dead replica) and closes the
//! connections it recorded.

use std::time::{Duration, Instant};

use uuid::Uuid;
use warmspace_sdk::{ConnectQuery, ConnectionLogQuery, ConnectionType, StatusCode};
use warmspace_server::testing::TestServer;
use warmspace_store::connections::{ConnectionParties, NewConnection};

use crate::common::*;

const MANIFEST: &str = "provisioner = \"exec\"\nagent \"main\" {}\nexec {\n  start = \"start.sh\"\n}\n";

#[tokio::test]
async fn a_dead_replica_s_tunnels_and_connections_are_cleaned_up_once_its_heartbeat_is_old() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let template = push(&owner, "plain", &[("warmspace.hcl", MANIFEST), ("start.sh", "#!/bin/sh\n")]).await;
    let ws = create(&owner, &template, "box", &[]).await;
    finish(&owner, &ws.latest_build).await;
    let ws = owner.workspace(ws.id).await.unwrap();
    let me = owner.user("me").await.unwrap();
    let agent = &ws.agents[0];

    // Another replica, on a port where nothing listens now, held the agent's tunnel and carried a connection.
    let dead = Uuid::new_v4();
    let url = "http://127.0.0.1:1";
    server.store.replica_heartbeat(dead, url).await.unwrap();
    server.store.hold_tunnel(agent.id, dead, url, &"s".repeat(64)).await.unwrap();
    let carried = NewConnection {
        id: Uuid::new_v4(),
        kind: ConnectionType::Ssh,
        parties: ConnectionParties {
            user_id: me.id,
            username: me.username.clone(),
            workspace_id: ws.id,
            workspace_name: ws.name.clone(),
            workspace_owner_id: ws.owner_id,
            workspace_owner_name: ws.owner_name.clone(),
            agent_id: agent.id,
            agent_name: agent.name.clone(),
        },
        client_address: "192.0.2.1".into(),
        port: None,
        replica_id: dead,
        app: None,
    };
    server.store.open_connection(&carried).await.unwrap();
    let query = ConnectQuery { kind: ConnectionType::Ssh, port: None, agent: None, devcontainer: None };
    let (status, refused) = api_status(owner.connect_workspace(ws.id, &query).await);
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused.detail.contains("refused the relay"), "{refused:?}");

    // Its heartbeat grows old; the survivor's next beats clean up after it.
    server.clock.advance(Duration::from_secs(21));
    let deadline = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let (_, refused) = api_status(owner.connect_workspace(ws.id, &query).await);
        if !refused.detail.contains("refused the relay") {
            break refused.detail;
        }
        assert!(Instant::now() < deadline, "the dead replica's tunnel is still recorded after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(detail.contains("holds no tunnel"), "{detail}");
    let log = owner.connection_log(&ConnectionLogQuery { limit: Some(1000), ..Default::default() }).await.unwrap();
    let entry = log.entries.iter().find(|e| e.id == carried.id).unwrap();
    assert_eq!(entry.close_reason.as_deref(), Some("replica stopped"), "{entry:?}");
}
