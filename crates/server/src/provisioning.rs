//! In-process provisioner daemons and the coordinator they use: the store
//! and pub/sub directly, no HTTP in between.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;
use warmspace_provisioner::{
    AcquiredJob, Coordinator, CoordinatorError, Daemon, DaemonConfig, JobKind, WorkSignal, Worker,
};
use warmspace_sdk::JobLogLine;
use warmspace_store::jobs::{self, JOB_POSTED_CHANNEL, JobRow, NewLog};
use warmspace_store::pubsub::{PubSub, Subscription};
use warmspace_store::{Store, StoreError};
use warmspace_template::Manifest;

/// Idle daemons look for work this often even without a notification.
const BACKUP_POLL: Duration = Duration::from_secs(5);

/// Published on a job's event channel when new log lines are stored.
pub const EVENT_LOGS: &str = "logs";
/// Published on a job's event channel when it has finished.
pub const EVENT_DONE: &str = "done";

#[derive(Clone)]
pub struct LocalCoordinator {
    store: Store,
    pubsub: PubSub,
}

impl LocalCoordinator {
    pub fn new(store: Store, pubsub: PubSub) -> Self {
        LocalCoordinator { store, pubsub }
    }

    /// Announces a job event to log followers on every replica. Runs after
    /// the change has committed; a lost announcement only delays followers
    /// until their backup poll.
    async fn announce(&self, job_id: Uuid, event: &str) {
        if let Err(err) = self.pubsub.publish(&jobs::job_events_channel(job_id), event).await {
            tracing::warn!(%job_id, error = %err, "could not announce a job event");
        }
    }

    async fn acquired(&self, job: JobRow) -> Result<AcquiredJob, StoreError> {
        let kind = match job.kind.as_str() {
            "template_version_import" => {
                let version = self.store.template_version_by_job(job.id).await?;
                let archive = self.store.file_data(version.file_id).await?;
                JobKind::TemplateImport { template_version_id: version.id, archive }
            }
            other => {
                return Err(StoreError::Invalid { field: "type", message: format!("no daemon runs {other} jobs yet") });
            }
        };
        Ok(AcquiredJob { id: job.id, kind })
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
        let worker = jobs::Worker { id: worker.id, name: worker.name.clone(), tags: worker.tags.clone() };
        let Some(job) = self.store.acquire_job(&worker).await.map_err(coordinator_error)? else {
            return Ok(None);
        };
        match self.acquired(job.clone()).await {
            Ok(acquired) => Ok(Some(acquired)),
            // A job this daemon cannot even start must not stay running forever.
            Err(err) => {
                let message = format!("the job could not be started: {err}");
                self.store.fail_job(job.id, worker.id, &message).await.map_err(coordinator_error)?;
                self.announce(job.id, EVENT_DONE).await;
                Err(CoordinatorError::Other(message))
            }
        }
    }

    async fn append_logs(&self, job_id: Uuid, logs: Vec<JobLogLine>) -> Result<(), CoordinatorError> {
        let logs: Vec<NewLog> = logs
            .into_iter()
            .map(|l| NewLog {
                created_at: l.created_at,
                source: l.source.as_str().to_owned(),
                level: l.level.as_str().to_owned(),
                stage: l.stage,
                output: l.output,
            })
            .collect();
        let stored = self.store.append_job_logs(job_id, &logs).await.map_err(coordinator_error)?;
        if stored > 0 {
            self.announce(job_id, EVENT_LOGS).await;
        }
        Ok(())
    }

    async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<(), CoordinatorError> {
        self.store.complete_template_import(job_id, worker_id, &manifest).await.map_err(coordinator_error)?;
        self.announce(job_id, EVENT_DONE).await;
        Ok(())
    }

    async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: String) -> Result<(), CoordinatorError> {
        self.store.fail_job(job_id, worker_id, &error).await.map_err(coordinator_error)?;
        self.announce(job_id, EVENT_DONE).await;
        Ok(())
    }
}

/// The in-process daemons of one server. Stopping waits for jobs under way.
pub struct Daemons {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemons {
    /// Starts `count` daemons named `<host>-1` … `<host>-<count>`.
    pub fn start(coordinator: LocalCoordinator, count: usize) -> Daemons {
        let (stop, stopped) = watch::channel(false);
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "warmspace".into());
        let mut tasks = JoinSet::new();
        for i in 1..=count {
            let config =
                DaemonConfig { name: format!("{host}-{i}"), tags: Default::default(), poll_interval: BACKUP_POLL };
            tasks.spawn(Daemon::new(coordinator.clone(), config).run(stopped.clone()));
        }
        Daemons { stop, tasks }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
