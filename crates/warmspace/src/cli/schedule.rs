//! `warmspace schedule show|start|stop|extend|wake`: a workspace's own
//! schedule, in the shape of Coder's `coder schedule`.

use anyhow::bail;
use chrono::Utc;
use serde::Serialize;
use warmspace_prebuilds::lifecycle::Autostart;

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::workspaces::find;

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Show when a workspace starts and stops by itself.
    Show {
        /// The workspace: `name` (yours) or `owner/name`.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Set when a workspace starts by itself: five cron fields, optionally after
    /// `CRON_TZ=<zone> ` (e.g. 'CRON_TZ=Europe/Berlin 0 9 * * 1-5'), or `manual` for never.
    Start {
        /// The workspace: `name` (yours) or `owner/name`.
        name: String,
        /// The schedule, or `manual`.
        schedule: String,
    },
    /// Set how long a workspace runs after each start (e.g. 8h), or `manual` to
    /// run until stopped (a template's autostop requirement still applies).
    Stop {
        /// The workspace: `name` (yours) or `owner/name`.
        name: String,
        /// A duration, or `manual`.
        duration: String,
    },
    /// Move a running workspace's stop to this long from now (e.g. 2h), within
    /// its max deadline.
    #[command(alias = "override-stop")]
    Extend {
        /// The workspace: `name` (yours) or `owner/name`.
        name: String,
        /// How long from now, at least 30m.
        #[arg(value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Wake a dormant workspace so that it can start again.
    Wake {
        /// The workspace: `name` (yours) or `owner/name`.
        name: String,
    },
    /// Set the time zone your templates' autostop requirements and your
    /// autostart schedules without CRON_TZ are read in.
    Timezone {
        /// An IANA time zone, e.g. Europe/Berlin.
        zone: String,
        /// Whose zone to set (owners may set anyone's).
        #[arg(long, default_value = "me")]
        user: String,
    },
}

/// `schedule show -o json`.
#[derive(Serialize)]
struct ScheduleView {
    workspace: String,
    autostart_schedule: Option<String>,
    /// The next autostart (read in the owner's zone when the schedule names none).
    next_start: Option<chrono::DateTime<Utc>>,
    ttl_ms: Option<i64>,
    /// When the running workspace stops.
    deadline: Option<chrono::DateTime<Utc>>,
    max_deadline: Option<chrono::DateTime<Utc>>,
}

pub async fn run(config: &Config, command: ScheduleCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        ScheduleCommand::Show { name, output } => {
            let w = find(&client, &name).await?;
            let running = w.status == warmspace_sdk::WorkspaceStatus::Running;
            // A schedule without CRON_TZ is read in its owner's zone (UTC if that cannot be read).
            let owner_zone = match client.user(&w.owner_id.to_string()).await {
                Ok(owner) => owner.timezone.parse().unwrap_or(chrono_tz::UTC),
                Err(_) => chrono_tz::UTC,
            };
            let next_start = w
                .autostart_schedule
                .as_deref()
                .and_then(|s| Autostart::parse(s).ok())
                .and_then(|a| a.next_firing(Utc::now(), owner_zone));
            let view = ScheduleView {
                workspace: format!("{}/{}", w.owner_name, w.name),
                autostart_schedule: w.autostart_schedule.clone(),
                next_start,
                ttl_ms: w.ttl_ms,
                deadline: w.latest_build.deadline.filter(|_| running),
                max_deadline: w.latest_build.max_deadline.filter(|_| running),
            };
            if output.format == Format::Json {
                return output::json(&view);
            }
            let or_dash = |t: Option<String>| t.unwrap_or_else(|| "-".into());
            output::table(
                ["WORKSPACE", "STARTS AT", "STARTS NEXT", "STOPS AFTER", "STOPS NEXT"],
                [[
                    view.workspace,
                    or_dash(view.autostart_schedule),
                    or_dash(view.next_start.map(|t| t.to_rfc3339())),
                    or_dash(
                        view.ttl_ms.map(|ms| {
                            humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
                        }),
                    ),
                    or_dash(view.deadline.map(|t| t.to_rfc3339())),
                ]],
            );
            Ok(())
        }
        ScheduleCommand::Start { name, schedule } => {
            let w = find(&client, &name).await?;
            let schedule = (schedule != "manual").then_some(schedule);
            let w = client.set_workspace_autostart(w.id, schedule).await?;
            match w.autostart_schedule {
                Some(s) => println!("{} starts by itself at: {s}", w.name),
                None => println!("{} starts only when started.", w.name),
            }
            Ok(())
        }
        ScheduleCommand::Stop { name, duration } => {
            let ttl_ms = match duration.as_str() {
                "manual" => None,
                text => match humantime::parse_duration(text) {
                    Ok(d) => Some(d.as_millis() as i64),
                    Err(e) => bail!("{text:?} is neither a duration nor `manual`: {e}"),
                },
            };
            let w = find(&client, &name).await?;
            let w = client.set_workspace_ttl(w.id, ttl_ms).await?;
            match w.ttl_ms {
                Some(ms) => println!(
                    "{} stops {} after each start.",
                    w.name,
                    humantime::format_duration(std::time::Duration::from_millis(ms as u64))
                ),
                None => println!("{} runs until it is stopped.", w.name),
            }
            Ok(())
        }
        ScheduleCommand::Extend { name, duration } => {
            let w = find(&client, &name).await?;
            let w = client.extend_workspace(w.id, duration.as_millis() as i64).await?;
            match w.latest_build.deadline {
                Some(deadline) => println!("{} now stops at {}.", w.name, deadline.to_rfc3339()),
                None => println!("{} has no deadline.", w.name),
            }
            Ok(())
        }
        ScheduleCommand::Timezone { zone, user } => {
            let user = client.set_user_timezone(&user, &zone).await?;
            println!("{}'s schedules are read in {}.", user.username, user.timezone);
            Ok(())
        }
        ScheduleCommand::Wake { name } => {
            let w = find(&client, &name).await?;
            let w = client.set_workspace_dormant(w.id, false).await?;
            println!("{} is awake: start it with warmspace start {}.", w.name, w.name);
            Ok(())
        }
    }
}
