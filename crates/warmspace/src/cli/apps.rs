//! A workspace's apps and dev containers, as `warmspace show` prints them.

use warmspace_sdk::{Client, Workspace, WorkspaceAppStatus};

/// How many of each app's statuses `show` prints, latest first.
const SHOWN_STATUSES: usize = 5;

/// Prints each app with its health and its latest statuses (newest on top),
/// then each dev container with its state.
pub async fn print(client: &Client, workspace: &Workspace) -> anyhow::Result<()> {
    let apps = client.workspace_apps(workspace.id).await?;
    for app in &apps.apps {
        println!("  app:        {} ({}) {} — {}", app.name, app.display_name, app.url, app.health.as_str());
        if app.latest_status.is_none() {
            continue;
        }
        let history = client.workspace_app_statuses(workspace.id, &app.name).await?;
        for status in history.iter().take(SHOWN_STATUSES) {
            println!("              {}", status_line(status));
        }
        if history.len() > SHOWN_STATUSES {
            println!("              … {} earlier", history.len() - SHOWN_STATUSES);
        }
    }
    for d in &apps.devcontainers {
        let config = d.config_path.as_deref().map(|c| format!(", config {c}")).unwrap_or_default();
        let state = match (&d.state, &d.error) {
            (Some(state), Some(error)) => format!("{}: {error}", state.as_str()),
            (Some(state), None) => state.as_str().to_owned(),
            (None, _) => "not reported yet".to_owned(),
        };
        println!("  devcontainer: {} ({}{config}) — {state}", d.name, d.workspace_folder);
    }
    Ok(())
}

fn status_line(status: &WorkspaceAppStatus) -> String {
    let uri = status.uri.as_deref().map(|uri| format!(" ({uri})")).unwrap_or_default();
    format!("{} {:<8} {}{uri}", status.created_at.format("%H:%M:%S"), status.state.as_str(), status.message)
}
