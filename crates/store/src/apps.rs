//! Apps and dev containers: what a workspace's template version declares on
//! its agents, the health and state its agents report, and the statuses
//! reported about its apps (a bounded history per app).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;
use warmspace_states::{AppHealth, AppStatusState, DevcontainerState};
use warmspace_template::{App, Devcontainer};

use crate::{Result, Store};

/// How many statuses each app keeps: an insert beyond it drops the oldest.
pub const APP_STATUS_HISTORY: i64 = 100;

/// An agent of a workspace with what the version of its latest build declares on it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeclaredAgent {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub apps: Json<Vec<App>>,
    pub devcontainers: Json<Vec<Devcontainer>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppHealthRow {
    pub agent_id: Uuid,
    pub app: String,
    pub health: AppHealth,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppStatusRow {
    pub id: i64,
    pub agent_id: Uuid,
    pub agent_name: String,
    pub app: String,
    pub state: AppStatusState,
    pub message: String,
    pub uri: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DevcontainerRow {
    pub agent_id: Uuid,
    pub name: String,
    pub state: DevcontainerState,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A status about to be recorded.
#[derive(Debug, Clone)]
pub struct NewAppStatus<'a> {
    pub app: &'a str,
    pub state: AppStatusState,
    pub message: &'a str,
    pub uri: Option<&'a str>,
}

/// Everything a workspace's apps and dev containers are shown from.
#[derive(Debug, Clone)]
pub struct WorkspaceAppRows {
    /// In the manifest's order.
    pub agents: Vec<DeclaredAgent>,
    pub health: Vec<AppHealthRow>,
    /// Each app's latest status.
    pub latest: Vec<AppStatusRow>,
    pub devcontainers: Vec<DevcontainerRow>,
}

impl Store {
    /// Records the health of some of an agent's apps.
    pub async fn set_app_health(&self, agent_id: Uuid, health: &[(String, AppHealth)]) -> Result<()> {
        let (apps, states): (Vec<&str>, Vec<AppHealth>) = health.iter().map(|(app, h)| (app.as_str(), *h)).unzip();
        sqlx::query!(
            "INSERT INTO workspace_agent_app_health (agent_id, app, health, updated_at) \
             SELECT $1, * , $4 FROM unnest($2::text[], $3::text[]) \
             ON CONFLICT (agent_id, app) DO UPDATE SET health = excluded.health, updated_at = excluded.updated_at",
            agent_id,
            apps.as_slice() as &[&str],
            states.as_slice() as &[AppHealth],
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a status about one of an agent's apps, and drops that app's
    /// oldest beyond [`APP_STATUS_HISTORY`] in the same transaction.
    pub async fn add_app_status(&self, agent_id: Uuid, status: &NewAppStatus<'_>) -> Result<AppStatusRow> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as!(
            AppStatusRow,
            "WITH added AS (INSERT INTO workspace_app_statuses (agent_id, app, state, message, uri, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *) \
             SELECT added.id, added.agent_id, a.name AS agent_name, added.app, added.state AS \"state: AppStatusState\", \
                 added.message, added.uri, added.created_at \
             FROM added JOIN workspace_agents a ON a.id = added.agent_id",
            agent_id,
            status.app,
            status.state as AppStatusState,
            status.message,
            status.uri,
            self.now(),
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM workspace_app_statuses WHERE agent_id = $1 AND app = $2 AND id < \
                 (SELECT min(id) FROM (SELECT id FROM workspace_app_statuses WHERE agent_id = $1 AND app = $2 \
                                       ORDER BY id DESC LIMIT $3) kept)",
            agent_id,
            status.app,
            APP_STATUS_HISTORY,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records a dev container's state (`error` says why, for the error state alone).
    pub async fn set_devcontainer_state(
        &self,
        agent_id: Uuid,
        name: &str,
        state: DevcontainerState,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query!(
            "INSERT INTO workspace_agent_devcontainers (agent_id, name, state, error, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent_id, name) DO UPDATE SET state = excluded.state, error = excluded.error, \
                 updated_at = excluded.updated_at",
            agent_id,
            name,
            state as DevcontainerState,
            error,
            self.now(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A workspace's declared apps and dev containers with what its agents
    /// reported about them: four statements, whatever the number of apps.
    pub async fn workspace_apps(&self, workspace_id: Uuid) -> Result<WorkspaceAppRows> {
        let agents = sqlx::query_as!(
            DeclaredAgent,
            "SELECT a.id AS agent_id, a.name AS agent_name, ta.apps AS \"apps: Json<Vec<App>>\", \
                 ta.devcontainers AS \"devcontainers: Json<Vec<Devcontainer>>\" \
             FROM workspace_agents a \
             JOIN LATERAL (SELECT template_version_id FROM workspace_builds WHERE workspace_id = a.workspace_id \
                           ORDER BY build_number DESC LIMIT 1) b ON true \
             JOIN template_version_agents ta ON ta.template_version_id = b.template_version_id AND ta.name = a.name \
             WHERE a.workspace_id = $1 ORDER BY ta.ordinal",
            workspace_id,
        )
        .fetch_all(&self.pool)
        .await?;
        let health = sqlx::query_as!(
            AppHealthRow,
            "SELECT h.agent_id, h.app, h.health AS \"health: AppHealth\", h.updated_at \
             FROM workspace_agent_app_health h JOIN workspace_agents a ON a.id = h.agent_id WHERE a.workspace_id = $1",
            workspace_id,
        )
        .fetch_all(&self.pool)
        .await?;
        let latest = sqlx::query_as!(
            AppStatusRow,
            "SELECT DISTINCT ON (s.agent_id, s.app) s.id, s.agent_id, a.name AS agent_name, s.app, \
                 s.state AS \"state: AppStatusState\", s.message, s.uri, s.created_at \
             FROM workspace_app_statuses s JOIN workspace_agents a ON a.id = s.agent_id WHERE a.workspace_id = $1 \
             ORDER BY s.agent_id, s.app, s.id DESC",
            workspace_id,
        )
        .fetch_all(&self.pool)
        .await?;
        let devcontainers = sqlx::query_as!(
            DevcontainerRow,
            "SELECT d.agent_id, d.name, d.state AS \"state: DevcontainerState\", d.error, d.updated_at \
             FROM workspace_agent_devcontainers d JOIN workspace_agents a ON a.id = d.agent_id \
             WHERE a.workspace_id = $1",
            workspace_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(WorkspaceAppRows { agents, health, latest, devcontainers })
    }

    /// The statuses of a workspace's app `app`, newest first.
    pub async fn app_statuses(&self, workspace_id: Uuid, app: &str) -> Result<Vec<AppStatusRow>> {
        Ok(sqlx::query_as!(
            AppStatusRow,
            "SELECT s.id, s.agent_id, a.name AS agent_name, s.app, s.state AS \"state: AppStatusState\", s.message, \
                 s.uri, s.created_at \
             FROM workspace_app_statuses s JOIN workspace_agents a ON a.id = s.agent_id \
             WHERE a.workspace_id = $1 AND s.app = $2 ORDER BY s.id DESC",
            workspace_id,
            app,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
