//! The daemon loop: acquire, run, report; idle until woken or polled. While
//! a job runs, a heartbeat renews its lease and carries cancellation back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;
use warmspace_sdk::{BuildJob, BuildOutcome, BuildResult};
use warmspace_template::BackendConfig;

use crate::backend::{BuildContext, plan_claim, run_build};
use crate::coordinator::JobState;
use crate::import::{ImportFailure, import};
use crate::logs::LogSink;
use crate::report::{Report, report};
use crate::{AcquiredJob, Coordinator, CoordinatorError, JobKind, WorkSignal, Worker, archive};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// How often an idle daemon looks for work without being woken.
    pub poll_interval: Duration,
    /// The `warmspace` executable scripts may start (`WARMSPACE_BINARY`).
    pub binary: PathBuf,
    /// How long a script that is canceled or times out gets between SIGTERM
    /// and SIGKILL ([`DEFAULT_STOP_GRACE`]).
    pub stop_grace: Duration,
    /// How long a build under way may go on once the daemon is told to stop
    /// ([`DEFAULT_SHUTDOWN_GRACE`]); then it is stopped and failed.
    pub shutdown_grace: Duration,
    /// The Terraform CLI of the `terraform` backend: a path, or a name
    /// looked up on `PATH` ([`DEFAULT_TERRAFORM_BINARY`]).
    pub terraform_binary: PathBuf,
    /// Terraform's plugin cache (`TF_PLUGIN_CACHE_DIR`): providers
    /// downloaded (or mirrored) once, shared by every build. `None`: each
    /// build's `init` fetches its own.
    pub terraform_plugin_cache_dir: Option<PathBuf>,
}

/// The default [`DaemonConfig::terraform_binary`]: `terraform` from `PATH`.
pub const DEFAULT_TERRAFORM_BINARY: &str = "terraform";

/// The default [`DaemonConfig::stop_grace`]: long enough for a script that
/// traps TERM to tear down what it started, short enough that a canceled
/// build does not linger.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// The default [`DaemonConfig::shutdown_grace`]: most builds that are about
/// to finish do, and stopping never waits for the longest script.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Daemon<C> {
    coordinator: C,
    worker: Worker,
    poll_interval: Duration,
    binary: PathBuf,
    stop_grace: Duration,
    shutdown_grace: Duration,
    terraform: PathBuf,
    terraform_plugin_cache: Option<PathBuf>,
}

