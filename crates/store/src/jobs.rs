//! The provisioner job queue: jobs, their acquisition by daemons, and their
//! logs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use uuid::Uuid;
use warmspace_states::{JobPriority, JobStatus, JobType, LogLevel, LogSource, Transition, cap_log_line};

use crate::completer::{Completion, Outcome};
use crate::taker::Take;
use crate::text::without_nul;
use crate::{Result, Store, StoreError};

/// Each job's stored log is capped at this many bytes of output.
pub const MAX_JOB_LOG_BYTES: usize = 1 << 20;
/// The line that ends a log which hit the cap.
pub const LOG_TRUNCATED_LINE: &str =
    "warmspace: this job's log exceeded 1 MiB; the lines after this point were not stored";
/// Channel announcing that jobs were queued, so idle daemons look at once.
/// The payload is how many (see [`jobs_posted`]), so that no more daemons
/// wake than there are jobs to take.
pub const JOB_POSTED_CHANNEL: &str = "provisioner_job_posted";

/// How many jobs a [`JOB_POSTED_CHANNEL`] payload announces; `None` when it
/// does not say (then any number may be waiting).
pub fn jobs_posted(payload: &str) -> Option<usize> {
    payload.parse().ok()
}

/// The message announcing `count` queued jobs (read by [`jobs_posted`]).
pub(crate) fn jobs_posted_message(count: usize) -> (String, String) {
    (JOB_POSTED_CHANNEL.to_owned(), count.to_string())
}

impl Store {
    /// Wakes idle daemons for `count` jobs that have been queued and
    /// committed (never before: a daemon woken early would find nothing).
    pub(crate) async fn announce_jobs_posted(&self, count: usize) {
        if count > 0 {
            self.publisher().announce(vec![jobs_posted_message(count)]).await;
        }
    }

    /// Commits `tx`, which queued `jobs` jobs to run, then wakes daemons for them.
    pub(crate) async fn commit_posting(&self, tx: Transaction<'_, Postgres>, jobs: usize) -> Result<()> {
        tx.commit().await?;
        self.announce_jobs_posted(jobs).await;
        Ok(())
    }
}

/// The channel announcing new log lines of a job, and its end.
pub fn job_events_channel(job_id: Uuid) -> String {
    format!("job_events:{job_id}")
}

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: JobType,
    pub status: JobStatus,
    pub initiator_id: Uuid,
    pub priority: JobPriority,
    pub tags: Json<Tags>,
    pub input: Json<serde_json::Value>,
    pub file_id: Option<Uuid>,
    pub worker_id: Option<Uuid>,
    pub worker_name: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub logs_length: i32,
    pub logs_overflowed: bool,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Pending jobs ahead of this one (0 = next); `None` unless pending.
    pub queue_position: Option<i64>,
    #[sqlx(flatten)]
    pub target: JobTarget,
}

/// What a job is for: the template version it imports or builds from, and
/// for a build, the workspace and the build. Not read when a daemon takes
/// the job (it learns what to run from the job's payload instead).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct JobTarget {
    pub template_version_id: Option<Uuid>,
    pub template_version_name: Option<String>,
    pub template_id: Option<Uuid>,
    pub template_name: Option<String>,
    pub workspace_id: Option<Uuid>,
    pub workspace_name: Option<String>,
    pub build_id: Option<Uuid>,
    pub build_number: Option<i32>,
    pub transition: Option<Transition>,
}

impl JobRow {
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }
}

pub struct NewJob {
    pub organization_id: Uuid,
    pub kind: JobType,
    pub initiator_id: Uuid,
    pub priority: JobPriority,
    pub tags: Tags,
    pub input: serde_json::Value,
    pub file_id: Option<Uuid>,
}

/// A daemon asking for work.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: Uuid,
    pub name: String,
    pub tags: Tags,
    /// The provisioner key an external daemon authenticated with.
    pub key_id: Option<String>,
}

