//! # warmspace-agent
//!
//! The process inside a workspace that connects back to the server with the
//! workspace's agent token (`warmspace agent --url URL --token TOKEN`; the
//! echo backend runs it in-process with [`Runner::Simulated`]).
//!
//! What it does, in order:
//!
//! 1. **Manifest.** Fetches who it is and whom it serves (agent, workspace,
//!    owner, env, startup script), retrying with backoff (100 ms → 10 s) while
//!    the server is unreachable or failing.
//! 2. **Startup script.** Reports `starting`, runs the script with
//!    `/bin/sh -c` (the template's env plus `WARMSPACE_AGENT_NAME`,
//!    `WARMSPACE_WORKSPACE_NAME`, `WARMSPACE_OWNER_NAME`, `WARMSPACE_OWNER_ID`,
//!    in `$HOME`), streams its output to the server as the agent's log
//!    (stdout at info, stderr at warn, in batches), then reports `ready`, or
//!    `start_error` with a last line giving the exit status.
//! 3. **Heartbeats** every [`AgentOptions::heartbeat_every`] (the first at
//!    once), carrying the owner it serves; when the server answers that the
//!    workspace stopped, the agent reports `off` and exits.
//! 4. **Re-initialisation** (DESIGN §5.3). A prebuild's agent keeps a
//!    `reinit` event stream open. When the workspace is claimed it fetches a
//!    fresh manifest and re-runs the startup script for the new owner
//!    (`starting` → `ready` again) without restarting. Every decision is taken
//!    against the owner it serves now, so duplicate events, reconnects and
//!    server restarts never re-initialise twice. A regular workspace (409) or
//!    one whose owner it already serves (204) stops the stream for good.
//!
//! 5. **Apps** (`apps.rs`): reports each app's health, then health-checks
//!    those with a check and reports each change.
//! 6. **App statuses** (`status_relay.rs`): relays statuses that the
//!    workspace's processes send to its Unix socket (`warmspace agent status`).
//! 7. **Dev containers** (`devcontainers.rs`): once the first startup
//!    script has run, brings each up with the `devcontainer` CLI and reports
//!    its state. (Simulated agents relay no statuses and run no dev containers.)
//! 8. **Tunnel** (unless [`AgentOptions::tunnel`] is off): an outbound
//!    connection to the server carrying people's connections to the
//!    workspace — SSH sessions served by the agent's in-process SSH server,
//!    forwarded TCP connections to ports on its loopback (see `tunnel` and
//!    `ssh`), reopened with backoff when it drops.
//!
//! A 401 anywhere means the token is invalid or revoked (the workspace was
//! deleted or a new token issued): the agent exits with
//! [`AgentError::Unauthorized`] rather than retrying forever. When the
//! caller's shutdown future completes, it says goodbye (so the server shows it
//! disconnected at once) and returns [`Exit::Shutdown`].

mod apps;
mod devcontainers;
#[cfg(test)]
mod fake_server;
mod heartbeat;
mod logs;
pub mod output;
mod reinit;
mod retry;
mod runner;
mod sftp;
mod ssh;
pub mod status_relay;
mod tunnel;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;
use warmspace_sdk::{AgentLifecycle, AgentManifest, Client, ClientError};

use crate::logs::LogSink;
use crate::runner::Outcome;

/// The default interval between heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long the last words (remaining log lines, `off`, goodbye) may take on
/// the way out.
const FAREWELL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AgentOptions {
    /// The server's URL.
    pub url: url::Url,
    /// The agent's token.
    pub token: String,
    pub runner: Runner,
    /// The interval between heartbeats ([`DEFAULT_HEARTBEAT`]).
    pub heartbeat_every: Duration,
    /// Keep the tunnel open, so people can reach the workspace (SSH, forwarded ports).
    pub tunnel: bool,
}

