//! The agent's log on its way to the server: startup-script lines are
//! batched (a flush every quarter second or every 200 lines) so a chatty
//! script does not cost a round trip per line.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;
use warmspace_sdk::{AgentLogLine, Client, ClientError, LogLevel};

use crate::retry::{Failure, classify};

pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
pub const MAX_BATCH: usize = 200;
/// Lines kept for another try while the server is unreachable; past this the
/// oldest are dropped, so an agent cut off from its server cannot run out of
/// memory.
const MAX_PENDING: usize = 10_000;

/// Where the agent's log lines go.
pub trait LogUpload: Send + Sync + 'static {
    fn upload(&self, lines: &[AgentLogLine]) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl LogUpload for Client {
    async fn upload(&self, lines: &[AgentLogLine]) -> Result<(), ClientError> {
        self.append_agent_logs(lines).await.map(|_| ())
    }
}

/// What travels from a [`LogSink`] to its uploader.
#[derive(Debug)]
pub enum Entry {
    Line(AgentLogLine),
    /// Upload what came before now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Where the startup script's output and the agent's own notes are written.
#[derive(Clone, Debug)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<Entry>,
}

impl LogSink {
    /// A sink whose entries go to a channel rather than to a server.
    pub fn channel() -> (LogSink, mpsc::UnboundedReceiver<Entry>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LogSink { tx }, rx)
    }

    pub fn line(&self, level: LogLevel, output: impl Into<String>) {
        let line = AgentLogLine { created_at: Utc::now(), level, output: output.into() };
        // The uploader holds the receiver until every sink is dropped, so a
        // send fails only when it was given up on (the agent is leaving) or a
        // test dropped its receiver: either way the line has nowhere to go.
        self.tx.send(Entry::Line(line)).ok();
    }

    pub fn info(&self, output: impl Into<String>) {
        self.line(LogLevel::Info, output);
    }

    pub fn error(&self, output: impl Into<String>) {
        self.line(LogLevel::Error, output);
    }

    /// Waits until every line written before has been offered to the server
    /// (once: a failed upload does not hold the caller up).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Entry::Flush(ack)).is_ok() {
            // No answer means the uploader is gone (the agent is leaving):
            // there is nothing left to wait for.
            done.await.ok();
        }
    }
}

/// The task uploading a sink's lines.
pub struct Uploader(JoinHandle<()>);

/// Starts uploading what the returned sink receives (logging in the current span).
pub fn start<U: LogUpload>(upload: U) -> (LogSink, Uploader) {
    let (sink, rx) = LogSink::channel();
    (sink, Uploader(tokio::spawn(upload_lines(upload, rx).in_current_span())))
}

impl Uploader {
    /// Uploads what is left once `sink` (the last of its clones) is dropped,
    /// giving up after `patience`.
    pub async fn finish(mut self, sink: LogSink, patience: Duration) {
        drop(sink);
        if tokio::time::timeout(patience, &mut self.0).await.is_err() {
            self.0.abort();
        }
    }
}

async fn upload_lines<U: LogUpload>(upload: U, mut rx: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            entry = rx.recv() => match entry {
                Some(Entry::Line(line)) => {
                    batch.push(line);
                    if batch.len() >= MAX_BATCH {
                        send(&upload, &mut batch).await;
                    }
                }
                Some(Entry::Flush(ack)) => {
                    send(&upload, &mut batch).await;
                    // The caller may have stopped waiting (its task was dropped); the lines went up regardless.
                    ack.send(()).ok();
                }
                None => return send(&upload, &mut batch).await,
            },
            _ = tick.tick() => send(&upload, &mut batch).await,
        }
    }
}

