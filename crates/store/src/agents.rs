//! Workspace agents: their tokens, lifecycle, heartbeats and logs, and what
//! the re-init stream needs to know about a workspace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;
use warmspace_states::{AgentLifecycle, BuildReason, JobStatus, LogLevel, Transition};
use warmspace_template::{App, Devcontainer};

use crate::jobs::{CappedLog, NewLog, append_capped};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct AgentRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub lifecycle_state: AgentLifecycle,
    pub serving_owner_id: Option<Uuid>,
    pub first_connected_at: Option<DateTime<Utc>>,
    pub last_connected_at: Option<DateTime<Utc>>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether a token is currently issued.
    pub has_token: bool,
}

pub(crate) const AGENT_COLUMNS: &str = "a.id, a.workspace_id, a.name, a.lifecycle_state, a.serving_owner_id, \
     a.first_connected_at, a.last_connected_at, a.disconnected_at, a.started_at, a.ready_at, a.created_at, \
     a.updated_at, a.token_id IS NOT NULL AS has_token";

/// An agent found by its token's id, with what authenticating it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentCredential {
    pub agent_id: Uuid,
    pub workspace_id: Uuid,
    pub hashed_secret: Vec<u8>,
}

/// What an agent is told about itself and its workspace.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManifestRow {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub template_version_id: Uuid,
    pub startup_script: Option<String>,
    pub env: Option<Json<BTreeMap<String, String>>>,
    pub apps: Option<Json<Vec<App>>>,
    pub devcontainers: Option<Json<Vec<Devcontainer>>>,
}

/// What decides an agent's re-init: who owns the workspace, who started it,
/// and its claim build, if any.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReinitState {
    pub owner_id: Uuid,
    pub deleted: bool,
    pub first_build_initiator: Uuid,
    pub claim_job_id: Option<Uuid>,
    pub claim_job_status: Option<JobStatus>,
}

/// A workspace whose agents have all just become ready, and its latest build.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentsReady {
    /// The prebuild's preset, when the workspace is an unclaimed prebuild:
    /// its pool has one more eligible prebuild.
    pub prebuild_preset_id: Option<Uuid>,
    pub build_created_at: DateTime<Utc>,
    pub transition: Transition,
    pub reason: BuildReason,
    pub template_name: String,
    pub organization_name: String,
}

/// A freshly issued token for one agent.
pub struct IssuedToken {
    pub agent_name: String,
    pub token_id: String,
    pub hashed_secret: Vec<u8>,
}