impl<C: Coordinator> Daemon<C> {
    pub fn new(coordinator: C, config: DaemonConfig) -> Self {
        let worker = Worker { id: Uuid::new_v4(), name: config.name, tags: config.tags };
        Daemon {
            coordinator,
            worker,
            poll_interval: config.poll_interval,
            binary: config.binary,
            stop_grace: config.stop_grace,
            shutdown_grace: config.shutdown_grace,
            terraform: config.terraform_binary,
            terraform_plugin_cache: config.terraform_plugin_cache_dir,
        }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Runs jobs until `stop` turns true. A build under way gets the
    /// shutdown grace to finish; then it is stopped and reported failed, so
    /// its lease is given up now rather than left to expire. Ends early when
    /// the server refuses the daemon's credential, which no retry can mend;
    /// any other failure to reach the server is retried.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), CoordinatorError> {
        let mut backoff = BACKOFF.build();
        let mut signal = loop {
            match self.coordinator.work_signal().await {
                Ok(signal) => break signal,
                Err(err @ CoordinatorError::Unauthorized(_)) => return Err(err),
                Err(err) => {
                    tracing::warn!(daemon = %self.worker.name, error = %err, "cannot listen for jobs; retrying");
                    if wait_or_stop(&mut stop, &mut backoff).await {
                        return Ok(());
                    }
                }
            }
        };
        tracing::info!(daemon = %self.worker.name, "provisioner daemon started");
        while !*stop.borrow() {
            match self.coordinator.acquire(&self.worker).await {
                Ok(Some(job)) => {
                    // The coordinator answers again: a later failure starts over from the shortest wait.
                    backoff = BACKOFF.build();
                    self.run_job(job, stop.clone()).await;
                }
                Ok(None) => {
                    tokio::select! {
                        _ = signal.wait(self.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(err @ CoordinatorError::Unauthorized(_)) => return Err(err),
                Err(err) => {
                    tracing::warn!(daemon = %self.worker.name, error = %err, "cannot acquire jobs");
                    if wait_or_stop(&mut stop, &mut backoff).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(daemon = %self.worker.name, "provisioner daemon stopped");
        Ok(())
    }

    async fn run_job(&self, job: AcquiredJob, stop: watch::Receiver<bool>) {
        let (log, flusher) = LogSink::start(self.coordinator.clone(), job.id, self.worker.id);
        log.info("", format!("Job acquired by {}", self.worker.name));
        let (cancel, heartbeat) = self.heartbeat(job.id, job.heartbeat_every);
        // The echo backend reads no files: its builds fetch and unpack none.
        let archive = match &job.kind {
            JobKind::WorkspaceBuild(build) if !needs_files(&build.backend) => Ok(Vec::new()),
            kind => self.coordinator.file(kind.file_id()).await,
        };
        let (outcome, logs) = match (job.kind, archive) {
            (_, Err(err)) => {
                let message = format!("cannot fetch the template's files: {err}");
                log.error("", &message);
                (Report::Failed(message), flusher.finish(log).await)
            }
            (JobKind::TemplateImport { template_version_id, .. }, Ok(archive)) => {
                tracing::info!(daemon = %self.worker.name, job = %job.id, %template_version_id, "importing template");
                let (import_log, terraform) = (log.clone(), self.terraform.clone());
                let imported = tokio::task::spawn_blocking(move || import(&archive, &import_log, &terraform))
                    .await
                    .unwrap_or_else(|e| Err(ImportFailure(vec![format!("the import crashed: {e}")])));
                let logs = flusher.finish(log).await;
                match imported {
                    Ok(manifest) => (Report::Imported(manifest), logs),
                    Err(ImportFailure(problems)) => (Report::Failed(problems.join("\n")), logs),
                }
            }
            (JobKind::WorkspaceBuild(build), Ok(archive)) => {
                tracing::info!(
                    daemon = %self.worker.name, job = %job.id, workspace = %build.workspace_name,
                    transition = build.transition.as_str(), "running build"
                );
                let outcome = self.build_within_grace(&build, archive, &log, cancel, stop).await;
                (Report::Built(outcome), flusher.finish(log).await)
            }
            (JobKind::DriftCheck(check), Ok(archive)) => {
                tracing::info!(
                    daemon = %self.worker.name, job = %job.id, workspace = %check.workspace_name, "checking drift"
                );
                let found = self.plan_claim(&check, archive, &log, cancel.receiver).await;
                if let Err(message) = &found {
                    log.error("", message);
                }
                let logs = flusher.finish(log).await;
                (found.map_or_else(Report::Failed, Report::DriftChecked), logs)
            }
        };
        report(&self.coordinator, &self.worker, job.id, outcome, logs, &heartbeat).await;
        heartbeat.abort();
    }

    /// Runs the build; if the daemon is told to stop meanwhile, lets it go
    /// on for the shutdown grace, then stops it and fails it. Failed rather
    /// than queued again: the backend was interrupted part-way and may have
    /// left half-made resources that a silent re-run would build twice; a
    /// failed build is visible, and a person or the reconciler decides what
    /// follows — as when a lease expires.
    async fn build_within_grace(
        &self,
        job: &BuildJob,
        archive: Vec<u8>,
        log: &LogSink,
        cancel: Cancel,
        mut stop: watch::Receiver<bool>,
    ) -> BuildOutcome {
        let build = self.build(job, archive, log, cancel.receiver);
        tokio::pin!(build);
        let grace = self.shutdown_grace;
        tokio::select! {
            outcome = &mut build => return outcome,
            // A closed channel means the daemon's owner is gone: stopping too.
            _ = async { stop.wait_for(|stop| *stop).await.ok(); tokio::time::sleep(grace).await } => {}
        }
        let message = format!(
            "the provisioner daemon {} shut down before the build finished (shutdown grace {grace:?})",
            self.worker.name
        );
        log.error("", &message);
        // The heartbeat may have ended (job lost): then nothing listens, and the build is stopping anyway.
        cancel.sender.send(true).ok();
        let outcome = build.await;
        match outcome.result {
            BuildResult::Canceled => BuildOutcome { result: BuildResult::Interrupted(message), ..outcome },
            // It ended on its own while being stopped: that is how it ended.
            _ => outcome,
        }
    }

    async fn build(
        &self,
        job: &BuildJob,
        archive: Vec<u8>,
        log: &LogSink,
        cancel: watch::Receiver<bool>,
    ) -> BuildOutcome {
        let failed = |message: String| BuildOutcome {
            result: BuildResult::Failed(message),
            state: job.state.clone(),
            resources: Vec::new(),
            timings: Vec::new(),
        };
        if !needs_files(&job.backend) {
            return run_build(self.context(job, Path::new(""), log, cancel)).await;
        }
        let files = match unpacked(archive).await {
            Ok(files) => files,
            Err(message) => return failed(message),
        };
        run_build(self.context(job, files.path(), log, cancel)).await
    }

    /// The drift check `job` describes, in the template's files unpacked
    /// into a directory of its own: the addresses a claim would replace.
    async fn plan_claim(
        &self,
        job: &BuildJob,
        archive: Vec<u8>,
        log: &LogSink,
        cancel: watch::Receiver<bool>,
    ) -> Result<Vec<String>, String> {
        let files = unpacked(archive).await?;
        plan_claim(self.context(job, files.path(), log, cancel)).await
    }

    fn context<'a>(
        &'a self,
        job: &'a BuildJob,
        files: &'a Path,
        log: &'a LogSink,
        cancel: watch::Receiver<bool>,
    ) -> BuildContext<'a> {
        BuildContext {
            job,
            files,
            log,
            cancel,
            binary: &self.binary,
            stop_grace: self.stop_grace,
            terraform: &self.terraform,
            terraform_plugin_cache: self.terraform_plugin_cache.as_deref(),
        }
    }

    /// Renews the job's lease until aborted. The returned [`Cancel`] turns
    /// true when the job must stop: canceled, or no longer ours.
    fn heartbeat(&self, job_id: Uuid, every: Duration) -> (Cancel, JoinHandle<()>) {
        let (sender, receiver) = watch::channel(false);
        let stop_job = sender.clone();
        let (coordinator, worker) = (self.coordinator.clone(), self.worker.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match coordinator.heartbeat(job_id, worker.id).await {
                    Ok(JobState::Running) => {}
                    Ok(JobState::Canceling) => {
                        tracing::info!(daemon = %worker.name, job = %job_id, "job canceled; stopping it");
                        // The receiver goes away once the job has ended; then there is nothing left to stop.
                        stop_job.send(true).ok();
                    }
                    Err(CoordinatorError::JobLost) => {
                        tracing::warn!(daemon = %worker.name, job = %job_id, "lease lost; stopping the job");
                        // As above: a job that has already ended needs no stopping.
                        stop_job.send(true).ok();
                        return;
                    }
                    // A missed heartbeat is retried; the lease outlasts a few of them.
                    Err(err) => tracing::warn!(daemon = %worker.name, job = %job_id, error = %err, "heartbeat failed"),
                }
            }
        });
        (Cancel { sender, receiver }, task)
    }
}

/// The template's files, unpacked into a new directory (removed when dropped).
async fn unpacked(archive: Vec<u8>) -> Result<tempfile::TempDir, String> {
    let files = tempfile::Builder::new()
        .prefix("warmspace-build-")
        .tempdir()
        .map_err(|err| format!("cannot create a working directory: {err}"))?;
    let target = files.path().to_owned();
    match tokio::task::spawn_blocking(move || archive::unpack(&archive, &target)).await {
        Ok(Ok(())) => Ok(files),
        Ok(Err(err)) => Err(format!("cannot unpack the template's files: {err}")),
        Err(err) => Err(format!("cannot unpack the template's files: {err}")),
    }
}

/// Whether a build with this backend reads the template's files (the echo
/// backend simulates, and reads none).
fn needs_files(backend: &BackendConfig) -> bool {
    !matches!(backend, BackendConfig::Echo(_))
}

/// Stops a job's backend when true: set by the heartbeat (canceled, lease
/// lost) or by the daemon (shutdown grace over).
struct Cancel {
    sender: watch::Sender<bool>,
    receiver: watch::Receiver<bool>,
}

/// The longest wait between two attempts to reach the coordinator.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Waits between attempts to reach the coordinator: 100 ms doubling to
/// [`MAX_BACKOFF`], for as long as the daemon runs.
const BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(MAX_BACKOFF)
    .with_factor(2.0)
    .without_max_times();

/// Sleeps the backoff's next wait unless told to stop first; true when stopping.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, backoff: &mut impl Iterator<Item = Duration>) -> bool {
    // Built without a limit on attempts, the backoff never runs out; the maximum only satisfies the type.
    let delay = backoff.next().unwrap_or(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_100ms_up_to_5s_and_never_runs_out() {
        // backon doubles in f32: compare to the nearest millisecond.
        let waits: Vec<u128> =
            BACKOFF.build().take(9).map(|wait| (wait + Duration::from_micros(500)).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(BACKOFF.build().take(10_000).filter(|&wait| wait <= MAX_BACKOFF).count(), 10_000);
    }
}
