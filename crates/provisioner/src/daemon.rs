//! The daemon loop: acquire, run, report; idle until woken or polled.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::import::{ImportFailure, import};
use crate::logs::LogSink;
use crate::{AcquiredJob, Coordinator, CoordinatorError, JobKind, WorkSignal, Worker};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// How often an idle daemon looks for work without being woken.
    pub poll_interval: Duration,
}

pub struct Daemon<C> {
    coordinator: C,
    worker: Worker,
    poll_interval: Duration,
}

impl<C: Coordinator> Daemon<C> {
    pub fn new(coordinator: C, config: DaemonConfig) -> Self {
        let worker = Worker { id: Uuid::new_v4(), name: config.name, tags: config.tags };
        Daemon { coordinator, worker, poll_interval: config.poll_interval }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Runs jobs until `stop` turns true; a job under way is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut signal = loop {
            match self.coordinator.work_signal().await {
                Ok(signal) => break signal,
                Err(err) => {
                    tracing::warn!(daemon = %self.worker.name, error = %err, "cannot listen for jobs; retrying");
                    if wait_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!(daemon = %self.worker.name, "provisioner daemon started");
        while !*stop.borrow() {
            match self.coordinator.acquire(&self.worker).await {
                Ok(Some(job)) => {
                    backoff = Duration::from_millis(100);
                    self.run_job(job).await;
                }
                Ok(None) => {
                    tokio::select! {
                        _ = signal.wait(self.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(daemon = %self.worker.name, error = %err, "cannot acquire jobs");
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(daemon = %self.worker.name, "provisioner daemon stopped");
    }

    async fn run_job(&self, job: AcquiredJob) {
        let (log, flusher) = LogSink::start(self.coordinator.clone(), job.id);
        log.info("", format!("Job acquired by {}", self.worker.name));
        let outcome = match job.kind {
            JobKind::TemplateImport { template_version_id, archive } => {
                tracing::info!(daemon = %self.worker.name, job = %job.id, %template_version_id, "importing template");
                let import_log = log.clone();
                let imported = tokio::task::spawn_blocking(move || import(&archive, &import_log))
                    .await
                    .unwrap_or_else(|e| Err(ImportFailure(vec![format!("the import crashed: {e}")])));
                match imported {
                    Ok(manifest) => {
                        flusher.finish(log).await;
                        self.coordinator.complete_import(job.id, self.worker.id, manifest).await
                    }
                    Err(ImportFailure(problems)) => {
                        flusher.finish(log).await;
                        self.coordinator.fail_job(job.id, self.worker.id, problems.join("\n")).await
                    }
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(CoordinatorError::JobLost) => {
                tracing::warn!(daemon = %self.worker.name, job = %job.id, "the job was taken from this daemon")
            }
            Err(err) => {
                tracing::error!(daemon = %self.worker.name, job = %job.id, error = %err, "cannot report the job")
            }
        }
    }
}

/// Sleeps `delay` unless told to stop first; true when stopping.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.changed() => true,
    }
}
