//! What reconciliation reads (one consistent snapshot, in a few set-based
//! queries) and records (settings, validation failures, prebuild history).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use warmspace_prebuilds::reconcile::{Creation, LatestBuild, Prebuild, PresetState, Settings, Snapshot};
use warmspace_prebuilds::schedule::Schedule;
use warmspace_states::{DeletionReason, JobPriority, JobStatus, PrebuildEvent, Transition};

use crate::workspaces::PREBUILDS_USER_ID;
use crate::{Result, Store, StoreError};

/// A prebuild-configured preset, with what decides its pool.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PresetSnapshotRow {
    pub preset_id: Uuid,
    pub preset_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub organization_id: Uuid,
    pub organization_name: String,
    pub template_version_id: Uuid,
    pub version_active: bool,
    pub template_deleted: bool,
    pub desired_instances: i32,
    pub ttl_seconds: Option<i64>,
    pub scheduling_timezone: Option<String>,
    pub last_invalidated_at: Option<DateTime<Utc>>,
    pub validation_error: Option<String>,
    /// The template's `agent_ready_timeout`.
    pub agent_ready_timeout_ms: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleSnapshotRow {
    pub preset_id: Uuid,
    pub cron_expression: String,
    pub desired_instances: i32,
}

/// An unclaimed prebuild and its latest build.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrebuildSnapshotRow {
    pub workspace_id: Uuid,
    pub preset_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub build_number: i32,
    pub transition: Transition,
    pub job_id: Uuid,
    pub job_status: JobStatus,
    pub finished_at: Option<DateTime<Utc>>,
    pub agents_ready: bool,
}

/// A finished prebuild creation (build 1 of a prebuild, claimed since or not).
/// One whose prebuild was deleted because its agents were never ready is a
/// failure, finished when it was deleted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreationSnapshotRow {
    pub workspace_id: Uuid,
    pub preset_id: Uuid,
    pub finished_at: DateTime<Utc>,
    pub succeeded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PrebuildsSnapshot {
    pub now: DateTime<Utc>,
    pub paused: bool,
    pub presets: Vec<PresetSnapshotRow>,
    pub schedules: Vec<ScheduleSnapshotRow>,
    pub prebuilds: Vec<PrebuildSnapshotRow>,
    pub creations: Vec<CreationSnapshotRow>,
    /// Per preset, the median time from a prebuild's creation to its
    /// becoming eligible, over its recent ones.
    pub typical_builds: Vec<TypicalBuildRow>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TypicalBuildRow {
    pub preset_id: Uuid,
    pub median_seconds: f64,
}

/// Prebuilds of one preset to queue (see [`Store::create_prebuilds`]).
#[derive(Debug, Clone)]
pub struct NewPrebuilds<'a> {
    pub organization_id: Uuid,
    pub template_id: Uuid,
    pub template_version_id: Uuid,
    pub preset_id: Uuid,
    /// The preset's parameter values, validated already.
    pub parameters: &'a BTreeMap<String, String>,
    /// One per prebuild; unique among the prebuilds user's workspaces.
    pub names: Vec<String>,
}

/// How many of a preset's latest eligible prebuilds its typical build time is the median of.
const TYPICAL_BUILD_SAMPLE: i64 = 10;

