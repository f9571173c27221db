//! The server's side of provisioning: turning queued jobs into what daemons
//! run and recording what they report (the same code serves in-process
//! daemons directly and external ones over HTTP), the in-process daemons
//! themselves, and the reaper of expired leases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;
use warmspace_provisioner::{
    AcquiredJob, Coordinator, CoordinatorError, Daemon, DaemonConfig, JobKind, JobState, WorkSignal, Worker,
};
use warmspace_sdk::{BuildJob, BuildOutcome, BuildReason, BuildResult, JobLogLine, JobStatus, LogLevel, LogSource};
use warmspace_store::agents::IssuedToken;
use warmspace_store::jobs::{self, JOB_POSTED_CHANNEL, JobRow, NewLog, QueuePolicy};
use warmspace_store::pubsub::{PubSub, Subscription};
use warmspace_store::workspaces::{BuildCompletion, PREBUILDS_USER_ID};
use warmspace_store::{Store, StoreError};
use warmspace_template::{BackendConfig, Manifest, Transition};

use crate::auth::tokens::Token;

/// Idle daemons look for work this often even without a notification.
const BACKUP_POLL: Duration = Duration::from_secs(5);
/// How often expired leases are looked for.
const REAP_EVERY: Duration = Duration::from_secs(2);

/// Published on a job's event channel when new log lines are stored.
pub const EVENT_LOGS: &str = "logs";
/// Published on a job's event channel when it has finished.
pub const EVENT_DONE: &str = "done";

/// Announces a job event to log followers on every replica. Runs after the
/// change has committed; a lost announcement only delays followers until
/// their backup poll.
pub async fn announce(pubsub: &PubSub, job_id: Uuid, event: &str) {
    if let Err(err) = pubsub.publish(&jobs::job_events_channel(job_id), event).await {
        tracing::warn!(%job_id, error = %err, "could not announce a job event");
    }
}

/// The queue as daemons see it.
#[derive(Clone)]
pub struct LocalCoordinator {
    store: Store,
    pubsub: PubSub,
    policy: QueuePolicy,
    /// How workspaces reach this server.
    access_url: String,
}

impl LocalCoordinator {
    pub fn new(store: Store, pubsub: PubSub, policy: QueuePolicy, access_url: String) -> Self {
        LocalCoordinator { store, pubsub, policy, access_url }
    }

    /// Acquires for a worker that may have authenticated with a provisioner key.
    pub async fn acquire_as(
        &self,
        worker: &Worker,
        key_id: Option<String>,
    ) -> Result<Option<AcquiredJob>, CoordinatorError> {
        let queue_worker = jobs::Worker { id: worker.id, name: worker.name.clone(), tags: worker.tags.clone(), key_id };
        let Some(job) = self.store.acquire_job(&queue_worker, &self.policy).await.map_err(coordinator_error)? else {
            return Ok(None);
        };
        match self.describe(&job).await {
            Ok(kind) => Ok(Some(AcquiredJob { id: job.id, heartbeat_every: self.policy.lease / 3, kind })),
            // A job no daemon can even start must not stay running until its lease expires.
            Err(err) => {
                let message = format!("the job could not be started: {err}");
                self.store.fail_job(job.id, worker.id, &message).await.map_err(coordinator_error)?;
                announce(&self.pubsub, job.id, EVENT_DONE).await;
                Err(CoordinatorError::Other(message))
            }
        }
    }

    async fn describe(&self, job: &JobRow) -> Result<JobKind, StoreError> {
        match job.kind.as_str() {
            "template_version_import" => {
                let version = self.store.template_version_by_job(job.id).await?;
                Ok(JobKind::TemplateImport { template_version_id: version.id, file_id: version.file_id })
            }
            _ => {
                let p = self.store.build_payload(job.id).await?;
                let invalid = |message: String| StoreError::Invalid { field: "job", message };
                let backend: BackendConfig = p
                    .provisioner_config
                    .ok_or_else(|| invalid("the template version was never imported".into()))
                    .and_then(|config| serde_json::from_value(config.0).map_err(|e| invalid(e.to_string())))?;
                let transition = p.transition;
                let is_claim = p.reason == BuildReason::Claim;
                // A start build brings up new agents, which need tokens; the
                // raw tokens exist only in this job, never in the database.
                // A claim keeps the tokens the prebuild's agents already run with.
                let agent_tokens = if transition == Transition::Start && !is_claim {
                    self.issue_agent_tokens(p.workspace_id, p.template_version_id).await?
                } else {
                    Default::default()
                };
                Ok(JobKind::WorkspaceBuild(Box::new(BuildJob {
                    build_id: p.build_id,
                    build_number: p.build_number,
                    transition,
                    workspace_id: p.workspace_id,
                    workspace_name: p.workspace_name,
                    owner_id: p.owner_id,
                    owner_name: p.owner_name,
                    is_prebuild: p.owner_id == PREBUILDS_USER_ID,
                    is_claim,
                    parameters: p.parameters.0,
                    agent_tokens,
                    backend,
                    state: p.previous_state.filter(|state| !state.is_empty()),
                    file_id: p.file_id,
                    server_url: self.access_url.clone(),
                })))
            }
        }
    }
}

