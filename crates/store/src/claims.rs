//! Claiming a prebuild: the atomic hand-over, and the record of every claim
//! attempt.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;
use warmspace_states::{BuildReason, JobPriority, JobStatus, JobType, MissReason};

use crate::agents::{AGENT_COLUMNS, AgentRow};
use crate::jobs::{JobRow, JobTarget, QUEUE_POSITION, Tags, jobs_posted_message};
use crate::workspaces::{BuildRow, PREBUILDS_USER_ID, WorkspaceRow, claim_channel};
use crate::{Result, Store};

/// A hand-over to carry out.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub preset_id: Uuid,
    pub template_id: Uuid,
    pub user_id: Uuid,
    /// The workspace's new name.
    pub name: String,
    /// Lifecycle fields the claimed workspace takes on.
    pub ttl_ms: Option<i64>,
    pub autostart_schedule: Option<String>,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    /// The claim build's values: the preset's plus the user's mutable ones.
    pub parameters: BTreeMap<String, String>,
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
pub(crate) fn ms_since(arrived: Instant) -> f64 {
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

/// A hand-over done: the workspace as it now is, with its claim build, that
/// build's job and the workspace's agents, all as the claim's statement
/// wrote or found them.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub workspace: WorkspaceRow,
    pub build: BuildRow,
    pub job: JobRow,
    pub agents: Vec<AgentRow>,
    pub committed_at: DateTime<Utc>,
    /// The hand-over, as recorded: from the request's arrival to the claim
    /// record's write, the statement's last step before its commit.
    pub hand_over_ms: f64,
}

/// Claimable prebuilds of preset `preset` at `now` (SQL expressions),
/// oldest first: latest build a successful start, not past the TTL nor
/// invalidated, every agent ready. The rule the reconciler's pure
/// `is_eligible` applies too; a test holds the two to the same answers on
/// the same rows.
///
/// Selects from `w` (the workspace) and `b` (its latest build). The owner
/// is written out, not a parameter, so that even a generic plan can walk
/// the partial index `workspaces_prebuilds_by_age` in claim order and stop
/// at the first row it can lock, rather than sort the pool.
fn eligible_from(preset: &str, now: &str) -> String {
    format!(
        "FROM workspaces w \
         JOIN template_version_presets p ON p.id = w.preset_id \
         JOIN LATERAL (SELECT build_number, transition, template_version_id, job_id FROM workspace_builds \
                       WHERE workspace_id = w.id ORDER BY build_number DESC LIMIT 1) b ON true \
         JOIN provisioner_jobs j ON j.id = b.job_id \
         WHERE w.preset_id = {preset} AND w.owner_id = '{PREBUILDS_USER_ID}' AND NOT w.deleted \
           AND b.transition = 'start' AND j.status = 'succeeded' \
           AND (p.ttl_seconds IS NULL OR w.created_at + make_interval(secs => p.ttl_seconds) > {now}) \
           AND (p.last_invalidated_at IS NULL OR w.created_at >= p.last_invalidated_at) \
           AND NOT EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = w.id \
                           AND a.token_id IS NOT NULL AND a.lifecycle_state <> 'ready') \
         ORDER BY w.created_at, w.id"
    )
}

