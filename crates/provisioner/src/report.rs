//! Telling the server how a job ended. A result the server refuses (or
//! that cannot even be sent) is replaced by failing the job with the reason,
//! so the job ends now, saying why, rather than when its lease runs out. A
//! report that does not get through is tried again a few times while the
//! daemon still holds the job.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::task::JoinHandle;
use uuid::Uuid;
use warmspace_sdk::{BuildOutcome, JobLogLine};
use warmspace_template::Manifest;

use crate::{Coordinator, CoordinatorError, Worker};

/// How a job ended, as the daemon reports it.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    Imported(Manifest),
    Built(BuildOutcome),
    /// A drift check's finding: what a claim would replace.
    DriftChecked(Vec<String>),
    Failed(String),
}

/// Waits between tries of a report that did not get through: 200 ms
/// doubling, five times (about 6 s in all), well inside a lease.
const RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(5))
    .with_factor(2.0)
    .with_max_times(5);

/// Reports `report` for `job_id`, with `logs`, the last lines of its log.
/// `heartbeat` is the task renewing the job's lease; once it has ended, the
/// lease is lost and trying stops.
pub(crate) async fn report<C: Coordinator>(
    coordinator: &C,
    worker: &Worker,
    job_id: Uuid,
    mut report: Report,
    mut logs: Vec<JobLogLine>,
    heartbeat: &JoinHandle<()>,
) {
    let mut retries = RETRIES.build();
    loop {
        let err = match send(coordinator, worker.id, job_id, report.clone(), &mut logs).await {
            Ok(()) => return,
            Err(err) => err,
        };
        let retry = match err {
            CoordinatorError::JobLost => {
                tracing::warn!(daemon = %worker.name, job = %job_id, "the job was taken from this daemon");
                return;
            }
            CoordinatorError::Other(_) if !heartbeat.is_finished() => retries.next(),
            _ => None,
        };
        if let Some(wait) = retry {
            tracing::warn!(daemon = %worker.name, job = %job_id, error = %err, "cannot report the job; retrying");
            tokio::time::sleep(wait).await;
            continue;
        }
        let reason = match &err {
            CoordinatorError::Other(_) => "the job's result could not be reported",
            _ => "the server refused the job's result",
        };
        match report {
            // Failing the job is the last thing left to report, and it failed too: the lease will end it.
            Report::Failed(_) => {
                tracing::error!(daemon = %worker.name, job = %job_id, error = %err, "cannot report the job");
                return;
            }
            _ => {
                tracing::warn!(daemon = %worker.name, job = %job_id, error = %err, "{reason}; failing the job");
                report = Report::Failed(format!("{reason}: {err}"));
                retries = RETRIES.build();
            }
        }
    }
}

/// A build's completion carries its lines; an import's or a failure's
/// follow them (stored once: a retry does not append them again).
async fn send<C: Coordinator>(
    coordinator: &C,
    worker_id: Uuid,
    job_id: Uuid,
    report: Report,
    logs: &mut Vec<JobLogLine>,
) -> Result<(), CoordinatorError> {
    match report {
        Report::Built(outcome) => coordinator.complete_build(job_id, worker_id, outcome, logs.clone()).await,
        Report::DriftChecked(replaced) => {
            coordinator.complete_drift_check(job_id, worker_id, replaced, logs.clone()).await
        }
        Report::Imported(manifest) => {
            append_first(coordinator, worker_id, job_id, logs).await;
            coordinator.complete_import(job_id, worker_id, manifest).await
        }
        Report::Failed(error) => {
            append_first(coordinator, worker_id, job_id, logs).await;
            coordinator.fail_job(job_id, worker_id, error).await
        }
    }
}

/// Stores `logs` (if any) ahead of a report that cannot carry them, as a
/// batch stored while the job ran: one that fails is lost, not retried.
async fn append_first<C: Coordinator>(coordinator: &C, worker_id: Uuid, job_id: Uuid, logs: &mut Vec<JobLogLine>) {
    if logs.is_empty() {
        return;
    }
    if let Err(err) = coordinator.append_logs(job_id, worker_id, std::mem::take(logs)).await {
        tracing::warn!(%job_id, error = %err, "could not store job log lines");
    }
}
