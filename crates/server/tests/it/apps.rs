//! Apps and dev containers through the agent API, as a real agent reports
//! them: app statuses keep the latest 100 (newest first), bad reports get a
//! 400 naming the field, and the workspace's API and dashboard page show
//! health, the latest status and dev container states.

use warmspace_sdk::{
    AgentAppHealthRequest, AgentAppStatusRequest, AgentDevcontainerRequest, AppHealth, AppStatusState, Client,
    DevcontainerState, StatusCode,
};
use warmspace_server::testing::TestServer;

use crate::common::*;

/// An exec template whose agent declares two apps and a dev container, and
/// whose start script leaves the agent's token where the test can speak as
/// the agent.
fn template(tokens: &std::path::Path) -> [(&'static str, String); 2] {
    let manifest = r#"provisioner = "exec"
agent "main" {
  app "web" {
    display_name = "Web"
    url          = "http://localhost:3000"
    healthcheck {
      url = "http://localhost:3000/healthz"
    }
  }
  app "docs" {
    url = "http://localhost:4000"
  }
  devcontainer "api" {
    workspace_folder = "api"
  }
}
exec {
  start = "start.sh"
}
"#;
    let start = format!(
        "#!/bin/sh\nprintf %s \"$WARMSPACE_AGENT_TOKEN_MAIN\" > '{}/'\"$WARMSPACE_WORKSPACE_ID\"\n",
        tokens.display()
    );
    [("warmspace.hcl", manifest.into()), ("start.sh", start)]
}

fn status(app: &str, state: AppStatusState, message: &str) -> AgentAppStatusRequest {
    AgentAppStatusRequest { app: app.into(), state, message: message.into(), uri: None }
}

/// The 400's only validation: (field, detail).
fn invalid<T: std::fmt::Debug>(result: Result<T, warmspace_sdk::ClientError>) -> (String, String) {
    let (status, response) = api_status(result);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{response:?}");
    let [v] = &response.validations[..] else { panic!("one validation: {response:?}") };
    (v.field.clone(), v.detail.clone())
}

#[tokio::test]
async fn app_statuses_health_and_dev_containers_through_the_agent_api() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let tokens = tempfile::tempdir().unwrap();
    let files = template(tokens.path());
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let template = push(&owner, "apps", &files).await;
    let ws = create(&owner, &template, "box", &[]).await;
    finish(&owner, &ws.latest_build).await;
    let token = std::fs::read_to_string(tokens.path().join(ws.id.to_string())).unwrap();
    let agent = server.client().with_agent_token(&token);

    // Declared, nothing reported yet.
    let apps = owner.workspace_apps(ws.id).await.unwrap();
    let health: Vec<_> = apps.apps.iter().map(|a| (a.name.as_str(), a.health)).collect();
    assert_eq!(health, [("web", AppHealth::Initializing), ("docs", AppHealth::Disabled)]);
    assert_eq!(apps.devcontainers[0].state, None);

    // 105 statuses: the latest 100 are kept, newest first; the rest are gone from the table.
    for i in 0..105 {
        agent.agent_app_status(&status("web", AppStatusState::Working, &format!("step {i}"))).await.unwrap();
    }
    let history = owner.workspace_app_statuses(ws.id, "web").await.unwrap();
    assert_eq!(history.len(), 100);
    assert_eq!((history[0].message.as_str(), history[99].message.as_str()), ("step 104", "step 5"));
    assert!(history.windows(2).all(|w| w[0].id > w[1].id));
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM workspace_app_statuses")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(kept, 100);
    assert_eq!(owner.workspace_app_statuses(ws.id, "docs").await.unwrap(), []);
    assert_eq!(api_status(owner.workspace_app_statuses(ws.id, "nope").await).0, StatusCode::NOT_FOUND);

    let done = AgentAppStatusRequest {
        uri: Some("https://example.com/pr/1".into()),
        ..status("web", AppStatusState::Complete, "tests passed")
    };
    let recorded = agent.agent_app_status(&done).await.unwrap();
    assert_eq!((recorded.state, recorded.agent_name.as_str()), (AppStatusState::Complete, "main"));
    let mut health = AgentAppHealthRequest { apps: Default::default() };
    health.apps.insert("web".into(), AppHealth::Unhealthy);
    agent.agent_app_health(&health).await.unwrap();
    let failed = AgentDevcontainerRequest {
        name: "api".into(),
        state: DevcontainerState::Error,
        error: Some("docker not available".into()),
    };
    agent.agent_devcontainer(&failed).await.unwrap();
    let apps = owner.workspace_apps(ws.id).await.unwrap();
    let web = &apps.apps[0];
    assert_eq!(web.health, AppHealth::Unhealthy);
    let latest = web.latest_status.as_ref().unwrap();
    assert_eq!((latest.message.as_str(), latest.uri.as_deref()), ("tests passed", Some("https://example.com/pr/1")));
    let api = &apps.devcontainers[0];
    assert_eq!((api.state, api.error.as_deref()), (Some(DevcontainerState::Error), Some("docker not available")));

    // Bad reports: a 400 naming the field.
    let (field, detail) = invalid(agent.agent_app_status(&status("nope", AppStatusState::Idle, "x")).await);
    assert_eq!(field, "app");
    assert!(detail.contains("no app called \"nope\"") && detail.contains("web, docs"), "{detail}");
    let long = "x".repeat(1025);
    assert_eq!(invalid(agent.agent_app_status(&status("web", AppStatusState::Idle, &long)).await).0, "message");
    let empty_uri = AgentAppStatusRequest { uri: Some(String::new()), ..status("web", AppStatusState::Idle, "x") };
    assert_eq!(invalid(agent.agent_app_status(&empty_uri).await).0, "uri");
    health.apps.insert("nope".into(), AppHealth::Healthy);
    assert_eq!(invalid(agent.agent_app_health(&health).await).0, "apps");
    let no_reason = AgentDevcontainerRequest { error: None, ..failed.clone() };
    assert_eq!(invalid(agent.agent_devcontainer(&no_reason).await).0, "error");
    let reason_when_running =
        AgentDevcontainerRequest { state: DevcontainerState::Running, error: Some("x".into()), ..failed.clone() };
    assert_eq!(invalid(agent.agent_devcontainer(&reason_when_running).await).0, "error");
    let unknown = AgentDevcontainerRequest { name: "other".into(), ..failed };
    assert_eq!(invalid(agent.agent_devcontainer(&unknown).await).0, "name");
    let bad_state = server
        .client()
        .request(reqwest::Method::POST, "api/v2/workspaceagents/me/app-status")
        .unwrap()
        .header("Warmspace-Agent-Token", &token)
        .json(&serde_json::json!({"app": "web", "state": "sleeping", "message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_state.status(), StatusCode::BAD_REQUEST);

    // Others do not see the workspace's apps.
    let alice = server.user(&owner, "alice", &[]).await;
    assert_eq!(api_status(alice.workspace_apps(ws.id).await).0, StatusCode::NOT_FOUND);
    assert_eq!(api_status(alice.workspace_app_statuses(ws.id, "web").await).0, StatusCode::NOT_FOUND);

    // The OpenAPI document describes the endpoints.
    let doc = openapi_document(&server).await;
    for path in [
        "/api/v2/workspaces/{workspace}/apps",
        "/api/v2/workspaces/{workspace}/apps/{app}/statuses",
        "/api/v2/workspaceagents/{agent}/app-health",
        "/api/v2/workspaceagents/{agent}/app-status",
        "/api/v2/workspaceagents/{agent}/devcontainers",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not in the OpenAPI document");
    }

    // The dashboard's workspace page shows them.
    let page = dashboard_page(&server, &owner, &format!("/workspaces/{}", ws.id)).await;
    for needle in [
        "id=\"app-web\"",
        "unhealthy",
        "complete</strong> tests passed",
        "https://example.com/pr/1",
        "id=\"app-docs\"",
        "disabled",
        "id=\"devcontainer-api\"",
        "error: docker not available",
    ] {
        assert!(page.contains(needle), "{needle:?} not on the page:\n{page}");
    }
}

/// A dashboard page's HTML, fetched with the client's session as its cookie.
async fn dashboard_page(server: &TestServer, client: &Client, path: &str) -> String {
    let response = reqwest::Client::new()
        .get(server.url.join(path).unwrap())
        .header("cookie", format!("warmspace_session={}", client.token().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}