impl AgentOptions {
    /// Options running the startup script for real, with the default heartbeat.
    pub fn new(url: url::Url, token: impl Into<String>) -> Self {
        AgentOptions {
            url,
            token: token.into(),
            runner: Runner::Shell,
            heartbeat_every: DEFAULT_HEARTBEAT,
            tunnel: true,
        }
    }
}

impl fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentOptions")
            .field("url", &self.url.as_str())
            .field("token", &"<redacted>")
            .field("runner", &self.runner)
            .field("heartbeat_every", &self.heartbeat_every)
            .field("tunnel", &self.tunnel)
            .finish()
    }
}

/// How the startup script is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// Run the startup script with `/bin/sh -c`, env = the process env +
    /// manifest.env + `WARMSPACE_AGENT_NAME`, `WARMSPACE_WORKSPACE_NAME`,
    /// `WARMSPACE_OWNER_NAME`, `WARMSPACE_OWNER_ID`; working dir: `$HOME` or
    /// the current dir.
    Shell,
    /// No process: log that the script "ran", take `delay`, succeed. For the
    /// echo backend's simulated workspaces.
    Simulated { delay: Duration },
}

/// Why the agent stopped, when it stopped as it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The server said the workspace stopped (or was deleted).
    Stopped,
    /// The caller's shutdown future completed.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent token is invalid or revoked (the workspace was deleted or a new token was issued)")]
    Unauthorized,
    /// The server refused a request the agent cannot do without; asking again
    /// would not help.
    #[error("the server refused {what}")]
    Refused {
        what: &'static str,
        #[source]
        source: ClientError,
    },
}