impl LocalCoordinator {
    /// New tokens for the agents `version_id` declares: agent name → raw token.
    async fn issue_agent_tokens(
        &self,
        workspace_id: Uuid,
        version_id: Uuid,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut raw = BTreeMap::new();
        let mut issued = Vec::new();
        for name in self.store.version_agent_names(version_id).await? {
            let token = Token::generate();
            issued.push(IssuedToken {
                agent_name: name.clone(),
                token_id: token.id.clone(),
                hashed_secret: token.hashed_secret(),
            });
            raw.insert(name, token.to_header_value());
        }
        self.store.issue_agent_tokens(workspace_id, &issued).await?;
        Ok(raw)
    }
}

impl LocalCoordinator {
    /// A claim rebuilt resources the pool had kept warm: say so in the build log.
    async fn warn_replaced(&self, job_id: Uuid, replaced: &[String]) {
        let lines: Vec<NewLog> = replaced
            .iter()
            .map(|address| NewLog {
                created_at: chrono::Utc::now(),
                source: LogSource::ProvisionerDaemon,
                level: LogLevel::Warn,
                stage: "start".into(),
                output: format!(
                    "warning: the claim replaced {address}, which the prebuild had ready; \
                     the template rebuilds it for each new owner, so the pool saves less time than it could"
                ),
            })
            .collect();
        if let Err(err) = self.store.append_job_logs(job_id, &lines).await {
            tracing::warn!(%job_id, error = %err, "cannot log replaced resources");
        }
    }

    /// Template admins hear of claims that rebuilt warm resources.
    async fn tell_template_admins(&self, build: &warmspace_store::workspaces::BuildRow, replaced: &[String]) {
        tracing::warn!(workspace = %build.workspace_id, resources = ?replaced, "a claim replaced prebuilt resources");
        let title = "A prebuild claim replaced warm resources".to_owned();
        let content = format!(
            "Claiming workspace {} (template version {}) rebuilt {}. Those resources are rebuilt for every new owner, \
             so claims from this pool are slower than they could be.",
            build.workspace_id,
            build.template_version_name,
            replaced.join(", ")
        );
        crate::api::notify_template_admins(
            &self.store,
            &self.pubsub,
            "prebuild_resources_replaced",
            &title,
            &content,
            Some(build.workspace_id),
        )
        .await;
    }
}

fn coordinator_error(err: StoreError) -> CoordinatorError {
    match err {
        StoreError::NotFound => CoordinatorError::JobLost,
        other => CoordinatorError::Other(other.to_string()),
    }
}

pub struct JobPosted(Subscription);

impl WorkSignal for JobPosted {
    async fn wait(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.recv()).await;
    }
}

impl Coordinator for LocalCoordinator {
    type Signal = JobPosted;

    async fn work_signal(&self) -> Result<JobPosted, CoordinatorError> {
        let subscription =
            self.pubsub.subscribe(JOB_POSTED_CHANNEL).await.map_err(|e| CoordinatorError::Other(e.to_string()))?;
        Ok(JobPosted(subscription))
    }

    async fn acquire(&self, worker: &Worker) -> Result<Option<AcquiredJob>, CoordinatorError> {
        self.acquire_as(worker, None).await
    }

    async fn file(&self, file_id: Uuid) -> Result<Vec<u8>, CoordinatorError> {
        self.store.file_data(file_id).await.map_err(|e| CoordinatorError::Other(e.to_string()))
    }