/// The daemon that says it holds a job: only the daemon holding a job's
/// lease may write to the job.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub worker_id: Uuid,
    /// The provisioner key an external daemon authenticated with; `None`
    /// for a daemon inside a server.
    pub key_id: Option<&'a str>,
}

/// How jobs are handed out.
#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    /// How long a job stays leased without a heartbeat.
    pub lease: std::time::Duration,
    /// The share of live daemons prebuild jobs may occupy at once (at least one daemon).
    pub prebuild_share: f64,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy { lease: std::time::Duration::from_secs(30), prebuild_share: 0.5 }
    }
}

/// Daemons seen within this long count as live for the prebuild share.
pub(crate) const DAEMON_LIVENESS: &str = "90 seconds";
/// A daemon's row is rewritten at most this often just to say it is alive
/// (well inside [`DAEMON_LIVENESS`]), so acquiring does not write it each time.
pub(crate) const DAEMON_TOUCH_EVERY: &str = "10 seconds";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLog {
    pub created_at: DateTime<Utc>,
    /// Job logs only: agent logs keep no source (nor stage).
    pub source: LogSource,
    pub level: LogLevel,
    pub stage: String,
    pub output: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub job_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub source: LogSource,
    pub level: LogLevel,
    pub stage: String,
    pub output: String,
}

/// A job a daemon took, with what running it needs.
#[derive(Debug, Clone)]
pub struct TakenJob {
    pub id: Uuid,
    pub payload: JobPayload,
    pub queued: QueuedJob,
}

/// When a taken job was queued and started, who asked for it, and the
/// names its metrics are labelled with: returned by the statement that
/// takes the job, so metrics cost no statement of their own.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub job_type: JobType,
    pub created_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub initiator_id: Uuid,
    pub organization_name: String,
    /// Empty for the import of a version no template has yet.
    pub template_name: String,
    /// The preset the build's workspace was made from, if any.
    pub preset_name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum JobPayload {
    /// An import of this version, whose files are `file_id`.
    Import {
        template_version_id: Uuid,
        file_id: Uuid,
    },
    Build(Box<crate::workspaces::BuildPayload>),
    /// A drift check of the prebuild described as its latest build left it.
    DriftCheck(Box<crate::workspaces::BuildPayload>),
    /// The rows the job is for are gone: it cannot run.
    Missing,
}

/// What `take_provisioner_jobs` returns for each job taken.
#[derive(sqlx::FromRow)]
pub(crate) struct TakenRow {
    /// The daemon the job went to: its place in the batch, from 1.
    pub(crate) taker: i64,
    job_id: Uuid,
    job_type: JobType,
    template_version_id: Option<Uuid>,
    file_id: Option<Uuid>,
    build_id: Option<Uuid>,
    build_number: Option<i32>,
    transition: Option<Transition>,
    reason: Option<warmspace_states::BuildReason>,
    workspace_id: Option<Uuid>,
    workspace_name: Option<String>,
    owner_id: Option<Uuid>,
    owner_name: Option<String>,
    owner_email: Option<String>,
    provisioner_config: Option<Json<serde_json::Value>>,
    parameters: Option<Json<BTreeMap<String, String>>>,
    previous_state: Option<Vec<u8>>,
    agent_names: Option<Vec<String>>,
    has_agent_tokens: Option<bool>,
    job_created_at: DateTime<Utc>,
    job_started_at: DateTime<Utc>,
    job_initiator_id: Uuid,
    organization_name: String,
    template_name: String,
    preset_name: Option<String>,
}

