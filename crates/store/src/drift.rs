//! Drift checks: the plan of a prebuild's claim, made once the prebuild is
//! eligible, saying which resources claiming it would replace (migration
//! 0027 says how they are kept and queued).

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_states::{JobPriority, JobStatus, JobType};

use crate::jobs::{CappedLog, Holder, NewLog, append_capped, finish_job};
use crate::workspaces::PREBUILDS_USER_ID;
use crate::{Result, Store};

/// The latest drift check of a preset, with how its job is doing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DriftCheckRow {
    pub preset_id: Uuid,
    /// The prebuild whose claim was planned.
    pub workspace_id: Uuid,
    pub job_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// What a claim would replace; `None` until the check succeeded.
    pub replaced: Option<Vec<String>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub job_status: JobStatus,
    pub job_error: Option<String>,
}

impl Store {
    /// Queues a drift check for each preset of `prebuilds` (workspace,
    /// preset: prebuilds that just became eligible) whose template version
    /// uses the Terraform backend and which has no check since it was last
    /// invalidated; one prebuild per preset is checked. Returns how many
    /// were queued (daemons are woken for them once committed).
    pub async fn queue_drift_checks(&self, prebuilds: &[(Uuid, Uuid)]) -> Result<usize> {
        if prebuilds.is_empty() {
            return Ok(0);
        }
        let (workspaces, presets): (Vec<Uuid>, Vec<Uuid>) = prebuilds.iter().copied().unzip();
        let mut tx = self.pool.begin().await?;
        let queued = sqlx::query_scalar!(
            "WITH candidates AS ( \
                 SELECT DISTINCT ON (e.p) e.w AS workspace_id, e.p AS preset_id, w.organization_id, v.file_id \
                 FROM unnest($1::uuid[], $2::uuid[]) AS e(w, p) \
                 JOIN workspaces w ON w.id = e.w \
                 JOIN template_version_presets p ON p.id = e.p \
                 JOIN template_versions v ON v.id = p.template_version_id \
                 WHERE v.provisioner_config ->> 'backend' = 'terraform' \
                   AND NOT EXISTS (SELECT 1 FROM prebuild_drift_checks d WHERE d.preset_id = e.p \
                                   AND (p.last_invalidated_at IS NULL OR d.created_at >= p.last_invalidated_at)) \
                 ORDER BY e.p, e.w), \
             queued AS ( \
                 INSERT INTO provisioner_jobs (organization_id, type, initiator_id, priority, input, file_id, status, \
                                               created_at, updated_at) \
                 SELECT organization_id, $3, $4, $5, \
                        jsonb_build_object('workspace_id', workspace_id, 'preset_id', preset_id), file_id, \
                        'pending', $6, $6 \
                 FROM candidates RETURNING id, input) \
             INSERT INTO prebuild_drift_checks (preset_id, workspace_id, job_id, created_at) \
             SELECT (input ->> 'preset_id')::uuid, (input ->> 'workspace_id')::uuid, id, $6 FROM queued \
             ON CONFLICT (preset_id) DO UPDATE SET workspace_id = excluded.workspace_id, job_id = excluded.job_id, \
                 created_at = excluded.created_at, replaced = NULL, completed_at = NULL \
             RETURNING preset_id",
            &workspaces,
            &presets,
            JobType::PrebuildDriftCheck as JobType,
            PREBUILDS_USER_ID,
            JobPriority::Prebuild as JobPriority,
            self.now(),
        )
        .fetch_all(&mut *tx)
        .await?;
        self.commit_posting(tx, queued.len()).await?;
        Ok(queued.len())
    }

    /// Records a drift check's finding — the addresses a claim would
    /// replace — and ends its job, after the daemon's last log lines. Fails
    /// with `NotFound` when the worker no longer holds the job.
    pub async fn complete_drift_check(
        &self,
        job_id: Uuid,
        holder: Holder<'_>,
        replaced: &[String],
        logs: &[NewLog],
    ) -> Result<JobStatus> {
        append_capped(&self.pool, CappedLog::Job { id: job_id, holder: Some(holder) }, logs).await?;
        let mut tx = self.pool.begin().await?;
        let now = self.now();
        let status = finish_job(&mut tx, job_id, holder.worker_id, JobStatus::Succeeded, None, false, now).await?;
        if status == JobStatus::Succeeded {
            sqlx::query!(
                "UPDATE prebuild_drift_checks SET replaced = $2, completed_at = $3 WHERE job_id = $1",
                job_id,
                replaced,
                now,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(status)
    }

    /// The latest drift check of each of `preset_ids` that has one.
    pub async fn drift_checks(&self, preset_ids: &[Uuid]) -> Result<Vec<DriftCheckRow>> {
        Ok(sqlx::query_as!(
            DriftCheckRow,
            "SELECT d.preset_id, d.workspace_id, d.job_id, d.created_at, d.replaced, d.completed_at, \
                 j.status AS \"job_status: JobStatus\", j.error AS job_error \
             FROM prebuild_drift_checks d JOIN provisioner_jobs j ON j.id = d.job_id \
             WHERE d.preset_id = ANY ($1)",
            preset_ids,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
