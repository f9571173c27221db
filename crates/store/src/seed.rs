//! Bulk data for benchmarks and load tests, written in a few set-based
//! statements rather than through the workflows (which would take minutes
//! for the sizes benchmarks need). What is written is what the workflows
//! would leave behind: imported versions, running prebuilds.

use uuid::Uuid;

use warmspace_states::JobPriority;

use crate::workspaces::PREBUILDS_USER_ID;
use crate::{Result, Store, StoreError};

impl Store {
    /// `count` templates, each with an imported `echo` version whose one
    /// preset keeps a pool of 1: full (a running prebuild) or empty. Returns
    /// the presets.
    pub async fn seed_pools(&self, count: u32, full: bool) -> Result<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let batch = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let ids = sqlx::query!(
            "SELECT (SELECT id FROM organizations WHERE is_default) AS \"org!\", \
                    coalesce((SELECT id FROM files WHERE hash = repeat('0', 64)), gen_random_uuid()) AS \"file!\"",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (org, file) = (ids.org, ids.file);
        let owner = sqlx::query_scalar!(
            "INSERT INTO users (username, email, login_type) VALUES ('seed-' || $1, 'seed-' || $1 || '@example.com', \
             'none') RETURNING id",
            batch,
        )
        .fetch_one(&mut *tx)
        .await?;
        let templates = [
            "INSERT INTO files (id, hash, mimetype, size, data) VALUES ($3, repeat('0', 64), 'application/x-tar', 0, '') \
             ON CONFLICT (hash) DO NOTHING",
            "CREATE TEMP TABLE seed ON COMMIT DROP AS SELECT g, gen_random_uuid() AS version, gen_random_uuid() AS import, \
                 gen_random_uuid() AS template, gen_random_uuid() AS preset, gen_random_uuid() AS workspace, \
                 gen_random_uuid() AS build, gen_random_uuid() AS job FROM generate_series(1, $1) g",
            "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, input, file_id, worker_id, \
                 worker_name, started_at, completed_at) \
             SELECT import, $2, 'template_version_import', 'succeeded', $4, '{}', $3, gen_random_uuid(), 'seed', now(), now() \
             FROM seed",
            "INSERT INTO template_versions (id, organization_id, name, file_id, job_id, created_by, provisioner, claim_mode, \
                 provisioner_config) \
             SELECT version, $2, 'v1', $3, import, $4, 'echo', 'rebuild', \
                 '{\"backend\": \"echo\", \"duration_ms\": 0, \"fail_on\": [], \"replace_on_claim\": []}' FROM seed",
            "INSERT INTO templates (id, organization_id, name, active_version_id, created_by) \
             SELECT template, $2, 'seed-' || $5 || '-' || g, version, $4 FROM seed",
            "UPDATE template_versions v SET template_id = s.template FROM seed s WHERE v.id = s.version",
            "INSERT INTO template_version_presets (id, template_version_id, name, ordinal, desired_instances) \
             SELECT preset, version, 'pool', 0, 1 FROM seed",
        ];
        let prebuilds = [
            "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, priority, input, file_id, \
                 worker_id, worker_name, started_at, completed_at) \
             SELECT job, $2, 'workspace_build', 'succeeded', $6, 1, '{}', $3, gen_random_uuid(), 'seed', now(), now() \
             FROM seed",
            "INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id) \
             SELECT workspace, $2, $6, template, 'prebuild-' || $5 || '-' || g, preset FROM seed",
            "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
                 template_version_id, template_version_preset_id, job_id, provisioner_state) \
             SELECT build, workspace, 1, 'start', $6, 'prebuild', version, preset, job, '' FROM seed",
        ];
        let chosen = templates.iter().chain(if full { prebuilds.iter() } else { [].iter() });
        // Every value is one generated here (numbers, UUIDs, hex): inlined, so
        // each statement takes exactly the parameters it uses.
        let values = [
            ("$1", count.to_string()),
            ("$2", format!("'{org}'")),
            ("$3", format!("'{file}'")),
            ("$4", format!("'{owner}'")),
            ("$5", format!("'{batch}'")),
            ("$6", format!("'{PREBUILDS_USER_ID}'")),
        ];
        for statement in chosen {
            let sql = values.iter().fold(statement.to_string(), |sql, (name, value)| sql.replace(name, value));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        let presets = sqlx::query_scalar("SELECT preset FROM seed ORDER BY g").fetch_all(&mut *tx).await?;
        tx.commit().await?;
        sqlx::query!("ANALYZE").execute(&self.pool).await?;
        Ok(presets)
    }

