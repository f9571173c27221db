//! `warmspace create|list|show|start|stop|delete|update`.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use warmspace_sdk::{
    BuildParameter, Client, CreateWorkspaceBuildRequest, CreateWorkspaceRequest, JobStatus, LogEvent, Preset,
    Transition, Workspace, WorkspaceBuild, WorkspacesQuery,
};

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::templates::OrgArgs;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The workspace's name (`owner/name` to create one for someone else).
    name: String,
    /// The template to create it from.
    #[arg(long, short = 't')]
    template: String,
    /// Use this preset of the template's active version (its parameter values
    /// are fixed). Default: the version's default preset, if it has one;
    /// `none` uses no preset.
    #[arg(long)]
    preset: Option<String>,
    /// A parameter value, `name=value`. Repeatable.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// How long the workspace runs before stopping (default: the template's).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<std::time::Duration>,
    #[command(flatten)]
    org: OrgArgs,
    /// Accepted and ignored, for Coder's muscle memory: `create` never asks.
    #[arg(long = "yes", short = 'y', hide = true)]
    _yes: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Every workspace you may see, not just yours.
    #[arg(long, short = 'a')]
    all: bool,
    /// Filter: owner:, template:, status:, name: (`owner:prebuilds` is the prebuild pool).
    #[arg(long, default_value = "")]
    search: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The workspace: `name` (yours) or `owner/name`.
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    workspace: NameArgs,
    /// Show how long the latest build's stages and each resource took
    /// (Terraform templates), instead of the workspace.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    workspace: NameArgs,
    /// A parameter value to change, `name=value`. Repeatable.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
}

/// A build that asks first (`delete`, `update`) when there is someone to ask.
#[derive(clap::Args, Debug)]
pub struct ConfirmedBuildArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn create(config: &Config, args: CreateArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let (owner, name) = split_name(&args.name);
    let template = client
        .template_by_name(&args.org.organization, &args.template)
        .await
        .with_context(|| format!("template {:?}", args.template))?;
    let presets = client.template_version_presets(template.active_version_id).await?;
    let values = parameters(&args.parameters)?;
    // As Coder's CLI does: no --preset means the default preset, said so; the API itself stays explicit.
    let preset = match args.preset.as_deref() {
        Some(none) if none.eq_ignore_ascii_case("none") => None,
        Some(name) => Some(
            presets
                .iter()
                .find(|p| p.name == name)
                .with_context(|| format!("template {} has no preset {name:?}", template.name))?,
        ),
        None => {
            let default = presets.iter().find(|p| p.default);
            // A value the user gave explicitly wins over a preset they did not ask for.
            match default.map(|preset| (preset, contradicted(preset, &values))) {
                Some((preset, Some(given))) => {
                    println!(
                        "Not using the default preset {} of {}: --parameter {}={} differs from its value.",
                        preset.name, template.name, given.name, given.value
                    );
                    None
                }
                Some((preset, None)) => {
                    println!("Using the default preset {} of {} (--preset none for none).", preset.name, template.name);
                    Some(preset)
                }
                None => None,
            }
        }
    };
    let started = Instant::now();
    let workspace = client
        .create_workspace(
            owner,
            &CreateWorkspaceRequest {
                template_id: template.id,
                template_version_id: None,
                name: name.to_owned(),
                rich_parameter_values: values,
                template_version_preset_id: preset.map(|p| p.id),
                ttl_ms: args.ttl.map(|ttl| ttl.as_millis() as i64),
                autostart_schedule: None,
            },
        )
        .await?;
    match workspace.claim_hand_over_ms {
        // The server's measure, the one `prebuilds claims` lists.
        Some(ms) => println!(
            "Claimed a prebuilt workspace from {}: {}/{} was handed over in {ms:.1} ms.",
            template.name, workspace.owner_name, workspace.name
        ),
        None => println!("Creating workspace {}/{} from {} …", workspace.owner_name, workspace.name, template.name),
    }
    follow(&client, &workspace.latest_build).await?;
    println!("Workspace {} is running ({:.1} s).", workspace.name, started.elapsed().as_secs_f64());
    Ok(())
}

