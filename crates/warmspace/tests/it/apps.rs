//! Apps, app statuses and dev containers with a real `warmspace agent`
//! (started by the exec example's scripts): statuses reported from inside
//! the workspace, health checks against a server the test starts and stops,
//! and a stand-in `devcontainer` program on the agent's `PATH`.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use tokio::io::AsyncWriteExt;
use warmspace_sdk::{AppHealth, AppStatusState, Client, DevcontainerState, WorkspaceApps};
use warmspace_store::testing::TestDatabase;

/// Answers every connection with `200 OK` until the task is aborted.
async fn healthy_http_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                // The request is not read: any GET is healthy.
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                stream.write_all(answer).await.ok();
                stream.shutdown().await.ok();
            });
        }
    });
    (port, task)
}

/// The exec example's scripts under a manifest whose agent declares apps
/// and dev containers and whose startup script reports two statuses.
fn template(port: u16, folders: &Path) -> tempfile::TempDir {
    let manifest = format!(
        r#"provisioner = "exec"

agent "main" {{
  startup_script = <<-EOT
    "$WARMSPACE_BINARY" agent status --app web --state working "running tests"
    "$WARMSPACE_BINARY" agent status --app web --state complete --uri https://example.com/pr/1 "tests passed"
  EOT
  app "web" {{
    display_name = "Web"
    url          = "http://127.0.0.1:{port}"
    healthcheck {{
      url       = "http://127.0.0.1:{port}/healthz"
      interval  = "500ms"
      threshold = 2
    }}
  }}
  app "docs" {{
    url = "http://127.0.0.1:{port}/docs"
  }}
  devcontainer "api" {{
    workspace_folder = "{folders}/api"
    config_path      = ".devcontainer/devcontainer.json"
  }}
  devcontainer "broken" {{
    workspace_folder = "{folders}/broken"
  }}
}}

exec {{
  start  = "scripts/start.sh"
  stop   = "scripts/stop.sh"
  delete = "scripts/delete.sh"
}}
"#,
        folders = folders.display()
    );
    exec_template(&manifest)
}

/// A template directory: `manifest` beside the exec example's scripts.
pub(crate) fn exec_template(manifest: &str) -> tempfile::TempDir {
    let dir = template_dir(manifest);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/exec/scripts");
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    for entry in std::fs::read_dir(scripts).unwrap() {
        let entry = entry.unwrap();
        let body = std::fs::read_to_string(entry.path()).unwrap();
        script(&dir, &format!("scripts/{}", entry.file_name().to_str().unwrap()), &body);
    }
    dir
}

/// What the stand-in does for `devcontainer exec`: runs the command after the options, here.
const EXEC: &str = r#"if [ "$1" = exec ]; then
  shift
  while [ $# -gt 0 ]; do
    case "$1" in --workspace-folder|--config|--remote-env) shift 2 ;; *) break ;; esac
  done
  exec "$@"
fi
"#;