/// Runs the agent until the workspace stops, `shutdown` completes, or the
/// token stops working.
pub async fn run(options: AgentOptions, shutdown: impl Future<Output = ()> + Send) -> Result<Exit, AgentError> {
    // The fields are filled in once the manifest says who the agent is.
    let span = tracing::info_span!("agent", agent = tracing::field::Empty, workspace = tracing::field::Empty);
    let client = Client::new(options.url.clone()).with_agent_token(options.token);
    let (log, uploader) = span.in_scope(|| logs::start(client.clone()));
    let agent =
        Agent { client, runner: options.runner, log, manifest: watch::channel(None).0, sessions: Default::default() };
    async move {
        let outcome = tokio::select! {
            biased;
            () = shutdown => {
                tracing::info!("shutting down");
                Ok(Exit::Shutdown)
            }
            outcome = agent.serve(options.heartbeat_every, options.tunnel) => outcome,
        };
        // Whatever ended the agent, what the script printed is worth keeping.
        let Agent { client, log, .. } = agent;
        uploader.finish(log, FAREWELL).await;
        match &outcome {
            Ok(Exit::Shutdown) => farewell("the goodbye", client.agent_disconnect()).await,
            Ok(Exit::Stopped) => {
                farewell("the off report", client.agent_lifecycle(AgentLifecycle::Off)).await;
                farewell("the goodbye", client.agent_disconnect()).await;
            }
            Err(err) => tracing::warn!(error = %err, "the agent cannot go on"),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// Sends a last word, best-effort: the agent is leaving either way.
async fn farewell<T>(what: &str, request: impl Future<Output = Result<T, ClientError>>) {
    match tokio::time::timeout(FAREWELL, request).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "{what} did not reach the server"),
        Err(_) => tracing::debug!("{what} went unanswered"),
    }
}

/// What the agent's tasks share.
pub(crate) struct Agent {
    client: Client,
    runner: Runner,
    log: LogSink,
    /// The latest manifest, for SSH sessions' environment.
    manifest: watch::Sender<Option<AgentManifest>>,
    /// The connections open through the tunnel.
    sessions: tunnel::Sessions,
}

impl Agent {
    async fn serve(&self, heartbeat_every: Duration, tunnel: bool) -> Result<Exit, AgentError> {
        let manifest = self.manifest().await?;
        tracing::info!(
            workspace_id = %manifest.workspace_id,
            owner = %manifest.owner_name,
            owner_id = %manifest.owner_id,
            "connected to the server"
        );
        let (serving, watching) = watch::channel(manifest.owner_id);
        let personalising = async {
            self.personalise(&manifest).await?;
            tokio::try_join!(reinit::follow(self, &serving), self.bring_up_devcontainers(&manifest))?;
            // Nothing more will happen to the owner; the heartbeats go on.
            std::future::pending::<Result<Infallible, AgentError>>().await
        };
        let tunnel = async {
            if tunnel {
                Err(tunnel::hold(&self.client, self.manifest.subscribe(), &self.sessions).await)
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            exit = heartbeat::beat(&self.client, heartbeat_every, watching, &self.sessions) => exit,
            exit = tunnel => exit,
            Err(err) = personalising => Err(err),
            Err(err) = apps::watch(&self.client, &manifest.apps) => Err(err),
            Err(err) = self.relay_statuses(&manifest) => Err(err),
        }
    }

    /// Brings up the manifest's dev containers, in a workspace that runs processes.
    async fn bring_up_devcontainers(&self, manifest: &AgentManifest) -> Result<(), AgentError> {
        match self.runner {
            Runner::Shell => devcontainers::bring_up(&self.client, &manifest.devcontainers).await,
            Runner::Simulated { .. } => Ok(()),
        }
    }

    /// Relays app statuses from the workspace's processes, in a workspace that runs them.
    async fn relay_statuses(&self, manifest: &AgentManifest) -> Result<Infallible, AgentError> {
        match self.runner {
            Runner::Shell => status_relay::serve(&self.client, &status_relay::socket_path(manifest.agent_id)).await,
            Runner::Simulated { .. } => std::future::pending().await,
        }
    }

    /// Fetches the manifest, retrying while the server is unreachable or failing.
    pub(crate) async fn manifest(&self) -> Result<AgentManifest, AgentError> {
        let manifest = retry::retry("the manifest request", || self.client.agent_manifest()).await?;
        let span = tracing::Span::current();
        span.record("agent", manifest.agent_name.as_str());
        // A claim may rename the workspace.
        span.record("workspace", manifest.workspace_name.as_str());
        self.manifest.send_replace(Some(manifest.clone()));
        Ok(manifest)
    }

    /// Runs the startup script for the manifest's owner, reporting
    /// `starting`, then `ready` or `start_error`.
    pub(crate) async fn personalise(&self, manifest: &AgentManifest) -> Result<(), AgentError> {
        self.report(AgentLifecycle::Starting).await?;
        let outcome = runner::run(&self.runner, manifest, &self.log).await;
        // The log is complete by the time the state says the script is done.
        self.log.flush().await;
        match outcome {
            Outcome::Succeeded => {
                self.report(AgentLifecycle::Ready).await?;
                tracing::info!(owner = %manifest.owner_name, "ready");
            }
            Outcome::Failed(why) => {
                self.report(AgentLifecycle::StartError).await?;
                tracing::warn!(owner = %manifest.owner_name, reason = %why, "the startup script failed");
            }
        }
        Ok(())
    }

    /// Reports a lifecycle state, retrying while the server is unreachable: a
    /// lost `ready` would keep a prebuild out of the pool for good.
    async fn report(&self, state: AgentLifecycle) -> Result<(), AgentError> {
        match retry::retry("the lifecycle report", || self.client.agent_lifecycle(state)).await {
            Ok(_) => Ok(()),
            // The server keeps the agent's state; a report it refuses is its call to make.
            Err(AgentError::Refused { source, .. }) => {
                tracing::warn!(state = state.as_str(), error = %source, "the server refused the lifecycle report");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use uuid::Uuid;
    use warmspace_sdk::{AgentLogLine, PREBUILDS_USER_ID as PREBUILDS, ReinitEvent};

    use super::*;
    use crate::fake_server::{FakeServer, Reply, Request};

    const ALICE: Uuid = Uuid::from_u128(0xa11ce);
    const WORKSPACE: Uuid = Uuid::from_u128(7);
    const SCRIPT: &str = "echo hello $WARMSPACE_OWNER_NAME";

    #[test]
    fn run_can_be_spawned() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let options = AgentOptions::new("http://localhost:1".parse().unwrap(), "token");
        let future = run(options, std::future::pending());
        assert_send(&future);
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let options = AgentOptions::new("http://localhost:1".parse().unwrap(), "s3cr3t-token");
        let debug = format!("{options:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("localhost"), "{debug}");
    }

    #[test]
    fn errors_say_what_happened() {
        assert!(AgentError::Unauthorized.to_string().contains("invalid or revoked"));
    }

    fn manifest(owner_id: Uuid, owner_name: &str, script: &str) -> AgentManifest {
        AgentManifest {
            agent_id: Uuid::from_u128(1),
            agent_name: "main".into(),
            workspace_id: WORKSPACE,
            workspace_name: "ws".into(),
            owner_id,
            owner_name: owner_name.into(),
            template_version_id: Uuid::from_u128(2),
            env: BTreeMap::new(),
            startup_script: script.into(),
            server_url: "http://localhost".into(),
            apps: Vec::new(),
            devcontainers: Vec::new(),
        }
    }

    /// The last path segment: `manifest`, `lifecycle`, `heartbeat`, `reinit` …
    fn endpoint(request: &Request) -> &str {
        request.route().rsplit('/').next().unwrap_or_default()
    }

    fn count(requests: &[Request], name: &str) -> usize {
        requests.iter().filter(|r| endpoint(r) == name).count()
    }

    fn lifecycles(requests: &[Request]) -> Vec<String> {
        requests
            .iter()
            .filter(|r| endpoint(r) == "lifecycle")
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["state"].as_str().unwrap().to_owned())
            .collect()
    }

    fn reinit_owners(requests: &[Request]) -> Vec<Uuid> {
        requests
            .iter()
            .filter(|r| endpoint(r) == "reinit")
            .map(|r| r.path.split_once("owner_id=").unwrap().1.parse().unwrap())
            .collect()
    }

    fn heartbeat_owners(requests: &[Request]) -> Vec<Uuid> {
        requests
            .iter()
            .filter(|r| endpoint(r) == "heartbeat")
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["serving_owner_id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    fn log_outputs(requests: &[Request]) -> Vec<String> {
        requests
            .iter()
            .filter(|r| endpoint(r) == "logs")
            .flat_map(|r| serde_json::from_str::<Vec<AgentLogLine>>(&r.body).unwrap())
            .map(|line| line.output)
            .collect()
    }

    /// Index of the first request satisfying `f`.
    fn position(requests: &[Request], f: impl Fn(&Request) -> bool) -> usize {
        requests.iter().position(f).expect("no such request")
    }

    fn options(server: &FakeServer) -> AgentOptions {
        // The fake server speaks no tunnel; the binary's tests reach real agents through theirs.
        AgentOptions {
            heartbeat_every: Duration::from_millis(20),
            tunnel: false,
            ..AgentOptions::new(server.url.clone(), "token")
        }
    }

    async fn run_for_at_most_10s(
        options: AgentOptions,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<Exit, AgentError> {
        tokio::time::timeout(Duration::from_secs(10), run(options, shutdown)).await.expect("the agent did not exit")
    }

    #[tokio::test]
    async fn a_claimed_prebuild_re_runs_its_script_for_the_new_owner_once() {
        let server = FakeServer::start(|requests| {
            let last = requests.last().unwrap();
            let reinits = count(requests, "reinit");
            match endpoint(last) {
                "manifest" if reinits == 0 => Reply::json(200, manifest(PREBUILDS, "prebuilds", SCRIPT)),
                // Claimed and renamed.
                "manifest" => Reply::json(200, manifest(ALICE, "alice", SCRIPT)),
                "reinit" if reinits == 1 => {
                    let event = ReinitEvent { workspace_id: WORKSPACE, owner_id: ALICE, reason: "claimed".into() };
                    Reply::events(&[("reinit", &serde_json::to_string(&event).unwrap())])
                }
                "reinit" if last.path.ends_with(&ALICE.to_string()) => Reply::status(204),
                "reinit" => Reply::status(500),
                "heartbeat" => {
                    let readies = lifecycles(requests).iter().filter(|s| *s == "ready").count();
                    Reply::json(200, serde_json::json!({ "stop": readies >= 2 && reinits >= 2 }))
                }
                _ => Reply::ok(),
            }
        })
        .await;

        let exit = run_for_at_most_10s(options(&server), std::future::pending()).await.unwrap();

        assert!(matches!(exit, Exit::Stopped), "{exit:?}");
        let requests = server.requests();
        assert_eq!(lifecycles(&requests), ["starting", "ready", "starting", "ready", "off"]);
        // After the re-init the agent serves Alice, so the server answers 204 and it stops asking.
        assert_eq!(reinit_owners(&requests), [PREBUILDS, ALICE]);
        assert_eq!(count(&requests, "manifest"), 2);
        for request in &requests {
            let method = if matches!(endpoint(request), "manifest" | "reinit") { "GET" } else { "POST" };
            assert_eq!(request.method, method, "{}", request.path);
        }
        assert_eq!(log_outputs(&requests), ["hello prebuilds", "hello alice"]);
        // Each script's output is stored before the state says it is done.
        let alice_logs = position(&requests, |r| endpoint(r) == "logs" && r.body.contains("hello alice"));
        let second_ready = requests
            .iter()
            .enumerate()
            .filter(|(_, r)| endpoint(r) == "lifecycle" && r.body.contains("ready"))
            .nth(1)
            .unwrap()
            .0;
        assert!(alice_logs < second_ready);
        let heartbeats = heartbeat_owners(&requests);
        assert_eq!(heartbeats.first(), Some(&PREBUILDS));
        assert_eq!(heartbeats.last(), Some(&ALICE));
    }

    #[tokio::test]
    async fn duplicate_and_legacy_events_for_the_served_owner_change_nothing() {
        let server = FakeServer::start(|requests| {
            let last = requests.last().unwrap();
            let reinits = count(requests, "reinit");
            match endpoint(last) {
                "manifest" => Reply::json(200, manifest(PREBUILDS, "prebuilds", SCRIPT)),
                "reinit" if reinits == 1 => {
                    let duplicate =
                        ReinitEvent { workspace_id: WORKSPACE, owner_id: PREBUILDS, reason: "again".into() };
                    Reply::events(&[
                        ("reinit", &serde_json::to_string(&duplicate).unwrap()),
                        ("something-else", "{}"),
                        // Owner unknown: the manifest says it is still the prebuilds user.
                        ("reinit", "claimed"),
                    ])
                }
                "reinit" => Reply::status(409),
                "heartbeat" => {
                    // Long enough after the 409 to see that nobody asks again.
                    let after = requests.iter().rev().take_while(|r| endpoint(r) != "reinit").count();
                    Reply::json(200, serde_json::json!({ "stop": reinits >= 2 && after >= 10 }))
                }
                _ => Reply::ok(),
            }
        })
        .await;

        let exit = run_for_at_most_10s(options(&server), std::future::pending()).await.unwrap();

        assert!(matches!(exit, Exit::Stopped), "{exit:?}");
        let requests = server.requests();
        assert_eq!(lifecycles(&requests), ["starting", "ready", "off"]);
        // The duplicate costs nothing; the legacy event costs one manifest.
        assert_eq!(count(&requests, "manifest"), 2);
        assert_eq!(reinit_owners(&requests), [PREBUILDS, PREBUILDS]);
        assert_eq!(log_outputs(&requests), ["hello prebuilds"]);
    }

    #[tokio::test]
    async fn a_revoked_token_ends_the_agent_instead_of_retrying() {
        let server = FakeServer::start(|_| Reply::status(401)).await;
        let err = run_for_at_most_10s(options(&server), std::future::pending()).await.unwrap_err();
        assert!(matches!(err, AgentError::Unauthorized), "{err:?}");
        assert_eq!(count(&server.requests(), "manifest"), 1);

        // The manifest is retried while the server fails; a 401 heartbeat ends it all.
        let server = FakeServer::start(|requests| match endpoint(requests.last().unwrap()) {
            "manifest" if count(requests, "manifest") <= 2 => Reply::status(503),
            "manifest" => Reply::json(200, manifest(ALICE, "alice", "")),
            "heartbeat" => Reply::status(401),
            "reinit" => Reply { hold: true, ..Reply::events(&[]) },
            _ => Reply::ok(),
        })
        .await;
        let err = run_for_at_most_10s(options(&server), std::future::pending()).await.unwrap_err();
        assert!(matches!(err, AgentError::Unauthorized), "{err:?}");
        assert_eq!(count(&server.requests(), "manifest"), 3);
        assert!(!lifecycles(&server.requests()).contains(&"off".to_owned()));

        // So does a 401 on the re-init stream.
        let server = FakeServer::start(|requests| match endpoint(requests.last().unwrap()) {
            "manifest" => Reply::json(200, manifest(PREBUILDS, "prebuilds", "")),
            "heartbeat" => Reply::json(200, serde_json::json!({ "stop": false })),
            "reinit" => Reply::status(401),
            _ => Reply::ok(),
        })
        .await;
        let err = run_for_at_most_10s(options(&server), std::future::pending()).await.unwrap_err();
        assert!(matches!(err, AgentError::Unauthorized), "{err:?}");
    }

    #[tokio::test]
    async fn a_failing_script_reports_start_error_and_shutdown_says_goodbye() {
        // Shut down once the server has heard the outcome, rather than after a guessed while.
        let reported = Arc::new(tokio::sync::Notify::new());
        let server = FakeServer::start({
            let reported = reported.clone();
            move |requests| {
                let last = requests.last().unwrap();
                match endpoint(last) {
                    "manifest" => Reply::json(200, manifest(PREBUILDS, "prebuilds", "echo oops >&2; exit 3")),
                    "heartbeat" => Reply::json(200, serde_json::json!({ "stop": false })),
                    // An unclaimed prebuild: the stream stays open, waiting.
                    "reinit" => Reply { hold: true, ..Reply::events(&[]) },
                    "lifecycle" if last.body.contains("start_error") => {
                        // Stored as a permit if the agent is not waiting yet.
                        reported.notify_one();
                        Reply::ok()
                    }
                    _ => Reply::ok(),
                }
            }
        })
        .await;
        let shutdown = async move { reported.notified().await };

        let exit = run_for_at_most_10s(options(&server), shutdown).await.unwrap();

        assert!(matches!(exit, Exit::Shutdown), "{exit:?}");
        let requests = server.requests();
        assert_eq!(lifecycles(&requests), ["starting", "start_error"]);
        assert_eq!(log_outputs(&requests), ["oops", "The startup script exited with status 3"]);
        assert_eq!(endpoint(requests.last().unwrap()), "disconnect");
        assert_eq!(count(&requests, "disconnect"), 1);
    }

    #[tokio::test]
    async fn shutdown_works_while_the_server_is_unreachable() {
        // A port nobody listens on.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
        drop(listener);
        let options = AgentOptions::new(url, "token");
        let exit = run_for_at_most_10s(options, tokio::time::sleep(Duration::from_millis(300))).await.unwrap();
        assert!(matches!(exit, Exit::Shutdown), "{exit:?}");
    }
}
