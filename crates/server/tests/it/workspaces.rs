//! Workspaces and builds through the HTTP API, run by real in-process
//! daemons on the `echo` and `exec` backends.

use crate::common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use warmspace_sdk::{JobStatus, Role, StatusCode, WorkspaceStatus, WorkspacesQuery};
use warmspace_server::Config;
use warmspace_server::testing::TestServer;

#[tokio::test]
async fn a_workspace_is_created_stopped_started_and_deleted() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let template = push(&owner, "echo", &[("warmspace.hcl", ECHO)]).await;

    let workspace = create(&owner, &template, "dev", &[("cpus", "4")]).await;
    assert_eq!(workspace.latest_build.build_number, 1);
    assert_eq!(workspace.latest_build.transition, warmspace_sdk::Transition::Start);
    let (_, first) = finish(&owner, &workspace.latest_build).await;
    assert_eq!(first.status, WorkspaceStatus::Running);
    let params: BTreeMap<_, _> = first.parameters.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
    assert_eq!(params, BTreeMap::from([("cpus", "4"), ("region", "us")]));
    assert_eq!(first.resources.len(), 1);
    // Timings are real timestamps, in order.
    let job = &first.job;
    let (started, completed) = (job.started_at.unwrap(), job.completed_at.unwrap());
    assert!(job.created_at <= started && started <= completed);

    for (number, transition, status) in [
        (2, "stop", WorkspaceStatus::Stopped),
        (3, "start", WorkspaceStatus::Running),
        (4, "delete", WorkspaceStatus::Deleted),
    ] {
        let queued = build(&owner, &workspace, transition, &[]).await.unwrap();
        assert_eq!(queued.build_number, number);
        let (_, done) = finish(&owner, &queued).await;
        assert_eq!(done.status, status, "{transition}: {:?}", done.job.error);
        // Values carry over from build to build.
        assert_eq!(done.parameters, first.parameters);
    }
    assert_eq!(api_status(owner.workspace_by_name("me", "dev").await).0, StatusCode::NOT_FOUND);
    let listed = owner.workspaces(&WorkspacesQuery::default()).await.unwrap();
    assert_eq!(listed.count, 0, "deleted workspaces are not listed");
    // The name is free again.
    create(&owner, &template, "dev", &[]).await;
}