impl PrebuildsSnapshot {
    /// The rows as the pure reconciliation logic reads them.
    pub fn to_snapshot(&self, settings: Settings) -> Snapshot {
        let mut schedules: HashMap<Uuid, Vec<(Schedule, u32)>> = HashMap::new();
        for s in &self.schedules {
            // The import validated every expression; one that no longer parses is skipped, not fatal.
            match Schedule::parse(&s.cron_expression) {
                Ok(schedule) => schedules.entry(s.preset_id).or_default().push((schedule, count(s.desired_instances))),
                Err(err) => tracing::warn!(preset = %s.preset_id, error = %err, "skipping a stored schedule"),
            }
        }
        let mut prebuilds: HashMap<Uuid, Vec<Prebuild>> = HashMap::new();
        for b in &self.prebuilds {
            prebuilds.entry(b.preset_id).or_default().push(Prebuild {
                workspace_id: b.workspace_id,
                created_at: b.created_at,
                latest: LatestBuild {
                    transition: b.transition,
                    status: b.job_status,
                    job_id: b.job_id,
                    build_number: b.build_number,
                    finished_at: b.finished_at,
                },
                agents_ready: b.agents_ready,
            });
        }
        let mut creations: HashMap<Uuid, Vec<Creation>> = HashMap::new();
        for c in &self.creations {
            creations.entry(c.preset_id).or_default().push(Creation {
                workspace_id: c.workspace_id,
                finished_at: c.finished_at,
                succeeded: c.succeeded,
            });
        }
        let typical: HashMap<Uuid, Duration> = self
            .typical_builds
            .iter()
            .filter_map(|t| Duration::try_from_secs_f64(t.median_seconds).ok().map(|d| (t.preset_id, d)))
            .collect();
        let presets = self
            .presets
            .iter()
            .map(|p| PresetState {
                preset_id: p.preset_id,
                template_id: p.template_id,
                template_version_id: p.template_version_id,
                version_active: p.version_active,
                template_deleted: p.template_deleted,
                instances: count(p.desired_instances),
                ttl: p.ttl_seconds.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
                agent_ready_timeout: Duration::from_millis(u64::try_from(p.agent_ready_timeout_ms).unwrap_or(0)),
                typical_build: typical.get(&p.preset_id).copied(),
                timezone: p.scheduling_timezone.as_deref().and_then(|tz| chrono_tz::Tz::from_str(tz).ok()),
                schedules: schedules.remove(&p.preset_id).unwrap_or_default(),
                last_invalidated_at: p.last_invalidated_at,
                validation_failed: p.validation_error.is_some(),
                creations: creations.remove(&p.preset_id).unwrap_or_default(),
                prebuilds: prebuilds.remove(&p.preset_id).unwrap_or_default(),
            })
            .collect();
        Snapshot { now: self.now, settings, presets }
    }
}

/// A stored count (never negative: the schema checks it).
fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A connection holding reconciliation's advisory locks: the global one,
/// which one full cycle at a time holds, and per-preset ones, which whoever
/// acts on a preset's pool holds while it reads and acts (so two passes never
/// both act on one pool from the same picture). Released by
/// [`LockSession::release`]; a session dropped without it (its pass panicked,
/// or its task was aborted) closes its connection, which releases its locks
/// in PostgreSQL, rather than returning it to the pool still locked. A dead
/// replica's locks die with its connection.
pub struct LockSession {
    connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

/// Another name for the session a full cycle holds the global lock on.
pub type ReconcilerLock = LockSession;

const RECONCILER_LOCK: &str = "hashtext('warmspace.reconciler')";

impl LockSession {
    pub(crate) fn connection(&mut self) -> &mut sqlx::PgConnection {
        self.connection.as_mut().expect("a session keeps its connection until released")
    }

    /// The global reconciliation lock, unless another session holds it.
    pub async fn try_lock_reconciler(&mut self) -> Result<bool> {
        let sql = format!("SELECT pg_try_advisory_lock({RECONCILER_LOCK})");
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(self.connection()).await?)
    }

    /// Locks those of `preset_ids` no other session holds, in one statement,
    /// and returns them; the others are being reconciled right now.
    pub async fn try_lock_presets(&mut self, preset_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar!(
            "SELECT id AS \"id!\" FROM unnest($1::uuid[]) AS id \
             WHERE pg_try_advisory_lock(hashtextextended('warmspace.preset:' || id::text, 0))",
            preset_ids,
        )
        .fetch_all(self.connection())
        .await?)
    }

    /// Unlocks presets this session locked (keeping its other locks).
    pub async fn unlock_presets(&mut self, preset_ids: &[Uuid]) -> Result<()> {
        sqlx::query_scalar!(
            "SELECT pg_advisory_unlock(hashtextextended('warmspace.preset:' || id::text, 0)) \
             FROM unnest($1::uuid[]) AS id",
            preset_ids,
        )
        .fetch_all(self.connection())
        .await?;
        Ok(())
    }

    /// Releases every lock the session holds and returns its connection.
    pub async fn release(mut self) {
        let Some(mut connection) = self.connection.take() else { return };
        if let Err(err) = sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *connection).await {
            tracing::warn!(error = %err, "cannot release reconciliation locks; closing their connection");
            connection.close_on_drop();
        }
    }
}

