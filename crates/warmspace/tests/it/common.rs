//! Helpers shared by the binary's end-to-end tests: server processes, the
//! CLI as a user runs it.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warmspace_store::testing::TestDatabase;

pub const BIN: &str = env!("CARGO_BIN_EXE_warmspace");

pub fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A command with a private client config and none of the caller's warmspace settings.
pub fn warmspace(config_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("WARMSPACE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("WARMSPACE_CONFIG_DIR", config_dir).stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("running warmspace");
    assert!(
        output.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn run_failing(cmd: &mut Command) -> String {
    let output = cmd.output().expect("running warmspace");
    assert!(!output.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    pub fn start(config_dir: &Path, args: &[&str]) -> ServerProcess {
        Self::start_on(&free_address(), config_dir, args, &[])
    }

    /// A server on a given address: a restarted server keeps its URL, as agents know it.
    pub fn start_on(address: &str, config_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let child = warmspace(config_dir)
            .args(["server", "--http-address", address])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the server");
        ServerProcess { child, url: format!("http://{address}") }
    }

    /// A server whose standard output and error are pipes the test reads (or closes).
    pub fn start_piped(
        address: &str,
        config_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (ServerProcess, ChildStdout, ChildStderr) {
        let mut child = warmspace(config_dir)
            .args(["server", "--http-address", address])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the server");
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        (ServerProcess { child, url: format!("http://{address}") }, stdout, stderr)
    }

    /// Waits (at most `limit`) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let client = warmspace_sdk::Client::new(self.url.parse().unwrap());
            if let Ok(resp) = client.request(reqwest::Method::GET, "healthz").unwrap().send().await
                && resp.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited with {status} before becoming healthy");
            }
            assert!(Instant::now() < deadline, "the server did not become healthy in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the server exited with {status} on SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // It may have exited already (terminate() waits for it): nothing to kill then.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// What a process writes to one of its pipes, read by a thread until the pipe closes.
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn read(mut pipe: impl Read + Send + 'static) -> Logs {
        let text = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Logs(text)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (at most 60 s) until the text contains `needle`.
    pub async fn wait_for(&self, needle: &str) {
        eventually(Duration::from_secs(60), &format!("{needle:?} in the output"), || async {
            self.text().contains(needle)
        })
        .await;
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    warmspace_store::testing::cluster_temp_dir()
}

/// `warmspace login URL` with the first-user flags: creates the admin on a
/// new server, logs in as them on one that has users.
pub fn login_admin(config: &Path, url: &str) -> Output {
    run(warmspace(config).args([
        "login",
        url,
        "--first-user-username",
        "admin",
        "--first-user-email",
        "admin@example.com",
        "--first-user-password",
        "a long password",
    ]))
}

/// A directory holding a template: `warmspace.hcl` with `manifest`.
pub fn template_dir(manifest: &str) -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::write(dir.path().join("warmspace.hcl"), manifest).unwrap();
    dir
}

/// Writes an executable script `name` into a template directory.
pub fn script(template: &tempfile::TempDir, name: &str, body: &str) {
    let path = template.path().join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// A request for workspace `name` from the template's active version, with
/// no preset, parameters or schedule.
pub fn workspace_request(template_id: uuid::Uuid, name: impl Into<String>) -> warmspace_sdk::CreateWorkspaceRequest {
    warmspace_sdk::CreateWorkspaceRequest {
        template_id,
        template_version_id: None,
        name: name.into(),
        rich_parameter_values: vec![],
        template_version_preset_id: None,
        ttl_ms: None,
        autostart_schedule: None,
    }
}

/// An echo template whose builds take `duration_ms`.
pub fn echo_template(duration_ms: u64) -> tempfile::TempDir {
    template_dir(&format!("provisioner = \"echo\"\necho {{\n  duration_ms = {duration_ms}\n}}\n"))
}

/// Logs in as the admin through the API and returns a client with the session.
pub async fn admin_client(url: &str) -> warmspace_sdk::Client {
    let client = warmspace_sdk::Client::new(url.parse().unwrap());
    let session = client
        .login(&warmspace_sdk::LoginWithPasswordRequest {
            email: "admin@example.com".into(),
            password: "a long password".into(),
        })
        .await
        .unwrap();
    client.with_token(session.session_token)
}

/// Creates a provisioner key with the CLI and returns its secret.
pub fn provisioner_key(config: &Path, name: &str) -> String {
    let created = run(warmspace(config).args(["provisioner", "keys", "create", name]));
    String::from_utf8_lossy(&created.stdout).lines().last().unwrap().trim().to_owned()
}

/// `warmspace provisioner start` as a separate process.
pub struct ExternalDaemon(pub Child);

impl ExternalDaemon {
    pub fn start(config: &Path, url: &str, key: &str, name: &str) -> ExternalDaemon {
        let child = warmspace(config)
            .args(["provisioner", "start", "--key", key, "--name", name])
            .env("WARMSPACE_URL", url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting an external daemon");
        ExternalDaemon(child)
    }

    pub fn kill_hard(&mut self) {
        kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL).unwrap();
        self.0.wait().expect("reaping the killed daemon");
    }
}

impl Drop for ExternalDaemon {
    fn drop(&mut self) {
        // It may have been killed already: nothing to kill then.
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Polls `check` every 100 ms until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An example template as a user runs it: a server whose workspaces are
/// local processes under a temporary `root`, the admin logged in (see
/// [`Self::cli`]), and the example pushed (the exec example as template
/// `local`, unless [`Self::start_with`] says otherwise). The example's
/// processes die with it.
pub struct Example {
    config: PathBuf,
    pub root: PathBuf,
    address: String,
    postgres_url: String,
    _processes: ExampleProcesses,
    _tmp: tempfile::TempDir,
}

impl Example {
    pub async fn start(postgres_url: &str) -> (Example, ServerProcess) {
        Self::start_with(postgres_url, "local", "exec").await
    }

    /// The example in `examples/<directory>`, pushed as template `template`.
    pub async fn start_with(postgres_url: &str, template: &str, directory: &str) -> (Example, ServerProcess) {
        let tmp = temp_dir();
        let root = tmp.path().join("workspaces");
        let example = Example {
            config: tmp.path().join("client"),
            root: root.clone(),
            address: free_address(),
            postgres_url: postgres_url.into(),
            _processes: ExampleProcesses(root),
            _tmp: tmp,
        };
        let server = example.serve().await;
        login_admin(&example.config, &server.url);
        let dir = format!("{}/../../examples/{directory}", env!("CARGO_MANIFEST_DIR"));
        run(example.cli().args(["templates", "push", template, "-d", &dir]));
        (example, server)
    }

    /// The CLI, logged in as the admin.
    pub fn cli(&self) -> Command {
        warmspace(&self.config)
    }

    /// A (re)started server, always on the same address: agents know its URL.
    pub async fn serve(&self) -> ServerProcess {
        let mut server = ServerProcess::start_on(&self.address, &self.config, &self.server_args(), &self.server_env());
        server.wait_healthy().await;
        server
    }

    /// Like [`Self::serve`], with the server's output on pipes the test holds.
    pub async fn serve_piped(&self) -> (ServerProcess, ChildStdout, ChildStderr) {
        let (mut server, stdout, stderr) =
            ServerProcess::start_piped(&self.address, &self.config, &self.server_args(), &self.server_env());
        server.wait_healthy().await;
        (server, stdout, stderr)
    }

    fn server_args(&self) -> [&str; 2] {
        ["--postgres-url", &self.postgres_url]
    }

    fn server_env(&self) -> [(&str, &str); 1] {
        [("WARMSPACE_EXAMPLE_ROOT", self.root.to_str().unwrap())]
    }
}

/// Kills, when dropped, the processes the exec example left under its root
/// (their pids are in `*.pid` files), so a failing test leaks nothing.
pub struct ExampleProcesses(pub PathBuf);

impl Drop for ExampleProcesses {
    fn drop(&mut self) {
        let Ok(workspaces) = std::fs::read_dir(&self.0) else { return };
        for pid_file in workspaces.flatten().flat_map(|w| std::fs::read_dir(w.path()).into_iter().flatten().flatten()) {
            let path = pid_file.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|p| p.trim().parse::<i32>().ok())
            {
                // Already gone is fine.
                kill(Pid::from_raw(pid), Signal::SIGKILL).ok();
            }
        }
    }
}

/// A server process on a fresh database, with the admin logged in through
/// a private CLI config. Bind every field: the database and the directory
/// must outlive the test (the server is stopped before them).
pub struct LoggedIn {
    pub server: ServerProcess,
    pub db: TestDatabase,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl LoggedIn {
    /// `warmspace server --postgres-url … ARGS`, healthy, and logged in to.
    pub async fn start(args: &[&str]) -> LoggedIn {
        let db = TestDatabase::new().await;
        let dir = temp_dir();
        let config = dir.path().join("client");
        let mut server = ServerProcess::start(&config, &[&["--postgres-url", db.url()], args].concat());
        server.wait_healthy().await;
        login_admin(&config, &server.url);
        LoggedIn { server, db, config, dir }
    }
}

/// Waits until the workspace's first agent is ready and connected, serving `owner`.
pub async fn wait_ready(client: &warmspace_sdk::Client, id: uuid::Uuid, owner: uuid::Uuid) {
    eventually(Duration::from_secs(60), "the agent to be ready for its owner", || async {
        let ws = client.workspace(id).await.unwrap();
        ws.agents.first().is_some_and(|a| {
            a.lifecycle_state == warmspace_sdk::AgentLifecycle::Ready
                && a.connection == warmspace_sdk::AgentConnection::Connected
                && a.serving_owner_id == Some(owner)
        })
    })
    .await;
}

/// A prebuild in a pool (owned by the prebuilds user), once there is one.
pub async fn a_prebuild(admin: &warmspace_sdk::Client) -> warmspace_sdk::Workspace {
    let query = warmspace_sdk::WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(60);
    let prebuild = loop {
        if let Some(prebuild) = admin.workspaces(&query).await.unwrap().workspaces.into_iter().next() {
            break prebuild;
        }
        assert!(Instant::now() < deadline, "no prebuild in the pool after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(prebuild.owner_id, warmspace_sdk::PREBUILDS_USER_ID);
    prebuild
}
