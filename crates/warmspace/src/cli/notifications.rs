//! `warmspace notifications …`: the caller's inbox.

use warmspace_sdk::{Notification, NotificationsQuery};

use super::Config;
use super::output::{self, Format, OutputArgs};

/// As many as the server lists at most.
const LIST_LIMIT: i64 = 1000;

#[derive(clap::Subcommand, Debug)]
pub enum NotificationsCommand {
    /// List your notifications, newest first.
    #[command(alias = "ls")]
    List {
        /// Only those not yet read.
        #[arg(long)]
        unread: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Mark all your notifications read.
    ReadAll,
}

pub async fn run(config: &Config, command: NotificationsCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        NotificationsCommand::List { unread, output } => {
            let inbox = client.notifications(&NotificationsQuery { unread, limit: Some(LIST_LIMIT) }).await?;
            match output.format {
                Format::Json => output::json(&inbox)?,
                Format::Table => print_notifications(&inbox.notifications, inbox.unread_count),
            }
        }
        NotificationsCommand::ReadAll => {
            let marked = client.mark_all_notifications_read().await?.marked_read;
            println!("Marked {marked} notification{} read.", if marked == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

fn print_notifications(notifications: &[Notification], unread_count: i64) {
    output::table(
        ["TIME", "KIND", "TITLE", "READ"],
        notifications.iter().map(|n| {
            [
                n.created_at.format("%Y-%m-%d %H:%M").to_string(),
                n.kind.clone(),
                n.title.clone(),
                if n.read_at.is_some() { "yes" } else { "no" }.to_owned(),
            ]
        }),
    );
    // The listing may be limited or filtered; the count never is.
    println!("\n{unread_count} unread in all.");
}