impl Store {
    /// Issues new tokens to a workspace's agents for a start build of
    /// `version_id`: agents the version declares get a row if they have none
    /// and start over (`created`, never connected); agents it no longer
    /// declares lose their token.
    pub async fn issue_agent_tokens(&self, workspace_id: Uuid, tokens: &[IssuedToken]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Stamped by the clock: an agent that never connects times out counting from here.
        let now = self.now();
        let names: Vec<&str> = tokens.iter().map(|t| t.agent_name.as_str()).collect();
        sqlx::query!(
            "UPDATE workspace_agents SET token_id = NULL, hashed_secret = NULL, updated_at = $3 \
             WHERE workspace_id = $1 AND NOT (name = ANY ($2))",
            workspace_id,
            names.as_slice() as &[&str],
            now,
        )
        .execute(&mut *tx)
        .await?;
        for token in tokens {
            sqlx::query!(
                "INSERT INTO workspace_agents (workspace_id, name, token_id, hashed_secret, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (workspace_id, name) DO UPDATE SET token_id = excluded.token_id, \
                     hashed_secret = excluded.hashed_secret, lifecycle_state = 'created', first_connected_at = NULL, \
                     last_connected_at = NULL, disconnected_at = NULL, started_at = NULL, ready_at = NULL, \
                     updated_at = $5",
                workspace_id,
                &token.agent_name,
                &token.token_id,
                &token.hashed_secret,
                now,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn agent_credential(&self, token_id: &str) -> Result<AgentCredential> {
        sqlx::query_as!(
            AgentCredential,
            "SELECT a.id AS agent_id, a.workspace_id, a.hashed_secret AS \"hashed_secret!\" FROM workspace_agents a \
             JOIN workspaces w ON w.id = a.workspace_id WHERE a.token_id = $1 AND NOT w.deleted",
            token_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// The agents of these workspaces, by workspace and name (a listing's agents, in one query).
    pub async fn agents_of(&self, workspace_ids: &[Uuid]) -> Result<Vec<AgentRow>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM workspace_agents a WHERE a.workspace_id = ANY ($1) ORDER BY a.workspace_id, a.name"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(workspace_ids).fetch_all(&self.pool).await?)
    }

    pub async fn agent(&self, id: Uuid) -> Result<AgentRow> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM workspace_agents a WHERE a.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    /// The agent's manifest, from the version of the workspace's latest build.
    pub async fn agent_manifest(&self, agent_id: Uuid) -> Result<ManifestRow> {
        sqlx::query_as!(
            ManifestRow,
            "SELECT a.id AS agent_id, a.name AS agent_name, w.id AS workspace_id, w.name AS workspace_name, \
                 w.owner_id, u.username AS owner_name, b.template_version_id, \
                 ta.startup_script AS \"startup_script?\", \
                 ta.env AS \"env?: Json<BTreeMap<String, String>>\", ta.apps AS \"apps?: Json<Vec<App>>\", \
                 ta.devcontainers AS \"devcontainers?: Json<Vec<Devcontainer>>\" \
             FROM workspace_agents a JOIN workspaces w ON w.id = a.workspace_id JOIN users u ON u.id = w.owner_id \
             JOIN LATERAL (SELECT template_version_id FROM workspace_builds WHERE workspace_id = w.id \
                           ORDER BY build_number DESC LIMIT 1) b ON true \
             LEFT JOIN template_version_agents ta ON ta.template_version_id = b.template_version_id AND ta.name = a.name \
             WHERE a.id = $1",
            agent_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Records a lifecycle change, with the time of the states that have one.
    /// When this change makes the last of the workspace's agents `ready`,
    /// returns the workspace's latest build with the names its metrics are
    /// labelled with (what the build-to-ready time is observed from) and, for
    /// an unclaimed prebuild, its preset; read by the same statement. (Two agents of one workspace turning ready at the
    /// same instant may each see the other not ready yet: then neither
    /// returns it, and that build's ready time goes unobserved.)
    pub async fn set_agent_lifecycle(&self, agent_id: Uuid, state: AgentLifecycle) -> Result<Option<AgentsReady>> {
        Ok(sqlx::query_as!(
            AgentsReady,
            "WITH before AS (SELECT lifecycle_state FROM workspace_agents WHERE id = $1), \
             changed AS (UPDATE workspace_agents SET lifecycle_state = $2, \
                 started_at = CASE WHEN $2 = 'starting' THEN $3 ELSE started_at END, \
                 ready_at = CASE WHEN $2 = 'ready' THEN $3 ELSE ready_at END, updated_at = $3 \
             WHERE id = $1 RETURNING workspace_id) \
             SELECT CASE WHEN w.owner_id = $4 THEN w.preset_id END AS prebuild_preset_id, \
                 b.created_at AS build_created_at, b.transition AS \"transition: Transition\", \
                 b.reason AS \"reason: BuildReason\", t.name AS template_name, o.name AS organization_name \
             FROM changed JOIN before ON true JOIN workspaces w ON w.id = changed.workspace_id \
             JOIN LATERAL (SELECT created_at, transition, reason FROM workspace_builds \
                           WHERE workspace_id = w.id ORDER BY build_number DESC LIMIT 1) b ON true \
             JOIN templates t ON t.id = w.template_id JOIN organizations o ON o.id = w.organization_id \
             WHERE $2 = 'ready' AND before.lifecycle_state <> 'ready' \
               AND NOT EXISTS (SELECT 1 FROM workspace_agents a WHERE a.workspace_id = changed.workspace_id \
                               AND a.id <> $1 AND a.token_id IS NOT NULL AND a.lifecycle_state <> 'ready')",
            agent_id,
            state as AgentLifecycle,
            self.now(),
            crate::workspaces::PREBUILDS_USER_ID,
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that the agent is connected (and whom it serves). Returns true
    /// when the workspace has been stopped or deleted, so the agent should exit.
    pub async fn agent_heartbeat(&self, agent_id: Uuid, serving_owner_id: Option<Uuid>) -> Result<bool> {
        let stop: Option<bool> = sqlx::query_scalar!(
            "WITH seen AS (UPDATE workspace_agents SET last_connected_at = $3, \
                     first_connected_at = coalesce(first_connected_at, $3), disconnected_at = NULL, \
                     serving_owner_id = coalesce($2, serving_owner_id) \
                 WHERE id = $1 RETURNING workspace_id) \
             SELECT b.transition <> 'start' AND j.status = 'succeeded' AS \"stop!\" FROM seen \
             JOIN LATERAL (SELECT transition, job_id FROM workspace_builds WHERE workspace_id = seen.workspace_id \
                           ORDER BY build_number DESC LIMIT 1) b ON true \
             JOIN provisioner_jobs j ON j.id = b.job_id",
            agent_id,
            serving_owner_id,
            self.now(),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| match &err {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Invalid { field: "serving_owner_id", message: "is not a user".into() }
            }
            _ => err.into(),
        })?;
        stop.ok_or(StoreError::NotFound)
    }

    /// The agent is going away on purpose.
    pub async fn agent_disconnected(&self, agent_id: Uuid) -> Result<()> {
        sqlx::query!(
            "UPDATE workspace_agents SET disconnected_at = $2, updated_at = $2 WHERE id = $1",
            agent_id,
            self.now()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Appends an agent's log lines, capped like job logs.
    pub async fn append_agent_logs(&self, agent_id: Uuid, logs: &[NewLog]) -> Result<usize> {
        append_capped(&self.pool, CappedLog::Agent(agent_id), logs).await
    }

    /// An agent's log lines with ids above `after`: (id, time, level, output).
    pub async fn agent_logs(&self, agent_id: Uuid, after: i64) -> Result<Vec<(i64, DateTime<Utc>, LogLevel, String)>> {
        let rows = sqlx::query!(
            "SELECT id, created_at, level AS \"level: LogLevel\", output FROM workspace_agent_logs \
             WHERE agent_id = $1 AND id > $2 ORDER BY id",
            agent_id,
            after,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.created_at, r.level, r.output)).collect())
    }

    pub async fn reinit_state(&self, workspace_id: Uuid) -> Result<ReinitState> {
        sqlx::query_as!(
            ReinitState,
            "SELECT w.owner_id, w.deleted, \
                 (SELECT initiator_id FROM workspace_builds WHERE workspace_id = w.id AND build_number = 1) \
                     AS \"first_build_initiator!\", \
                 c.job_id AS \"claim_job_id?\", j.status AS \"claim_job_status?: JobStatus\" \
             FROM workspaces w \
             LEFT JOIN LATERAL (SELECT job_id FROM workspace_builds WHERE workspace_id = w.id AND reason = 'claim' \
                                ORDER BY build_number DESC LIMIT 1) c ON true \
             LEFT JOIN provisioner_jobs j ON j.id = c.job_id \
             WHERE w.id = $1",
            workspace_id,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }
}