#[tokio::test]
async fn parameters_are_validated_before_anything_is_queued() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let template = push(&owner, "echo", &[("warmspace.hcl", ECHO)]).await;
    let pool = server.db.pool().await;
    let jobs = |_: &TestServer| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM provisioner_jobs WHERE type = 'workspace_build'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    for (parameters, field) in [
        (vec![("cpus", "64")], "cpus"),
        (vec![("cpus", "many")], "cpus"),
        (vec![("region", "mars")], "region"),
        (vec![("gpus", "1")], "gpus"),
    ] {
        let refused = owner.create_workspace("me", &request(&template, "dev", None, &parameters)).await;
        let (status, body) = api_status(refused);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.validations[0].field, field, "{body:?}");
    }
    assert_eq!(jobs(&server).await, 0, "nothing was queued");

    let workspace = create(&owner, &template, "dev", &[("region", "us")]).await;
    finish(&owner, &workspace.latest_build).await;
    // Changing an immutable parameter is refused, naming it; repeating its value is not a change.
    let (status, body) = api_status(build(&owner, &workspace, "start", &[("region", "eu")]).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.validations[0].field, "region");
    assert!(body.validations[0].detail.contains("immutable"), "{body:?}");
    let same = build(&owner, &workspace, "start", &[("region", "us"), ("cpus", "8")]).await.unwrap();
    assert_eq!(finish(&owner, &same).await.1.status, WorkspaceStatus::Running);
    assert_eq!(jobs(&server).await, 2);

    // Bad names and taken names.
    let bad = owner.create_workspace("me", &request(&template, "Bad_Name", None, &[])).await;
    let (status, body) = api_status(bad);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "name"));
    assert!(body.validations[0].detail.contains("lowercase"), "the rule is stated: {body:?}");
    let taken = owner.create_workspace("me", &request(&template, "dev", None, &[])).await;
    assert_eq!(api_status(taken).0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn one_build_at_a_time_and_a_running_build_can_be_canceled() {
    // A short lease makes heartbeats (which carry the cancel) frequent.
    let queue = warmspace_store::jobs::QueuePolicy { lease: Duration::from_secs(3), ..Default::default() };
    let server = TestServer::start_with(Config { queue, ..Config::default() }, 2).await;
    let owner = server.owner().await;
    let slow =
        push(&owner, "slow", &[("warmspace.hcl", "provisioner = \"echo\"\necho {\n  duration_ms = 60000\n}\n")]).await;
    let workspace = create(&owner, &slow, "slow", &[]).await;
    let (status, body) = api_status(build(&owner, &workspace, "stop", &[]).await);
    assert_eq!(status, StatusCode::CONFLICT, "{body:?}");
    assert!(body.message.contains("still"), "{body:?}");

    // Cancel once a daemon runs it, so the daemon has to stop the backend.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owner.build(workspace.latest_build.id).await.unwrap().job.status != JobStatus::Running {
        assert!(tokio::time::Instant::now() < deadline, "the build never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.cancel_build(workspace.latest_build.id).await.unwrap();
    let (lines, canceled) = finish(&owner, &workspace.latest_build).await;
    assert_eq!(canceled.job.status, JobStatus::Canceled, "{lines:#?}");
    assert_eq!(canceled.status, WorkspaceStatus::Canceled);
    assert!(canceled.job.canceled_at.is_some());
    let ran_for = canceled.job.completed_at.unwrap() - canceled.job.started_at.unwrap();
    assert!(ran_for < chrono::Duration::seconds(30), "stopped long before its 60 s: {ran_for}");
    // A finished build cannot be canceled; with nothing in progress, builds are accepted again.
    assert_eq!(api_status(owner.cancel_build(workspace.latest_build.id).await).0, StatusCode::CONFLICT);
    let deleted = build(&owner, &workspace, "delete", &[]).await.unwrap();
    owner.cancel_build(deleted.id).await.ok();
}

#[tokio::test]
async fn a_workspace_whose_start_failed_can_still_be_deleted() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let template = push(
        &owner,
        "broken",
        &[("warmspace.hcl", "provisioner = \"echo\"\necho {\n  duration_ms = 10\n  fail_on = [\"start\"]\n}\n")],
    )
    .await;
    let workspace = create(&owner, &template, "broken", &[]).await;
    let (_, failed) = finish(&owner, &workspace.latest_build).await;
    assert_eq!(failed.status, WorkspaceStatus::Failed);
    assert!(failed.job.error.is_some());
    // Deleting the template is refused while a workspace uses it.
    assert_eq!(api_status(owner.delete_template(template.id).await).0, StatusCode::CONFLICT);
    let delete = build(&owner, &workspace, "delete", &[]).await.unwrap();
    assert_eq!(delete.template_version_id, failed.template_version_id, "a delete uses the latest build's version");
    assert_eq!(finish(&owner, &delete).await.1.status, WorkspaceStatus::Deleted);
    owner.delete_template(template.id).await.unwrap();
}

#[tokio::test]
async fn members_see_and_build_only_their_own_workspaces() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let alice = server.user(&owner, "alice", &[]).await;
    let bob = server.user(&owner, "bob", &[]).await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let template = push(&owner, "echo", &[("warmspace.hcl", ECHO)]).await;
    let mine = create(&alice, &template, "mine", &[]).await;
    finish(&alice, &mine.latest_build).await;

    assert_eq!(bob.workspaces(&WorkspacesQuery::default()).await.unwrap().count, 0);
    assert_eq!(api_status(bob.workspace(mine.id).await).0, StatusCode::NOT_FOUND);
    assert_eq!(api_status(build(&bob, &mine, "stop", &[]).await).0, StatusCode::NOT_FOUND);
    assert_eq!(
        api_status(bob.create_workspace("alice", &request(&template, "sneaky", None, &[])).await).0,
        StatusCode::FORBIDDEN
    );
    // Template admins read every workspace but do not build them.
    assert_eq!(admin.workspace(mine.id).await.unwrap().name, "mine");
    assert_eq!(api_status(build(&admin, &mine, "stop", &[]).await).0, StatusCode::FORBIDDEN);

    let q = |q: &str| WorkspacesQuery { q: Some(q.into()), ..Default::default() };
    assert_eq!(owner.workspaces(&q("owner:alice status:running template:echo")).await.unwrap().count, 1);
    assert_eq!(owner.workspaces(&q("owner:alice status:stopped")).await.unwrap().count, 0);
    assert_eq!(owner.workspaces(&q("owner:prebuilds")).await.unwrap().count, 0);
    let (status, body) = api_status(owner.workspaces(&q("status:sleeping")).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "q"));
}

