//! The command line. Commands follow Coder's where Coder has them.

mod agent;
mod bench;
mod config;
mod logging;
mod login;
mod notifications;
mod output;
mod prebuilds;
mod provisioner;
mod server;
mod templates;
mod users;
mod workspaces;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use url::Url;

pub use config::Config;

#[derive(Parser, Debug)]
#[command(name = "warmspace", version, about = "Developer workspaces with warm pools of prebuilt workspaces.")]
pub struct Cli {
    /// Where the client keeps its URL and session (default: the user's config dir).
    #[arg(long, global = true, env = "WARMSPACE_CONFIG_DIR", value_name = "DIR")]
    global_config: Option<PathBuf>,
    /// The server to talk to, instead of the one saved by `login`.
    #[arg(long, global = true, env = "WARMSPACE_URL", value_name = "URL")]
    url: Option<Url>,
    /// A session token to use instead of the one saved by `login`.
    #[arg(long, global = true, env = "WARMSPACE_SESSION_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API, and a built-in PostgreSQL unless --postgres-url is given).
    Server(server::ServerArgs),
    /// Log in to a server, creating its first user if it has none.
    Login(login::LoginArgs),
    /// End the saved session.
    Logout,
    /// Manage users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage templates: push versions, list them and their presets.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Your inbox.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
    /// Prebuild pools: status, pause and resume, invalidate.
    #[command(subcommand)]
    Prebuilds(prebuilds::PrebuildsCommand),
    /// Provisioner daemons, their keys and their jobs.
    #[command(subcommand)]
    Provisioner(provisioner::ProvisionerCommand),
    /// Measure: each figure printed beside a baseline from the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a workspace agent (inside a workspace); uses WARMSPACE_AGENT_URL and WARMSPACE_AGENT_TOKEN.
    Agent(agent::AgentArgs),
    /// Create a workspace, and follow its first build.
    Create(workspaces::CreateArgs),
    /// List workspaces.
    #[command(alias = "ls")]
    List(workspaces::ListArgs),
    /// Show a workspace.
    Show {
        #[command(flatten)]
        workspace: workspaces::NameArgs,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Start a workspace.
    Start(workspaces::BuildArgs),
    /// Stop a workspace.
    Stop(workspaces::BuildArgs),
    /// Delete a workspace.
    Delete(workspaces::BuildArgs),
    /// Move a workspace to its template's active version (stopping it first).
    Update(workspaces::BuildArgs),
}

impl Cli {
    /// Whether the command runs until it is stopped (a server, a daemon, an
    /// agent) rather than printing an answer and exiting.
    pub fn runs_until_stopped(&self) -> bool {
        matches!(
            self.command,
            Command::Server(_) | Command::Agent(_) | Command::Provisioner(provisioner::ProvisionerCommand::Start(_))
        )
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let config = Config::new(self.global_config, self.url, self.token)?;
        match self.command {
            Command::Server(args) => return server::run(args).await,
            Command::Bench(command) => {
                init_logging("warn");
                return bench::run(command).await;
            }
            Command::Agent(args) => {
                init_logging("info");
                return agent::run(&config, args).await;
            }
            _ => init_logging("warn"),
        }
        match self.command {
            Command::Server(_) | Command::Agent(_) | Command::Bench(_) => unreachable!("handled above"),
            Command::Login(args) => login::login(&config, args).await,
            Command::Logout => login::logout(&config).await,
            Command::Users(cmd) => users::run(&config, cmd).await,
            Command::Templates(cmd) => templates::run(&config, cmd).await,
            Command::Provisioner(cmd) => provisioner::run(&config, cmd).await,
            Command::Prebuilds(cmd) => prebuilds::run(&config, cmd).await,
            Command::Notifications(cmd) => notifications::run(&config, cmd).await,
            Command::Create(args) => workspaces::create(&config, args).await,
            Command::List(args) => workspaces::list(&config, args).await,
            Command::Show { workspace, output } => workspaces::show(&config, workspace, output).await,
            Command::Start(args) => workspaces::transition(&config, args, warmspace_sdk::Transition::Start).await,
            Command::Stop(args) => workspaces::transition(&config, args, warmspace_sdk::Transition::Stop).await,
            Command::Delete(args) => workspaces::transition(&config, args, warmspace_sdk::Transition::Delete).await,
            Command::Update(args) => workspaces::update(&config, args).await,
        }
    }
}

/// Client commands log only warnings, the agent what it does, unless RUST_LOG says otherwise.
fn init_logging(default: &str) {
    logging::init(default, false);
}

/// Completes on SIGINT or SIGTERM. A second one ends the process at once:
/// whoever sends it has chosen not to wait for the orderly stop (a built-in
/// PostgreSQL follows through its parent-death signal).
pub async fn shutdown_signal() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down; a second Ctrl-C or SIGTERM stops at once");
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => Signal::SIGINT,
            _ = terminate.recv() => Signal::SIGTERM,
        };
        tracing::warn!("stopping at once");
        // The shell's convention for "ended by a signal".
        std::process::exit(128 + signal as i32);
    });
}
