//! What pool insight reads: the create requests of a window with the
//! readiness of their builds, the prebuild lives that overlap it, and the
//! names of the presets and templates they concern. Only rows of the
//! window are read, found by time (`claim_attempts_at`,
//! `prebuild_events_at`); the arithmetic is `warmspace_prebuilds::insights`.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_prebuilds::insights::{BuildReadiness, ClaimRow, Outcome, PrebuildLife};
use warmspace_states::{JobStatus, MissReason};

use crate::{Result, Store, StoreError};

/// A preset insight reports on, with its names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InsightPresetRow {
    pub preset_id: Uuid,
    pub preset_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub organization_name: String,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    pub version_active: bool,
}

/// A template insight reports on (requests no preset applied to).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InsightTemplateRow {
    pub template_id: Uuid,
    pub template_name: String,
    pub organization_name: String,
}

impl Store {
    /// Every create request recorded in `[since, until]`, oldest first, with
    /// its build: a hit's claim build, a miss's cold build (the workspace's
    /// first). A build's readiness is read from its job and its workspace's
    /// agents (whose times are those of the workspace's latest start build).
    pub async fn insight_claims(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<ClaimRow>> {
        let rows = sqlx::query!(
            "SELECT a.template_id, a.preset_id, a.hit, a.reason AS \"reason?: MissReason\", a.latency_ms, \
                 j.created_at AS \"build_created_at?\", j.status AS \"job_status?: JobStatus\", j.completed_at, \
                 g.agents AS \"agents!\", g.agents_ready AS \"agents_ready!\", g.first_ready_at, g.last_ready_at, \
                 EXISTS (SELECT 1 FROM workspace_builds l WHERE l.workspace_id = b.workspace_id \
                         AND l.build_number > b.build_number AND l.transition = 'start') AS \"superseded!\" \
             FROM claim_attempts a \
             LEFT JOIN LATERAL (SELECT x.workspace_id, x.build_number, x.job_id FROM workspace_builds x \
                                WHERE x.workspace_id = a.workspace_id AND x.transition = 'start' \
                                  AND CASE WHEN a.hit THEN x.reason = 'claim' ELSE x.build_number = 1 END \
                                ORDER BY x.build_number DESC LIMIT 1) b ON true \
             LEFT JOIN provisioner_jobs j ON j.id = b.job_id \
             CROSS JOIN LATERAL (SELECT count(*) AS agents, count(ready_at) AS agents_ready, \
                                     min(ready_at) AS first_ready_at, max(ready_at) AS last_ready_at \
                                 FROM workspace_agents WHERE workspace_id = b.workspace_id) g \
             WHERE a.at >= $1 AND a.at <= $2 \
             ORDER BY a.at, a.id",
            since,
            until,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let outcome = match (r.hit, r.reason) {
                    (true, _) => Outcome::Hit,
                    (false, Some(reason)) => Outcome::Miss(reason),
                    (false, None) => {
                        return Err(StoreError::Database(sqlx::Error::Decode(
                            "a claim miss without its reason".into(),
                        )));
                    }
                };
                let build = match (r.build_created_at, r.job_status) {
                    (Some(created_at), Some(job_status)) => Some(BuildReadiness {
                        created_at,
                        job_status,
                        completed_at: r.completed_at,
                        agents: u32::try_from(r.agents).unwrap_or(u32::MAX),
                        agents_ready: u32::try_from(r.agents_ready).unwrap_or(u32::MAX),
                        first_ready_at: r.first_ready_at,
                        last_ready_at: r.last_ready_at,
                        superseded: r.superseded,
                    }),
                    _ => None,
                };
                Ok(ClaimRow {
                    template_id: r.template_id,
                    preset_id: r.preset_id,
                    outcome,
                    latency_ms: r.latency_ms,
                    build,
                })
            })
            .collect()
    }

    /// The lives of prebuilds that overlap `[since, until]`: those with an
    /// event in the window, and those alive now. Each from its `created`
    /// event to its first `claimed`, `deleted` or `expired` one (the
    /// function `prebuild_lives`, migration 0025).
    pub async fn insight_lives(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<PrebuildLife>> {
        let rows = sqlx::query!(
            "SELECT preset_id AS \"preset_id!\", started_at AS \"created_at!\", ended_at \
             FROM prebuild_lives($1, $2, 'created') ORDER BY started_at",
            since,
            until,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PrebuildLife { preset_id: r.preset_id, created_at: r.created_at, ended_at: r.ended_at })
            .collect())
    }