impl Drop for LockSession {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
    }
}

impl Store {
    /// A connection to hold reconciliation locks on, holding none yet.
    pub async fn lock_session(&self) -> Result<LockSession> {
        Ok(LockSession { connection: Some(self.pool.acquire().await?) })
    }

    /// The reconciliation lock, unless another replica holds it.
    pub async fn try_lock_reconciler(&self) -> Result<Option<ReconcilerLock>> {
        let mut session = self.lock_session().await?;
        if session.try_lock_reconciler().await? {
            Ok(Some(session))
        } else {
            session.release().await;
            Ok(None)
        }
    }

    /// Everything reconciliation decides from, read in one repeatable-read
    /// transaction so the parts agree with each other. Presets of inactive
    /// versions are included only while they still have prebuilds.
    ///
    /// `history` bounds the creations read per preset: the newest `history`
    /// ones, plus every failure since `since`.
    pub async fn prebuilds_snapshot(&self, history: i64, since: DateTime<Utc>) -> Result<PrebuildsSnapshot> {
        self.snapshot_of(None, history, since).await
    }

    /// The snapshot of some presets alone, reading only their rows: what
    /// a claim's refill and an explanation of a claim miss read.
    pub async fn presets_snapshot(
        &self,
        preset_ids: &[Uuid],
        history: i64,
        since: DateTime<Utc>,
    ) -> Result<PrebuildsSnapshot> {
        self.snapshot_of(Some(preset_ids), history, since).await
    }

