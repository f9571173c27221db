//! The command line. Commands follow Coder's where Coder has them.

mod agent;
mod apps;
mod bench;
mod config;
mod connections;
mod logging;
mod login;
mod notifications;
mod output;
mod prebuilds;
mod provisioner;
mod schedule;
mod server;
mod ssh;
mod templates;
mod users;
mod workspaces;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use url::Url;

pub use config::Config;
pub use ssh::ExitStatus;

#[derive(Parser, Debug)]
#[command(name = "warmspace", version, about = "Developer workspaces with warm pools of prebuilt workspaces.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How a client command reaches the server. Only client commands take these:
/// the server, the agent and the benchmarks have flags of their own.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Connection")]
struct ClientArgs {
    /// Where the client keeps its URL and session (default: the user's config dir).
    #[arg(long, global = true, env = "WARMSPACE_CONFIG_DIR", value_name = "DIR")]
    global_config: Option<PathBuf>,
    /// The server to talk to, instead of the one saved by `login` (`host:port` alone: http for this
    /// machine, else https).
    #[arg(long, global = true, env = "WARMSPACE_URL", value_name = "URL", value_parser = config::server_url)]
    url: Option<Url>,
    /// A session token to use instead of the one saved by `login`.
    #[arg(long, global = true, env = "WARMSPACE_SESSION_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ClientArgs {
    fn config(self) -> anyhow::Result<Config> {
        Config::new(self.global_config, self.url, self.token)
    }
}

/// A client command's own arguments, and how it reaches the server.
#[derive(clap::Args, Debug)]
struct Client<A: clap::Args> {
    #[command(flatten)]
    args: A,
    #[command(flatten)]
    client: ClientArgs,
}

/// A group of client commands, and how they reach the server.
#[derive(clap::Args, Debug)]
struct ClientGroup<S: clap::Subcommand> {
    #[command(subcommand)]
    command: S,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API, and a built-in PostgreSQL unless --postgres-url is given).
    Server(server::ServerArgs),
    /// Log in to a server, creating its first user if it has none.
    Login(Client<login::LoginArgs>),
    /// End the saved session.
    Logout(Client<NoArgs>),
    /// Manage users.
    Users(ClientGroup<users::UsersCommand>),
    /// Manage templates: push versions, list them and their presets.
    Templates(ClientGroup<templates::TemplatesCommand>),
    /// Your inbox.
    Notifications(ClientGroup<notifications::NotificationsCommand>),
    /// Prebuild pools: status, pause and resume, invalidate.
    Prebuilds(ClientGroup<prebuilds::PrebuildsCommand>),
    /// Provisioner daemons, their keys and their jobs.
    Provisioner(ClientGroup<provisioner::ProvisionerCommand>),
    /// Measure: each figure printed beside a baseline from the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a workspace agent, or report to it (inside a workspace).
    Agent(agent::AgentArgs),
    /// Create a workspace, and follow its first build.
    Create(Client<workspaces::CreateArgs>),
    /// List workspaces.
    #[command(alias = "ls")]
    List(Client<workspaces::ListArgs>),
    /// Show a workspace.
    Show(Client<workspaces::ShowArgs>),
    /// Start a workspace.
    Start(Client<workspaces::BuildArgs>),
    /// Stop a workspace.
    Stop(Client<workspaces::BuildArgs>),
    /// Delete a workspace.
    Delete(Client<workspaces::ConfirmedBuildArgs>),
    /// Move a workspace to its template's active version (stopping it first).
    Update(Client<workspaces::ConfirmedBuildArgs>),
    /// A workspace's schedule: when it starts and stops by itself.
    Schedule(ClientGroup<schedule::ScheduleCommand>),
    /// Open a shell in a workspace, or run a command there (`warmspace ssh NAME -- make test`).
    Ssh(Client<ssh::SshArgs>),
    /// Let OpenSSH (ssh, scp, VS Code Remote) reach workspaces as `warmspace.NAME`.
    ConfigSsh(Client<ssh::ConfigSshArgs>),
    /// Forward local TCP ports to ports inside a workspace.
    PortForward(Client<ssh::PortForwardArgs>),
    /// Print the address of a workspace app (served through the server), or open it in a browser.
    Open(Client<apps::OpenArgs>),
    /// The connection log: who connected to which workspace, how, and how it ended.
    Connections(ClientGroup<connections::ConnectionsCommand>),
}

