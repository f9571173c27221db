//! The server's in-process provisioner daemons: the [`Coordinator`] they
//! reach the queue through (the domain's provisioning operations, called
//! directly rather than over HTTP), the daemons themselves, and the reaper
//! of expired leases.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;
use warmspace_provisioner::{
    AcquiredJob, Coordinator, CoordinatorError, Daemon, DaemonConfig, JobState, WorkSignal, Worker,
};
use warmspace_sdk::{BuildOutcome, JobLogLine};
use warmspace_store::pubsub::Subscription;
use warmspace_template::Manifest;

use crate::domain::{self, Domain};

/// The queue as in-process daemons see it.
#[derive(Clone)]
pub struct LocalCoordinator {
    domain: Domain,
}

impl LocalCoordinator {
    pub fn new(domain: Domain) -> Self {
        LocalCoordinator { domain }
    }
}

fn coordinator_error(err: domain::Error) -> CoordinatorError {
    use domain::Error as E;
    match err {
        E::JobLost => CoordinatorError::JobLost,
        // A database that failed may answer the next try.
        E::Internal(_) => CoordinatorError::Other(err.to_string()),
        E::Unauthenticated { .. } => CoordinatorError::Unauthorized(err.to_string()),
        E::Invalid(_) | E::Forbidden { .. } | E::NotFound(_) | E::Conflict { .. } | E::TooLarge { .. } => {
            CoordinatorError::Refused(err.to_string())
        }
    }
}

pub struct JobPosted(Subscription);

impl WorkSignal for JobPosted {
    async fn wait(&mut self, timeout: Duration) {
        // Woken by a posted job, or not: either way the daemon looks for work.
        if let Ok(None) = tokio::time::timeout(timeout, self.0.recv()).await {
            // Announcements have stopped (the server is going down): keep the backup poll's pace.
            tokio::time::sleep(timeout).await;
        }
    }
}

impl Coordinator for LocalCoordinator {
    type Signal = JobPosted;

    async fn work_signal(&self) -> Result<JobPosted, CoordinatorError> {
        let subscription =
            self.domain.events().job_posted().await.map_err(|e| CoordinatorError::Other(e.to_string()))?;
        Ok(JobPosted(subscription))
    }

    async fn acquire(&self, worker: &Worker) -> Result<Option<AcquiredJob>, CoordinatorError> {
        self.domain.acquire_job(worker, None).await.map_err(coordinator_error)
    }

    async fn file(&self, file_id: Uuid) -> Result<Vec<u8>, CoordinatorError> {
        self.domain.daemon_file(file_id).await.map_err(coordinator_error)
    }

    async fn heartbeat(&self, job_id: Uuid, worker_id: Uuid) -> Result<JobState, CoordinatorError> {
        self.domain.job_heartbeat(job_id, worker_id).await.map_err(coordinator_error)
    }

    async fn append_logs(&self, job_id: Uuid, worker_id: Uuid, logs: Vec<JobLogLine>) -> Result<(), CoordinatorError> {
        self.domain.append_job_logs(job_id, worker_id, None, logs).await.map_err(coordinator_error)
    }

    async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<(), CoordinatorError> {
        self.domain.complete_import(job_id, worker_id, manifest).await.map_err(coordinator_error)
    }

    async fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        outcome: BuildOutcome,
    ) -> Result<(), CoordinatorError> {
        self.domain.complete_build(job_id, worker_id, outcome).await.map_err(coordinator_error)
    }

    async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: String) -> Result<(), CoordinatorError> {
        self.domain.fail_job(job_id, worker_id, &error).await.map_err(coordinator_error)
    }
}

/// The in-process daemons of one server, and the lease reaper. Stopping
/// gives builds under way their shutdown grace, no more.
pub struct Daemons {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemons {
    /// Starts `count` daemons named `<host>-1` … `<host>-<count>`, and the
    /// reaper that fails jobs whose daemon stopped heartbeating (on every
    /// replica: it is one idempotent update).
    pub fn start(domain: Domain, count: usize, binary: PathBuf) -> Daemons {
        let (stop, stopped) = watch::channel(false);
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "warmspace".into());
        let timing = domain.config().provisioning.clone();
        let mut tasks = JoinSet::new();
        for i in 1..=count {
            let config = DaemonConfig {
                name: format!("{host}-{i}"),
                tags: Default::default(),
                poll_interval: timing.poll_interval,
                binary: binary.clone(),
                stop_grace: timing.stop_grace,
                shutdown_grace: timing.shutdown_grace,
            };
            let daemon = Daemon::new(LocalCoordinator::new(domain.clone()), config);
            let stopped = stopped.clone();
            tasks.spawn(async move {
                // In-process daemons present no credential, so nothing can refuse one.
                if let Err(err) = daemon.run(stopped).await {
                    tracing::error!(error = %err, "provisioner daemon stopped");
                }
            });
        }
        tasks.spawn(reap(domain, timing.reap_interval, stopped));
        Daemons { stop, tasks }
    }

    /// Tells the daemons to take no more jobs and to wind down those under
    /// way; [`Daemons::stop`] then waits for them.
    pub fn begin_stop(&self) -> impl FnOnce() + Send + 'static {
        let stop = self.stop.clone();
        move || {
            stop.send_replace(true);
        }
    }

    pub async fn stop(mut self) {
        // Nobody listening means every task has ended already.
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn reap(domain: Domain, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(err) = domain.reap_expired_jobs().await {
            tracing::warn!(error = %err, "cannot reap expired job leases");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
