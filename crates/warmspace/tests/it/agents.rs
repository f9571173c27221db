//! Real `warmspace agent` processes, started by the exec example's scripts,
//! against a real server: lifecycle, tokens, and the re-init stream.

use std::time::Duration;

use crate::common::*;
use uuid::Uuid;
use warmspace_sdk::{AgentConnection, AgentLifecycle, Client, StatusCode, Workspace, WorkspaceAgentLog};
use warmspace_store::Store;
use warmspace_store::testing::TestDatabase;
use warmspace_store::workspaces::{NewBuild, NewWorkspace, PREBUILDS_USER_ID};

/// The example's startup script prints this; each (re)initialisation runs it once.
const STARTUP_LINE: &str = "workspace ready";

/// The agent's token, read from the environment of its process (whose pid
/// the example keeps in the workspace's directory).
fn agent_token(root: &std::path::Path, workspace: Uuid) -> String {
    let pid_file = root.join(workspace.to_string()).join("agent.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    String::from_utf8_lossy(&environ)
        .split('\0')
        .find_map(|kv| kv.strip_prefix("WARMSPACE_AGENT_TOKEN="))
        .expect("the agent's token in its environment")
        .to_owned()
}

async fn workspace(client: &Client, id: Uuid) -> Workspace {
    client.workspace(id).await.unwrap()
}

async fn agent_logs(client: &Client, ws: &Workspace) -> Vec<WorkspaceAgentLog> {
    client.agent_logs(ws.agents[0].id).await.unwrap()
}

/// What the agent logs once it serves its workspace's owner and stops listening for claims.
const NOT_WAITING: &str = "not waiting for a claim";

fn agent_log(example: &Example, workspace: Uuid) -> String {
    std::fs::read_to_string(example.root.join(workspace.to_string()).join("agent.log")).unwrap_or_default()
}

/// Waits until the workspace's agent has logged `what`.
async fn agent_said(example: &Example, workspace: Uuid, what: &str) {
    eventually(Duration::from_secs(30), what, || async { agent_log(example, workspace).contains(what) }).await;
}

async fn startup_runs(client: &Client, id: Uuid) -> usize {
    let ws = workspace(client, id).await;
    agent_logs(client, &ws).await.iter().filter(|l| l.output.contains(STARTUP_LINE)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_workspace_s_agent_becomes_ready_disconnects_on_stop_and_loses_its_token_on_delete() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start(db.url()).await;
    run(example.cli().args(["create", "box", "--template", "local"]));
    let client = admin_client(&server.url).await;
    let me = client.user("me").await.unwrap();
    let ws = client.workspace_by_name("me", "box").await.unwrap();
    wait_ready(&client, ws.id, me.id).await;
    let shown = run(example.cli().args(["show", "box"]));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("agent:      main — ready , connected"));
    let agent = workspace(&client, ws.id).await.agents[0].clone();
    assert!(agent.first_connected_at.is_some() && agent.ready_at.is_some());

    // The agent speaks with its token; nothing else does.
    let token = agent_token(&example.root, ws.id);
    let url: url::Url = server.url.parse().unwrap();
    let as_agent = Client::new(url.clone()).with_agent_token(&token);
    assert_eq!(as_agent.agent_manifest().await.unwrap().owner_name, "admin");
    // A regular workspace's agent is told so on re-init (and the agent stopped asking: see its log).
    let reinit = as_agent.agent_reinit(me.id).await.unwrap();
    assert_eq!(reinit.status(), StatusCode::CONFLICT);
    let agent_log = std::fs::read_to_string(example.root.join(ws.id.to_string()).join("agent.log")).unwrap();
    assert_eq!(agent_log.matches("regular workspace").count(), 1, "asked once, then stopped: {agent_log}");
    assert_eq!(as_agent.user("me").await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED), "no user endpoints");
    // Bad input from an agent is its mistake, named, not the server's.
    match as_agent.agent_heartbeat(Some(Uuid::new_v4())).await {
        Err(warmspace_sdk::ClientError::Api { status, response }) => {
            assert_eq!((status, response.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "serving_owner_id"))
        }
        other => panic!("a heartbeat serving nobody was accepted: {other:?}"),
    }
    let garbage = Client::new(url.clone()).with_agent_token("not-a-token");
    assert_eq!(garbage.agent_manifest().await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
    let session_as_agent = Client::new(url.clone()).with_agent_token(client.token().unwrap());
    assert_eq!(session_as_agent.agent_manifest().await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));

    // Another workspace's agent is out of reach.
    run(example.cli().args(["create", "other", "--template", "local"]));
    let other = client.workspace_by_name("me", "other").await.unwrap();
    wait_ready(&client, other.id, me.id).await;
    let other_agent = workspace(&client, other.id).await.agents[0].id;
    let reached = as_agent
        .request(reqwest::Method::GET, &format!("api/v2/workspaceagents/{other_agent}/manifest"))
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(reached.status(), StatusCode::FORBIDDEN);

    // Stopping kills the agent, which says goodbye.
    run(example.cli().args(["stop", "box"]));
    eventually(Duration::from_secs(15), "the agent to disconnect", || async {
        workspace(&client, ws.id).await.agents[0].connection == AgentConnection::Disconnected
    })
    .await;
    // A new start issues a new token; the old one is dead.
    run(example.cli().args(["start", "box"]));
    wait_ready(&client, ws.id, me.id).await;
    assert_eq!(as_agent.agent_manifest().await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
    let token = agent_token(&example.root, ws.id);
    run(example.cli().args(["delete", "box", "-y"]));
    let deleted_agent = Client::new(url).with_agent_token(&token);
    assert_eq!(deleted_agent.agent_manifest().await.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
    server.terminate();
}

/// Makes a prebuild by hand (the reconciler does this later): owned by the
/// prebuilds user, first build initiated by it.
async fn prebuild(store: &Store, template: &warmspace_sdk::Template, name: &str) -> Uuid {
    let workspace = store
        .create_workspace(&NewWorkspace {
            organization_id: template.organization_id,
            owner_id: PREBUILDS_USER_ID,
            template_id: template.id,
            name: name.into(),
            ttl_ms: None,
            autostart_schedule: None,
            build: NewBuild {
                transition: warmspace_sdk::Transition::Start,
                initiator_id: PREBUILDS_USER_ID,
                reason: warmspace_sdk::BuildReason::Prebuild,
                template_version_id: template.active_version_id,
                preset_id: None,
                parameters: [("greeting".to_owned(), "hello".to_owned())].into(),
                deadline: None,
                max_deadline: None,
            },
            miss: None,
        })
        .await
        .unwrap();
    workspace.id
}

/// Claims a prebuild by hand (the claim issue does this for real): ownership
/// moves, and a claim build initiated by the new owner is queued.
async fn claim(store: &Store, raw: &sqlx::PgPool, workspace: Uuid, owner: Uuid, name: &str) {
    sqlx::query("UPDATE workspaces SET owner_id = $2, name = $3 WHERE id = $1")
        .bind(workspace)
        .bind(owner)
        .bind(name)
        .execute(raw)
        .await
        .unwrap();
    let version: Uuid = sqlx::query_scalar("SELECT template_version_id FROM workspace_builds WHERE workspace_id = $1")
        .bind(workspace)
        .fetch_one(raw)
        .await
        .unwrap();
    store
        .create_build(
            workspace,
            &NewBuild {
                transition: warmspace_sdk::Transition::Start,
                initiator_id: owner,
                reason: warmspace_sdk::BuildReason::Claim,
                template_version_id: version,
                preset_id: None,
                parameters: [("greeting".to_owned(), "hello".to_owned())].into(),
                deadline: None,
                max_deadline: None,
            },
        )
        .await
        .unwrap();
}

async fn announce_claim(raw: &sqlx::PgPool, workspace: Uuid, owner: Uuid) {
    let payload = serde_json::json!({ "workspace_id": workspace, "owner_id": owner, "reason": "claimed" }).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(warmspace_store::workspaces::claim_channel(workspace))
        .bind(payload)
        .execute(raw)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_prebuild_s_agent_reinitialises_exactly_once() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let raw = db.pool().await;
    let (example, server) = Example::start(db.url()).await;
    let client = admin_client(&server.url).await;
    let me = client.user("me").await.unwrap();
    let template = client.template_by_name("default", "local").await.unwrap();

    // A live claim: the agent's stream is open when the claim lands.
    let live = prebuild(&store, &template, "pool-1").await;
    wait_ready(&client, live, PREBUILDS_USER_ID).await;
    assert_eq!(startup_runs(&client, live).await, 1);
    claim(&store, &raw, live, me.id, "mine").await;
    announce_claim(&raw, live, me.id).await;
    // A duplicate announcement changes nothing.
    announce_claim(&raw, live, me.id).await;
    wait_ready(&client, live, me.id).await;
    assert_eq!(startup_runs(&client, live).await, 2, "one re-init");
    let manifest_owner = client.workspace(live).await.unwrap().owner_name;
    assert_eq!(manifest_owner, "admin");

    // A claim while the agent's stream is cut (the server is down): the
    // agent learns of it when it reconnects.
    let cut = prebuild(&store, &template, "pool-2").await;
    wait_ready(&client, cut, PREBUILDS_USER_ID).await;
    server.terminate();
    claim(&store, &raw, cut, me.id, "mine-too").await;
    let server = example.serve().await;
    let client = admin_client(&server.url).await;
    wait_ready(&client, cut, me.id).await;
    assert_eq!(startup_runs(&client, cut).await, 2, "one re-init after reconnecting");

    // An agent serving its workspace's owner says so and stops listening for
    // claims: from then on nothing can re-initialise it.
    for id in [live, cut] {
        agent_said(&example, id, NOT_WAITING).await;
    }
    // A server restart after the re-init does not re-initialise again.
    let before = workspace(&client, cut).await.agents[0].last_connected_at.unwrap();
    server.terminate();
    let server = example.serve().await;
    let client = admin_client(&server.url).await;
    eventually(Duration::from_secs(30), "the agents to reconnect after the restart", || async {
        workspace(&client, cut).await.agents[0].last_connected_at.is_some_and(|t| t > before)
    })
    .await;
    assert_eq!(startup_runs(&client, cut).await, 2);
    assert_eq!(startup_runs(&client, live).await, 2);
    for id in [live, cut] {
        let log = agent_log(&example, id);
        assert_eq!(log.matches("re-initialising").count(), 1, "{log}");
        assert_eq!(log.matches(NOT_WAITING).count(), 1, "{log}");
    }
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_the_exec_example_s_prebuild_reinitialises_its_real_agent_once_and_refills_the_pool() {
    let db = TestDatabase::new().await;
    let raw = db.pool().await;
    let (example, server) = Example::start(db.url()).await;
    let client = admin_client(&server.url).await;
    let me = client.user("me").await.unwrap();

    // The example's preset keeps one prebuild warm; wait for its agent.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let prebuild = loop {
        let pool = client
            .workspaces(&warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() })
            .await
            .unwrap();
        let ready = pool
            .workspaces
            .into_iter()
            .find(|w| w.agents.iter().all(|a| a.lifecycle_state == AgentLifecycle::Ready) && !w.agents.is_empty());
        if let Some(ws) = ready {
            break ws;
        }
        assert!(std::time::Instant::now() < deadline, "the pool never filled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let created = run(example.cli().args(["create", "mine", "--template", "local", "--preset", "default"]));
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(stdout.contains("Claimed a prebuilt workspace"), "{stdout}");
    let claimed = client.workspace_by_name("me", "mine").await.unwrap();
    assert_eq!(claimed.id, prebuild.id, "the warm workspace itself was handed over");
    wait_ready(&client, claimed.id, me.id).await;
    let token = agent_token(&example.root, claimed.id);
    let url: url::Url = server.url.parse().unwrap();
    let manifest = Client::new(url).with_agent_token(&token).agent_manifest().await.unwrap();
    assert_eq!((manifest.owner_id, manifest.workspace_name.as_str()), (me.id, "mine"));
    // Exactly once: the agent now serves the owner and has stopped listening for claims.
    agent_said(&example, claimed.id, NOT_WAITING).await;
    assert_eq!(startup_runs(&client, claimed.id).await, 2);

    // The pool's refill was queued once the claim had committed (how soon is
    // `warmspace bench`'s to measure).
    eventually(Duration::from_secs(30), "a replacement queued after the claim", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM claim_attempts a \
             JOIN workspaces w ON w.preset_id = a.preset_id AND w.id <> a.workspace_id \
             JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number = 1 \
             JOIN provisioner_jobs j ON j.id = b.job_id WHERE a.hit AND j.created_at > a.committed_at)",
        )
        .fetch_one(&raw)
        .await
        .unwrap()
    })
    .await;
    server.terminate();
}
