//! The provisioner job queue: jobs, their acquisition by daemons, and their
//! logs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use uuid::Uuid;
use warmspace_states::{JobPriority, JobStatus, JobType, LogLevel, LogSource, Transition, cap_log_line};

use crate::text::without_nul;
use crate::{Result, Store, StoreError};

/// Each job's stored log is capped at this many bytes of output.
pub const MAX_JOB_LOG_BYTES: usize = 1 << 20;
/// The line that ends a log which hit the cap.
pub const LOG_TRUNCATED_LINE: &str =
    "warmspace: this job's log exceeded 1 MiB; the lines after this point were not stored";
/// Channel announcing that a job was queued, so idle daemons look at once.
pub const JOB_POSTED_CHANNEL: &str = "provisioner_job_posted";

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
    /// The job has nothing to run (a reinit claim's build): it is recorded
    /// as done, under this worker name, when it is queued.
    pub done_by: Option<&'static str>,
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
const DAEMON_LIVENESS: &str = "90 seconds";

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

/// Inserts a job inside the caller's transaction. The NOTIFY that wakes
/// daemons is part of the same transaction, so it is delivered at commit
/// and never before the job is visible. A job with nothing left to run
/// (`NewJob::done_by`) is stored as succeeded and wakes nobody.
pub(crate) async fn insert_job(tx: &mut PgConnection, job: &NewJob, now: DateTime<Utc>) -> Result<Uuid> {
    let id = sqlx::query_scalar!(
        "INSERT INTO provisioner_jobs (organization_id, type, initiator_id, priority, tags, input, file_id, \
             status, worker_id, worker_name, created_at, updated_at, started_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8::text IS NULL THEN 'pending' ELSE 'succeeded' END, \
             CASE WHEN $8::text IS NOT NULL THEN $9::uuid END, $8, $10::timestamptz, $10, \
             CASE WHEN $8::text IS NOT NULL THEN $10 END, CASE WHEN $8::text IS NOT NULL THEN $10 END) \
         RETURNING id",
        job.organization_id,
        job.kind as JobType,
        job.initiator_id,
        job.priority as JobPriority,
        Json(&job.tags) as Json<&Tags>,
        job.input,
        job.file_id,
        job.done_by,
        Uuid::nil(),
        now,
    )
    .fetch_one(&mut *tx)
    .await?;
    if job.done_by.is_none() {
        sqlx::query!("SELECT pg_notify($1, '')", JOB_POSTED_CHANNEL).execute(&mut *tx).await?;
    }
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
    /// oldest first within each; only jobs whose tags the worker has.
    pub async fn acquire_job(&self, worker: &Worker, policy: &QueuePolicy) -> Result<Option<JobRow>> {
        self.touch_daemon(worker).await?;
        if let Some(job) =
            take_next(&mut *self.pool.acquire().await?, worker, policy, JobPriority::User, self.now()).await?
        {
            return Ok(Some(job));
        }
        // Counting and taking prebuild work happen under one lock, so racing
        // daemons cannot both take the last prebuild slot.
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('warmspace.prebuild_acquire'))").execute(&mut *tx).await?;
        let (running, live): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM provisioner_jobs WHERE status IN ('running', 'canceling') AND priority = $1), \
                    (SELECT count(*) FROM provisioner_daemons WHERE last_seen_at > $2 - interval '{DAEMON_LIVENESS}')"
        )))
        .bind(JobPriority::Prebuild)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        if running >= prebuild_cap(policy.prebuild_share, live) {
            return Ok(None);
        }
        let job = take_next(&mut tx, worker, policy, JobPriority::Prebuild, self.now()).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Records that a daemon is alive (and what it calls itself).
    async fn touch_daemon(&self, worker: &Worker) -> Result<()> {
        sqlx::query!(
            "INSERT INTO provisioner_daemons (id, name, tags, key_id, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, last_seen_at = $5",
            worker.id,
            worker.name,
            Json(&worker.tags) as Json<&Tags>,
            worker.key_id,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
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
    // Output is reported, not chosen: NUL characters (PostgreSQL cannot
    // store them) are dropped, and a runaway line is cut, saying so, before
    // it counts toward the log's cap.
    let logs: Vec<NewLog> = logs
        .iter()
        .map(|l| NewLog {
            output: cap_log_line(&without_nul(&l.output)).into_owned(),
            stage: without_nul(&l.stage).into_owned(),
            ..l.clone()
        })
        .collect();
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

/// Prebuild jobs may run on at most this many daemons at once: the share
/// of the live ones, rounded down, but never fewer than one so prebuilds
/// still progress on a single-daemon installation.
fn prebuild_cap(share: f64, live_daemons: i64) -> i64 {
    ((share * live_daemons as f64).floor() as i64).max(1)
}

/// Leases the oldest pending job of `priority` that `worker` may run.
async fn take_next(
    conn: &mut PgConnection,
    worker: &Worker,
    policy: &QueuePolicy,
    priority: JobPriority,
    now: DateTime<Utc>,
) -> Result<Option<JobRow>> {
    // `now` was read before waiting for the queue's lock, so a job posted
    // meanwhile can be younger: it neither starts nor has its lease begin
    // before it was created.
    let sql = format!(
        "WITH next AS ( \
             SELECT id FROM provisioner_jobs \
             WHERE status = 'pending' AND priority = $4 AND tags <@ $3 \
             ORDER BY created_at, id \
             FOR UPDATE SKIP LOCKED LIMIT 1) \
         UPDATE provisioner_jobs j SET status = 'running', started_at = greatest($6, j.created_at), \
             updated_at = $6, worker_id = $1, worker_name = $2, \
             lease_expires_at = greatest($6, j.created_at) + $5 \
         FROM next WHERE j.id = next.id \
         RETURNING {JOB_COLUMNS}, NULL::bigint AS queue_position, {NO_TARGET}"
    );
    Ok(sqlx::query_as(AssertSqlSafe(sql))
        .bind(worker.id)
        .bind(&worker.name)
        .bind(Json(&worker.tags))
        .bind(priority)
        .bind(policy.lease)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?)
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
    fn prebuild_work_gets_its_share_of_daemons_but_at_least_one() {
        assert_eq!(prebuild_cap(0.5, 5), 2);
        assert_eq!(prebuild_cap(0.5, 1), 1);
        assert_eq!(prebuild_cap(0.0, 10), 1);
        assert_eq!(prebuild_cap(1.0, 10), 10);
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
