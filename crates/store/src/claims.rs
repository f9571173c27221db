//! Claiming a prebuild: the atomic hand-over, and the record of every claim
//! attempt.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;
use warmspace_states::{BuildReason, MissReason, Transition};

use crate::workspaces::{NewBuild, PREBUILDS_USER_ID, insert_build};
use crate::{Result, Store, StoreError};

/// A hand-over to carry out.
pub struct ClaimRequest<'a> {
    pub preset_id: Uuid,
    pub template_id: Uuid,
    pub user_id: Uuid,
    /// The workspace's new name.
    pub name: &'a str,
    /// Lifecycle fields the claimed workspace takes on.
    pub ttl_ms: Option<i64>,
    pub autostart_schedule: Option<String>,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    /// The claim build's values: the preset's plus the user's mutable ones.
    pub parameters: &'a BTreeMap<String, String>,
    /// `claim = "reinit"`: the claim build is complete when the transaction
    /// commits; the agent's re-init does the personalisation.
    pub reinit: bool,
    /// When the create request arrived: the hand-over is measured from here.
    pub arrived: Instant,
}

/// A create request that did not claim, recorded with its cold build.
#[derive(Debug, Clone, Copy)]
pub struct ClaimMiss {
    pub template_id: Uuid,
    /// The preset the request used, matched or came closest to.
    pub preset_id: Option<Uuid>,
    pub reason: MissReason,
    /// When the create request arrived: the record's latency runs from here
    /// to its write, beside the cold build's.
    pub arrived: Instant,
}

/// Milliseconds since `arrived`, as recorded.
fn ms_since(arrived: Instant) -> f64 {
    arrived.elapsed().as_secs_f64() * 1000.0
}

/// Records a miss inside the transaction that queues its cold build.
pub(crate) async fn insert_miss(
    tx: &mut sqlx::PgConnection,
    miss: &ClaimMiss,
    user_id: Uuid,
    workspace_id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO claim_attempts (at, template_id, preset_id, user_id, hit, reason, workspace_id, latency_ms) \
         VALUES ($1, $2, $3, $4, false, $5, $6, $7)",
        at,
        miss.template_id,
        miss.preset_id,
        user_id,
        miss.reason as MissReason,
        workspace_id,
        ms_since(miss.arrived),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub workspace_id: Uuid,
    pub build_id: Uuid,
    pub committed_at: DateTime<Utc>,
    /// The hand-over, as recorded: from the request's arrival to the claim
    /// record's write, the transaction's last statement before its commit.
    pub hand_over_ms: f64,
}

/// Claimable prebuilds of preset `$1` (owned by `$2`) at `$3`, oldest first:
/// latest build a successful start, not past the TTL nor invalidated, every
/// agent ready. The rule the reconciler's pure `is_eligible` applies too; a
/// test holds the two to the same answers on the same rows.
const ELIGIBLE: &str = "SELECT w.id FROM workspaces w \
     JOIN template_version_presets p ON p.id = w.preset_id \
     JOIN LATERAL (SELECT transition, job_id FROM workspace_builds WHERE workspace_id = w.id \
                   ORDER BY build_number DESC LIMIT 1) b ON true \
     JOIN provisioner_jobs j ON j.id = b.job_id \
     WHERE w.preset_id = $1 AND w.owner_id = $2 AND NOT w.deleted \
       AND b.transition = 'start' AND j.status = 'succeeded' \
       AND (p.ttl_seconds IS NULL OR w.created_at + make_interval(secs => p.ttl_seconds) > $3) \
       AND (p.last_invalidated_at IS NULL OR w.created_at >= p.last_invalidated_at) \
       AND NOT EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = w.id \
                       AND a.token_id IS NOT NULL AND a.lifecycle_state <> 'ready') \
     ORDER BY w.created_at, w.id";

