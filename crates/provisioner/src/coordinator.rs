//! What a daemon needs from the server, whatever carries it.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use uuid::Uuid;
use warmspace_sdk::{BuildJob, BuildOutcome, JobLogLine};
use warmspace_template::Manifest;

/// A daemon as the queue knows it.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: Uuid,
    pub name: String,
    /// The daemon runs only jobs whose tags are all among these.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct AcquiredJob {
    pub id: Uuid,
    /// Renew the job's lease this often.
    pub heartbeat_every: Duration,
    pub kind: JobKind,
}

#[derive(Debug)]
pub enum JobKind {
    /// Parse and validate a template version's files.
    TemplateImport { template_version_id: Uuid, file_id: Uuid },
    /// Run a workspace build.
    WorkspaceBuild(Box<BuildJob>),
    /// Plan the claim of the prebuild the build describes, without applying it.
    DriftCheck(Box<BuildJob>),
}

impl JobKind {
    pub fn file_id(&self) -> Uuid {
        match self {
            JobKind::TemplateImport { file_id, .. } => *file_id,
            JobKind::WorkspaceBuild(build) | JobKind::DriftCheck(build) => build.file_id,
        }
    }
}

/// What a heartbeat learns about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Somebody canceled it: stop the backend and report.
    Canceling,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The daemon no longer holds the job (its lease expired, or it finished elsewhere).
    #[error("this daemon no longer holds the job")]
    JobLost,
    /// The server refused the daemon's credential: retrying cannot help.
    #[error("invalid provisioner key (the server said: {0})")]
    Unauthorized(String),
    /// The server refused the request itself (too large, invalid), or it
    /// could not even be sent: sending it again cannot help.
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached, or failed: worth another try.
    #[error("{0}")]
    Other(String),
}

/// Wakes an idle daemon when work may have arrived.
pub trait WorkSignal: Send {
    /// Returns when a job has been posted since the last call, or after
    /// `timeout` (a backup poll: notifications can be lost).
    fn wait(&mut self, timeout: Duration) -> impl Future<Output = ()> + Send;
}

pub trait Coordinator: Clone + Send + Sync + 'static {
    type Signal: WorkSignal;

    /// Starts listening for posted jobs. Called before the first acquire, so
    /// a job posted in between is not missed.
    fn work_signal(&self) -> impl Future<Output = Result<Self::Signal, CoordinatorError>> + Send;

    /// Takes the next job this worker may run, if any.
    fn acquire(&self, worker: &Worker) -> impl Future<Output = Result<Option<AcquiredJob>, CoordinatorError>> + Send;

    /// The bytes of an uploaded file (a template version's archive).
    fn file(&self, file_id: Uuid) -> impl Future<Output = Result<Vec<u8>, CoordinatorError>> + Send;

    /// Renews the job's lease; says whether it is being canceled.
    fn heartbeat(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
    ) -> impl Future<Output = Result<JobState, CoordinatorError>> + Send;

    /// Appends lines to the log of a job `worker_id` holds.
    fn append_logs(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        logs: Vec<JobLogLine>,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// Records a successful import and its manifest.
    fn complete_import(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        manifest: Manifest,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// Records how a build ended, with the last lines of its log (those
    /// not appended yet): one call where the coordinator can make it one.
    fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        outcome: BuildOutcome,
        logs: Vec<JobLogLine>,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    /// Records a drift check's finding (the addresses a claim would
    /// replace), with the last lines of its log.
    fn complete_drift_check(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        replaced: Vec<String>,
        logs: Vec<JobLogLine>,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;

    fn fail_job(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        error: String,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
}