/// The hand-overs of a batch of claims (see [`crate::claimer`]) as one
/// statement, so one transaction and one round trip for all of them. `$1`
/// is the claims, a JSON array of records: `i`, the claim's position from
/// 1; `preset_id`; `owner_id`, the new owner (and the build's initiator);
/// `name`; `ttl_ms`, `schedule`, `deadline` and `max_deadline`, its
/// lifecycle fields; `reinit`; `template_id`; `waited_ms`, milliseconds
/// from the request's arrival to this statement being sent; `build_id` and
/// `job_id`, its claim build's and that build's job's; `parameters`, the
/// build's values. `$2` is the store's time. Claims of the same preset are
/// numbered in their order (`asked.k`).
///
/// A JSON array rather than an array per field for its plan: PostgreSQL
/// sizes an array it is given (one claim, mostly) but not a JSON
/// document's records, so with arrays each call's own plan looked cheaper
/// than the plan kept for the prepared statement, and the statement was
/// planned anew at every call (2.8 ms, more than it took to run). The
/// plan kept expects a hundred claims, though, and would hash the whole
/// `workspaces` table to update a few of its rows: the update also names
/// its rows by their key, which it then looks up.
///
/// `pick` locks, for each preset asked for, as many of its oldest eligible
/// prebuilds as there are claims of it, skipping those another claim holds,
/// numbered as the pool's index returns them (so without sorting anything);
/// the `k`th claim of a preset gets its `k`th pick, and a claim with no
/// pick gets nothing at all (no row: nothing was written for it).
/// `NO KEY UPDATE` is the lock the update takes anyway (the key does not
/// change): unlike `UPDATE`, it does not conflict with the key-share locks
/// that inserting a row referencing the prebuild (its `eligible` event, a
/// build) holds until that transaction ends, so such a row is claimed
/// rather than skipped as if claimed elsewhere. Each workspace changes
/// hands, gets its name and lifecycle fields; its claim build is queued
/// (reinit: recorded as done, nothing to run) with its values; the
/// `claimed` event and the hit are recorded. It returns everything the
/// response shows, so nothing is read again (names by scalar subqueries
/// rather than joins: fewer relations for the planner to order, a quarter
/// less planning whenever the plan is made again).
///
/// The records and events are stamped with `$2`, the store's clock, as a
/// miss's record and the prebuild's other events are: insight compares
/// them with those.
pub(crate) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    let eligible = eligible_from("wanted.preset_id", "$2");
    format!(
        "WITH asked AS (SELECT a.*, row_number() OVER (PARTITION BY a.preset_id ORDER BY a.i) AS k \
                        FROM jsonb_to_recordset($1) AS a(i int8, preset_id uuid, owner_id uuid, name text, \
                            ttl_ms int8, schedule text, deadline timestamptz, max_deadline timestamptz, reinit bool, \
                            template_id uuid, waited_ms float8, build_id uuid, job_id uuid, parameters jsonb)), \
         wanted AS (SELECT preset_id, count(*) AS n FROM asked GROUP BY preset_id), \
         pick AS MATERIALIZED ( \
             SELECT e.* FROM wanted CROSS JOIN LATERAL ( \
                 SELECT l.*, row_number() OVER () AS k FROM ( \
                     SELECT w.id, w.preset_id, b.build_number, b.template_version_id {eligible} \
                     FOR NO KEY UPDATE OF w SKIP LOCKED LIMIT wanted.n) l) e), \
         matched AS MATERIALIZED ( \
             SELECT a.*, p.id AS workspace_id, p.build_number, p.template_version_id \
             FROM asked a JOIN pick p ON p.preset_id = a.preset_id AND p.k = a.k), \
         handed AS (UPDATE workspaces w SET owner_id = m.owner_id, name = m.name, ttl_ms = m.ttl_ms, \
                        autostart_schedule = m.schedule, last_used_at = $2, updated_at = $2 \
                    FROM matched m WHERE w.id = m.workspace_id \
                        AND w.id = ANY (ARRAY(SELECT workspace_id FROM matched)) \
                    RETURNING w.id, w.organization_id, w.owner_id, w.template_id, w.name, w.preset_id, w.created_at, \
                        w.updated_at, w.deleted, w.autostart_schedule, w.ttl_ms, w.last_used_at, w.dormant_at, \
                        w.deleting_at), \
         job AS (INSERT INTO provisioner_jobs (id, organization_id, type, initiator_id, priority, input, file_id, \
                     status, worker_id, worker_name, created_at, updated_at, started_at, completed_at) \
                 SELECT m.job_id, h.organization_id, 'workspace_build', m.owner_id, {user}, \
                     jsonb_build_object('workspace_build_id', m.build_id), v.file_id, \
                     CASE WHEN m.reinit THEN 'succeeded' ELSE 'pending' END, \
                     CASE WHEN m.reinit THEN '{nil}'::uuid END, CASE WHEN m.reinit THEN '{REINIT_WORKER}' END, \
                     $2, $2, CASE WHEN m.reinit THEN $2::timestamptz END, \
                     CASE WHEN m.reinit THEN $2::timestamptz END \
                 FROM handed h JOIN matched m ON m.workspace_id = h.id \
                     JOIN template_versions v ON v.id = m.template_version_id \
                 RETURNING *), \
         build AS (INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
                       template_version_id, template_version_preset_id, job_id, deadline, max_deadline) \
                   SELECT m.build_id, m.workspace_id, m.build_number + 1, 'start', m.owner_id, 'claim', \
                       m.template_version_id, m.preset_id, job.id, m.deadline, m.max_deadline \
                   FROM matched m JOIN job ON job.id = m.job_id \
                   RETURNING *), \
         parameters AS (INSERT INTO workspace_build_parameters (workspace_build_id, name, value) \
                        SELECT build.id, v.key, v.value \
                        FROM matched m JOIN build ON build.id = m.build_id, jsonb_each_text(m.parameters) v), \
         event AS (INSERT INTO prebuild_events (workspace_id, preset_id, event, at) \
                   SELECT workspace_id, preset_id, 'claimed', $2 FROM matched), \
         attempt AS (INSERT INTO claim_attempts (at, template_id, preset_id, user_id, hit, workspace_id, latency_ms, \
                         committed_at) \
                     SELECT $2, m.template_id, m.preset_id, m.owner_id, true, m.workspace_id, \
                         m.waited_ms + extract(epoch FROM clock_timestamp() - statement_timestamp())::float8 * 1000, \
                         clock_timestamp() \
                     FROM matched m \
                     RETURNING workspace_id, latency_ms, committed_at) \
         SELECT m.i AS claimer, \
             h.id, h.organization_id, h.owner_id, (SELECT username FROM users WHERE id = h.owner_id) AS owner_name, \
             h.template_id, (SELECT name FROM templates WHERE id = h.template_id) AS template_name, \
             (SELECT active_version_id FROM templates WHERE id = h.template_id) AS template_active_version_id, \
             h.name, h.preset_id, (SELECT name FROM template_version_presets WHERE id = h.preset_id) AS preset_name, \
             h.created_at, h.updated_at, h.deleted, h.autostart_schedule, h.ttl_ms, h.last_used_at, \
             h.dormant_at, h.deleting_at, \
             b.id AS latest_build_id, b.build_number AS latest_build_number, b.transition AS latest_transition, \
             b.template_version_id AS latest_version_id, j.id AS latest_job_id, j.status AS latest_job_status, \
             b.initiator_id AS build_initiator_id, b.reason AS build_reason, \
             (SELECT name FROM template_versions WHERE id = b.template_version_id) AS build_version_name, \
             b.template_version_preset_id AS build_preset_id, b.deadline AS build_deadline, \
             b.max_deadline AS build_max_deadline, b.created_at AS build_created_at, b.updated_at AS build_updated_at, \
             j.organization_id AS job_organization_id, j.type AS job_type, j.initiator_id AS job_initiator_id, \
             j.priority AS job_priority, j.tags AS job_tags, j.input AS job_input, j.file_id AS job_file_id, \
             j.worker_id AS job_worker_id, j.worker_name AS job_worker_name, j.error AS job_error, \
             j.created_at AS job_created_at, j.updated_at AS job_updated_at, j.started_at AS job_started_at, \
             j.completed_at AS job_completed_at, j.canceled_at AS job_canceled_at, j.logs_length AS job_logs_length, \
             j.logs_overflowed AS job_logs_overflowed, j.lease_expires_at AS job_lease_expires_at, {QUEUE_POSITION}, \
             coalesce((SELECT json_agg(a ORDER BY a.name) FROM (SELECT {AGENT_COLUMNS} FROM workspace_agents a \
                                                               WHERE a.workspace_id = h.id) a), '[]') AS agents, \
             c.latency_ms AS hand_over_ms, c.committed_at \
         FROM handed h JOIN matched m ON m.workspace_id = h.id JOIN build b ON b.id = m.build_id \
             JOIN job j ON j.id = m.job_id JOIN attempt c ON c.workspace_id = h.id \
         ORDER BY m.i",
        user = JobPriority::User.as_i16(),
        nil = Uuid::nil(),
    )
});

