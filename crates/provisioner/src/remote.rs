//! The coordinator of a daemon on another host: the server's HTTP API,
//! authenticated by a provisioner key.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use uuid::Uuid;
use warmspace_sdk::{
    AcquiredJobKind, AppendJobLogsRequest, BuildOutcome, Client, ClientError, CompleteJobRequest, DaemonWorker,
    JobCompletion, JobLogLine, StatusCode,
};
use warmspace_template::Manifest;

use crate::coordinator::JobState;
use crate::{AcquiredJob, Coordinator, CoordinatorError, JobKind, WorkSignal, Worker};

#[derive(Clone)]
pub struct HttpCoordinator {
    client: Client,
}

impl HttpCoordinator {
    /// `client` must carry the provisioner key.
    pub fn new(client: Client) -> Self {
        HttpCoordinator { client }
    }

    async fn complete(&self, job_id: Uuid, worker_id: Uuid, completion: JobCompletion) -> Result<(), CoordinatorError> {
        self.client.complete_job(job_id, &CompleteJobRequest { worker_id, completion }).await.map_err(error)?;
        Ok(())
    }
}

fn error(err: ClientError) -> CoordinatorError {
    match (&err, err.status()) {
        (_, Some(StatusCode::GONE)) => CoordinatorError::JobLost,
        (_, Some(StatusCode::UNAUTHORIZED)) => CoordinatorError::Unauthorized(err.to_string()),
        (_, Some(status)) if status.is_client_error() => CoordinatorError::Refused(format!("{status}: {err}")),
        // The request could not be built (e.g. its body would not serialise): it never will be.
        (ClientError::Transport(cause), _) if cause.is_builder() => {
            CoordinatorError::Refused(format!("{err}: {cause}"))
        }
        (ClientError::Url(_), _) => CoordinatorError::Refused(err.to_string()),
        _ => CoordinatorError::Other(match &err {
            ClientError::Transport(cause) => format!("{err}: {cause}"),
            _ => err.to_string(),
        }),
    }
}

type Events = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// The server's stream of `posted` events; reconnected when it breaks.
pub struct PostedEvents {
    client: Client,
    events: Option<Events>,
}

async fn connect(client: &Client) -> Result<Events, ClientError> {
    let response = client.job_posted_events().await?;
    Ok(Box::pin(
        response.bytes_stream().eventsource().take_while(|event| std::future::ready(event.is_ok())).map(|_| ()),
    ))
}

impl WorkSignal for PostedEvents {
    async fn wait(&mut self, timeout: Duration) {
        let events = match self.events.as_mut() {
            Some(events) => events,
            None => match connect(&self.client).await {
                Ok(events) => self.events.insert(events),
                // Unreachable for now: the caller's next poll is the retry.
                Err(_) => return tokio::time::sleep(timeout.min(Duration::from_secs(1))).await,
            },
        };
        match tokio::time::timeout(timeout, events.next()).await {
            Ok(Some(())) | Err(_) => {}
            // The stream ended: events may have been missed, so look now and reconnect next time.
            Ok(None) => self.events = None,
        }
    }
}

impl Coordinator for HttpCoordinator {
    type Signal = PostedEvents;

    async fn work_signal(&self) -> Result<PostedEvents, CoordinatorError> {
        let events = connect(&self.client).await.map_err(error)?;
        Ok(PostedEvents { client: self.client.clone(), events: Some(events) })
    }

    async fn acquire(&self, worker: &Worker) -> Result<Option<AcquiredJob>, CoordinatorError> {
        let introduction = DaemonWorker { id: worker.id, name: worker.name.clone(), tags: worker.tags.clone() };
        let Some(job) = self.client.acquire_job(&introduction).await.map_err(error)? else {
            return Ok(None);
        };
        let kind = match job.job {
            AcquiredJobKind::TemplateImport { template_version_id, file_id } => {
                JobKind::TemplateImport { template_version_id, file_id }
            }
            AcquiredJobKind::WorkspaceBuild { build } => JobKind::WorkspaceBuild(build),
            AcquiredJobKind::DriftCheck { build } => JobKind::DriftCheck(build),
        };
        Ok(Some(AcquiredJob { id: job.job_id, heartbeat_every: Duration::from_millis(job.heartbeat_every_ms), kind }))
    }

    async fn file(&self, file_id: Uuid) -> Result<Vec<u8>, CoordinatorError> {
        self.client.daemon_file(file_id).await.map_err(error)
    }

    async fn heartbeat(&self, job_id: Uuid, worker_id: Uuid) -> Result<JobState, CoordinatorError> {
        let response = self.client.heartbeat_job(job_id, worker_id).await.map_err(error)?;
        Ok(if response.canceling { JobState::Canceling } else { JobState::Running })
    }

    async fn append_logs(&self, job_id: Uuid, worker_id: Uuid, logs: Vec<JobLogLine>) -> Result<(), CoordinatorError> {
        self.client.append_job_logs(job_id, &AppendJobLogsRequest { worker_id, logs }).await.map_err(error)?;
        Ok(())
    }

    async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<(), CoordinatorError> {
        self.complete(job_id, worker_id, JobCompletion::Import { manifest: Box::new(manifest) }).await
    }

    async fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        outcome: BuildOutcome,
        logs: Vec<JobLogLine>,
    ) -> Result<(), CoordinatorError> {
        // The protocol's completion carries no lines: they go first, as any batch does.
        if !logs.is_empty() {
            self.append_logs(job_id, worker_id, logs).await?;
        }
        self.complete(job_id, worker_id, JobCompletion::Build { outcome }).await
    }

    async fn complete_drift_check(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        replaced: Vec<String>,
        logs: Vec<JobLogLine>,
    ) -> Result<(), CoordinatorError> {
        if !logs.is_empty() {
            self.append_logs(job_id, worker_id, logs).await?;
        }
        self.complete(job_id, worker_id, JobCompletion::DriftCheck { replaced }).await
    }

    async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: String) -> Result<(), CoordinatorError> {
        self.complete(job_id, worker_id, JobCompletion::Failed { error }).await
    }
}