/// The exec backend with the documented environment, state handed from
/// build to build, and a script that hangs killed at its timeout.
#[tokio::test]
async fn exec_scripts_get_their_environment_and_state() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let manifest = r#"
provisioner = "exec"
parameter "cpu-count" {
  type    = "number"
  default = 2
  mutable = true
}
exec {
  start   = "start.sh"
  stop    = "stop.sh"
  timeout = "1s"
}
"#;
    let start = "#!/bin/sh\nenv | grep '^WARMSPACE_' | sort\necho \"pwd=$(pwd)\"\n\
                 echo \"state from build $WARMSPACE_BUILD_NUMBER\" > \"$WARMSPACE_STATE_FILE\"\n\
                 if [ \"$WARMSPACE_PARAM_CPU_COUNT\" = 99 ]; then sleep 600; fi\n";
    let stop = "#!/bin/sh\necho \"stop sees: $(cat \"$WARMSPACE_STATE_FILE\")\"\n";
    let template = push(&owner, "exec", &[("warmspace.hcl", manifest), ("start.sh", start), ("stop.sh", stop)]).await;
    let workspace = create(&owner, &template, "box", &[]).await;
    let (lines, done) = finish(&owner, &workspace.latest_build).await;
    assert_eq!(done.status, WorkspaceStatus::Running, "{lines:#?}");
    let env: BTreeMap<&str, &str> = lines.iter().filter_map(|l| l.split_once('=')).collect();
    let me = owner.user("me").await.unwrap();
    let expect = [
        ("WARMSPACE_URL", server.url.as_str().trim_end_matches('/').to_owned()),
        ("WARMSPACE_TRANSITION", "start".into()),
        ("WARMSPACE_WORKSPACE_ID", workspace.id.to_string()),
        ("WARMSPACE_WORKSPACE_NAME", "box".into()),
        ("WARMSPACE_OWNER_ID", me.id.to_string()),
        ("WARMSPACE_OWNER_NAME", "admin".into()),
        ("WARMSPACE_IS_PREBUILD", "false".into()),
        ("WARMSPACE_IS_CLAIM", "false".into()),
        ("WARMSPACE_PARAM_CPU_COUNT", "2".into()),
        ("WARMSPACE_BINARY", std::env::current_exe().unwrap().display().to_string()),
    ];
    for (name, value) in expect {
        assert_eq!(env.get(name).copied(), Some(value.as_str()), "{name} in {lines:#?}");
    }
    for name in ["WARMSPACE_STATE_FILE", "WARMSPACE_RESULT_FILE"] {
        assert!(env.get(name).is_some_and(|p| Path::new(p).is_absolute()), "{name} in {lines:#?}");
    }
    assert!(env.get("pwd").is_some_and(|p| !p.is_empty()));

    let stopped = build(&owner, &workspace, "stop", &[]).await.unwrap();
    let (lines, done) = finish(&owner, &stopped).await;
    assert_eq!(done.status, WorkspaceStatus::Stopped);
    assert!(lines.contains(&"stop sees: state from build 1".to_owned()), "{lines:#?}");

    let hanging = build(&owner, &workspace, "start", &[("cpu-count", "99")]).await.unwrap();
    let (lines, done) = finish(&owner, &hanging).await;
    assert_eq!(done.status, WorkspaceStatus::Failed, "{lines:#?}");
    assert!(done.job.error.as_deref().unwrap_or_default().contains("timed out"), "{:?}", done.job.error);
}

#[tokio::test]
async fn echo_workspaces_run_simulated_agents_through_the_agent_api() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let manifest = "provisioner = \"echo\"\nagent \"main\" {\n  startup_script = \"echo hi\"\n}\n\
                    agent \"side\" {}\necho {\n  duration_ms = 10\n}\n";
    let template = push(&owner, "sim", &[("warmspace.hcl", manifest)]).await;
    let workspace = create(&owner, &template, "sim", &[]).await;
    finish(&owner, &workspace.latest_build).await;
    let me = owner.user("me").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agents = owner.workspace(workspace.id).await.unwrap().agents;
        let ready = agents.len() == 2
            && agents.iter().all(|a| {
                a.lifecycle_state == warmspace_sdk::AgentLifecycle::Ready
                    && a.connection == warmspace_sdk::AgentConnection::Connected
                    && a.serving_owner_id == Some(me.id)
            });
        if ready {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "simulated agents never became ready: {agents:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<_> = owner.workspace(workspace.id).await.unwrap().agents.into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["main", "side"]);

    // Stopped, the simulated agents hear so on their next heartbeat and leave.
    let stop = build(&owner, &workspace, "stop", &[]).await.unwrap();
    finish(&owner, &stop).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agents = owner.workspace(workspace.id).await.unwrap().agents;
        if agents.iter().all(|a| {
            a.connection == warmspace_sdk::AgentConnection::Disconnected
                && a.lifecycle_state == warmspace_sdk::AgentLifecycle::Off
        }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "simulated agents never left: {agents:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