    /// The presets named in `ids` and every prebuild-configured preset of a
    /// live template's active version, with their names: by template, then
    /// version (newest first), then the preset's order in its version.
    pub async fn insight_presets(&self, ids: &[Uuid]) -> Result<Vec<InsightPresetRow>> {
        Ok(sqlx::query_as!(
            InsightPresetRow,
            "WITH wanted AS ( \
                 SELECT unnest($1::uuid[]) AS id \
                 UNION \
                 SELECT p.id FROM templates t JOIN template_version_presets p \
                     ON p.template_version_id = t.active_version_id \
                 WHERE NOT t.deleted AND p.desired_instances IS NOT NULL) \
             SELECT p.id AS preset_id, p.name AS preset_name, t.id AS template_id, t.name AS template_name, \
                 o.name AS organization_name, v.id AS template_version_id, v.name AS template_version_name, \
                 (t.active_version_id = v.id AND NOT t.deleted) AS \"version_active!\" \
             FROM wanted JOIN template_version_presets p ON p.id = wanted.id \
             JOIN template_versions v ON v.id = p.template_version_id \
             JOIN templates t ON t.id = v.template_id \
             JOIN organizations o ON o.id = t.organization_id \
             ORDER BY t.name, t.id, v.created_at DESC, v.id, p.ordinal",
            ids,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Templates by id, with their organization's name.
    pub async fn insight_templates(&self, ids: &[Uuid]) -> Result<Vec<InsightTemplateRow>> {
        Ok(sqlx::query_as!(
            InsightTemplateRow,
            "SELECT t.id AS template_id, t.name AS template_name, o.name AS organization_name \
             FROM templates t JOIN organizations o ON o.id = t.organization_id WHERE t.id = ANY ($1)",
            ids,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// One sample of a preset's pool history: at `at`, how many of its
/// prebuilds were eligible, and the create requests charged to it in the
/// step that ends at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSampleRow {
    pub preset_id: Uuid,
    pub at: DateTime<Utc>,
    /// The preset's template version had been created by `at` (before, it cannot have kept a pool).
    pub version_existed: bool,
    pub eligible: i64,
    pub hits: i64,
    pub misses: i64,
}

impl Store {
    /// The pools of `preset_ids` over `[since, until]`, sampled every `step`
    /// from `since`: derived from the prebuilds' recorded lives (eligible from
    /// their `eligible` event until their first `claimed`, `deleted` or
    /// `expired` one: `prebuild_lives`, migration 0025) and from the claim
    /// attempts, in one statement. Only rows of the window are read: the
    /// prebuilds with an event in it or alive now, and the attempts by preset
    /// and time.
    pub async fn pool_history(
        &self,
        preset_ids: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        step: std::time::Duration,
    ) -> Result<Vec<PoolSampleRow>> {
        let rows = sqlx::query!(
            "WITH lives AS MATERIALIZED ( \
                 SELECT preset_id, started_at AS eligible_at, ended_at FROM prebuild_lives($2, $3, 'eligible') \
                 WHERE preset_id = ANY ($1)), \
             samples AS ( \
                 SELECT p.id AS preset_id, s.at, s.at >= v.created_at AS version_existed \
                 FROM template_version_presets p JOIN template_versions v ON v.id = p.template_version_id \
                 CROSS JOIN generate_series($2::timestamptz, $3::timestamptz, make_interval(secs => $4)) s (at) \
                 WHERE p.id = ANY ($1)) \
             SELECT s.preset_id AS \"preset_id!\", s.at AS \"at!\", s.version_existed AS \"version_existed!\", \
                 (SELECT count(*) FROM lives l WHERE l.preset_id = s.preset_id AND l.eligible_at <= s.at \
                    AND (l.ended_at IS NULL OR l.ended_at > s.at)) AS \"eligible!\", \
                 count(a.id) FILTER (WHERE a.hit) AS \"hits!\", \
                 count(a.id) FILTER (WHERE NOT a.hit) AS \"misses!\" \
             FROM samples s \
             LEFT JOIN claim_attempts a ON a.preset_id = s.preset_id \
                 AND a.at > greatest(s.at - make_interval(secs => $4), $2) AND a.at <= s.at \
             GROUP BY s.preset_id, s.at, s.version_existed \
             ORDER BY s.preset_id, s.at",
            preset_ids,
            since,
            until,
            step.as_secs_f64(),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PoolSampleRow {
                preset_id: r.preset_id,
                at: r.at,
                version_existed: r.version_existed,
                eligible: r.eligible,
                hits: r.hits,
                misses: r.misses,
            })
            .collect())
    }
}
