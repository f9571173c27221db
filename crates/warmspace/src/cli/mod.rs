//! The command line. Commands follow Coder's where Coder has them.

mod config;
mod login;
mod output;
mod provisioner;
mod server;
mod templates;
mod users;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Provisioner daemons and their jobs.
    #[command(subcommand)]
    Provisioner(provisioner::ProvisionerCommand),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = Config::new(self.global_config, self.url, self.token)?;
        match self.command {
            Command::Server(args) => server::run(args).await,
            Command::Login(args) => {
                init_client_logging();
                login::login(&config, args).await
            }
            Command::Logout => {
                init_client_logging();
                login::logout(&config).await
            }
            Command::Users(cmd) => {
                init_client_logging();
                users::run(&config, cmd).await
            }
            Command::Templates(cmd) => {
                init_client_logging();
                templates::run(&config, cmd).await
            }
            Command::Provisioner(cmd) => {
                init_client_logging();
                provisioner::run(&config, cmd).await
            }
        }
    }
}

/// Client commands log only warnings unless RUST_LOG says otherwise.
fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
