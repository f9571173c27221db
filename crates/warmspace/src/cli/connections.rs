//! `warmspace connections list`: the connection log (SSH sessions,
//! forwarded ports, apps opened), newest first.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use warmspace_sdk::{ConnectionLogQuery, ConnectionStatus, ConnectionType};

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::workspaces::find;

#[derive(Subcommand, Debug)]
pub enum ConnectionsCommand {
    /// List connections to workspaces: everyone's for deployment owners, your own otherwise.
    #[command(alias = "ls")]
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only connections to this workspace (NAME or OWNER/NAME).
    #[arg(long)]
    workspace: Option<String>,
    /// Only connections to workspaces of this owner (a username, or `me`).
    #[arg(long)]
    owner: Option<String>,
    /// Only connections made by this user (a username, or `me`).
    #[arg(long)]
    user: Option<String>,
    /// Only connections of this type: ssh, port_forward, app.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<ConnectionType>,
    /// Only ongoing or only completed connections.
    #[arg(long)]
    status: Option<ConnectionStatus>,
    /// Only connections started at or after this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<DateTime<Utc>>,
    /// Only connections started before this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<DateTime<Utc>>,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Skip this many of the newest first.
    #[arg(long, default_value_t = 0)]
    offset: i64,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(config: &Config, command: ConnectionsCommand) -> anyhow::Result<()> {
    let ConnectionsCommand::List(args) = command;
    let client = config.client()?;
    let workspace_id = match &args.workspace {
        Some(name) => Some(find(&client, name).await?.id),
        None => None,
    };
    let query = ConnectionLogQuery {
        workspace_id,
        owner: args.owner,
        user: args.user,
        kind: args.kind,
        status: args.status,
        started_after: args.since,
        started_before: args.until,
        limit: Some(args.limit),
        offset: Some(args.offset),
    };
    let page = client.connection_log(&query).await?;
    match args.output.format {
        Format::Json => output::json(&page),
        Format::Table => {
            output::table(
                ["STARTED", "TYPE", "USER", "WORKSPACE", "AGENT", "FROM", "PORT/APP", "ENDED", "EXIT/HTTP", "REASON"],
                page.entries.iter().map(|c| {
                    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    [
                        c.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        c.kind.to_string(),
                        c.username.clone(),
                        format!("{}/{}", c.workspace_owner_name, c.workspace_name),
                        c.agent_name.clone(),
                        c.client_address.clone(),
                        or_dash(c.port.map(|p| p.to_string()).or_else(|| c.app.clone())),
                        or_dash(c.ended_at.map(|t| t.format("%H:%M:%S").to_string())),
                        or_dash(c.exit_code.or(c.http_status.map(i32::from)).map(|e| e.to_string())),
                        or_dash(c.close_reason.clone()),
                    ]
                }),
            );
            println!("{} of {} connections", page.entries.len(), page.count);
            Ok(())
        }
    }
}