/// The claims' statement, for tests that read its plan (parameters as [`crate::claimer`] binds them).
#[cfg(feature = "testing")]
pub fn claim_statement() -> &'static str {
    CLAIM.as_str()
}

/// How many times a claim is tried when the prebuild it picked changed under it.
pub(crate) const CLAIM_ATTEMPTS: u32 = 3;

/// The claim build's number was taken: see [`Store::claim_prebuild`].
pub(crate) fn is_build_number_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint() == Some("workspace_builds_workspace_id_build_number_key"))
}

/// The worker a reinit claim's build is recorded as done by: it has
/// nothing to run, the agent's re-init does the personalisation.
const REINIT_WORKER: &str = "claim (reinit)";

/// What [`CLAIM`] returns: the workspace, with its claim build and that
/// build's job under prefixed names.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    /// The claim it answers: its position in the batch, from 1.
    pub(crate) claimer: i64,
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    build_initiator_id: Uuid,
    build_reason: BuildReason,
    build_version_name: String,
    build_preset_id: Option<Uuid>,
    build_deadline: Option<DateTime<Utc>>,
    build_max_deadline: Option<DateTime<Utc>>,
    build_created_at: DateTime<Utc>,
    build_updated_at: DateTime<Utc>,
    job_organization_id: Uuid,
    job_type: JobType,
    job_initiator_id: Uuid,
    job_priority: JobPriority,
    job_tags: Json<Tags>,
    job_input: Json<serde_json::Value>,
    job_file_id: Option<Uuid>,
    job_worker_id: Option<Uuid>,
    job_worker_name: Option<String>,
    job_error: Option<String>,
    job_created_at: DateTime<Utc>,
    job_updated_at: DateTime<Utc>,
    job_started_at: Option<DateTime<Utc>>,
    job_completed_at: Option<DateTime<Utc>>,
    job_canceled_at: Option<DateTime<Utc>>,
    job_logs_length: i32,
    job_logs_overflowed: bool,
    job_lease_expires_at: Option<DateTime<Utc>>,
    queue_position: Option<i64>,
    agents: Json<Vec<AgentRow>>,
    hand_over_ms: f64,
    committed_at: DateTime<Utc>,
}