    /// `count` running, claimable prebuilds of an existing preset (of its
    /// template's active version), built with the preset's values and
    /// created one millisecond apart, oldest first.
    pub async fn seed_prebuilds(&self, preset_id: Uuid, count: u32) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        seed_running(&mut tx, self.now(), preset_id, count, None).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `count` running workspaces of an existing preset (of its template's
/// active version), built with the preset's values, written in `tx`: those
/// of `owner`, created one second apart, or (`None`) prebuilds, one
/// millisecond apart; oldest first. Leaves the temporary table `seed` (a
/// row per workspace: `g`, `workspace`, `at`, `owner`, `template`, `preset`)
/// for the caller's additions until the transaction ends.
async fn seed_running(
    tx: &mut sqlx::PgConnection,
    now: chrono::DateTime<chrono::Utc>,
    preset_id: Uuid,
    count: u32,
    owner: Option<Uuid>,
) -> Result<()> {
    let preset = sqlx::query!(
        "SELECT t.organization_id, t.id AS template_id, v.id AS version_id, v.file_id \
         FROM template_version_presets p \
         JOIN template_versions v ON v.id = p.template_version_id JOIN templates t ON t.id = v.template_id \
         WHERE p.id = $1",
        preset_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let count =
        i32::try_from(count).map_err(|_| StoreError::Invalid { field: "count", message: "too large".into() })?;
    // Everything the inserts need, in one row per workspace, so they take no parameters.
    sqlx::query!(
        "CREATE TEMP TABLE seed ON COMMIT DROP AS SELECT g, gen_random_uuid() AS workspace, \
             gen_random_uuid() AS build, gen_random_uuid() AS job, \
             $2::timestamptz - make_interval(secs => ($1 - g) * CASE WHEN $9::uuid IS NULL THEN 0.001 ELSE 1 END) AS at, \
             CASE WHEN $9::uuid IS NULL THEN 'prebuild-' ELSE 'ws-' END || left(md5(random()::text), 8) || '-' || g \
                 AS name, \
             $3::uuid AS organization, $4::uuid AS template, $5::uuid AS version, $6::uuid AS file, \
             $7::uuid AS preset, coalesce($9, $8::uuid) AS owner, \
             CASE WHEN $9::uuid IS NULL THEN 'prebuild' ELSE 'initiator' END AS reason, \
             CASE WHEN $9::uuid IS NULL THEN 1 ELSE 0 END AS priority, \
             CASE WHEN $9::uuid IS NULL THEN interval '0' ELSE interval '90 seconds' END AS took \
         FROM generate_series(1, $1) g",
        count,
        now,
        preset.organization_id,
        preset.template_id,
        preset.version_id,
        preset.file_id,
        preset_id,
        PREBUILDS_USER_ID,
        owner,
    )
    .execute(&mut *tx)
    .await?;
    let statements = [
        "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, priority, input, file_id, \
             worker_id, worker_name, created_at, started_at, completed_at) \
         SELECT job, organization, 'workspace_build', 'succeeded', owner, priority, '{}', file, gen_random_uuid(), \
             'seed', at, at, at + took \
         FROM seed",
        "INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id, created_at) \
         SELECT workspace, organization, owner, template, name, preset, at FROM seed",
        "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
             template_version_id, template_version_preset_id, job_id, provisioner_state, created_at) \
         SELECT build, workspace, 1, 'start', owner, reason, version, preset, job, '', at FROM seed",
        "INSERT INTO workspace_build_parameters (workspace_build_id, name, value) \
         SELECT s.build, pp.name, pp.value FROM seed s JOIN template_version_preset_parameters pp \
             ON pp.preset_id = s.preset",
    ];
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    Ok(())
}

impl Store {
    /// `count` pending `start` builds of an existing preset's template
    /// version, on new workspaces, queued one microsecond apart (oldest
    /// first) at `priority`: user builds owned by the template's creator,
    /// prebuild builds by the prebuilds user. What the workflows would leave
    /// behind when they queue builds, without their NOTIFY (nothing is
    /// listening yet when benchmarks seed).
    pub async fn seed_queued_builds(&self, preset_id: Uuid, count: u32, priority: JobPriority) -> Result<()> {
        let count =
            i32::try_from(count).map_err(|_| StoreError::Invalid { field: "count", message: "too large".into() })?;
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "CREATE TEMP TABLE seed ON COMMIT DROP AS SELECT g, gen_random_uuid() AS workspace, \
                 gen_random_uuid() AS build, gen_random_uuid() AS job, \
                 $2::timestamptz - make_interval(secs => ($1 - g) / 1000000.0) AS at, \
                 'queued-' || left(md5(random()::text), 8) || '-' || g AS name, \
                 t.organization_id AS organization, t.id AS template, v.id AS version, v.file_id AS file, \
                 CASE WHEN $3::smallint = 1 THEN p.id END AS preset, \
                 CASE WHEN $3::smallint = 1 THEN $4 ELSE t.created_by END AS owner, $3::smallint AS priority, \
                 CASE WHEN $3::smallint = 1 THEN 'prebuild' ELSE 'initiator' END AS reason \
             FROM template_version_presets p JOIN template_versions v ON v.id = p.template_version_id \
             JOIN templates t ON t.id = v.template_id, generate_series(1, $1) g \
             WHERE p.id = $5",
            count,
            self.now(),
            priority.as_i16(),
            PREBUILDS_USER_ID,
            preset_id,
        )
        .execute(&mut *tx)
        .await?;
        let statements = [
            "INSERT INTO provisioner_jobs (id, organization_id, type, initiator_id, priority, input, file_id, \
                 created_at, updated_at) \
             SELECT job, organization, 'workspace_build', owner, priority, '{}', file, at, at FROM seed",
            "INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id, created_at) \
             SELECT workspace, organization, owner, template, name, preset, at FROM seed",
            "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
                 template_version_id, template_version_preset_id, job_id, created_at) \
             SELECT build, workspace, 1, 'start', owner, reason, version, preset, job, at FROM seed",
        ];
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        sqlx::query!("ANALYZE provisioner_jobs").execute(&self.pool).await?;
        Ok(())
    }
}

