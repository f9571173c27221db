//! A workspace's apps and dev containers, as `warmspace show` prints them,
//! and `warmspace open`.

use anyhow::{Context, bail};
use warmspace_sdk::{Client, Workspace, WorkspaceAppStatus};

use super::Config;
use super::workspaces::find;

#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// The workspace: NAME, or OWNER/NAME.
    workspace: String,
    /// The app, by its name in the template.
    app: String,
    /// The agent whose app it is, when several agents declare one by that name.
    #[arg(long)]
    agent: Option<String>,
    /// Open it in a browser too: `$BROWSER URL`, else `xdg-open URL`.
    #[arg(long)]
    browser: bool,
}

/// Prints the app's address on the server (and opens it with `--browser`).
pub async fn open(config: &Config, args: OpenArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.workspace).await?;
    let apps = client.workspace_apps(workspace.id).await?.apps;
    let named: Vec<_> = apps
        .iter()
        .filter(|a| a.name == args.app && args.agent.as_ref().is_none_or(|agent| *agent == a.agent_name))
        .collect();
    let app = match named[..] {
        [app] => app,
        [] => {
            let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
            bail!("workspace {} has no app {:?} (it has: {})", args.workspace, args.app, known.join(", "))
        }
        _ => bail!("several agents of workspace {} have an app {:?}: name one with --agent", args.workspace, args.app),
    };
    println!("{}", app.proxy_url);
    if args.browser {
        let browser = std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "xdg-open".into());
        let status = std::process::Command::new(&browser)
            .arg(&app.proxy_url)
            .status()
            .with_context(|| format!("cannot start the browser {browser:?} (set $BROWSER to one)"))?;
        if !status.success() {
            bail!("the browser {browser:?} failed ({status})");
        }
    }
    Ok(())
}

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