impl Claimed {
    /// What the claim announces once committed, as (channel, payload): the
    /// claim, to the prebuild's agents (see [`claim_channel`]), and, when
    /// the claim build has something to run, the job, to idle daemons.
    pub fn announcements(&self) -> Vec<(String, String)> {
        let workspace_id = self.workspace.id;
        let event = serde_json::json!({ "workspace_id": workspace_id, "owner_id": self.workspace.owner_id,
                                        "reason": "claimed" });
        let mut messages = vec![(claim_channel(workspace_id), event.to_string())];
        if self.job.status == JobStatus::Pending {
            messages.push(jobs_posted_message(1));
        }
        messages
    }
}

impl ClaimedRow {
    /// The rows, as the reads of a workspace, a build and a job would give them.
    pub(crate) fn into_claimed(self, parameters: &BTreeMap<String, String>) -> Claimed {
        let w = self.workspace;
        let build = BuildRow {
            id: w.latest_build_id,
            workspace_id: w.id,
            build_number: w.latest_build_number,
            transition: w.latest_transition,
            initiator_id: self.build_initiator_id,
            // The initiator is the new owner.
            initiator_name: w.owner_name.clone(),
            reason: self.build_reason,
            template_version_id: w.latest_version_id,
            template_version_name: self.build_version_name.clone(),
            template_version_preset_id: self.build_preset_id,
            job_id: w.latest_job_id,
            deadline: self.build_deadline,
            max_deadline: self.build_max_deadline,
            created_at: self.build_created_at,
            updated_at: self.build_updated_at,
            job_status: w.latest_job_status,
            // Exactly the values the statement wrote; a new build has no resources yet.
            parameters: Json(parameters.clone()),
            resources: Json(Vec::new()),
        };
        let job = JobRow {
            id: w.latest_job_id,
            organization_id: self.job_organization_id,
            kind: self.job_type,
            status: w.latest_job_status,
            initiator_id: self.job_initiator_id,
            priority: self.job_priority,
            tags: self.job_tags,
            input: self.job_input,
            file_id: self.job_file_id,
            worker_id: self.job_worker_id,
            worker_name: self.job_worker_name,
            error: self.job_error,
            created_at: self.job_created_at,
            updated_at: self.job_updated_at,
            started_at: self.job_started_at,
            completed_at: self.job_completed_at,
            canceled_at: self.job_canceled_at,
            logs_length: self.job_logs_length,
            logs_overflowed: self.job_logs_overflowed,
            lease_expires_at: self.job_lease_expires_at,
            queue_position: self.queue_position,
            target: JobTarget {
                template_version_id: Some(w.latest_version_id),
                template_version_name: Some(self.build_version_name),
                template_id: Some(w.template_id),
                template_name: Some(w.template_name.clone()),
                workspace_id: Some(w.id),
                workspace_name: Some(w.name.clone()),
                build_id: Some(w.latest_build_id),
                build_number: Some(w.latest_build_number),
                transition: Some(w.latest_transition),
            },
        };
        Claimed {
            workspace: w,
            build,
            job,
            agents: self.agents.0,
            committed_at: self.committed_at,
            hand_over_ms: self.hand_over_ms,
        }
    }
}