pub async fn list(config: &Config, args: ListArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let mut q = args.search.clone();
    if !args.all && !q.contains("owner:") {
        q = format!("owner:me {q}");
    }
    let mut workspaces = Vec::new();
    loop {
        let page = client
            .workspaces(&WorkspacesQuery { q: Some(q.clone()), limit: None, offset: Some(workspaces.len() as i64) })
            .await
            .map_err(super::search_error)?;
        let done = page.workspaces.is_empty() || workspaces.len() + page.workspaces.len() >= page.count as usize;
        workspaces.extend(page.workspaces);
        if done {
            break;
        }
    }
    match args.output.format {
        Format::Json => output::json(&workspaces),
        Format::Table => {
            output::table(
                ["WORKSPACE", "TEMPLATE", "STATUS", "AGENTS", "LAST BUILT", "OUTDATED", "CREATED"],
                workspaces.iter().map(|w| {
                    let ready = w.agents.iter().filter(|a| a.lifecycle_state == warmspace_sdk::AgentLifecycle::Ready);
                    let agents = match w.agents.len() {
                        0 => "-".to_owned(),
                        n if ready.count() == n => "ready".to_owned(),
                        n => format!(
                            "{}/{n} ready",
                            w.agents
                                .iter()
                                .filter(|a| a.lifecycle_state == warmspace_sdk::AgentLifecycle::Ready)
                                .count()
                        ),
                    };
                    [
                        format!("{}/{}", w.owner_name, w.name),
                        w.template_name.clone(),
                        w.status.as_str().to_owned(),
                        agents,
                        w.latest_build.created_at.format("%Y-%m-%d %H:%M").to_string(),
                        if w.outdated { "yes".into() } else { String::new() },
                        w.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                }),
            );
            Ok(())
        }
    }
}

pub async fn show(config: &Config, args: ShowArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.workspace.name).await?;
    if args.timings {
        return timings(&client, &workspace.latest_build, args.output.format).await;
    }
    if args.output.format == Format::Json {
        // The workspace's fields, and beside them its apps and dev containers as `print` shows them.
        let apps = client.workspace_apps(workspace.id).await?;
        let mut shown = serde_json::to_value(&workspace)?;
        shown["apps"] = serde_json::to_value(&apps.apps)?;
        shown["devcontainers"] = serde_json::to_value(&apps.devcontainers)?;
        return output::json(&shown);
    }
    let b = &workspace.latest_build;
    println!("{}/{}  ({})", workspace.owner_name, workspace.name, workspace.status.as_str());
    println!(
        "  template:   {} (version {}{})",
        workspace.template_name,
        b.template_version_name,
        if workspace.outdated { ", outdated" } else { "" }
    );
    println!(
        "  build:      #{} {} by {} ({}), {}",
        b.build_number,
        b.transition,
        b.initiator_name,
        b.reason,
        b.job.status.as_str()
    );
    if let Some(worker) = &b.job.worker_name {
        println!("  daemon:     {worker}");
    }
    if let Some(deadline) = b.deadline {
        println!("  deadline:   {deadline}");
    }
    if let Some(dormant) = workspace.dormant_at {
        println!("  dormant:    since {dormant} (wake it: warmspace schedule wake {})", workspace.name);
    }
    if let Some(deleting) = workspace.deleting_at {
        println!("  deleting:   queued {deleting} for dormancy");
    }
    for p in &b.parameters {
        println!("  parameter:  {} = {}", p.name, p.value);
    }
    for a in &workspace.agents {
        let connection = serde_json::to_value(a.connection).ok().and_then(|v| v.as_str().map(str::to_owned));
        let since = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or("-".into())
        };
        println!(
            "  agent:      {} — {} , {} (first connected {}, last seen {}, ready {})",
            a.name,
            a.lifecycle_state.as_str(),
            connection.unwrap_or_default(),
            since(a.first_connected_at),
            since(a.last_connected_at),
            since(a.ready_at),
        );
    }
    super::apps::print(&client, &workspace).await?;
    for r in &b.resources {
        println!("  resource:   {} ({}){}", r.address, r.kind, if r.replaced { ", replaced" } else { "" });
    }
    if let Some(error) = &b.job.error {
        println!("  error:      {error}");
    }
    Ok(())
}

/// `show --timings`: a build's stages, each followed by its resources' actions.
async fn timings(client: &Client, build: &WorkspaceBuild, format: Format) -> anyhow::Result<()> {
    let timings = client.build_timings(build.id).await?;
    if format == Format::Json {
        return output::json(&timings);
    }
    println!("Build #{} ({}, {}):", build.build_number, build.transition, build.job.status.as_str());
    if timings.is_empty() {
        println!("  no timings (only Terraform builds record them)");
        return Ok(());
    }
    output::table(
        ["STAGE", "ACTION", "RESOURCE", "STARTED", "SECONDS"],
        timings.iter().map(|t| {
            let seconds = (t.ended_at - t.started_at).as_seconds_f64();
            [
                t.stage.clone(),
                t.action.clone(),
                t.resource.clone().unwrap_or_else(|| "-".into()),
                t.started_at.format("%H:%M:%S%.3f").to_string(),
                format!("{seconds:.3}"),
            ]
        }),
    );
    Ok(())
}

