//! The provisioner job queue: jobs, their acquisition by daemons, and their
//! logs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    TemplateVersionImport,
    WorkspaceBuild,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::TemplateVersionImport => "template_version_import",
            JobType::WorkspaceBuild => "workspace_build",
        }
    }
}

/// Priority classes, lower first.
pub mod priority {
    /// Somebody is waiting: imports, user builds, claims.
    pub const HUMAN: i16 = 0;
    /// Prebuild creation and deletion.
    pub const PREBUILD: i16 = 1;
}

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub status: String,
    pub initiator_id: Uuid,
    pub priority: i16,
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
    /// Pending jobs ahead of this one (0 = next); `None` unless pending.
    pub queue_position: Option<i64>,
}

impl JobRow {
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }
}

pub struct NewJob {
    pub organization_id: Uuid,
    pub kind: JobType,
    pub initiator_id: Uuid,
    pub priority: i16,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLog {
    pub created_at: DateTime<Utc>,
    pub source: String,
    pub level: String,
    pub stage: String,
    pub output: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub job_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub source: String,
    pub level: String,
    pub stage: String,
    pub output: String,
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub organization_id: Option<Uuid>,
    /// Empty: any status.
    pub statuses: Vec<String>,
    pub limit: i64,
}

/// Columns of `JobRow`, with the queue position computed for pending jobs.
const JOB_COLUMNS: &str = "j.id, j.organization_id, j.type, j.status, j.initiator_id, j.priority, j.tags, \
     j.input, j.file_id, j.worker_id, j.worker_name, j.error, j.created_at, j.updated_at, j.started_at, \
     j.completed_at, j.canceled_at, j.logs_length, j.logs_overflowed, \
     CASE WHEN j.status = 'pending' THEN (SELECT count(*) FROM provisioner_jobs q WHERE q.status = 'pending' \
          AND (q.priority, q.created_at, q.id) < (j.priority, j.created_at, j.id)) END AS queue_position";

/// Inserts a job inside the caller's transaction. The NOTIFY that wakes
/// daemons is part of the same transaction, so it is delivered at commit
/// and never before the job is visible.
pub(crate) async fn insert_job(tx: &mut PgConnection, job: &NewJob) -> Result<Uuid> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO provisioner_jobs (organization_id, type, initiator_id, priority, tags, input, file_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(job.organization_id)
    .bind(job.kind.as_str())
    .bind(job.initiator_id)
    .bind(job.priority)
    .bind(Json(&job.tags))
    .bind(&job.input)
    .bind(job.file_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(JOB_POSTED_CHANNEL).execute(&mut *tx).await?;
    Ok(id)
}

/// Marks a job held by `worker_id` finished with `status`, inside the
/// caller's transaction. Fails with `NotFound` when the worker no longer
/// holds the job (it was canceled, or its lease was taken away).
pub(crate) async fn finish_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    worker_id: Uuid,
    status: &str,
    error: Option<&str>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE provisioner_jobs SET status = $3, error = $4, completed_at = now(), updated_at = now() \
         WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'canceling')",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(status)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl Store {
    pub async fn job(&self, id: Uuid) -> Result<JobRow> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM provisioner_jobs j WHERE j.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    /// Takes the next pending job `worker` may run, if any: human work before
    /// prebuild work, oldest first, only jobs whose tags the worker has.
    /// `SKIP LOCKED` lets any number of daemons acquire at once without
    /// waiting on each other or taking the same job.
    pub async fn acquire_job(&self, worker: &Worker) -> Result<Option<JobRow>> {
        let sql = format!(
            "WITH next AS ( \
                 SELECT id FROM provisioner_jobs \
                 WHERE status = 'pending' AND tags <@ $3 \
                 ORDER BY priority, created_at, id \
                 FOR UPDATE SKIP LOCKED LIMIT 1) \
             UPDATE provisioner_jobs j SET status = 'running', started_at = now(), updated_at = now(), \
                 worker_id = $1, worker_name = $2 \
             FROM next WHERE j.id = next.id \
             RETURNING {JOB_COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker.id)
            .bind(&worker.name)
            .bind(Json(&worker.tags))
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Fails a job held by `worker_id`.
    pub async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        finish_job(&mut tx, job_id, worker_id, "failed", Some(error)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Cancels a job that no daemon has picked up. Returns false when the
    /// job is no longer pending.
    pub async fn cancel_pending_job(&self, job_id: Uuid) -> Result<bool> {
        let canceled = sqlx::query(
            "UPDATE provisioner_jobs SET status = 'canceled', canceled_at = now(), completed_at = now(), \
             updated_at = now(), error = 'canceled before it started' WHERE id = $1 AND status = 'pending'",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(canceled.rows_affected() == 1)
    }

    /// Appends log lines to a job, honouring the per-job cap: output past
    /// [`MAX_JOB_LOG_BYTES`] is dropped, the line that crosses it is cut at
    /// the cap, and the log ends with [`LOG_TRUNCATED_LINE`]. Returns how many
    /// lines were stored.
    pub async fn append_job_logs(&self, job_id: Uuid, logs: &[NewLog]) -> Result<usize> {
        if logs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        // The row lock serialises appenders, so the length stays exact.
        let (length, overflowed): (i32, bool) =
            sqlx::query_as("SELECT logs_length, logs_overflowed FROM provisioner_jobs WHERE id = $1 FOR UPDATE")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        if overflowed {
            return Ok(0);
        }
        let (mut kept, overflows) = cap_logs(length as usize, logs);
        let added: usize = kept.iter().map(|l| l.output.len()).sum();
        if overflows {
            let last = logs.last().expect("not empty");
            kept.push(NewLog {
                created_at: last.created_at,
                source: "provisioner_daemon".into(),
                level: "warn".into(),
                stage: last.stage.clone(),
                output: LOG_TRUNCATED_LINE.into(),
            });
        }
        let column = |f: fn(&NewLog) -> String| kept.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO provisioner_job_logs (job_id, created_at, source, level, stage, output) \
             SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])",
        )
        .bind(job_id)
        .bind(kept.iter().map(|l| l.created_at).collect::<Vec<_>>())
        .bind(column(|l| l.source.clone()))
        .bind(column(|l| l.level.clone()))
        .bind(column(|l| l.stage.clone()))
        .bind(column(|l| l.output.clone()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE provisioner_jobs SET logs_length = logs_length + $2, logs_overflowed = $3, updated_at = now() \
             WHERE id = $1",
        )
        .bind(job_id)
        .bind(added as i32)
        .bind(overflows)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(kept.len())
    }

    /// A job's log lines with ids above `after`, in order.
    pub async fn job_logs(&self, job_id: Uuid, after: i64) -> Result<Vec<LogRow>> {
        Ok(sqlx::query_as(
            "SELECT id, job_id, created_at, source, level, stage, output FROM provisioner_job_logs \
             WHERE job_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(job_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Jobs, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM provisioner_jobs j \
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

/// The part of `logs` that fits under the cap given `stored` bytes so far,
/// and whether anything was cut.
fn cap_logs(stored: usize, logs: &[NewLog]) -> (Vec<NewLog>, bool) {
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
            source: "provisioner".into(),
            level: "info".into(),
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
