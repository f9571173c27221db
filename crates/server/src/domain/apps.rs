//! Apps and dev containers: what agents report about those their template
//! version declares (app health, dev container states, and statuses from
//! anything in the workspace), and how a workspace shows them.

use std::collections::HashMap;

use uuid::Uuid;
use warmspace_sdk::{
    AgentAppHealthRequest, AgentAppStatusRequest, AgentDevcontainerRequest, App, AppHealth, Devcontainer,
    DevcontainerState, MAX_APP_STATUS_MESSAGE, MAX_APP_STATUS_URI, WorkspaceApp, WorkspaceAppStatus, WorkspaceApps,
    WorkspaceDevcontainer,
};
use warmspace_store::apps::{AppStatusRow, NewAppStatus, WorkspaceAppRows};

use super::app_target::AppAddress;
use super::workspaces::readable;
use super::{Actor, AgentAuth, Domain, Error, Found, Result};

/// The longest dev container error kept, in characters (the column's limit).
const MAX_DEVCONTAINER_ERROR: usize = 4096;

impl Domain {
    /// Records the health of some of the agent's apps.
    pub async fn report_app_health(&self, auth: &AgentAuth, req: AgentAppHealthRequest) -> Result<()> {
        let (apps, _) = self.declared(auth).await?;
        for name in req.apps.keys() {
            declared_app(&apps, "apps", name)?;
        }
        let health: Vec<(String, AppHealth)> = req.apps.into_iter().collect();
        Ok(self.store.set_app_health(auth.agent_id, &health).await?)
    }

    /// Records a status about one of the agent's apps; the app keeps its
    /// latest [`warmspace_store::apps::APP_STATUS_HISTORY`].
    pub async fn report_app_status(&self, auth: &AgentAuth, req: AgentAppStatusRequest) -> Result<WorkspaceAppStatus> {
        let (apps, _) = self.declared(auth).await?;
        declared_app(&apps, "app", &req.app)?;
        check_text("message", &req.message, MAX_APP_STATUS_MESSAGE)?;
        if let Some(uri) = &req.uri {
            if uri.is_empty() {
                return Err(Error::field("uri", "must not be empty (leave it out for none)"));
            }
            check_text("uri", uri, MAX_APP_STATUS_URI)?;
        }
        let status = NewAppStatus { app: &req.app, state: req.state, message: &req.message, uri: req.uri.as_deref() };
        Ok(status_view(self.store.add_app_status(auth.agent_id, &status).await?))
    }

    /// Records a dev container's state; an error says why (and only an error does).
    pub async fn report_devcontainer(&self, auth: &AgentAuth, req: AgentDevcontainerRequest) -> Result<()> {
        let (_, devcontainers) = self.declared(auth).await?;
        if !devcontainers.iter().any(|d| d.name == req.name) {
            return Err(Error::field("name", format!("this agent declares no dev container called {:?}", req.name)));
        }
        let error = match (req.state, req.error) {
            (DevcontainerState::Error, Some(error)) if !error.trim().is_empty() => Some(error),
            (DevcontainerState::Error, _) => return Err(Error::field("error", "required with the error state")),
            (_, Some(_)) => return Err(Error::field("error", "only the error state has one")),
            (_, None) => None,
        };
        if let Some(error) = &error {
            check_text("error", error, MAX_DEVCONTAINER_ERROR)?;
        }
        Ok(self.store.set_devcontainer_state(auth.agent_id, &req.name, req.state, error.as_deref()).await?)
    }