impl TakenRow {
    pub(crate) fn into_taken(mut self) -> TakenJob {
        let id = self.job_id;
        let queued = QueuedJob {
            job_type: self.job_type,
            created_at: self.job_created_at,
            started_at: self.job_started_at,
            initiator_id: self.job_initiator_id,
            organization_name: std::mem::take(&mut self.organization_name),
            template_name: std::mem::take(&mut self.template_name),
            preset_name: self.preset_name.take(),
        };
        let payload = match (self.job_type, self.template_version_id, self.file_id) {
            (JobType::TemplateVersionImport, Some(template_version_id), Some(file_id)) => {
                JobPayload::Import { template_version_id, file_id }
            }
            (JobType::WorkspaceBuild, Some(template_version_id), Some(file_id)) => match self.build() {
                Some(build) => JobPayload::Build(Box::new(crate::workspaces::BuildPayload {
                    template_version_id,
                    file_id,
                    ..build
                })),
                None => JobPayload::Missing,
            },
            (JobType::PrebuildDriftCheck, Some(_), Some(_)) => match self.build() {
                Some(build) => JobPayload::DriftCheck(Box::new(build)),
                None => JobPayload::Missing,
            },
            _ => JobPayload::Missing,
        };
        TakenJob { id, payload, queued }
    }

    /// The build's columns, all there when the build's rows are.
    fn build(self) -> Option<crate::workspaces::BuildPayload> {
        Some(crate::workspaces::BuildPayload {
            build_id: self.build_id?,
            build_number: self.build_number?,
            transition: self.transition?,
            reason: self.reason?,
            workspace_id: self.workspace_id?,
            workspace_name: self.workspace_name?,
            owner_id: self.owner_id?,
            owner_name: self.owner_name?,
            owner_email: self.owner_email?,
            template_version_id: self.template_version_id?,
            file_id: self.file_id?,
            provisioner_config: self.provisioner_config,
            parameters: self.parameters.unwrap_or_default(),
            previous_state: self.previous_state,
            agent_names: self.agent_names.unwrap_or_default(),
            has_agent_tokens: self.has_agent_tokens.unwrap_or(false),
        })
    }
}

/// Announcements a completion makes once it has committed: (channel, payload).
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Made whatever the build was.
    pub always: Vec<(String, String)>,
    /// Made only when the build's workspace was made from a preset.
    pub if_preset: Option<(String, String)>,
}

/// How a completion went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCompleted {
    /// The status the job ended with (a job being canceled ends canceled).
    pub status: JobStatus,
    /// How many of the lines were stored.
    pub logs_stored: usize,
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub organization_id: Option<Uuid>,
    /// Empty: any status.
    pub statuses: Vec<JobStatus>,
    pub limit: i64,
}

/// Columns of `JobRow`, with the queue position computed for pending jobs.
const JOB_COLUMNS: &str = "j.id, j.organization_id, j.type, j.status, j.initiator_id, j.priority, j.tags, \
     j.input, j.file_id, j.worker_id, j.worker_name, j.error, j.created_at, j.updated_at, j.started_at, \
     j.completed_at, j.canceled_at, j.logs_length, j.logs_overflowed, j.lease_expires_at";

/// A pending job's place in the queue, counted for that one job (an index range).
pub(crate) const QUEUE_POSITION: &str = "CASE WHEN j.status = 'pending' THEN (SELECT count(*) FROM provisioner_jobs q \
     WHERE q.status = 'pending' AND (q.priority, q.created_at, q.id) < (j.priority, j.created_at, j.id)) END \
     AS queue_position";

/// [`JobTarget`]'s columns, from [`JOB_FROM`]'s joins.
const TARGET_COLUMNS: &str = "coalesce(bv.id, iv.id) AS template_version_id, \
     coalesce(bv.name, iv.name) AS template_version_name, tt.id AS template_id, tt.name AS template_name, \
     tw.id AS workspace_id, tw.name AS workspace_name, tb.id AS build_id, tb.build_number, tb.transition";

/// Jobs with what they are for: a build's workspace and version, an import's version.
const JOB_FROM: &str = "provisioner_jobs j \
     LEFT JOIN workspace_builds tb ON tb.job_id = j.id \
     LEFT JOIN workspaces tw ON tw.id = tb.workspace_id \
     LEFT JOIN template_versions bv ON bv.id = tb.template_version_id \
     LEFT JOIN template_versions iv ON iv.job_id = j.id \
     LEFT JOIN templates tt ON tt.id = coalesce(bv.template_id, iv.template_id)";

