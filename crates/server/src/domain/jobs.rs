//! Provisioner jobs as people see them: listings, and a job's log read whole
//! or followed live.

use std::collections::VecDeque;
use std::time::Duration;

use futures::Stream;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{JobStatus, JobsQuery, ProvisionerJob, ProvisionerJobLog};
use warmspace_store::jobs::{JobFilter, job_events_channel};
use warmspace_store::pubsub::Subscription;

use super::views::{job_view, log_view};
use super::{Actor, Domain, Error, Result, page};

/// A follower re-reads the log at least this often, in case an announcement was lost.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// What following a job's log yields: its lines as they are stored, then
/// the finished job once.
#[derive(Debug, Clone)]
pub enum LogFollow {
    Line(ProvisionerJobLog),
    End(Box<ProvisionerJob>),
}

impl Domain {
    /// Jobs of an organization, newest first, with their queue positions.
    pub async fn list_jobs(&self, actor: &Actor, organization: &str, query: JobsQuery) -> Result<Vec<ProvisionerJob>> {
        actor.authorize(Action::Read, Object::any(Resource::ProvisionerJob))?;
        let organization = self.organization(organization).await?;
        let statuses = match query.status.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse::<JobStatus>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::field("status", e.to_string()))?,
        };
        let (limit, _) = page(query.limit, None)?;
        let filter = JobFilter { organization_id: Some(organization.id), statuses, limit };
        Ok(self.store.list_jobs(&filter).await?.into_iter().map(job_view).collect())
    }

    /// Whether the actor may see the provisioners' work (what [`Self::list_jobs`] requires).
    pub fn may_see_provisioners(&self, actor: &Actor) -> bool {
        actor.authorize(Action::Read, Object::any(Resource::ProvisionerJob)).is_ok()
    }

    /// A job's log lines with ids above `after`.
    pub(super) async fn job_log(&self, job_id: Uuid, after: i64) -> Result<Vec<ProvisionerJobLog>> {
        Ok(self.store.job_logs(job_id, after).await?.into_iter().map(log_view).collect())
    }

    /// Follows a job's log from `after`: every line as it is stored, then the
    /// finished job. Subscribes before the first read, so nothing stored in
    /// between is missed.
    pub(super) async fn follow_job_log(
        &self,
        job_id: Uuid,
        after: i64,
    ) -> Result<impl Stream<Item = LogFollow> + Send + 'static> {
        let events = self.events.subscribe(&job_events_channel(job_id)).await.map_err(Error::internal)?;
        Ok(job_log_stream(self.clone(), job_id, after, events))
    }
}

/// The stream behind [`Domain::follow_job_log`].
fn job_log_stream(
    domain: Domain,
    job_id: Uuid,
    after: i64,
    events: Subscription,
) -> impl Stream<Item = LogFollow> + Send + 'static {
    struct Follower {
        domain: Domain,
        job_id: Uuid,
        after: i64,
        events: Subscription,
        ready: VecDeque<LogFollow>,
        ended: bool,
    }
    let follower = Follower { domain, job_id, after, events, ready: VecDeque::new(), ended: false };
    futures::stream::unfold(follower, |mut f| async move {
        loop {
            if let Some(next) = f.ready.pop_front() {
                return Some((next, f));
            }
            if f.ended {
                return None;
            }
            // The job's state before its logs: if it had finished, every line
            // it will ever have is already stored.
            let job = match f.domain.store.job(f.job_id).await {
                Ok(job) => job,
                Err(err) => {
                    tracing::warn!(job_id = %f.job_id, error = %err, "log follower cannot read the job");
                    return None;
                }
            };
            match f.domain.job_log(f.job_id, f.after).await {
                Ok(lines) => {
                    if let Some(last) = lines.last() {
                        f.after = last.id;
                    }
                    f.ready.extend(lines.into_iter().map(LogFollow::Line));
                }
                Err(err) => {
                    tracing::warn!(job_id = %f.job_id, error = %err, "log follower cannot read the log");
                    return None;
                }
            }
            if job.is_finished() {
                f.ready.push_back(LogFollow::End(Box::new(job_view(job))));
                f.ended = true;
            } else if f.ready.is_empty() {
                // Nothing new yet: wait to be told, or look again anyway.
                if let Ok(None) = tokio::time::timeout(FOLLOW_POLL, f.events.recv()).await {
                    // Announcements have stopped (the server is going down): keep polling.
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            }
        }
    })
}