impl Store {
    /// One template whose preset keeps a pool of `desired`, holding
    /// `prebuilds` claimable prebuilds. Returns the template and the preset.
    pub async fn seed_pool(&self, desired: u32, prebuilds: u32) -> Result<(Uuid, Uuid)> {
        let preset = self.seed_pools(1, false).await?[0];
        let desired = i32::try_from(desired)
            .map_err(|_| StoreError::Invalid { field: "desired", message: "too large".into() })?;
        let template = sqlx::query_scalar!(
            "UPDATE template_version_presets p SET desired_instances = $2 FROM template_versions v \
             WHERE p.id = $1 AND v.id = p.template_version_id RETURNING v.template_id AS \"template_id!\"",
            preset,
            desired,
        )
        .fetch_one(&self.pool)
        .await?;
        self.seed_prebuilds(preset, prebuilds).await?;
        Ok((template, preset))
    }

    /// `count` finished prebuild creations of a preset, long gone (deleted
    /// as surplus an hour after they became eligible), created evenly over
    /// `span` before now, with their `created`, `eligible` and `deleted`
    /// events: the history a busy preset accumulates, most of it outside
    /// any look-back window. Every tenth creation older than half the span
    /// failed; the recent ones all succeeded, so the preset is not backing off.
    pub async fn seed_prebuild_history(&self, preset_id: Uuid, count: u32, span: std::time::Duration) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let count =
            i32::try_from(count).map_err(|_| StoreError::Invalid { field: "count", message: "too large".into() })?;
        sqlx::query!(
            "CREATE TEMP TABLE seed ON COMMIT DROP AS SELECT g, gen_random_uuid() AS workspace, \
                 gen_random_uuid() AS build, gen_random_uuid() AS job, \
                 $2::timestamptz - make_interval(secs => $3::float8 * g / $1) AS at, \
                 g % 10 = 0 AND g > $1 / 2 AS failed, \
                 'gone-' || left(md5(random()::text), 8) || '-' || g AS name, \
                 t.organization_id AS organization, t.id AS template, v.id AS version, v.file_id AS file, \
                 p.id AS preset, $5::uuid AS owner \
             FROM generate_series(1, $1) g, template_version_presets p \
             JOIN template_versions v ON v.id = p.template_version_id JOIN templates t ON t.id = v.template_id \
             WHERE p.id = $4",
            count,
            self.now(),
            span.as_secs_f64(),
            preset_id,
            PREBUILDS_USER_ID,
        )
        .execute(&mut *tx)
        .await?;
        let statements = [
            "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, priority, input, file_id, \
                 worker_id, worker_name, created_at, started_at, completed_at) \
             SELECT job, organization, 'workspace_build', CASE WHEN failed THEN 'failed' ELSE 'succeeded' END, owner, 1, \
                 '{}', file, gen_random_uuid(), 'seed', at, at, at + interval '20 seconds' \
             FROM seed",
            "INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id, created_at, deleted) \
             SELECT workspace, organization, owner, template, name, preset, at, true FROM seed",
            "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
                 template_version_id, template_version_preset_id, job_id, provisioner_state, created_at) \
             SELECT build, workspace, 1, 'start', owner, 'prebuild', version, preset, job, '', at FROM seed",
            "INSERT INTO prebuild_events (workspace_id, preset_id, event, reason, at) \
             SELECT workspace, preset, e.event, e.reason, at + e.after FROM seed, LATERAL (VALUES \
                 ('created', NULL, interval '0'), ('eligible', NULL, interval '30 seconds'), \
                 ('deleted', 'surplus', interval '1 hour 30 seconds')) e(event, reason, after) \
             WHERE NOT failed OR e.event = 'created'",
            "ANALYZE",
        ];
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// `count` running workspaces of `owner`, made from an existing preset
    /// (of its template's active version), created one second apart, oldest
    /// first: each with a successful `start` build, one ready agent `main`,
    /// and the record of its create request — every other one a claim from
    /// the pool, the rest cold builds (`no_eligible`). What a person with
    /// many workspaces leaves behind, for measuring the pages that list them.
    pub async fn seed_workspaces(&self, owner: Uuid, preset_id: Uuid, count: u32) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        seed_running(&mut tx, self.now(), preset_id, count, Some(owner)).await?;
        let statements = [
            "INSERT INTO workspace_agents (workspace_id, name, lifecycle_state, serving_owner_id, first_connected_at, \
                 last_connected_at, started_at, ready_at, created_at) \
             SELECT workspace, 'main', 'ready', owner, at, at, at, at + interval '95 seconds', at FROM seed",
            "INSERT INTO claim_attempts (at, template_id, preset_id, user_id, hit, reason, workspace_id, latency_ms, \
                 committed_at) \
             SELECT at, template, preset, owner, g % 2 = 0, CASE WHEN g % 2 = 1 THEN 'no_eligible' END, workspace, \
                 CASE WHEN g % 2 = 0 THEN 8 + g % 7 ELSE 3 END, CASE WHEN g % 2 = 0 THEN at END \
             FROM seed",
            "ANALYZE",
        ];
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