/// In place of [`TARGET_COLUMNS`] where a job is read without its target.
const NO_TARGET: &str = "NULL::uuid AS template_version_id, NULL::text AS template_version_name, \
     NULL::uuid AS template_id, NULL::text AS template_name, NULL::uuid AS workspace_id, \
     NULL::text AS workspace_name, NULL::uuid AS build_id, NULL::integer AS build_number, \
     NULL::text AS transition";

/// Queues a job inside the caller's transaction, which wakes daemons once
/// committed (see [`Store::commit_posting`]).
pub(crate) async fn insert_job(tx: &mut PgConnection, job: &NewJob, now: DateTime<Utc>) -> Result<Uuid> {
    let id = sqlx::query_scalar!(
        "INSERT INTO provisioner_jobs (organization_id, type, initiator_id, priority, tags, input, file_id, \
             status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) \
         RETURNING id",
        job.organization_id,
        job.kind as JobType,
        job.initiator_id,
        job.priority as JobPriority,
        Json(&job.tags) as Json<&Tags>,
        job.input,
        job.file_id,
        now,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(id)
}

/// Marks a job held by `worker_id` finished with `status`, inside the
/// caller's transaction, and returns the status it ended with: a job that
/// was being canceled ends `canceled` whatever its daemon reports. Fails
/// with `NotFound` when the worker no longer holds the job (its lease
/// expired and it was failed, or it finished elsewhere).
pub(crate) async fn finish_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    worker_id: Uuid,
    status: JobStatus,
    error: Option<&str>,
    interrupted: bool,
    now: DateTime<Utc>,
) -> Result<JobStatus> {
    let error = error.map(without_nul);
    sqlx::query_scalar!(
        "UPDATE provisioner_jobs SET status = CASE status WHEN 'canceling' THEN 'canceled' ELSE $3 END, \
             error = CASE status WHEN 'canceling' THEN coalesce($4, 'canceled') ELSE $4 END, \
             interrupted = $6, completed_at = greatest($5, started_at), updated_at = $5 \
         WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'canceling') \
         RETURNING status AS \"status: JobStatus\"",
        job_id,
        worker_id,
        status as JobStatus,
        error.as_deref(),
        now,
        interrupted,
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)
}

impl Store {
    pub async fn job(&self, id: Uuid) -> Result<JobRow> {
        let sql = format!("SELECT {JOB_COLUMNS}, {QUEUE_POSITION}, {TARGET_COLUMNS} FROM {JOB_FROM} WHERE j.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    /// Jobs by id, in no particular order (a listing's jobs, in one query).
    pub async fn jobs_by_ids(&self, ids: &[Uuid]) -> Result<Vec<JobRow>> {
        let sql =
            format!("SELECT {JOB_COLUMNS}, {QUEUE_POSITION}, {TARGET_COLUMNS} FROM {JOB_FROM} WHERE j.id = ANY ($1)");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(&self.pool).await?)
    }

    /// Takes the next pending job `worker` may run, if any, leasing it for
    /// `policy.lease`: work somebody waits for first, then prebuild work
    /// while prebuild jobs hold less than their share of the live daemons;
    /// oldest first within each; only jobs whose tags the worker has. The
    /// worker counts as live from now on.
    ///
    /// One statement: the `acquire_provisioner_job` function (migration
    /// 0012) says why it is a function and how the share stays exact. It
    /// commits without waiting for its flush to disk (migration 0023 says
    /// why losing a take is harmless).
    pub async fn acquire_job(&self, worker: &Worker, policy: &QueuePolicy) -> Result<Option<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS}, NULL::bigint AS queue_position, {NO_TARGET} \
             FROM acquire_provisioner_job($1, $2, $3, $4, $5, $6, $7, interval '{DAEMON_LIVENESS}', \
                                          interval '{DAEMON_TOUCH_EVERY}') j"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(worker.id)
            .bind(&worker.name)
            .bind(Json(&worker.tags))
            .bind(worker.key_id.as_deref())
            .bind(policy.lease)
            .bind(self.now())
            .bind(policy.prebuild_share)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Takes a job as [`Store::acquire_job`] does, with everything its
    /// daemon needs to run it, in the same statement, which serves the
    /// other daemons asking at the same moment too (see `taker`).
    pub async fn take_job(&self, worker: &Worker, policy: &QueuePolicy) -> Result<Option<TakenJob>> {
        self.taker.take(Take { worker: worker.clone(), policy: *policy, at: self.now() }).await
    }