    /// A workspace's apps with their health and latest status, and its dev containers.
    pub async fn workspace_apps(&self, actor: &Actor, workspace_id: Uuid) -> Result<WorkspaceApps> {
        let workspace = self.store.workspace(workspace_id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        let base = self.config.access_url.trim_end_matches('/').to_owned();
        let proxy_url = |agent: &str, app: &str| {
            let address =
                AppAddress { owner: &workspace.owner_name, workspace: &workspace.name, agent: Some(agent), app };
            format!("{base}{}", address.path())
        };
        Ok(apps_view(self.store.workspace_apps(workspace_id).await?, proxy_url))
    }

    /// A workspace's dev containers with their states (the caller has checked who may see them).
    pub(super) async fn devcontainers(&self, workspace_id: Uuid) -> Result<Vec<WorkspaceDevcontainer>> {
        // Only the containers: no app's address is asked for.
        Ok(apps_view(self.store.workspace_apps(workspace_id).await?, |_, _| String::new()).devcontainers)
    }

    /// The statuses reported about a workspace's app, newest first.
    pub async fn workspace_app_statuses(
        &self,
        actor: &Actor,
        workspace_id: Uuid,
        app: &str,
    ) -> Result<Vec<WorkspaceAppStatus>> {
        let workspace = self.store.workspace(workspace_id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        let rows = self.store.workspace_apps(workspace_id).await?;
        if !rows.agents.iter().any(|agent| agent.apps.iter().any(|a| a.name == app)) {
            return Err(Error::not_found(format!("App {app:?}")));
        }
        Ok(self.store.app_statuses(workspace_id, app).await?.into_iter().map(status_view).collect())
    }

    /// The apps and dev containers the agent's manifest declares.
    async fn declared(&self, auth: &AgentAuth) -> Result<(Vec<App>, Vec<Devcontainer>)> {
        let manifest = self.store.agent_manifest(auth.agent_id).await.found("Agent")?;
        Ok((manifest.apps.map(|a| a.0).unwrap_or_default(), manifest.devcontainers.map(|d| d.0).unwrap_or_default()))
    }
}

fn declared_app(apps: &[App], field: &str, name: &str) -> Result<()> {
    if apps.iter().any(|app| app.name == name) {
        return Ok(());
    }
    let known: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
    let detail = match known.as_slice() {
        [] => format!("this agent declares no app called {name:?} (it declares none)"),
        _ => format!("this agent declares no app called {name:?} (it declares: {})", known.join(", ")),
    };
    Err(Error::field(field, detail))
}

/// Text a person wrote: bounded, and storable (PostgreSQL's text holds no NUL).
fn check_text(field: &str, text: &str, max: usize) -> Result<()> {
    if text.chars().count() > max {
        return Err(Error::field(field, format!("must be at most {max} characters")));
    }
    if text.contains('\0') {
        return Err(Error::field(field, "must not contain a NUL character"));
    }
    Ok(())
}

fn status_view(row: AppStatusRow) -> WorkspaceAppStatus {
    WorkspaceAppStatus {
        id: row.id,
        agent_name: row.agent_name,
        app: row.app,
        state: row.state,
        message: row.message,
        uri: row.uri,
        created_at: row.created_at,
    }
}

/// Declared apps in the manifest's order, each with what its agent reported.
fn apps_view(rows: WorkspaceAppRows, proxy_url: impl Fn(&str, &str) -> String) -> WorkspaceApps {
    let WorkspaceAppRows { agents, health, latest, devcontainers: states } = rows;
    let mut latest: HashMap<(Uuid, String), AppStatusRow> =
        latest.into_iter().map(|s| ((s.agent_id, s.app.clone()), s)).collect();
    let mut apps = Vec::new();
    let mut devcontainers = Vec::new();
    for agent in agents {
        for app in agent.apps.0 {
            let reported = health.iter().find(|h| h.agent_id == agent.agent_id && h.app == app.name);
            // Before its agent's first report, an app with a check has no result yet.
            let health = match (reported, &app.healthcheck) {
                (Some(reported), _) => reported.health,
                (None, Some(_)) => AppHealth::Initializing,
                (None, None) => AppHealth::Disabled,
            };
            let status = latest.remove(&(agent.agent_id, app.name.clone()));
            apps.push(WorkspaceApp {
                agent_id: agent.agent_id,
                agent_name: agent.agent_name.clone(),
                proxy_url: proxy_url(&agent.agent_name, &app.name),
                name: app.name,
                display_name: app.display_name,
                url: app.url,
                health,
                latest_status: status.map(status_view),
            });
        }
        for devcontainer in agent.devcontainers.0 {
            let state = states.iter().find(|s| s.agent_id == agent.agent_id && s.name == devcontainer.name);
            devcontainers.push(WorkspaceDevcontainer {
                agent_id: agent.agent_id,
                agent_name: agent.agent_name.clone(),
                name: devcontainer.name,
                workspace_folder: devcontainer.workspace_folder,
                config_path: devcontainer.config_path,
                state: state.map(|s| s.state),
                error: state.and_then(|s| s.error.clone()),
                updated_at: state.map(|s| s.updated_at),
            });
        }
    }
    WorkspaceApps { apps, devcontainers }
}