/// A `devcontainer` stand-in that records its arguments in `log`, runs the
/// command of an `exec`, fails (the way the real CLI does) for a folder
/// called `broken`, and a `docker` that is merely there.
fn stand_ins(bin: &Path, log: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let devcontainer = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n{EXEC}case \"$*\" in\n  *broken*)\n    echo 'building the image'\n    \
         echo '{{\"outcome\":\"error\",\"message\":\"Command failed: docker build\",\"description\":\"no such image\"}}'\n    \
         exit 1 ;;\nesac\necho '{{\"outcome\":\"success\",\"containerId\":\"abc123\"}}'\n",
        log.display()
    );
    for (name, body) in [("devcontainer", devcontainer.as_str()), ("docker", "#!/bin/sh\nexit 0\n")] {
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

async fn apps(client: &Client, id: uuid::Uuid) -> WorkspaceApps {
    client.workspace_apps(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_health_and_dev_containers_reported_by_a_real_agent() {
    let db = TestDatabase::new().await;
    let tmp = temp_dir();
    let root = tmp.path().join("workspaces");
    let _processes = ExampleProcesses(root.clone());
    let (bin, args_log) = (tmp.path().join("bin"), tmp.path().join("devcontainer-args"));
    stand_ins(&bin, &args_log);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let config = tmp.path().join("client");
    let env = [("WARMSPACE_EXAMPLE_ROOT", root.to_str().unwrap()), ("PATH", path.as_str())];
    let mut server = ServerProcess::start_on(&free_address(), &config, &["--postgres-url", db.url()], &env);
    server.wait_healthy().await;
    login_admin(&config, &server.url);
    let (port, http) = healthy_http_server().await;
    let dir = template(port, &tmp.path().join("folders"));
    run(warmspace(&config).args(["templates", "push", "apps", "-d", dir.path().to_str().unwrap()]));
    run(warmspace(&config).args(["create", "box", "--template", "apps"]));
    let client = admin_client(&server.url).await;
    let id = client.workspace_by_name("me", "box").await.unwrap().id;

    // The startup script's two statuses, and the checked app up.
    eventually(Duration::from_secs(60), "web healthy with its latest status", || async {
        let web = apps(&client, id).await.apps.into_iter().find(|a| a.name == "web").unwrap();
        web.health == AppHealth::Healthy && web.latest_status.is_some_and(|s| s.message == "tests passed")
    })
    .await;
    let shown = apps(&client, id).await;
    let [web, docs] = &shown.apps[..] else { panic!("two apps: {shown:?}") };
    assert_eq!((web.display_name.as_str(), web.url.clone()), ("Web", format!("http://127.0.0.1:{port}")));
    let latest = web.latest_status.as_ref().unwrap();
    assert_eq!((latest.state, latest.uri.as_deref()), (AppStatusState::Complete, Some("https://example.com/pr/1")));
    assert_eq!((docs.name.as_str(), docs.health, docs.latest_status.is_none()), ("docs", AppHealth::Disabled, true));
    let history = client.workspace_app_statuses(id, "web").await.unwrap();
    let history: Vec<_> = history.iter().map(|s| (s.state, s.message.as_str())).collect();
    assert_eq!(history, [(AppStatusState::Complete, "tests passed"), (AppStatusState::Working, "running tests")]);

    // The dev containers: one up, one failed with the CLI's message.
    eventually(Duration::from_secs(30), "both dev containers reported", || async {
        apps(&client, id).await.devcontainers.iter().all(|d| d.state.is_some_and(|s| s != DevcontainerState::Starting))
    })
    .await;
    let devcontainers = apps(&client, id).await.devcontainers;
    let states: Vec<_> =
        devcontainers.iter().map(|d| (d.name.as_str(), d.state.unwrap(), d.error.as_deref())).collect();
    assert_eq!(
        states,
        [
            ("api", DevcontainerState::Running, None),
            ("broken", DevcontainerState::Error, Some("Command failed: docker build: no such image")),
        ]
    );
    let folders = tmp.path().join("folders");
    assert_eq!(
        std::fs::read_to_string(&args_log).unwrap(),
        format!(
            "up --workspace-folder {0}/api --config .devcontainer/devcontainer.json\nup --workspace-folder {0}/broken\n",
            folders.display()
        )
    );

    // A session inside the running dev container: `devcontainer exec` with its folder and configuration.
    eventually(Duration::from_secs(30), "an SSH command to get through", || async {
        warmspace(&config).args(["ssh", "box", "--", "true"]).output().unwrap().status.success()
    })
    .await;
    let inside = warmspace(&config).args(["ssh", "box.api", "--", "echo hi; exit 3"]).output().unwrap();
    let said = |output: &std::process::Output| String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!((inside.status.code(), said(&inside).as_str()), (Some(3), "hi\n"), "{inside:?}");
    let logged = std::fs::read_to_string(&args_log).unwrap();
    let exec = logged.lines().last().unwrap();
    let api = format!("exec --workspace-folder {}/api --config .devcontainer/devcontainer.json ", folders.display());
    assert!(exec.starts_with(&api) && exec.ends_with(" /bin/sh -c echo hi; exit 3"), "{exec}");
    assert!(exec.contains(" --remote-env WARMSPACE_WORKSPACE_NAME=box "), "{exec}");
    // OpenSSH reaches it as warmspace.NAME.CONTAINER.
    let ssh_config = tmp.path().join("ssh_config");
    run(warmspace(&config).args(["config-ssh", "--ssh-config-file", ssh_config.to_str().unwrap()]));
    let openssh = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .args(["warmspace.box.api", "echo from openssh"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!((openssh.status.code(), said(&openssh).as_str()), (Some(0), "from openssh\n"), "{openssh:?}");
    // A container that is not running, or that does not exist, is refused, saying why.
    let refused = run_failing(warmspace(&config).args(["ssh", "box.broken", "--", "true"]));
    assert!(refused.contains("is not running (it is error)") && refused.contains("no such image"), "{refused}");
    let refused = run_failing(warmspace(&config).args(["ssh", "box.nope", "--", "true"]));
    assert!(refused.contains("no dev container \"nope\"") && refused.contains("api, broken"), "{refused}");

    // A status from anywhere in the workspace, through the agent's socket, newest on top in `show`.
    let agent = client.workspace(id).await.unwrap().agents[0].id;
    let socket = std::env::temp_dir().join(format!("warmspace-agent-{agent}.sock"));
    let socket = socket.to_str().unwrap();
    let report = |args: &[&str]| {
        let mut cli = warmspace(&config);
        cli.args(["agent", "status", "--socket", socket]).args(args);
        cli
    };
    run(&mut report(&["--app", "web", "--state", "idle", "waiting for review"]));
    let shown = String::from_utf8(run(warmspace(&config).args(["show", "box"])).stdout).unwrap();
    let line = |needle: &str| shown.find(needle).unwrap_or_else(|| panic!("{needle:?} in:\n{shown}"));
    assert!(line("app:        web (Web)") < line("idle     waiting for review"), "{shown}");
    assert!(line("idle     waiting for review") < line("complete tests passed (https://example.com/pr/1)"));
    assert!(line("complete tests passed") < line("working  running tests"));
    line("app:        docs (docs)");
    line("devcontainer: broken");
    line("error: Command failed: docker build: no such image");
    let json = run(warmspace(&config).args(["show", "box", "-o", "json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((json["name"].as_str(), json["apps"][0]["name"].as_str()), (Some("box"), Some("web")), "{json}");
    assert_eq!(json["apps"][0]["latest_status"]["state"], "idle", "{json}");
    assert_eq!(
        (json["devcontainers"][0]["name"].as_str(), json["devcontainers"][0]["state"].as_str()),
        (Some("api"), Some("running"))
    );
    // Bad input gets the server's clear answer.
    let refused = run_failing(&mut report(&["--app", "nope", "--state", "idle", "x"]));
    assert!(refused.contains("no app called \"nope\"") && refused.contains("web, docs"), "{refused}");
    let refused = run_failing(&mut report(&["--app", "web", "--state", "sleeping", "x"]));
    assert!(refused.contains("sleeping"), "{refused}");
    let no_agent = tmp.path().join("no-agent.sock");
    let mut elsewhere = warmspace(&config);
    elsewhere.args(["agent", "status", "--socket", no_agent.to_str().unwrap(), "--app", "web", "--state", "idle", "x"]);
    let refused = run_failing(&mut elsewhere);
    assert!(refused.contains("cannot reach the workspace agent"), "{refused}");

    // The app goes away: unhealthy after its threshold of failed checks.
    http.abort();
    eventually(Duration::from_secs(30), "web unhealthy", || async {
        apps(&client, id).await.apps[0].health == AppHealth::Unhealthy
    })
    .await;
    let shown = String::from_utf8(run(warmspace(&config).args(["show", "box"])).stdout).unwrap();
    assert!(shown.contains(&format!("app:        web (Web) http://127.0.0.1:{port} — unhealthy")), "{shown}");

    run(warmspace(&config).args(["delete", "box", "-y"]));
    server.terminate();
}
