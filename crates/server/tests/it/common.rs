//! Helpers shared by the server's API tests.

use std::time::Duration;

use futures::StreamExt;
use tracing_subscriber::Layer;
use uuid::Uuid;
use warmspace_sdk::{
    BuildParameter, Client, ClientError, CreateTemplateRequest, CreateTemplateVersionRequest,
    CreateWorkspaceBuildRequest, CreateWorkspaceRequest, JobStatus, LogEvent, StatusCode, Template, TemplateVersion,
    Workspace, WorkspaceBuild,
};
use warmspace_server::reconciler::Reconciler;
use warmspace_server::testing::TestServer;
use warmspace_store::workspaces::PREBUILDS_USER_ID;

pub fn api_status<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (StatusCode, warmspace_sdk::Response) {
    match result {
        Err(ClientError::Api { status, response }) => (status, response),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Pushes a template made of `files` (path → content; `.sh` files are executable) and waits for its import.
pub async fn push(client: &Client, name: &str, files: &[(&str, &str)]) -> Template {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        if path.ends_with(".sh") {
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }
    let version = upload_version(client, dir.path(), None).await;
    wait_imported(client, &version).await;
    create_template(client, name, &version).await
}

/// Creates a template in the default organization around an imported version, with default settings.
pub async fn create_template(client: &Client, name: &str, version: &TemplateVersion) -> Template {
    try_create_template(client, name, version).await.unwrap()
}

pub async fn try_create_template(
    client: &Client,
    name: &str,
    version: &TemplateVersion,
) -> Result<Template, ClientError> {
    client
        .create_template(
            "default",
            &CreateTemplateRequest {
                name: name.into(),
                template_version_id: version.id,
                display_name: String::new(),
                description: String::new(),
                icon: String::new(),
                settings: Default::default(),
            },
        )
        .await
}

/// Uploads a template directory and creates a version from it (its import queued, not awaited).
pub async fn upload_version(
    client: &Client,
    dir: &std::path::Path,
    template_id: Option<uuid::Uuid>,
) -> TemplateVersion {
    let archive = warmspace_sdk::archive::tar_directory(dir).unwrap();
    let file = client.upload_tar(archive).await.unwrap();
    client
        .create_template_version(
            "default",
            &CreateTemplateVersionRequest {
                file_id: file.id,
                template_id,
                name: None,
                message: String::new(),
                provisioner_tags: Default::default(),
                skip_if_unchanged: false,
            },
        )
        .await
        .unwrap()
}

/// Waits until a version's import has succeeded.
pub async fn wait_imported(client: &Client, version: &TemplateVersion) {
    let mut events = Box::pin(client.follow_template_version_logs(version.id).await.unwrap());
    while let Some(event) = events.next().await {
        if let LogEvent::End(job) = event.unwrap() {
            assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
            return;
        }
    }
    panic!("the import log ended without its end");
}

pub fn values(pairs: &[(&str, &str)]) -> Vec<BuildParameter> {
    pairs.iter().map(|(n, v)| BuildParameter { name: (*n).into(), value: (*v).into() }).collect()
}

pub async fn create(client: &Client, template: &Template, name: &str, parameters: &[(&str, &str)]) -> Workspace {
    client.create_workspace("me", &request(template, name, None, parameters)).await.unwrap()
}

pub async fn build(
    client: &Client,
    workspace: &Workspace,
    transition: &str,
    parameters: &[(&str, &str)],
) -> Result<WorkspaceBuild, ClientError> {
    client
        .create_build(
            workspace.id,
            &CreateWorkspaceBuildRequest {
                transition: transition.parse().expect("a transition"),
                template_version_id: None,
                rich_parameter_values: values(parameters),
            },
        )
        .await
}

/// Follows a build to its end; returns its log lines and the finished build.
pub async fn finish(client: &Client, build: &WorkspaceBuild) -> (Vec<String>, WorkspaceBuild) {
    let mut events = Box::pin(client.follow_build_logs(build.id).await.unwrap());
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(event) = tokio::time::timeout_at(deadline, events.next()).await.expect("the build ends") {
        match event.unwrap() {
            LogEvent::Log(line) => lines.push(line.output),
            LogEvent::End(_) => break,
        }
    }
    (lines, client.build(build.id).await.unwrap())
}

/// An echo template with an immutable `region` (options `us` and `eu`) and a
/// mutable `cpus` (1 to 16); its builds take 20 ms.
pub const ECHO: &str = r#"
provisioner = "echo"
parameter "region" {
  type    = "string"
  default = "us"
  mutable = false
  option {
    name  = "US"
    value = "us"
  }
  option {
    name  = "EU"
    value = "eu"
  }
}
parameter "cpus" {
  type    = "number"
  default = 2
  mutable = true
  validation {
    min = 1
    max = 16
  }
}
echo {
  duration_ms = 20
}
"#;

// Claims: an echo template with a pooled preset `us` and a pool-less `eu`.

/// Two presets: `us` keeps a pool of `instances`, `eu` keeps none.
pub fn manifest(instances: u32, claim: &str, echo: &str) -> String {
    format!(
        "provisioner = \"echo\"\nclaim = \"{claim}\"\n\
         parameter \"region\" {{\n  type = \"string\"\n  default = \"us\"\n}}\n\
         parameter \"cpus\" {{\n  type = \"number\"\n  default = 2\n  mutable = true\n}}\n\
         preset \"us\" {{\n  parameters = {{ region = \"us\", cpus = \"2\" }}\n  prebuilds {{\n    instances = {instances}\n  }}\n}}\n\
         preset \"eu\" {{\n  parameters = {{ region = \"eu\" }}\n}}\n\
         echo {{\n  duration_ms = 1\n{echo}}}\n"
    )
}

/// Runs cycles until the active `us` pool has `want` eligible prebuilds.
pub async fn eligible(server: &TestServer, client: &Client, want: u32) {
    wait_eligible(client, want, Some(&server.reconciler)).await
}

/// Waits, without running cycles itself, until the active `us` pool has `want` eligible prebuilds.
pub async fn until_eligible(client: &Client, want: u32) {
    wait_eligible(client, want, None).await
}

async fn wait_eligible(client: &Client, want: u32, cycles: Option<&Reconciler>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(reconciler) = cycles {
            // A cycle run by the server's own loop (holding the lock) does the work just as well.
            reconciler.run_cycle().await.unwrap();
        }
        let status = client.prebuilds_status().await.unwrap();
        let pool = status.presets.iter().find(|p| p.preset_name == "us" && p.version_active).unwrap();
        if pool.eligible >= want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pool never reached {want}: {pool:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unclaimed prebuilds, running or being built.
pub async fn prebuild_count(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE owner_id = $1 AND NOT deleted")
        .bind(PREBUILDS_USER_ID)
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap()
}

pub fn request(
    template: &Template,
    name: &str,
    preset: Option<Uuid>,
    values: &[(&str, &str)],
) -> CreateWorkspaceRequest {
    CreateWorkspaceRequest {
        template_id: template.id,
        template_version_id: None,
        name: name.into(),
        rich_parameter_values: self::values(values),
        template_version_preset_id: preset,
        ttl_ms: None,
        autostart_schedule: None,
    }
}

pub async fn preset_id(client: &Client, template: &Template, name: &str) -> Uuid {
    client
        .template_version_presets(template.active_version_id)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
        .id
}

pub fn claimed(w: &Workspace) -> bool {
    w.latest_build.reason == warmspace_sdk::BuildReason::Claim
}

/// Counts the statements sqlx sends on this thread (one `sqlx::query` event
/// each): on a current-thread runtime, those of the server under test and
/// of no other test.
///
/// Counted by one global subscriber, installed once, and never by scoped
/// (`set_default`) ones: tracing caches whether a callsite is of interest
/// when the callsite is first reached, and while exactly one scoped
/// subscriber exists it asks only the default of the thread reaching it.
/// Reached first by another test's thread (which has none), the callsite
/// of sqlx's statement events was cached as of no interest to anyone, and
/// the counting test read 0. The global subscriber is interested in those
/// events alone, on every thread, so nothing can cache them away.
pub struct Statements {
    thread: std::thread::ThreadId,
}

thread_local! {
    static STATEMENTS_ON_THIS_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The global subscriber's one layer: counts `sqlx::query` events per thread.
struct CountStatements;

const STATEMENT_TARGET: &str = "sqlx::query";

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if metadata.target() == STATEMENT_TARGET {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == STATEMENT_TARGET {
            STATEMENTS_ON_THIS_THREAD.with(|n| n.set(n.get() + 1));
        }
    }
}

impl Statements {
    /// Counts from now on, on this thread (the test's, on a current-thread runtime).
    pub fn on_this_thread() -> Statements {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt;
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CountStatements))
                .expect("no other global subscriber in the test binary");
        });
        Statements { thread: std::thread::current().id() }
    }

    fn now(&self) -> usize {
        assert_eq!(
            std::thread::current().id(),
            self.thread,
            "statements are counted per thread: count on a current-thread runtime"
        );
        STATEMENTS_ON_THIS_THREAD.with(std::cell::Cell::get)
    }

    /// Statements sent while `work` runs.
    pub async fn during<T>(&self, work: impl Future<Output = T>) -> (usize, T) {
        // Should another thread have reached a statement callsite for the
        // first time while the subscriber was being installed, its interest
        // may have been cached from before: computed afresh here.
        tracing::callsite::rebuild_interest_cache();
        let before = self.now();
        let out = work.await;
        (self.now() - before, out)
    }
}

/// The server's OpenAPI document, fetched with plain reqwest.
pub async fn openapi_document(server: &TestServer) -> serde_json::Value {
    reqwest::get(server.url.join("api/v2/openapi.json").unwrap()).await.unwrap().json().await.unwrap()
}

/// A server configuration with no background work: daemons never poll,
/// nothing is reaped and metrics are collected only at start, so only what
/// a test does touches the database.
pub fn quiet() -> warmspace_server::Config {
    let mut config = warmspace_server::Config::default();
    config.provisioning.poll_interval = Duration::from_secs(3600);
    config.provisioning.reap_interval = Duration::from_secs(3600);
    config.metrics.collect_interval = Duration::from_secs(3600);
    config
}
