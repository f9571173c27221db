//! A job's log on its way to the server: lines are batched (a flush per
//! quarter second or per few hundred lines) so a chatty script does not cost
//! a round trip per line; the last batch goes with the job's report.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;
use warmspace_sdk::{JobLogLine, LogLevel, LogSource};

use crate::Coordinator;

const FLUSH_EVERY: Duration = Duration::from_millis(250);
const MAX_BATCH: usize = 512;

/// Where a running job writes its log. Dropping every clone and awaiting
/// [`LogSink::finish`] flushes what is left.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<JobLogLine>,
}

pub struct LogFlusher(JoinHandle<Vec<JobLogLine>>);

impl LogSink {
    /// Lines for job `job_id`, which worker `worker_id` holds.
    pub fn start<C: Coordinator>(coordinator: C, job_id: Uuid, worker_id: Uuid) -> (LogSink, LogFlusher) {
        let (tx, mut rx) = mpsc::unbounded_channel::<JobLogLine>();
        let flusher = tokio::spawn(async move {
            let mut batch = Vec::new();
            // The first flush comes a period in, not at once: a job that ends
            // sooner (most zero-work builds) stores its whole log in one batch.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
            loop {
                tokio::select! {
                    line = rx.recv() => match line {
                        Some(line) => {
                            batch.push(line);
                            if batch.len() >= MAX_BATCH {
                                flush(&coordinator, job_id, worker_id, &mut batch).await;
                            }
                        }
                        // The job has ended: what is left goes with its report.
                        None => return batch,
                    },
                    _ = tick.tick() => flush(&coordinator, job_id, worker_id, &mut batch).await,
                }
            }
        });
        (LogSink { tx }, LogFlusher(flusher))
    }

    /// A sink whose lines go to a channel instead of a coordinator, for tests.
    #[cfg(test)]
    pub fn channel() -> (LogSink, mpsc::UnboundedReceiver<JobLogLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LogSink { tx }, rx)
    }

    pub fn line(&self, source: LogSource, level: LogLevel, stage: &str, output: impl Into<String>) {
        let line = JobLogLine { created_at: Utc::now(), source, level, stage: stage.to_owned(), output: output.into() };
        // The flusher holds the receiver until every sink is dropped, so a send
        // fails only when it died (a panic, the runtime shutting down) or a
        // test dropped its receiver: either way the line has nowhere to go.
        self.tx.send(line).ok();
    }

    /// A line from the daemon itself.
    pub fn info(&self, stage: &str, output: impl Into<String>) {
        self.line(LogSource::ProvisionerDaemon, LogLevel::Info, stage, output);
    }

    pub fn error(&self, stage: &str, output: impl Into<String>) {
        self.line(LogSource::ProvisionerDaemon, LogLevel::Error, stage, output);
    }
}

async fn flush<C: Coordinator>(coordinator: &C, job_id: Uuid, worker_id: Uuid, batch: &mut Vec<JobLogLine>) {
    if batch.is_empty() {
        return;
    }
    if let Err(err) = coordinator.append_logs(job_id, worker_id, std::mem::take(batch)).await {
        tracing::warn!(%job_id, error = %err, "could not store job log lines");
    }
}

impl LogFlusher {
    /// Waits until every line sent through the (dropped) sinks is stored or
    /// returned: the lines not stored yet, for the job's report to carry (a
    /// job that ends within a flush period stores its whole log with its end).
    pub async fn finish(self, sink: LogSink) -> Vec<JobLogLine> {
        drop(sink);
        // A flusher that panicked or was aborted has lost its lines; the job still reports its result.
        self.0.await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "the job log flusher failed; some log lines may be lost");
            Vec::new()
        })
    }
}