impl Store {
    /// Hands an eligible prebuild of the preset to the user, in one
    /// statement with whatever other claims are being made at the moment
    /// (see [`CLAIM`] and [`crate::claimer`]): lock it (skipping any
    /// another claim holds), move ownership, rename it, give it its
    /// lifecycle fields, queue (or, for reinit, complete) the claim build
    /// initiated by the user, and record the hit. `None` when the preset
    /// has no eligible prebuild. A name the user already has is a conflict
    /// on `name`.
    pub async fn claim_prebuild(&self, claim: ClaimRequest) -> Result<Option<Claimed>> {
        self.claimer.claim(claim, self.now()).await
    }

    /// Every prebuild of the preset a claim could take now, oldest first.
    pub async fn eligible_prebuilds(&self, preset_id: Uuid) -> Result<Vec<Uuid>> {
        static ELIGIBLE: LazyLock<String> = LazyLock::new(|| format!("SELECT w.id {}", eligible_from("$1", "$2")));
        Ok(sqlx::query_scalar(AssertSqlSafe(ELIGIBLE.as_str()))
            .bind(preset_id)
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

/// How a create request made a workspace, as its claim attempt recorded it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreationRecord {
    pub workspace_id: Uuid,
    /// Claimed from a pool (else built cold).
    pub hit: bool,
    /// Why no prebuild was claimed, for a cold build.
    pub reason: Option<MissReason>,
    /// From the request's arrival to the hand-over (a claim) or the cold build queued.
    pub latency_ms: f64,
}

impl Store {
    /// The claim attempts that made these workspaces (a workspace made
    /// without one, such as a prebuild, has none).
    pub async fn creation_records(&self, workspace_ids: &[Uuid]) -> Result<Vec<CreationRecord>> {
        Ok(sqlx::query_as(
            "SELECT workspace_id, hit, reason, latency_ms FROM claim_attempts \
             WHERE workspace_id = ANY($1) ORDER BY id",
        )
        .bind(workspace_ids)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A create request as recorded, with the names it concerns.
#[derive(Debug, Clone)]
pub struct RecentClaimRow {
    pub at: DateTime<Utc>,
    pub template_name: String,
    pub preset_name: Option<String>,
    pub username: String,
    /// The workspace it made, unless deleted since.
    pub workspace_name: Option<String>,
    pub hit: bool,
    pub reason: Option<MissReason>,
    pub latency_ms: f64,
}

impl Store {
    /// The latest `limit` create requests, newest first (by the primary key: no scan).
    pub async fn recent_claims(&self, limit: i64) -> Result<Vec<RecentClaimRow>> {
        Ok(sqlx::query_as!(
            RecentClaimRow,
            "SELECT a.at, t.name AS template_name, p.name AS \"preset_name?\", u.username, \
                 w.name AS \"workspace_name?\", a.hit, a.reason AS \"reason?: MissReason\", a.latency_ms \
             FROM (SELECT * FROM claim_attempts ORDER BY id DESC LIMIT $1) a \
             JOIN templates t ON t.id = a.template_id \
             JOIN users u ON u.id = a.user_id \
             LEFT JOIN template_version_presets p ON p.id = a.preset_id \
             LEFT JOIN workspaces w ON w.id = a.workspace_id AND NOT w.deleted \
             ORDER BY a.id DESC",
            limit,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