    /// Records how a build ended together with its daemon's last log lines,
    /// in one statement shared with the other completions arriving then
    /// (see `completer`): the lines (dropped when the log has overflowed),
    /// the job's end, the build's state and resources, and a successful
    /// delete's workspace deletion; once that has committed, announces
    /// `notices`. Lines that would take the log past its cap are stored
    /// capped first, as [`Store::append_held_job_logs`] does, by a
    /// transaction of their own. Fails with `NotFound` when the worker no
    /// longer holds the job.
    pub async fn complete_build_with_logs(
        &self,
        job_id: Uuid,
        holder: Holder<'_>,
        done: &crate::workspaces::BuildCompletion,
        logs: &[NewLog],
        notices: &Notices,
    ) -> Result<BuildCompleted> {
        let mut completion = Completion {
            job_id,
            worker_id: holder.worker_id,
            status: done.status,
            error: done.error.as_deref().map(|e| without_nul(e).into_owned()),
            interrupted: done.interrupted,
            at: self.now(),
            state: done.state.clone().unwrap_or_default(),
            resources: done.resources.clone(),
            logs: cleaned(logs),
        };
        let mut completed = self.completer.complete(completion.clone()).await?;
        let mut logs_stored = None;
        if completed.outcome == Outcome::OverCap {
            logs_stored =
                Some(append_capped(&self.pool, CappedLog::Job { id: job_id, holder: Some(holder) }, logs).await?);
            completion.logs.clear();
            completed = self.completer.complete(completion).await?;
        }
        let from_preset = completed.from_preset;
        let ended = match (completed.outcome, completed.status) {
            (Outcome::Done, Some(status)) => BuildCompleted { status, logs_stored: completed.logs_stored as usize },
            (Outcome::NoBuild, _) => {
                return Err(StoreError::Invalid {
                    field: "job",
                    message: format!("job {job_id} runs no workspace build"),
                });
            }
            _ => return Err(StoreError::NotFound),
        };
        let announced = notices.always.iter().chain(notices.if_preset.iter().filter(|_| from_preset));
        self.publisher().announce(announced.cloned().collect()).await;
        Ok(BuildCompleted { logs_stored: logs_stored.unwrap_or(ended.logs_stored), ..ended })
    }

