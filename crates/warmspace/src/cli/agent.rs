//! `warmspace agent`: the process inside a workspace, and `warmspace agent
//! status`, which reports an app status through it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use url::Url;
use warmspace_agent::status_relay::{self, SOCKET_ENV};
use warmspace_agent::{AgentError, AgentOptions, Exit};
use warmspace_sdk::{AgentAppStatusRequest, AppStatusState};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The server the agent connects back to.
    #[arg(long, env = "WARMSPACE_AGENT_URL", value_name = "URL")]
    url: Option<Url>,
    /// The agent token its workspace's build issued (not a user's session token).
    #[arg(long, env = "WARMSPACE_AGENT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum AgentCommand {
    /// Report what is going on in one of the workspace's apps (from inside
    /// the workspace, through its agent). The workspace shows each app's
    /// latest status and keeps its last 100.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The app, by the name the template gives it.
    #[arg(long, value_name = "APP")]
    app: String,
    /// What the app (or whoever works in it) is doing: working, idle,
    /// complete or failure.
    #[arg(long, value_name = "STATE")]
    state: AppStatusState,
    /// Where to look: a pull request, a log, a preview.
    #[arg(long, value_name = "URI")]
    uri: Option<String>,
    /// The agent's socket; the agent sets it for the processes it starts.
    #[arg(long, env = SOCKET_ENV, value_name = "PATH")]
    socket: PathBuf,
    /// A short message, at most 1024 characters.
    message: String,
}

impl AgentArgs {
    /// The agent itself runs until stopped; its subcommands answer and exit.
    pub fn runs_until_stopped(&self) -> bool {
        self.command.is_none()
    }
}

/// Runs the agent until its workspace stops, a signal arrives, or its token
/// stops working; or runs one of its subcommands.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    match args.command {
        Some(AgentCommand::Status(status)) => {
            super::init_logging("warn");
            report_status(status).await
        }
        None => {
            super::init_logging("info");
            let (Some(url), Some(token)) = (args.url, args.token) else {
                bail!("the agent needs --url and --token (or WARMSPACE_AGENT_URL and WARMSPACE_AGENT_TOKEN)");
            };
            match warmspace_agent::run(AgentOptions::new(url, token), super::shutdown_signal()).await {
                Ok(Exit::Stopped | Exit::Shutdown) => Ok(()),
                Err(AgentError::Unauthorized) => {
                    bail!("the agent token is not valid (revoked, or the workspace was deleted)")
                }
                Err(err) => Err(err.into()),
            }
        }
    }
}

async fn report_status(args: StatusArgs) -> anyhow::Result<()> {
    let req = AgentAppStatusRequest { app: args.app, state: args.state, message: args.message, uri: args.uri };
    status_relay::report(&args.socket, &req).await.context("reporting the app status")?;
    Ok(())
}
