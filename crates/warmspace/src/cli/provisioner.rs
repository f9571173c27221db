//! `warmspace provisioner …`.

use anyhow::Context;
use warmspace_provisioner::{Daemon, DaemonConfig, HttpCoordinator};
use warmspace_sdk::{Client, JobsQuery};

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::templates::OrgArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ProvisionerCommand {
    /// Provisioner jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Keys that let daemons on other hosts take jobs (owners only).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run a provisioner daemon against a server's API (on any host). Uses --url / WARMSPACE_URL.
    Start(StartArgs),
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// A name for the key, unique among keys.
        name: String,
    },
    /// List keys.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a key; daemons using it can take no more jobs.
    Delete {
        /// The key's name.
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// The provisioner key (from `warmspace provisioner keys create`).
    #[arg(long, env = "WARMSPACE_PROVISIONER_KEY", hide_env_values = true)]
    key: String,
    /// The daemon's name (default: `<host>-<pid>`).
    #[arg(long)]
    name: Option<String>,
    /// A tag, `key=value`: the daemon runs only jobs whose tags it has. Repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// How often an idle daemon looks for jobs without being told of one.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    poll_interval: std::time::Duration,
    /// How long a canceled or timed-out script gets between SIGTERM and SIGKILL.
    #[arg(long, env = "WARMSPACE_PROVISIONER_STOP_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    stop_grace: std::time::Duration,
    /// The Terraform CLI run for `provisioner = "terraform"` templates: a path, or a name looked up on PATH.
    #[arg(long, env = "WARMSPACE_TERRAFORM_BINARY", default_value = warmspace_provisioner::DEFAULT_TERRAFORM_BINARY)]
    terraform_binary: std::path::PathBuf,
    /// Terraform's plugin cache directory (TF_PLUGIN_CACHE_DIR) for this daemon: providers are downloaded (or placed by a mirror) once and shared by every build. It must exist. Default: none, each build's init fetches its own.
    #[arg(long, env = "WARMSPACE_TERRAFORM_PLUGIN_CACHE_DIR")]
    terraform_plugin_cache_dir: Option<std::path::PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first, with their status, worker and queue position.
    #[command(alias = "ls")]
    List {
        /// Only these statuses, comma-separated (pending, running, succeeded, failed, canceling, canceled).
        #[arg(long, short = 's')]
        status: Option<String>,
        /// List at most this many.
        #[arg(long, short = 'c', default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        org: OrgArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub async fn run(config: &Config, command: ProvisionerCommand) -> anyhow::Result<()> {
    if let ProvisionerCommand::Start(args) = command {
        return start(config, args).await;
    }
    let client = config.client()?;
    match command {
        ProvisionerCommand::Start(_) => unreachable!("handled above"),
        ProvisionerCommand::Keys(KeysCommand::Create { name }) => {
            let created = client.create_provisioner_key(&name).await?;
            println!("Created provisioner key {}. Its secret, shown only now:\n{}", created.key.name, created.secret);
            Ok(())
        }
        ProvisionerCommand::Keys(KeysCommand::List { output }) => {
            let keys = client.provisioner_keys().await?;
            match output.format {
                Format::Json => output::json(&keys),
                Format::Table => {
                    output::table(
                        ["NAME", "ID", "CREATED"],
                        keys.iter()
                            .map(|k| [k.name.clone(), k.id.clone(), k.created_at.format("%Y-%m-%d %H:%M").to_string()]),
                    );
                    Ok(())
                }
            }
        }
        ProvisionerCommand::Keys(KeysCommand::Delete { name }) => {
            client.delete_provisioner_key(&name).await?;
            println!("Deleted provisioner key {name}.");
            Ok(())
        }
        ProvisionerCommand::Jobs(JobsCommand::List { status, limit, org, output }) => {
            let jobs = client.provisioner_jobs(&org.organization, &JobsQuery { status, limit: Some(limit) }).await?;
            match output.format {
                Format::Json => output::json(&jobs),
                Format::Table => {
                    output::table(
                        ["ID", "TYPE", "FOR", "STATUS", "PRIORITY", "WORKER", "QUEUE", "CREATED", "ERROR"],
                        jobs.iter().map(|j| {
                            [
                                j.id.to_string(),
                                j.kind.as_str().to_owned(),
                                job_target(&j.metadata),
                                j.status.as_str().to_owned(),
                                j.priority.as_str().to_owned(),
                                j.worker_name.clone().unwrap_or_default(),
                                j.queue_position.map(|p| p.to_string()).unwrap_or_default(),
                                j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                j.error.as_deref().unwrap_or_default().lines().next().unwrap_or_default().to_owned(),
                            ]
                        }),
                    );
                    Ok(())
                }
            }
        }
    }
}

/// What a job is for, in a few words: `dev #2 stop (pool v3)` or `pool v3`.
fn job_target(m: &warmspace_sdk::ProvisionerJobMetadata) -> String {
    let version = match (&m.template_name, &m.template_version_name) {
        (Some(template), Some(version)) => format!("{template} {version}"),
        (None, Some(version)) => version.clone(),
        _ => String::new(),
    };
    match (&m.workspace_name, m.build_number, m.transition) {
        (Some(workspace), Some(number), Some(transition)) => format!("{workspace} #{number} {transition} ({version})"),
        _ => version,
    }
}

async fn start(config: &Config, args: StartArgs) -> anyhow::Result<()> {
    let url = config.url()?.context("which server? pass --url or set WARMSPACE_URL")?;
    let mut tags = std::collections::BTreeMap::new();
    for tag in &args.tags {
        let (key, value) = tag.split_once('=').with_context(|| format!("--tag {tag:?}: expected KEY=VALUE"))?;
        tags.insert(key.to_owned(), value.to_owned());
    }
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "daemon".into());
    let name = args.name.unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    let coordinator = HttpCoordinator::new(Client::new(url.clone()).with_provisioner_key(args.key));
    let daemon = Daemon::new(
        coordinator,
        DaemonConfig {
            name: name.clone(),
            tags,
            poll_interval: args.poll_interval,
            binary: std::env::current_exe().context("finding this executable")?,
            stop_grace: args.stop_grace,
            shutdown_grace: warmspace_provisioner::DEFAULT_SHUTDOWN_GRACE,
            terraform_binary: args.terraform_binary,
            terraform_plugin_cache_dir: args.terraform_plugin_cache_dir,
        },
    );
    println!("Provisioner daemon {name} taking jobs from {url}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::spawn(daemon.run(stopped));
    let ended = tokio::select! {
        // The daemon gave up by itself: the server refused its key.
        ended = &mut running => ended,
        () = super::shutdown_signal() => {
            // Nobody listening means the daemon has stopped already.
            stop.send_replace(true);
            running.await
        }
    };
    ended?.with_context(|| format!("the server at {url} refused this daemon"))
}
