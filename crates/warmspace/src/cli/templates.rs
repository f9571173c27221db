//! `warmspace templates …`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::StreamExt;
use warmspace_sdk::{
    Client, CreateTemplateRequest, CreateTemplateVersionRequest, DriftCheckStatus, JobStatus, LogEvent, Preset,
    PresetPoolStatus, Provisioner, StatusCode, Template, TemplateVersion, UpdateTemplateRequest,
    UpdateTemplateSettings,
};

use super::Config;
use super::output::{self, Format, OutputArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct OrgArgs {
    /// The organization, by name or id.
    #[arg(long = "org", env = "WARMSPACE_ORGANIZATION", default_value = "default")]
    pub organization: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum TemplatesCommand {
    /// Upload a directory as a new template version, creating the template on first push.
    Push {
        /// The template's name.
        name: String,
        /// The template's files, with warmspace.hcl at the root.
        #[arg(long, short = 'd', default_value = ".")]
        directory: PathBuf,
        /// Make the new version the active one (`--activate=false`: only import it).
        #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true",
              action = clap::ArgAction::Set)]
        activate: bool,
        /// The version's name (default: v<N>).
        #[arg(long = "version-name")]
        version_name: Option<String>,
        /// A note stored with the version.
        #[arg(long, short = 'm', default_value = "")]
        message: String,
        /// Wait up to this long (e.g. 2m) for the drift check of the new
        /// version's first prebuilds (Terraform templates whose presets keep
        /// pools) and print what claims would replace. Default: don't wait,
        /// say the check is pending and where to see it.
        #[arg(long = "wait-drift-check", value_parser = humantime::parse_duration)]
        wait_drift_check: Option<std::time::Duration>,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// List templates.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        org: OrgArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A template's versions.
    #[command(subcommand)]
    Versions(VersionsCommand),
    /// A template's presets.
    #[command(subcommand)]
    Presets(PresetsCommand),
    /// Change a template's settings; those not given keep their value.
    Edit(EditArgs),
    /// Delete templates no workspace uses any more (their prebuilds go with them).
    #[command(alias = "rm")]
    Delete {
        /// The templates to delete.
        #[arg(required = true)]
        names: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        org: OrgArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// The template to change.
    name: String,
    /// The name shown instead of the template's name.
    #[arg(long)]
    display_name: Option<String>,
    /// What the template is for.
    #[arg(long)]
    description: Option<String>,
    /// A path or URL of the template's icon.
    #[arg(long)]
    icon: Option<String>,
    /// A new workspace's default time to live (0: none).
    #[arg(long, value_parser = humantime::parse_duration)]
    default_ttl: Option<std::time::Duration>,
    /// Days on which workspaces must stop, comma-separated (`monday` … `sunday`; `none` for none).
    #[arg(long, value_delimiter = ',')]
    autostop_requirement_weekdays: Option<Vec<String>>,
    /// When workspaces must stop, in their owner's time zone: `days=sat,sun hour=2`
    /// (and optionally `weeks=2`; `days=none` for no requirement).
    #[arg(long, value_parser = autostop_requirement)]
    autostop_requirement: Option<AutostopRequirementArg>,
    /// The autostop requirement applies every this many weeks.
    #[arg(long)]
    autostop_requirement_weeks: Option<i32>,
    /// Whether autostart builds the template's active version (rather than
    /// the version of the workspace's latest build).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    require_active_version: Option<bool>,
    /// Whether users may set an autostart schedule.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    allow_user_autostart: Option<bool>,
    /// Failed workspaces are stopped after this long (0: never).
    #[arg(long, value_parser = humantime::parse_duration)]
    failure_ttl: Option<std::time::Duration>,
    /// Unused workspaces become dormant after this long (0: never).
    #[arg(long, alias = "dormancy", value_parser = humantime::parse_duration)]
    dormancy_threshold: Option<std::time::Duration>,
    /// Dormant workspaces are deleted after this long (0: never).
    #[arg(long, alias = "dormancy-auto-delete", value_parser = humantime::parse_duration)]
    dormancy_auto_deletion: Option<std::time::Duration>,
    /// A prebuild whose agents are not all ready this long after its start
    /// build is a failed creation and is replaced (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    agent_ready_timeout: Option<std::time::Duration>,
    #[command(flatten)]
    org: OrgArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum VersionsCommand {
    /// List a template's versions, oldest first.
    #[command(alias = "ls")]
    List {
        /// The template's name.
        template: String,
        #[command(flatten)]
        org: OrgArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Make a version of a template the active one.
    Promote {
        /// The template whose version becomes active.
        #[arg(long, short = 't')]
        template: String,
        /// The version's name.
        #[arg(long = "template-version")]
        version: String,
        #[command(flatten)]
        org: OrgArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PresetsCommand {
    /// List the presets of a template's active version (or of --template-version), with their prebuild policies.
    #[command(alias = "ls")]
    List {
        /// The template's name.
        template: String,
        /// A version name instead of the active version.
        #[arg(long = "template-version")]
        version: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub async fn run(config: &Config, command: TemplatesCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        TemplatesCommand::Push { name, directory, activate, version_name, message, wait_drift_check, org } => {
            let version = push(&client, &org.organization, &name, &directory, activate, version_name, message).await?;
            match version {
                Some(version) if activate => drift_check(&client, &version, wait_drift_check).await,
                _ => Ok(()),
            }
        }
        TemplatesCommand::List { org, output } => {
            let templates = client.templates(&org.organization).await?;
            match output.format {
                Format::Json => output::json(&templates),
                Format::Table => {
                    let mut rows = Vec::new();
                    for t in &templates {
                        let active = client.template_version(t.active_version_id).await?;
                        rows.push([
                            t.name.clone(),
                            t.display_name.clone(),
                            active.name,
                            t.created_at.format("%Y-%m-%d %H:%M").to_string(),
                            t.description.clone(),
                        ]);
                    }
                    output::table(["NAME", "DISPLAY NAME", "ACTIVE VERSION", "CREATED", "DESCRIPTION"], rows);
                    Ok(())
                }
            }
        }
        TemplatesCommand::Versions(VersionsCommand::List { template, org, output }) => {
            let template = find_template(&client, &org.organization, &template).await?;
            let versions = client.template_versions(template.id).await?;
            match output.format {
                Format::Json => output::json(&versions),
                Format::Table => {
                    output::table(
                        ["NAME", "IMPORT", "PROVISIONER", "ACTIVE", "CREATED", "MESSAGE"],
                        versions.iter().map(|v| {
                            [
                                v.name.clone(),
                                v.job.status.as_str().to_owned(),
                                v.provisioner.map(|p| p.to_string()).unwrap_or_default(),
                                if v.id == template.active_version_id { "yes".into() } else { String::new() },
                                v.created_at.format("%Y-%m-%d %H:%M").to_string(),
                                v.message.clone(),
                            ]
                        }),
                    );
                    Ok(())
                }
            }
        }
        TemplatesCommand::Versions(VersionsCommand::Promote { template, version, org }) => {
            let template = find_template(&client, &org.organization, &template).await?;
            let version = client
                .template_versions(template.id)
                .await?
                .into_iter()
                .find(|v| v.name == version)
                .with_context(|| format!("template {} has no version {version:?}", template.name))?;
            client.set_active_version(template.id, version.id).await?;
            println!("Version {} of {} is now active.", version.name, template.name);
            Ok(())
        }
        TemplatesCommand::Edit(args) => edit(&client, args).await,
        TemplatesCommand::Delete { names, yes, org } => {
            for name in names {
                let template = find_template(&client, &org.organization, &name).await?;
                if !yes && !super::workspaces::confirm(&format!("Delete template {name}?"))? {
                    bail!("not deleted");
                }
                client.delete_template(template.id).await?;
                println!("Deleted template {name}.");
            }
            Ok(())
        }
        TemplatesCommand::Presets(PresetsCommand::List { template, version, org, output }) => {
            let template = find_template(&client, &org.organization, &template).await?;
            let version_id = match version {
                None => template.active_version_id,
                Some(name) => {
                    client
                        .template_versions(template.id)
                        .await?
                        .into_iter()
                        .find(|v| v.name == name)
                        .with_context(|| format!("template {} has no version {name:?}", template.name))?
                        .id
                }
            };
            let presets = client.template_version_presets(version_id).await?;
            match output.format {
                Format::Json => output::json(&presets),
                Format::Table => {
                    print_presets(&presets);
                    Ok(())
                }
            }
        }
    }
}

async fn find_template(client: &Client, organization: &str, name: &str) -> anyhow::Result<Template> {
    client.template_by_name(organization, name).await.with_context(|| format!("template {name:?}"))
}

pub(super) async fn push(
    client: &Client,
    organization: &str,
    name: &str,
    directory: &Path,
    activate: bool,
    version_name: Option<String>,
    message: String,
) -> anyhow::Result<Option<TemplateVersion>> {
    let archive = warmspace_sdk::archive::tar_directory(directory)?;
    let existing = match client.template_by_name(organization, name).await {
        Ok(template) => Some(template),
        Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => None,
        Err(err) => return Err(err.into()),
    };
    let file = client.upload_tar(archive).await.context("uploading the template")?;
    let version = client
        .create_template_version(
            organization,
            &CreateTemplateVersionRequest {
                file_id: file.id,
                template_id: existing.as_ref().map(|t| t.id),
                name: version_name,
                message,
                provisioner_tags: Default::default(),
                // Re-pushing the same files keeps the active version (and its warm pools).
                skip_if_unchanged: true,
            },
        )
        .await?;
    if version.unchanged {
        println!("Template {name} is unchanged: the files are those of its active version {}.", version.name);
        return Ok(None);
    }
    println!("Importing {name} version {} …", version.name);
    let job = follow_import(client, version.id).await?;
    if job.status != JobStatus::Succeeded {
        bail!("the import {}:\n{}", job.status.as_str(), job.error.unwrap_or_default());
    }
    match existing {
        None => {
            client
                .create_template(
                    organization,
                    &CreateTemplateRequest {
                        name: name.to_owned(),
                        template_version_id: version.id,
                        display_name: String::new(),
                        description: String::new(),
                        icon: String::new(),
                        settings: Default::default(),
                    },
                )
                .await?;
            println!("Created template {name} with version {} active.", version.name);
        }
        Some(template) if activate => {
            client.set_active_version(template.id, version.id).await?;
            println!("Version {} of {name} is now active.", version.name);
        }
        Some(_) => println!("Version {} of {name} imported; the active version is unchanged.", version.name),
    }
    Ok(Some(client.template_version(version.id).await?))
}

/// How often `push --wait-drift-check` looks at the pools.
const DRIFT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// What the drift check of a pushed Terraform version's pools found: once
/// `wait` (if any) is over, the checks done are printed and the others said
/// to be pending, with where to see them.
async fn drift_check(
    client: &Client,
    version: &TemplateVersion,
    wait: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    if version.provisioner != Some(Provisioner::Terraform) {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    let pools = loop {
        let pools: Vec<PresetPoolStatus> = client
            .prebuilds_status()
            .await?
            .presets
            .into_iter()
            .filter(|p| p.template_version_id == version.id && p.desired > 0)
            .collect();
        let done = |p: &PresetPoolStatus| p.drift_check.as_ref().is_some_and(|c| c.status != DriftCheckStatus::Pending);
        if pools.iter().all(done) || tokio::time::Instant::now() >= deadline {
            break pools;
        }
        tokio::time::sleep(DRIFT_POLL).await;
    };
    for pool in pools {
        let preset = &pool.preset_name;
        match pool.drift_check {
            Some(check) if check.status == DriftCheckStatus::Done => match check.message {
                Some(message) => println!("Drift check of preset {preset}: {message}."),
                None => println!("Drift check of preset {preset}: a claim replaces nothing its pool keeps warm."),
            },
            Some(check) if check.status == DriftCheckStatus::Failed => {
                println!("Drift check of preset {preset} failed: {}", check.error.unwrap_or_default())
            }
            _ => println!(
                "Drift check of preset {preset} pending: it runs once the preset's first prebuild is ready; \
                 see `warmspace prebuilds status` (or push with --wait-drift-check 5m)."
            ),
        }
    }
    Ok(())
}

async fn edit(client: &Client, args: EditArgs) -> anyhow::Result<()> {
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as i64);
    let mut weekdays = args.autostop_requirement_weekdays.map(|days| match days.as_slice() {
        [none] if none.eq_ignore_ascii_case("none") => Vec::new(),
        _ => days,
    });
    let (mut weeks, mut hour) = (args.autostop_requirement_weeks, None);
    if let Some(requirement) = args.autostop_requirement {
        weekdays = requirement.days.or(weekdays);
        weeks = requirement.weeks.or(weeks);
        hour = requirement.hour;
    }
    let update = UpdateTemplateRequest {
        display_name: args.display_name,
        description: args.description,
        icon: args.icon,
        settings: UpdateTemplateSettings {
            default_ttl_ms: ms(args.default_ttl),
            autostop_requirement_days_of_week: weekdays,
            autostop_requirement_weeks: weeks,
            autostop_requirement_hour: hour,
            require_active_version: args.require_active_version,
            allow_user_autostart: args.allow_user_autostart,
            failure_ttl_ms: ms(args.failure_ttl),
            time_til_dormant_ms: ms(args.dormancy_threshold),
            time_til_dormant_autodelete_ms: ms(args.dormancy_auto_deletion),
            agent_ready_timeout_ms: ms(args.agent_ready_timeout),
        },
    };
    if update == UpdateTemplateRequest::default() {
        bail!("nothing to change: give at least one setting (see --help)");
    }
    let template = find_template(client, &args.org.organization, &args.name).await?;
    client.update_template(template.id, &update).await?;
    println!("Updated template {}.", template.name);
    Ok(())
}

/// Prints the import log as it arrives; returns the finished job.
async fn follow_import(client: &Client, version_id: uuid::Uuid) -> anyhow::Result<warmspace_sdk::ProvisionerJob> {
    let mut events = Box::pin(client.follow_template_version_logs(version_id).await?);
    while let Some(event) = events.next().await {
        match event? {
            LogEvent::Log(line) => println!("  {}", line.output),
            LogEvent::End(job) => return Ok(*job),
        }
    }
    // The stream ended without an end event (server restart): ask directly.
    Ok(client.template_version(version_id).await?.job)
}

fn print_presets(presets: &[Preset]) {
    output::table(
        ["NAME", "DEFAULT", "PARAMETERS", "PREBUILDS", "TTL", "TIMEZONE", "SCHEDULES", "DESCRIPTION", "ICON"],
        presets.iter().map(|p| {
            let parameters = p.parameters.iter().map(|kv| format!("{}={}", kv.name, kv.value)).collect::<Vec<_>>();
            let policy = p.prebuilds.as_ref();
            let scheduling = policy.and_then(|p| p.scheduling.as_ref());
            [
                p.name.clone(),
                if p.default { "yes".into() } else { String::new() },
                parameters.join(" "),
                policy.map(|p| p.instances.to_string()).unwrap_or_else(|| "-".into()),
                policy.and_then(|p| p.ttl_seconds).map(|t| format!("{t}s")).unwrap_or_default(),
                scheduling.map(|s| s.timezone.clone()).unwrap_or_default(),
                scheduling
                    .map(|s| s.schedules.iter().map(|s| format!("{} → {}", s.cron, s.instances)).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .join("; "),
                p.description.clone(),
                p.icon.clone(),
            ]
        }),
    );
}

/// `--autostop-requirement`: the parts it names (the others stay as they are).
#[derive(Debug, Clone)]
pub struct AutostopRequirementArg {
    days: Option<Vec<String>>,
    hour: Option<i32>,
    weeks: Option<i32>,
}

fn autostop_requirement(text: &str) -> Result<AutostopRequirementArg, String> {
    use warmspace_prebuilds::lifecycle::{AutostopRequirement, DAYS};
    let parsed = AutostopRequirement::parse(text).map_err(|e| e.to_string())?;
    let has = |key: &str| text.split_whitespace().any(|part| part.starts_with(key));
    let days = DAYS.iter().enumerate().filter(|(i, _)| parsed.days_of_week & (1 << i) != 0);
    Ok(AutostopRequirementArg {
        days: has("days=").then(|| days.map(|(_, d)| (*d).to_owned()).collect()),
        hour: has("hour=").then_some(parsed.hour as i32),
        weeks: has("weeks=").then_some(parsed.weeks as i32),
    })
}