    async fn heartbeat(&self, job_id: Uuid, worker_id: Uuid) -> Result<JobState, CoordinatorError> {
        match self.store.heartbeat_job(job_id, worker_id, &self.policy).await.map_err(coordinator_error)? {
            None => Err(CoordinatorError::JobLost),
            Some(JobStatus::Canceling) => Ok(JobState::Canceling),
            Some(_) => Ok(JobState::Running),
        }
    }

    async fn append_logs(&self, job_id: Uuid, logs: Vec<JobLogLine>) -> Result<(), CoordinatorError> {
        let logs: Vec<NewLog> = logs
            .into_iter()
            .map(|l| NewLog {
                created_at: l.created_at,
                source: l.source,
                level: l.level,
                stage: l.stage,
                output: l.output,
            })
            .collect();
        let stored = self.store.append_job_logs(job_id, &logs).await.map_err(coordinator_error)?;
        if stored > 0 {
            announce(&self.pubsub, job_id, EVENT_LOGS).await;
        }
        Ok(())
    }

    async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<(), CoordinatorError> {
        self.store.complete_template_import(job_id, worker_id, &manifest).await.map_err(coordinator_error)?;
        announce(&self.pubsub, job_id, EVENT_DONE).await;
        Ok(())
    }

    async fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        outcome: BuildOutcome,
    ) -> Result<(), CoordinatorError> {
        let replaced: Vec<String> =
            outcome.resources.iter().filter(|r| r.replaced).map(|r| r.address.clone()).collect();
        let claim = match replaced.is_empty() {
            true => None,
            false => self.store.build_by_job(job_id).await.ok().filter(|b| b.reason == BuildReason::Claim),
        };
        if claim.is_some() {
            // Before the job ends, so everyone following the log sees it.
            self.warn_replaced(job_id, &replaced).await;
        }
        let (status, error) = match outcome.result {
            BuildResult::Succeeded => (JobStatus::Succeeded, None),
            BuildResult::Failed(error) => (JobStatus::Failed, Some(error)),
            BuildResult::Canceled => (JobStatus::Canceled, Some("canceled".to_owned())),
        };
        let completion = BuildCompletion {
            status,
            error,
            state: outcome.state,
            resources: outcome.resources.into_iter().map(|r| (r.address, r.kind, r.replaced)).collect(),
        };
        self.store.complete_build(job_id, worker_id, &completion).await.map_err(coordinator_error)?;
        announce(&self.pubsub, job_id, EVENT_DONE).await;
        // A finished build may change a pool: a prebuild became ready, failed, or went away.
        crate::reconciler::trigger(&self.pubsub, "build finished").await;
        if let Some(build) = claim {
            self.tell_template_admins(&build, &replaced).await;
        }
        Ok(())
    }

    async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: String) -> Result<(), CoordinatorError> {
        self.store.fail_job(job_id, worker_id, &error).await.map_err(coordinator_error)?;
        announce(&self.pubsub, job_id, EVENT_DONE).await;
        Ok(())
    }
}

/// The in-process daemons of one server, and the lease reaper. Stopping
/// waits for jobs under way.
pub struct Daemons {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemons {
    /// Starts `count` daemons named `<host>-1` … `<host>-<count>`, and the
    /// reaper that fails jobs whose daemon stopped heartbeating (on every
    /// replica: it is one idempotent UPDATE).
    pub fn start(coordinator: LocalCoordinator, count: usize, binary: PathBuf) -> Daemons {
        let (stop, stopped) = watch::channel(false);
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "warmspace".into());
        let mut tasks = JoinSet::new();
        for i in 1..=count {
            let config = DaemonConfig {
                name: format!("{host}-{i}"),
                tags: Default::default(),
                poll_interval: BACKUP_POLL,
                binary: binary.clone(),
            };
            tasks.spawn(Daemon::new(coordinator.clone(), config).run(stopped.clone()));
        }
        tasks.spawn(reap(coordinator.store, coordinator.pubsub, stopped));
        Daemons { stop, tasks }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn reap(store: Store, pubsub: PubSub, mut stop: watch::Receiver<bool>) {
    loop {
        match store.reap_expired_jobs().await {
            Ok(reaped) => {
                for job_id in &reaped {
                    tracing::warn!(%job_id, "job failed: its daemon stopped heartbeating");
                    announce(&pubsub, *job_id, EVENT_DONE).await;
                }
                if !reaped.is_empty() {
                    crate::reconciler::trigger(&pubsub, "lease expired").await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot reap expired job leases"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REAP_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
