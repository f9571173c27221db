//! What the metrics collector reads besides the reconciliation snapshot:
//! the counters kept in the database (prebuilds created and failed, claims,
//! misses, replaced resources), the job queue by status and type, and the
//! live daemons. Read on the collector's interval, never by a scrape.

use chrono::{DateTime, Utc};
use warmspace_states::{JobStatus, JobType, MissReason};

use crate::workspaces::PREBUILDS_USER_ID;
use crate::{Result, Store};

/// Totals since the database began, per preset name (every version of a
/// template's preset of one name adds to the same totals).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PresetTotalsRow {
    pub organization_name: String,
    pub template_name: String,
    pub preset_name: String,
    /// Prebuild creations queued (build 1 of a prebuild).
    pub created: i64,
    /// Prebuild creations whose job failed.
    pub failed: i64,
    /// Claims (hits).
    pub claimed: i64,
    /// Resources that claim builds reported replaced.
    pub replacements: i64,
}

/// Misses since the database began, per preset name (empty when no preset
/// applied) and reason.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MissTotalsRow {
    pub organization_name: String,
    pub template_name: String,
    pub preset_name: String,
    pub reason: MissReason,
    pub misses: i64,
}

/// How many jobs are in one status, of one type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobCountRow {
    #[sqlx(rename = "type")]
    pub kind: JobType,
    pub status: JobStatus,
    pub jobs: i64,
}

/// Everything the collector reads besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct MetricTotals {
    pub presets: Vec<PresetTotalsRow>,
    pub misses: Vec<MissTotalsRow>,
    pub jobs: Vec<JobCountRow>,
    /// Daemons seen within the liveness window.
    pub live_daemons: i64,
}

/// Daemons seen within this long count as live (as for the prebuild share).
const DAEMON_LIVENESS: &str = "90 seconds";

impl Store {
    /// The counters, the queue and the live daemons, in five set-based
    /// reads (none per preset).
    pub async fn metric_totals(&self) -> Result<MetricTotals> {
        let now: DateTime<Utc> = self.now();
        let presets = sqlx::query_as::<_, PresetTotalsRow>(
            "WITH creations AS ( \
                 SELECT w.preset_id, count(*) AS created, count(*) FILTER (WHERE j.status = 'failed') AS failed \
                 FROM workspace_builds b JOIN workspaces w ON w.id = b.workspace_id \
                 JOIN provisioner_jobs j ON j.id = b.job_id \
                 WHERE b.build_number = 1 AND b.initiator_id = $1 AND w.preset_id IS NOT NULL GROUP BY w.preset_id), \
             claims AS (SELECT preset_id, count(*) AS claimed FROM claim_attempts \
                        WHERE hit AND preset_id IS NOT NULL GROUP BY preset_id), \
             replaced AS ( \
                 SELECT w.preset_id, count(*) AS replacements FROM workspace_resources r \
                 JOIN workspace_builds b ON b.id = r.workspace_build_id JOIN workspaces w ON w.id = b.workspace_id \
                 WHERE r.replaced AND b.reason = 'claim' AND w.preset_id IS NOT NULL GROUP BY w.preset_id), \
             per_preset AS ( \
                 SELECT coalesce(c.preset_id, h.preset_id, r.preset_id) AS preset_id, \
                     coalesce(c.created, 0) AS created, coalesce(c.failed, 0) AS failed, \
                     coalesce(h.claimed, 0) AS claimed, coalesce(r.replacements, 0) AS replacements \
                 FROM creations c FULL JOIN claims h ON h.preset_id = c.preset_id \
                 FULL JOIN replaced r ON r.preset_id = coalesce(c.preset_id, h.preset_id)) \
             SELECT o.name AS organization_name, t.name AS template_name, p.name AS preset_name, \
                 sum(x.created)::bigint AS created, sum(x.failed)::bigint AS failed, \
                 sum(x.claimed)::bigint AS claimed, sum(x.replacements)::bigint AS replacements \
             FROM per_preset x JOIN template_version_presets p ON p.id = x.preset_id \
             JOIN template_versions v ON v.id = p.template_version_id JOIN templates t ON t.id = v.template_id \
             JOIN organizations o ON o.id = t.organization_id \
             GROUP BY o.name, t.name, p.name ORDER BY o.name, t.name, p.name",
        )
        .bind(PREBUILDS_USER_ID)
        .fetch_all(&self.pool)
        .await?;
        let misses = sqlx::query_as::<_, MissTotalsRow>(
            "SELECT o.name AS organization_name, t.name AS template_name, coalesce(p.name, '') AS preset_name, \
                 a.reason, count(*) AS misses \
             FROM claim_attempts a JOIN templates t ON t.id = a.template_id \
             JOIN organizations o ON o.id = t.organization_id \
             LEFT JOIN template_version_presets p ON p.id = a.preset_id \
             WHERE NOT a.hit GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        )
        .fetch_all(&self.pool)
        .await?;
        let jobs = sqlx::query_as::<_, JobCountRow>(
            "SELECT type, status, count(*) AS jobs FROM provisioner_jobs GROUP BY type, status ORDER BY type, status",
        )
        .fetch_all(&self.pool)
        .await?;
        let live_daemons: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM provisioner_daemons WHERE last_seen_at > $1 - interval '{DAEMON_LIVENESS}'"
        )))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(MetricTotals { presets, misses, jobs, live_daemons })
    }
}