/// For commands that take nothing but the client's flags.
#[derive(clap::Args, Debug)]
struct NoArgs {}

impl Cli {
    /// Whether the command runs until it is stopped (a server, a daemon, an
    /// agent) rather than printing an answer and exiting.
    pub fn runs_until_stopped(&self) -> bool {
        match &self.command {
            Command::Server(_) => true,
            Command::Agent(args) => args.runs_until_stopped(),
            Command::Provisioner(group) => matches!(group.command, provisioner::ProvisionerCommand::Start(_)),
            _ => false,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server(args) => server::run(args).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Agent(args) => agent::run(args).await,
            client => {
                init_logging("warn");
                client.run_client().await
            }
        }
    }
}

impl Command {
    async fn run_client(self) -> anyhow::Result<()> {
        use warmspace_sdk::Transition;
        match self {
            Command::Server(_) | Command::Agent(_) | Command::Bench(_) => unreachable!("not client commands"),
            Command::Login(c) => login::login(&c.client.config()?, c.args).await,
            Command::Logout(c) => login::logout(&c.client.config()?).await,
            Command::Users(g) => users::run(&g.client.config()?, g.command).await,
            Command::Templates(g) => templates::run(&g.client.config()?, g.command).await,
            Command::Provisioner(g) => provisioner::run(&g.client.config()?, g.command).await,
            Command::Prebuilds(g) => prebuilds::run(&g.client.config()?, g.command).await,
            Command::Notifications(g) => notifications::run(&g.client.config()?, g.command).await,
            Command::Create(c) => workspaces::create(&c.client.config()?, c.args).await,
            Command::List(c) => workspaces::list(&c.client.config()?, c.args).await,
            Command::Show(c) => workspaces::show(&c.client.config()?, c.args).await,
            Command::Start(c) => workspaces::transition(&c.client.config()?, c.args, Transition::Start).await,
            Command::Stop(c) => workspaces::transition(&c.client.config()?, c.args, Transition::Stop).await,
            Command::Delete(c) => workspaces::delete(&c.client.config()?, c.args).await,
            Command::Update(c) => workspaces::update(&c.client.config()?, c.args).await,
            Command::Schedule(g) => schedule::run(&g.client.config()?, g.command).await,
            Command::Ssh(c) => ssh::ssh(&c.client.config()?, c.args).await,
            Command::ConfigSsh(c) => ssh::config_ssh(&c.client.config()?, c.args).await,
            Command::PortForward(c) => ssh::port_forward(&c.client.config()?, c.args).await,
            Command::Open(c) => apps::open(&c.client.config()?, c.args).await,
            Command::Connections(g) => connections::run(&g.client.config()?, g.command).await,
        }
    }
}

/// A listing's refused query, told in the flag a person typed: the API
/// names its `q` field, and each problem names the term it is in.
fn search_error(err: warmspace_sdk::ClientError) -> anyhow::Error {
    match &err {
        warmspace_sdk::ClientError::Api { response, .. } if response.validations.iter().any(|v| v.field == "q") => {
            let problems: Vec<String> = response.validations.iter().map(|v| format!("--search {}", v.detail)).collect();
            anyhow::anyhow!(problems.join("\n"))
        }
        _ => err.into(),
    }
}

/// Client commands log only warnings, the agent what it does, unless RUST_LOG says otherwise.
fn init_logging(default: &str) {
    logging::init(default, false);
}

/// Completes on SIGINT or SIGTERM. A second one ends the process at once:
/// whoever sends it has chosen not to wait for the orderly stop (a built-in
/// PostgreSQL follows through its parent-death signal).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a server answers its first requests before it polls its
/// shutdown future, and a SIGTERM sent once it answered must stop it in
/// order rather than kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
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
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command and every argument a person can see says what it is for.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if command.get_about().is_none() && !path.is_empty() {
                missing.push(format!("`{path}`"));
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{path}` {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }
}