/// Uploads `batch` in chunks of at most [`MAX_BATCH`] lines. What the server
/// could not take for now stays in `batch` for the next try.
async fn send<U: LogUpload>(upload: &U, batch: &mut Vec<AgentLogLine>) {
    while !batch.is_empty() {
        let chunk = batch.len().min(MAX_BATCH);
        match upload.upload(&batch[..chunk]).await {
            Ok(()) => {
                batch.drain(..chunk);
            }
            Err(err) if classify(&err) == Failure::Transient => {
                tracing::debug!(error = %err, pending = batch.len(), "cannot upload log lines yet");
                if batch.len() > MAX_PENDING {
                    let dropped = batch.len() - MAX_PENDING;
                    batch.drain(..dropped);
                    tracing::warn!(dropped, "the server has been unreachable for long; dropped the oldest log lines");
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, lines = chunk, "the server refused log lines; dropped them");
                batch.drain(..chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use warmspace_sdk::StatusCode;

    use super::*;

    /// Records each upload's lines; fails the first `failures` uploads with a 503.
    #[derive(Clone, Default)]
    struct Recorder {
        uploads: Arc<Mutex<Vec<Vec<String>>>>,
        failures: Arc<Mutex<usize>>,
    }

    impl LogUpload for Recorder {
        async fn upload(&self, lines: &[AgentLogLine]) -> Result<(), ClientError> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(ClientError::Unexpected { status: StatusCode::SERVICE_UNAVAILABLE, body: String::new() });
            }
            self.uploads.lock().unwrap().push(lines.iter().map(|l| l.output.clone()).collect());
            Ok(())
        }
    }

    impl Recorder {
        fn sizes(&self) -> Vec<usize> {
            self.uploads.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    #[tokio::test]
    async fn lines_go_up_in_batches_of_200_and_on_flush() {
        let recorder = Recorder::default();
        let (sink, _uploader) = start(recorder.clone());
        // The test's runtime is single-threaded, so the uploader sees all of
        // these at once, well before its first tick.
        for i in 0..450 {
            sink.info(format!("line {i}"));
        }
        sink.flush().await;
        assert_eq!(recorder.sizes(), [200, 200, 50]);
        let all: Vec<String> = recorder.uploads.lock().unwrap().concat();
        assert_eq!(all, (0..450).map(|i| format!("line {i}")).collect::<Vec<_>>());
    }

    /// On paused time: the clock moves only as far as the test takes it.
    #[tokio::test(start_paused = true)]
    async fn a_few_lines_go_up_within_a_tick() {
        let recorder = Recorder::default();
        let (sink, _uploader) = start(recorder.clone());
        sink.info("one");
        sink.line(LogLevel::Warn, "two");
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while recorder.sizes().is_empty() {
            assert!(tokio::time::Instant::now() <= deadline, "no upload within a tick without a flush");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(recorder.sizes(), [2]);
    }

    #[tokio::test]
    async fn lines_survive_an_unreachable_server_and_finish_uploads_the_rest() {
        let recorder = Recorder::default();
        *recorder.failures.lock().unwrap() = 1;
        let (sink, uploader) = start(recorder.clone());
        sink.info("kept");
        sink.flush().await;
        assert!(recorder.sizes().is_empty());
        sink.info("later");
        uploader.finish(sink, Duration::from_secs(5)).await;
        assert_eq!(*recorder.uploads.lock().unwrap(), [vec!["kept".to_owned(), "later".to_owned()]]);
    }

    #[tokio::test]
    async fn refused_lines_are_dropped_not_retried_forever() {
        struct Refuser(Arc<Mutex<usize>>);
        impl LogUpload for Refuser {
            async fn upload(&self, _: &[AgentLogLine]) -> Result<(), ClientError> {
                *self.0.lock().unwrap() += 1;
                Err(ClientError::Unexpected { status: StatusCode::BAD_REQUEST, body: String::new() })
            }
        }
        let calls = Arc::new(Mutex::new(0));
        let (sink, uploader) = start(Refuser(calls.clone()));
        sink.info("bad");
        sink.flush().await;
        sink.flush().await;
        uploader.finish(sink, Duration::from_secs(5)).await;
        assert_eq!(*calls.lock().unwrap(), 1);
    }
}
