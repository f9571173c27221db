//! `warmspace provisioner …`.

use warmspace_sdk::JobsQuery;

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::templates::OrgArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ProvisionerCommand {
    /// Provisioner jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first, with their status, worker and queue position.
    #[command(alias = "ls")]
    List {
        /// Only these statuses, comma-separated (pending, running, succeeded, failed, canceling, canceled).
        #[arg(long, short = 's')]
        status: Option<String>,
        #[arg(long, short = 'c', default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        org: OrgArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub async fn run(config: &Config, command: ProvisionerCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        ProvisionerCommand::Jobs(JobsCommand::List { status, limit, org, output }) => {
            let jobs = client.provisioner_jobs(&org.organization, &JobsQuery { status, limit: Some(limit) }).await?;
            match output.format {
                Format::Json => output::json(&jobs),
                Format::Table => {
                    output::table(
                        ["ID", "TYPE", "STATUS", "PRIORITY", "WORKER", "QUEUE", "CREATED", "ERROR"],
                        jobs.iter().map(|j| {
                            [
                                j.id.to_string(),
                                serde_json::to_value(j.kind)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default(),
                                j.status.as_str().to_owned(),
                                serde_json::to_value(j.priority)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default(),
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