    /// Renews the lease of a job `worker_id` holds. Returns the job's status
    /// (`running`, or `canceling` when it should stop), or `None` when the
    /// worker no longer holds it and must stop at once.
    pub async fn heartbeat_job(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        policy: &QueuePolicy,
    ) -> Result<Option<JobStatus>> {
        Ok(sqlx::query_scalar!(
            "WITH daemon AS (UPDATE provisioner_daemons SET last_seen_at = $4 WHERE id = $2) \
             UPDATE provisioner_jobs SET lease_expires_at = $4 + $3, updated_at = $4 \
             WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'canceling') \
             RETURNING status AS \"status: JobStatus\"",
            job_id,
            worker_id,
            policy.lease as std::time::Duration,
            self.now(),
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Cancels a job: a pending one at once, a running one by asking its
    /// daemon (it learns on its next heartbeat). Returns the new status, or
    /// `None` when the job had already finished.
    pub async fn cancel_job(&self, job_id: Uuid) -> Result<Option<JobStatus>> {
        Ok(sqlx::query_scalar!(
            "UPDATE provisioner_jobs SET \
                 status = CASE status WHEN 'pending' THEN 'canceled' ELSE 'canceling' END, \
                 completed_at = CASE status WHEN 'pending' THEN greatest($2, created_at) END, \
                 error = CASE status WHEN 'pending' THEN 'canceled before it started' END, \
                 canceled_at = $2, updated_at = $2 \
             WHERE id = $1 AND status IN ('pending', 'running') RETURNING status AS \"status: JobStatus\"",
            job_id,
            self.now(),
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Cancels those of `job_ids` that no daemon has picked up; returns them.
    pub async fn cancel_pending_jobs(&self, job_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar!(
            "UPDATE provisioner_jobs SET status = 'canceled', canceled_at = $2, \
                 completed_at = greatest($2, created_at), updated_at = $2, \
                 error = 'canceled before it started: its preset is no longer active' \
             WHERE id = ANY ($1) AND status = 'pending' RETURNING id",
            job_ids,
            self.now(),
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends every job whose lease has run out — failed, or canceled if it
    /// was being canceled — with the reason at the end of its log. Returns
    /// the jobs ended.
    pub async fn reap_expired_jobs(&self) -> Result<Vec<Uuid>> {
        let expired = sqlx::query!(
            "UPDATE provisioner_jobs SET \
                 status = CASE status WHEN 'canceling' THEN 'canceled' ELSE 'failed' END, \
                 error = format('provisioner daemon %s stopped renewing its lease, which expired at %s', \
                                coalesce(worker_name, '?'), lease_expires_at), \
                 interrupted = true, completed_at = greatest($1, started_at), updated_at = $1 \
             WHERE status IN ('running', 'canceling') AND lease_expires_at < $1 \
             RETURNING id, worker_name, lease_expires_at AS \"lease_expires_at!\"",
            self.now(),
        )
        .fetch_all(&self.pool)
        .await?;
        for job in &expired {
            let lease = job.lease_expires_at;
            let line = NewLog {
                created_at: self.now(),
                source: LogSource::ProvisionerDaemon,
                level: LogLevel::Error,
                stage: String::new(),
                output: format!(
                    "warmspace: provisioner daemon {} stopped heartbeating; the job failed when its lease expired at {lease}",
                    job.worker_name.as_deref().unwrap_or("?")
                ),
            };
            self.append_job_logs(job.id, &[line]).await?;
        }
        Ok(expired.into_iter().map(|job| job.id).collect())
    }

    /// Fails a job held by `worker_id`.
    pub async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        finish_job(&mut tx, job_id, worker_id, JobStatus::Failed, Some(error), false, self.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends the server's own log lines to a job, whatever its state,
    /// honouring the per-job cap: output past [`MAX_JOB_LOG_BYTES`] is
    /// dropped, the line that crosses it is cut at the cap, and the log ends
    /// with [`LOG_TRUNCATED_LINE`]. Returns how many lines were stored.
    pub async fn append_job_logs(&self, job_id: Uuid, logs: &[NewLog]) -> Result<usize> {
        append_capped(&self.pool, CappedLog::Job { id: job_id, holder: None }, logs).await
    }

    /// Appends a daemon's log lines to a job it holds, as
    /// [`Store::append_job_logs`] does. Fails with `NotFound` unless the job
    /// is running (or being canceled) on `holder`'s worker, and that worker
    /// came with `holder`'s key: a finished job, or another daemon's, takes
    /// no more lines.
    pub async fn append_held_job_logs(&self, job_id: Uuid, holder: Holder<'_>, logs: &[NewLog]) -> Result<usize> {
        append_capped(&self.pool, CappedLog::Job { id: job_id, holder: Some(holder) }, logs).await
    }

    /// A job's log lines with ids above `after`, in order.
    pub async fn job_logs(&self, job_id: Uuid, after: i64) -> Result<Vec<LogRow>> {
        Ok(sqlx::query_as!(
            LogRow,
            "SELECT id, job_id, created_at, source AS \"source: LogSource\", level AS \"level: LogLevel\", stage, \
                 output \
             FROM provisioner_job_logs WHERE job_id = $1 AND id > $2 ORDER BY id",
            job_id,
            after,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any job is not finished yet (pending, running or being
    /// canceled): how a benchmark knows the queue has drained. Two probes of
    /// the queue's partial indexes, each stopping at its first row: a count
    /// over the statuses scanned the whole table, 5 ms at 12 000 jobs, and a
    /// benchmark polling it every 20 ms took a tenth of the cores from the
    /// queue it measured.
    pub async fn any_unfinished_job(&self) -> Result<bool> {
        Ok(sqlx::query_scalar!(
            "SELECT EXISTS (SELECT FROM provisioner_jobs WHERE status = 'pending') \
                 OR EXISTS (SELECT FROM provisioner_jobs WHERE status IN ('running', 'canceling')) AS \"any!\""
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Jobs, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>> {
        // Queue positions in one pass over the pending jobs, rather than a count per row.
        let sql = format!(
            "WITH queue AS (SELECT id, row_number() OVER (ORDER BY priority, created_at, id) - 1 AS position \
                            FROM provisioner_jobs WHERE status = 'pending') \
             SELECT {JOB_COLUMNS}, queue.position AS queue_position, {TARGET_COLUMNS} \
             FROM {JOB_FROM} LEFT JOIN queue ON queue.id = j.id \
             WHERE ($1::uuid IS NULL OR j.organization_id = $1) \
               AND (cardinality($2::text[]) = 0 OR j.status = ANY ($2)) \
             ORDER BY j.created_at DESC, j.id LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.organization_id)
            .bind(&filter.statuses)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// A log kept under the per-log cap: a job's, or an agent's.
#[derive(Clone, Copy)]
pub(crate) enum CappedLog<'a> {
    /// A job's log; with a holder, only while that daemon holds the job.
    Job {
        id: Uuid,
        holder: Option<Holder<'a>>,
    },
    Agent(Uuid),
}

/// What the row holding a capped log says about it.
struct LogLength {
    logs_length: i32,
    logs_overflowed: bool,
}

/// Appends lines to a capped log in one transaction. The row lock
/// serialises appenders, so the stored length stays exact.
pub(crate) async fn append_capped(pool: &sqlx::PgPool, log: CappedLog<'_>, logs: &[NewLog]) -> Result<usize> {
    if logs.is_empty() {
        return Ok(0);
    }
    let logs = cleaned(logs);
    let mut tx = pool.begin().await?;
    let length = match log {
        CappedLog::Job { id, holder } => {
            sqlx::query_as!(
                LogLength,
                "SELECT logs_length, logs_overflowed FROM provisioner_jobs j WHERE id = $1 \
                   AND ($2::uuid IS NULL OR (worker_id = $2 AND status IN ('running', 'canceling') \
                        AND EXISTS (SELECT 1 FROM provisioner_daemons d \
                                    WHERE d.id = j.worker_id AND d.key_id IS NOT DISTINCT FROM $3))) \
                 FOR UPDATE",
                id,
                holder.map(|h| h.worker_id),
                holder.and_then(|h| h.key_id),
            )
            .fetch_optional(&mut *tx)
            .await?
        }
        CappedLog::Agent(id) => {
            sqlx::query_as!(
                LogLength,
                "SELECT logs_length, logs_overflowed FROM workspace_agents WHERE id = $1 FOR UPDATE",
                id,
            )
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let LogLength { logs_length: length, logs_overflowed: overflowed } = length.ok_or(StoreError::NotFound)?;
    if overflowed {
        return Ok(0);
    }
    let (mut kept, overflows) = cap_logs(length as usize, &logs);
    let added: usize = kept.iter().map(|l| l.output.len()).sum();
    if overflows {
        let last = logs.last().expect("not empty");
        kept.push(NewLog {
            source: LogSource::ProvisionerDaemon,
            level: LogLevel::Warn,
            output: LOG_TRUNCATED_LINE.into(),
            ..last.clone()
        });
    }
    let created_at: Vec<DateTime<Utc>> = kept.iter().map(|l| l.created_at).collect();
    let levels: Vec<LogLevel> = kept.iter().map(|l| l.level).collect();
    let outputs: Vec<&str> = kept.iter().map(|l| l.output.as_str()).collect();
    match log {
        CappedLog::Job { id, .. } => {
            let sources: Vec<LogSource> = kept.iter().map(|l| l.source).collect();
            let stages: Vec<&str> = kept.iter().map(|l| l.stage.as_str()).collect();
            sqlx::query!(
                "INSERT INTO provisioner_job_logs (job_id, created_at, level, output, source, stage) \
                 SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])",
                id,
                &created_at,
                levels.as_slice() as &[LogLevel],
                outputs.as_slice() as &[&str],
                sources.as_slice() as &[LogSource],
                stages.as_slice() as &[&str],
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE provisioner_jobs SET logs_length = logs_length + $2, logs_overflowed = $3, updated_at = now() \
                 WHERE id = $1",
                id,
                added as i32,
                overflows,
            )
            .execute(&mut *tx)
            .await?;
        }
        CappedLog::Agent(id) => {
            sqlx::query!(
                "INSERT INTO workspace_agent_logs (agent_id, created_at, level, output) \
                 SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[])",
                id,
                &created_at,
                levels.as_slice() as &[LogLevel],
                outputs.as_slice() as &[&str],
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE workspace_agents SET logs_length = logs_length + $2, logs_overflowed = $3 WHERE id = $1",
                id,
                added as i32,
                overflows,
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(kept.len())
}

/// Output is reported, not chosen: NUL characters (PostgreSQL cannot store
/// them) are dropped, and a runaway line is cut, saying so, before it counts
/// toward the log's cap.
fn cleaned(logs: &[NewLog]) -> Vec<NewLog> {
    logs.iter()
        .map(|l| NewLog {
            output: cap_log_line(&without_nul(&l.output)).into_owned(),
            stage: without_nul(&l.stage).into_owned(),
            ..l.clone()
        })
        .collect()
}

/// The part of `logs` that fits under the cap given `stored` bytes so far,
/// and whether anything was cut.
pub(crate) fn cap_logs(stored: usize, logs: &[NewLog]) -> (Vec<NewLog>, bool) {
    let mut room = MAX_JOB_LOG_BYTES.saturating_sub(stored);
    let mut kept = Vec::with_capacity(logs.len());
    for log in logs {
        if log.output.len() <= room {
            room -= log.output.len();
            kept.push(log.clone());
            continue;
        }
        if room > 0 {
            let mut cut = room;
            while !log.output.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.push(NewLog { output: log.output[..cut].to_owned(), ..log.clone() });
        }
        return (kept, true);
    }
    (kept, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(output: &str) -> NewLog {
        NewLog {
            created_at: Utc::now(),
            source: LogSource::Provisioner,
            level: LogLevel::Info,
            stage: String::new(),
            output: output.into(),
        }
    }

    #[test]
    fn logs_fill_the_cap_exactly_then_stop() {
        let (kept, cut) = cap_logs(MAX_JOB_LOG_BYTES - 5, &[log("abc"), log("defgh"), log("ij")]);
        assert!(cut);
        assert_eq!(kept.iter().map(|l| l.output.as_str()).collect::<Vec<_>>(), ["abc", "de"]);
        let (kept, cut) = cap_logs(0, &[log("abc")]);
        assert_eq!((kept.len(), cut), (1, false));
        let (kept, cut) = cap_logs(MAX_JOB_LOG_BYTES, &[log("x")]);
        assert_eq!((kept.len(), cut), (0, true));
        // Never splits a character.
        let (kept, _) = cap_logs(MAX_JOB_LOG_BYTES - 2, &[log("é€")]);
        assert_eq!(kept[0].output, "é");
    }
}