/// `start` and `stop`.
pub async fn transition(config: &Config, args: BuildArgs, transition: Transition) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.workspace.name).await?;
    build(&client, &workspace, transition, None, &args.parameters).await
}

pub async fn delete(config: &Config, args: ConfirmedBuildArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.build.workspace.name).await?;
    if !args.yes && !confirm(&format!("Delete workspace {}/{}?", workspace.owner_name, workspace.name))? {
        bail!("not deleted");
    }
    build(&client, &workspace, Transition::Delete, None, &args.build.parameters).await
}

/// Moves a workspace to its template's active version: stop (if running), then start on the new version.
pub async fn update(config: &Config, args: ConfirmedBuildArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.build.workspace.name).await?;
    if !workspace.outdated {
        println!("Workspace {} already uses the active version.", workspace.name);
        return Ok(());
    }
    let running = workspace.latest_build.transition == Transition::Start
        && workspace.latest_build.job.status == JobStatus::Succeeded;
    if running {
        let question = format!(
            "Update workspace {}/{}? It is stopped and started again on the active version.",
            workspace.owner_name, workspace.name
        );
        if !args.yes && !confirm(&question)? {
            bail!("not updated");
        }
        build(&client, &workspace, Transition::Stop, None, &[]).await?;
    }
    let version = Some(workspace.template_active_version_id);
    build(&client, &workspace, Transition::Start, version, &args.build.parameters).await
}

async fn build(
    client: &Client,
    workspace: &Workspace,
    transition: Transition,
    version: Option<uuid::Uuid>,
    values: &[String],
) -> anyhow::Result<()> {
    let build = client
        .create_build(
            workspace.id,
            &CreateWorkspaceBuildRequest {
                transition,
                template_version_id: version,
                rich_parameter_values: parameters(values)?,
            },
        )
        .await?;
    println!(
        "{} workspace {}/{} (build {}) …",
        capitalised(transition.as_str()),
        workspace.owner_name,
        workspace.name,
        build.build_number
    );
    follow(client, &build).await
}

/// Prints a build's log until it ends; an error unless it succeeded.
async fn follow(client: &Client, build: &WorkspaceBuild) -> anyhow::Result<()> {
    let mut events = Box::pin(client.follow_build_logs(build.id).await?);
    let mut job = None;
    while let Some(event) = events.next().await {
        match event? {
            LogEvent::Log(line) => println!("  {}", line.output),
            LogEvent::End(end) => {
                job = Some(*end);
                break;
            }
        }
    }
    let job = match job {
        Some(job) => job,
        None => client.build(build.id).await?.job,
    };
    match job.status {
        JobStatus::Succeeded => Ok(()),
        status => bail!("the {} build {}: {}", build.transition, status.as_str(), job.error.unwrap_or_default()),
    }
}

pub(super) async fn find(client: &Client, name: &str) -> anyhow::Result<Workspace> {
    let (owner, name) = split_name(name);
    // The server's 404 names the user or the workspace that is missing.
    Ok(client.workspace_by_name(owner, name).await?)
}

fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("me", name))
}

/// The first of `values` that sets one of the preset's parameters to another value.
fn contradicted<'a>(preset: &Preset, values: &'a [BuildParameter]) -> Option<&'a BuildParameter> {
    values.iter().find(|v| preset.parameters.iter().any(|p| p.name == v.name && p.value != v.value))
}

fn parameters(values: &[String]) -> anyhow::Result<Vec<BuildParameter>> {
    values
        .iter()
        .map(|kv| {
            let (name, value) =
                kv.split_once('=').with_context(|| format!("--parameter {kv:?}: expected NAME=VALUE"))?;
            Ok(BuildParameter { name: name.to_owned(), value: value.to_owned() })
        })
        .collect()
}

/// Asks on a terminal; without one there is nobody to ask, and the command goes ahead.
pub(super) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    print!("{question} [y/N] ");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn capitalised(transition: &str) -> &'static str {
    match transition {
        "start" => "Starting",
        "stop" => "Stopping",
        _ => "Deleting",
    }
}