impl Store {
    /// Hands an eligible prebuild of the preset to the user, in one
    /// transaction: lock it (skipping any another claim holds), move
    /// ownership, rename it, give it its lifecycle fields, queue (or, for
    /// reinit, complete) the claim build initiated by the user, and record
    /// the hit. `None` when the preset has no eligible prebuild.
    pub async fn claim_prebuild(&self, claim: &ClaimRequest<'_>) -> Result<Option<Claimed>> {
        let mut tx = self.pool.begin().await?;
        // The oldest one no other claim holds, locked until this one commits.
        let take = format!("{ELIGIBLE} FOR UPDATE OF w SKIP LOCKED LIMIT 1");
        let Some(workspace_id): Option<Uuid> = sqlx::query_scalar(AssertSqlSafe(take))
            .bind(claim.preset_id)
            .bind(PREBUILDS_USER_ID)
            .bind(self.now())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let claimed = sqlx::query!(
            "UPDATE workspaces SET owner_id = $2, name = $3, ttl_ms = $4, autostart_schedule = $5, \
                 last_used_at = $6, updated_at = $6 WHERE id = $1 \
             RETURNING organization_id, \
                 (SELECT template_version_id FROM workspace_builds WHERE workspace_id = $1 \
                  ORDER BY build_number DESC LIMIT 1) AS \"version_id!\"",
            workspace_id,
            claim.user_id,
            claim.name,
            claim.ttl_ms,
            claim.autostart_schedule.as_deref(),
            self.now(),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_on(e, &[("workspaces_owner_name_key", "name")]))?;
        let (organization_id, version_id) = (claimed.organization_id, claimed.version_id);
        let build = NewBuild {
            transition: Transition::Start,
            initiator_id: claim.user_id,
            reason: BuildReason::Claim,
            template_version_id: version_id,
            preset_id: Some(claim.preset_id),
            parameters: claim.parameters.clone(),
            deadline: claim.deadline,
            max_deadline: claim.max_deadline,
        };
        // Reinit: nothing to run, so the job is done as it is queued and no daemon is woken.
        let done_by = claim.reinit.then_some("claim (reinit)");
        let build_id = insert_build(&mut tx, workspace_id, organization_id, &build, done_by, self.now()).await?;
        sqlx::query!(
            "INSERT INTO prebuild_events (workspace_id, preset_id, event) VALUES ($1, $2, 'claimed')",
            workspace_id,
            claim.preset_id,
        )
        .execute(&mut *tx)
        .await?;
        // Measured once, here, and kept: the response and the log report this very value.
        let hand_over_ms = ms_since(claim.arrived);
        let committed_at: DateTime<Utc> = sqlx::query_scalar!(
            "INSERT INTO claim_attempts (template_id, preset_id, user_id, hit, workspace_id, latency_ms, committed_at) \
             VALUES ($1, $2, $3, true, $4, $5, clock_timestamp()) \
             RETURNING committed_at AS \"committed_at!\"",
            claim.template_id,
            claim.preset_id,
            claim.user_id,
            workspace_id,
            hand_over_ms,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Claimed { workspace_id, build_id, committed_at, hand_over_ms }))
    }

    /// Every prebuild of the preset a claim could take now, oldest first.
    pub async fn eligible_prebuilds(&self, preset_id: Uuid) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(ELIGIBLE)
            .bind(preset_id)
            .bind(PREBUILDS_USER_ID)
            .bind(self.now())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Claim attempts since `since`, per preset: (preset id, hits, misses by
    /// reason, hit latency p50 and p99 in ms). Attempts with no preset are
    /// grouped under `None`.
    pub async fn claim_stats(&self, since: DateTime<Utc>) -> Result<Vec<ClaimStatsRow>> {
        Ok(sqlx::query_as!(
            ClaimStatsRow,
            "WITH recent AS (SELECT * FROM claim_attempts WHERE at >= $1), \
             totals AS (SELECT template_id, preset_id, count(*) FILTER (WHERE hit) AS hits, \
                            count(*) FILTER (WHERE NOT hit) AS misses, \
                            percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE hit) AS hit_p50_ms, \
                            percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE hit) AS hit_p99_ms \
                        FROM recent GROUP BY template_id, preset_id), \
             reasons AS (SELECT template_id, preset_id, jsonb_object_agg(reason, n) AS misses_by_reason \
                         FROM (SELECT template_id, preset_id, reason, count(*) AS n FROM recent WHERE NOT hit \
                               GROUP BY template_id, preset_id, reason) per_reason \
                         GROUP BY template_id, preset_id) \
             SELECT s.preset_id, t.name AS template_name, p.name AS \"preset_name?\", s.hits AS \"hits!\", \
                 s.misses AS \"misses!\", \
                 coalesce(r.misses_by_reason, '{}') AS \"misses_by_reason!: Json<BTreeMap<MissReason, i64>>\", \
                 s.hit_p50_ms, s.hit_p99_ms \
             FROM totals s JOIN templates t ON t.id = s.template_id \
             LEFT JOIN template_version_presets p ON p.id = s.preset_id \
             LEFT JOIN reasons r ON r.template_id = s.template_id AND r.preset_id IS NOT DISTINCT FROM s.preset_id \
             ORDER BY t.name, p.name",
            since,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimStatsRow {
    pub preset_id: Option<Uuid>,
    pub template_name: String,
    pub preset_name: Option<String>,
    pub hits: i64,
    pub misses: i64,
    pub misses_by_reason: Json<BTreeMap<MissReason, i64>>,
    pub hit_p50_ms: Option<f64>,
    pub hit_p99_ms: Option<f64>,
}
