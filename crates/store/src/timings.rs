//! Build timings: how long each stage of a job took, and each action on
//! each resource within it, as its daemon reported them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::jobs::Holder;
use crate::{Result, Store};

/// One timed step of a job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TimingRow {
    /// `init`, `plan` or `apply`.
    pub stage: String,
    pub action: String,
    /// A resource's address; `None` for the whole stage.
    pub resource: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

impl Store {
    /// Records the timings of a job `holder` holds, ahead of its completion:
    /// they are true whether or not the completion gets through. Fails with
    /// `NotFound` when the worker no longer holds the job.
    pub async fn record_timings(&self, job_id: Uuid, holder: Holder<'_>, timings: &[TimingRow]) -> Result<()> {
        let stages: Vec<&str> = timings.iter().map(|t| t.stage.as_str()).collect();
        let actions: Vec<&str> = timings.iter().map(|t| t.action.as_str()).collect();
        let resources: Vec<Option<&str>> = timings.iter().map(|t| t.resource.as_deref()).collect();
        let started: Vec<DateTime<Utc>> = timings.iter().map(|t| t.started_at).collect();
        let ended: Vec<DateTime<Utc>> = timings.iter().map(|t| t.ended_at).collect();
        let held = sqlx::query_scalar!(
            "WITH held AS (SELECT id FROM provisioner_jobs \
                           WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'canceling')), \
             stored AS (INSERT INTO provisioner_job_timings (job_id, stage, action, resource, started_at, ended_at) \
                        SELECT held.id, t.* FROM held, \
                            unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[]) \
                            AS t(stage, action, resource, started_at, ended_at)) \
             SELECT count(*) AS \"held!\" FROM held",
            job_id,
            holder.worker_id,
            &stages as &[&str],
            &actions as &[&str],
            &resources as &[Option<&str>],
            &started,
            &ended,
        )
        .fetch_one(&self.pool)
        .await?;
        if held == 0 {
            return Err(crate::StoreError::NotFound);
        }
        Ok(())
    }

    /// A job's timings, stages first in the order they ran, then resources.
    pub async fn job_timings(&self, job_id: Uuid) -> Result<Vec<TimingRow>> {
        Ok(sqlx::query_as!(
            TimingRow,
            "SELECT stage, action, resource, started_at, ended_at FROM provisioner_job_timings \
             WHERE job_id = $1 ORDER BY started_at, resource NULLS FIRST, id",
            job_id,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