    async fn snapshot_of(
        &self,
        only: Option<&[Uuid]>,
        history: i64,
        since: DateTime<Utc>,
    ) -> Result<PrebuildsSnapshot> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        // Each query serves both the full snapshot (`only` null) and a few
        // presets' (`only` their ids). Planned for the values at hand, the
        // null test folds away and a few presets' rows are read through
        // their indexes; a cached generic plan would have to read them all.
        // No JIT: the queries walk indexes a few rows per preset, and their
        // estimated cost over thousands of presets crosses the JIT
        // thresholds, where compiling took most of the time (0.7 s of 0.9 s
        // for the typical build times over 10 000 presets).
        sqlx::query!(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true) AS plans, set_config('jit', 'off', true) AS jit"
        )
        .fetch_one(&mut *tx)
        .await?;
        let now = self.now();
        let paused =
            sqlx::query_scalar!("SELECT reconciliation_paused FROM prebuild_settings").fetch_one(&mut *tx).await?;
        let presets = sqlx::query_as!(
            PresetSnapshotRow,
            "SELECT p.id AS preset_id, p.name AS preset_name, t.id AS template_id, t.name AS template_name, \
                 o.id AS organization_id, o.name AS organization_name, p.template_version_id, \
                 t.active_version_id = p.template_version_id AS \"version_active!\", t.deleted AS template_deleted, \
                 p.desired_instances AS \"desired_instances!\", p.ttl_seconds, \
                 p.scheduling_timezone, p.last_invalidated_at, p.validation_error, t.agent_ready_timeout_ms \
             FROM template_version_presets p \
             JOIN template_versions v ON v.id = p.template_version_id \
             JOIN templates t ON t.id = v.template_id \
             JOIN organizations o ON o.id = t.organization_id \
             WHERE p.desired_instances IS NOT NULL AND ($2::uuid[] IS NULL OR p.id = ANY ($2)) \
               AND ((t.active_version_id = p.template_version_id AND NOT t.deleted) \
                    OR EXISTS (SELECT 1 FROM workspaces w WHERE w.preset_id = p.id AND w.owner_id = $1 \
                               AND NOT w.deleted)) \
             ORDER BY t.name, p.ordinal",
            PREBUILDS_USER_ID,
            only,
        )
        .fetch_all(&mut *tx)
        .await?;
        let schedules = sqlx::query_as!(
            ScheduleSnapshotRow,
            "SELECT s.preset_id, s.cron_expression, s.desired_instances \
             FROM template_version_preset_prebuild_schedules s \
             JOIN template_version_presets p ON p.id = s.preset_id WHERE p.desired_instances IS NOT NULL \
               AND ($1::uuid[] IS NULL OR p.id = ANY ($1)) \
             ORDER BY s.preset_id, s.ordinal",
            only,
        )
        .fetch_all(&mut *tx)
        .await?;
        let prebuilds = sqlx::query_as!(
            PrebuildSnapshotRow,
            "SELECT w.id AS workspace_id, w.preset_id AS \"preset_id!\", w.created_at, b.build_number, \
                 b.transition AS \"transition: Transition\", j.id AS job_id, j.status AS \"job_status: JobStatus\", \
                 j.completed_at AS finished_at, \
                 NOT EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = w.id \
                             AND a.token_id IS NOT NULL AND a.lifecycle_state <> 'ready') AS \"agents_ready!\" \
             FROM workspaces w \
             JOIN LATERAL (SELECT build_number, transition, job_id FROM workspace_builds \
                           WHERE workspace_id = w.id ORDER BY build_number DESC LIMIT 1) b ON true \
             JOIN provisioner_jobs j ON j.id = b.job_id \
             WHERE w.owner_id = $1 AND NOT w.deleted AND w.preset_id IS NOT NULL \
               AND ($2::uuid[] IS NULL OR w.preset_id = ANY ($2))",
            PREBUILDS_USER_ID,
            only,
        )
        .fetch_all(&mut *tx)
        .await?;
        // Walked per preset, newest first, from indexes: the newest `history`
        // finished creations (by when they were made), and the failures
        // since the look-back (a failed job, or a prebuild deleted because
        // its agents were never ready), which both indexes reach by time.
        // Nothing older is read, however long the preset's history.
        let creations = sqlx::query_as!(
            CreationSnapshotRow,
            "WITH presets AS ( \
                 SELECT id FROM template_version_presets \
                 WHERE desired_instances IS NOT NULL AND ($4::uuid[] IS NULL OR id = ANY ($4))), \
             recent AS ( \
                 SELECT c.workspace_id FROM presets p CROSS JOIN LATERAL ( \
                     SELECT w.id AS workspace_id FROM workspaces w \
                     JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number = 1 \
                     JOIN provisioner_jobs j ON j.id = b.job_id \
                     WHERE w.preset_id = p.id AND b.initiator_id = $1 \
                       AND j.status IN ('succeeded', 'failed') AND NOT j.interrupted \
                     ORDER BY w.created_at DESC LIMIT $2) c \
                 UNION \
                 SELECT b.workspace_id FROM provisioner_jobs j JOIN workspace_builds b ON b.job_id = j.id \
                 WHERE j.status = 'failed' AND NOT j.interrupted AND j.completed_at > $3 \
                   AND b.build_number = 1 AND b.initiator_id = $1 \
                 UNION \
                 SELECT e.workspace_id FROM prebuild_events e \
                 WHERE e.event = 'deleted' AND e.reason = 'agents_not_ready' AND e.at > $3) \
             SELECT w.id AS \"workspace_id!\", w.preset_id AS \"preset_id!\", \
                 COALESCE(t.at, j.completed_at) AS \"finished_at!\", \
                 j.status = 'succeeded' AND t.at IS NULL AS \"succeeded!\" \
             FROM recent r JOIN workspaces w ON w.id = r.workspace_id \
             JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number = 1 \
             JOIN provisioner_jobs j ON j.id = b.job_id \
             LEFT JOIN LATERAL (SELECT e.at FROM prebuild_events e WHERE e.workspace_id = w.id \
                                AND e.event = 'deleted' AND e.reason = 'agents_not_ready' LIMIT 1) t ON true \
             WHERE b.initiator_id = $1 AND w.preset_id IN (SELECT id FROM presets) \
               AND j.status IN ('succeeded', 'failed') AND NOT j.interrupted \
             ORDER BY w.preset_id, 3 DESC",
            PREBUILDS_USER_ID,
            history,
            since,
            only,
        )
        .fetch_all(&mut *tx)
        .await?;
        // From the `created` and `eligible` events of each preset's latest
        // eligible prebuilds, walked newest first from the preset's index.
        let typical_builds = sqlx::query_as!(
            TypicalBuildRow,
            "SELECT p.id AS \"preset_id!\", \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY r.seconds) AS \"median_seconds!\" \
             FROM template_version_presets p CROSS JOIN LATERAL ( \
                 SELECT extract(epoch FROM e.at - c.at)::float8 AS seconds FROM prebuild_events e \
                 JOIN prebuild_events c ON c.workspace_id = e.workspace_id AND c.event = 'created' \
                 WHERE e.preset_id = p.id AND e.event = 'eligible' ORDER BY e.at DESC LIMIT $1) r \
             WHERE p.desired_instances IS NOT NULL AND ($2::uuid[] IS NULL OR p.id = ANY ($2)) \
             GROUP BY p.id",
            TYPICAL_BUILD_SAMPLE,
            only,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PrebuildsSnapshot { now, paused, presets, schedules, prebuilds, creations, typical_builds })
    }

    /// Queues new prebuilds of one preset, named `names`, in one statement:
    /// their workspaces (owned by the prebuilds user, with no lifecycle
    /// fields), build 1 `start` of each with the preset's `parameters`,
    /// their jobs (prebuild priority) and their `created` events; then wakes
    /// daemons for them.
    /// Returns the workspaces, in the order of `names`.
    pub async fn create_prebuilds(&self, new: &NewPrebuilds<'_>) -> Result<Vec<Uuid>> {
        let (names, values): (Vec<&String>, Vec<&String>) = new.parameters.iter().unzip();
        // The ids are drawn in the first CTE, which is read several times
        // and so evaluated once: every insert sees the same ones.
        let ids = sqlx::query_scalar!(
            "WITH n AS ( \
                 SELECT ordinality AS i, name, gen_random_uuid() AS workspace, gen_random_uuid() AS build, \
                     gen_random_uuid() AS job \
                 FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ordinality)), \
             jobs AS ( \
                 INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, priority, input, \
                     file_id, created_at, updated_at) \
                 SELECT n.job, $2, 'workspace_build', 'pending', $3, $4, \
                     jsonb_build_object('workspace_build_id', n.build), v.file_id, $5, $5 \
                 FROM n, template_versions v WHERE v.id = $6), \
             workspaces AS ( \
                 INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id, created_at, \
                     updated_at, last_used_at) \
                 SELECT workspace, $2, $3, $7, name, $8, $5, $5, $5 FROM n), \
             builds AS ( \
                 INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
                     template_version_id, template_version_preset_id, job_id) \
                 SELECT build, workspace, 1, 'start', $3, 'prebuild', $6, $8, job FROM n), \
             parameters AS ( \
                 INSERT INTO workspace_build_parameters (workspace_build_id, name, value) \
                 SELECT n.build, p.name, p.value FROM n, unnest($9::text[], $10::text[]) AS p(name, value)), \
             events AS ( \
                 INSERT INTO prebuild_events (workspace_id, preset_id, event, at) \
                 SELECT workspace, $8, 'created', $5 FROM n) \
             SELECT n.workspace AS \"workspace!\" FROM n ORDER BY n.i",
            &new.names,
            new.organization_id,
            PREBUILDS_USER_ID,
            JobPriority::Prebuild as JobPriority,
            self.now(),
            new.template_version_id,
            new.template_id,
            new.preset_id,
            names as Vec<&String>,
            values as Vec<&String>,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_on(e, &[("workspaces_owner_name_key", "name")]))?;
        self.announce_jobs_posted(ids.len()).await;
        Ok(ids)
    }

    /// The jobs of a preset's unclaimed prebuilds' builds, oldest first.
    pub async fn prebuild_jobs_of(&self, preset_id: Uuid) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar!(
            "SELECT b.job_id FROM workspace_builds b JOIN workspaces w ON w.id = b.workspace_id \
             WHERE w.preset_id = $1 AND w.owner_id = $2 AND NOT w.deleted ORDER BY b.created_at, b.id",
            preset_id,
            PREBUILDS_USER_ID,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The presets of the workspaces whose builds ran these jobs (none for
    /// imports, or workspaces made from no preset).
    pub async fn presets_of_jobs(&self, job_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar!(
            "SELECT DISTINCT w.preset_id AS \"preset_id!\" FROM workspace_builds b \
             JOIN workspaces w ON w.id = b.workspace_id \
             WHERE b.job_id = ANY ($1) AND w.preset_id IS NOT NULL",
            job_ids,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// For each claim of a preset committed since `since`, in commit order,
    /// how long after its commit the matching replacement was queued: the
    /// k-th claim is paired with the k-th prebuild creation queued for the
    /// preset since then (`None` while there is none yet). Both ends are
    /// read from the database, in milliseconds.
    pub async fn refill_delays(&self, preset_id: Uuid, since: DateTime<Utc>) -> Result<Vec<Option<f64>>> {
        Ok(sqlx::query_scalar!(
            "WITH claims AS ( \
                 SELECT committed_at, row_number() OVER (ORDER BY committed_at) AS n FROM claim_attempts \
                 WHERE preset_id = $1 AND hit AND committed_at > $2), \
             creations AS ( \
                 SELECT j.created_at, row_number() OVER (ORDER BY j.created_at) AS n \
                 FROM workspace_builds b JOIN provisioner_jobs j ON j.id = b.job_id \
                 WHERE b.template_version_preset_id = $1 AND b.build_number = 1 AND b.reason = 'prebuild' \
                   AND j.created_at > $2) \
             SELECT (extract(epoch FROM r.created_at - c.committed_at) * 1000)::float8 AS delay_ms \
             FROM claims c LEFT JOIN creations r USING (n) ORDER BY c.n",
            preset_id,
            since,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn reconciliation_paused(&self) -> Result<bool> {
        Ok(sqlx::query_scalar!("SELECT reconciliation_paused FROM prebuild_settings").fetch_one(&self.pool).await?)
    }

    pub async fn set_reconciliation_paused(&self, paused: bool) -> Result<()> {
        sqlx::query!("UPDATE prebuild_settings SET reconciliation_paused = $1, updated_at = now()", paused)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a preset whose prebuilds cannot be created: its parameter
    /// values do not validate. Never retried.
    pub async fn set_preset_validation_error(&self, preset_id: Uuid, error: &str) -> Result<()> {
        sqlx::query!("UPDATE template_version_presets SET validation_error = $2 WHERE id = $1", preset_id, error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Invalidates presets' prebuilds: those created before now count as
    /// expired. Returns how many presets were invalidated.
    pub async fn invalidate_presets(&self, preset_ids: &[Uuid]) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE template_version_presets SET last_invalidated_at = $2 WHERE id = ANY ($1)",
            preset_ids,
            self.now(),
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Records events in prebuilds' lives.
    pub async fn record_prebuild_events(
        &self,
        events: &[(Uuid, Uuid, PrebuildEvent, Option<DeletionReason>)],
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (workspaces, presets): (Vec<Uuid>, Vec<Uuid>) = events.iter().map(|e| (e.0, e.1)).unzip();
        let kinds: Vec<PrebuildEvent> = events.iter().map(|e| e.2).collect();
        let reasons: Vec<Option<DeletionReason>> = events.iter().map(|e| e.3).collect();
        sqlx::query!(
            "INSERT INTO prebuild_events (workspace_id, preset_id, event, reason, at) \
             SELECT *, $5 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])",
            &workspaces,
            &presets,
            kinds as Vec<PrebuildEvent>,
            reasons as Vec<Option<DeletionReason>>,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records `eligible` for prebuilds that became claimable and have no such event yet.
    pub async fn record_eligible(&self, prebuilds: &[(Uuid, Uuid)]) -> Result<()> {
        if prebuilds.is_empty() {
            return Ok(());
        }
        let (workspaces, presets): (Vec<Uuid>, Vec<Uuid>) = prebuilds.iter().copied().unzip();
        sqlx::query!(
            "INSERT INTO prebuild_events (workspace_id, preset_id, event, at) \
             SELECT w, p, 'eligible', $3 FROM unnest($1::uuid[], $2::uuid[]) AS e(w, p) \
             WHERE NOT EXISTS (SELECT 1 FROM prebuild_events x WHERE x.workspace_id = e.w AND x.event = 'eligible')",
            &workspaces,
            &presets,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
