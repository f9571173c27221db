//! `warmspace prebuilds …`.

use anyhow::Context;
use warmspace_sdk::{
    ClaimStatsQuery, DriftCheckStatus, InvalidatePresetsRequest, PrebuildInsightsQuery, PrebuildSettings,
    PresetDriftCheck,
};

use super::Config;
use super::output::{self, Format, OutputArgs};
use super::templates::OrgArgs;

#[derive(clap::Subcommand, Debug)]
pub enum PrebuildsCommand {
    /// Every prebuild pool: desired, running, eligible, in progress, status.
    Status {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create requests that claimed a prebuild, and those that missed (by reason), per preset.
    Claims {
        /// How far back.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// What each pool gave and cost, per preset: hit rate, hand-over, ready times, time saved, idle instance-hours.
    Insights {
        /// How far back from now (at most 90d).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop reconciliation site-wide: nothing is created or deleted until `resume`.
    Pause,
    /// Resume reconciliation.
    Resume,
    /// Replace a template's prebuilds: those that exist now count as expired.
    Invalidate {
        /// The template whose prebuilds are replaced.
        #[arg(long, short = 't')]
        template: String,
        /// Only this preset (default: every preset of the active version).
        #[arg(long, short = 'p')]
        preset: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
    },
}

pub async fn run(config: &Config, command: PrebuildsCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        PrebuildsCommand::Status { output } => {
            let status = client.prebuilds_status().await?;
            match output.format {
                Format::Json => output::json(&status),
                Format::Table => {
                    if status.reconciliation_paused {
                        println!(
                            "Reconciliation is PAUSED: nothing is created or deleted (warmspace prebuilds resume)."
                        );
                    }
                    output::table(
                        [
                            "TEMPLATE",
                            "PRESET",
                            "ACTIVE",
                            "DESIRED",
                            "RUNNING",
                            "ELIGIBLE",
                            "STARTING",
                            "DELETING",
                            "FAILED",
                            "NOT READY",
                            "STATUS",
                            "DRIFT CHECK",
                        ],
                        status.presets.iter().map(|p| {
                            let state = match p.backoff_until {
                                Some(until) => format!("{} until {}", p.status, until.format("%H:%M:%S")),
                                None => p.status.to_string(),
                            };
                            [
                                p.template_name.clone(),
                                p.preset_name.clone(),
                                if p.version_active { "yes".into() } else { "no".into() },
                                p.desired.to_string(),
                                p.running.to_string(),
                                p.eligible.to_string(),
                                p.starting.to_string(),
                                p.deleting.to_string(),
                                p.failed.to_string(),
                                // Agents not ready within the template's agent_ready_timeout: failures too.
                                p.agents_not_ready.to_string(),
                                state,
                                drift_cell(p.drift_check.as_ref()),
                            ]
                        }),
                    );
                    // What the checks found, in full, under the table.
                    for p in &status.presets {
                        let Some(check) = &p.drift_check else { continue };
                        let version = if p.version_active { "" } else { " (old version)" };
                        if let Some(message) = &check.message {
                            println!("{}/{}{version}: {message}", p.template_name, p.preset_name);
                        } else if let Some(error) = &check.error {
                            println!("{}/{}{version}: the drift check failed: {error}", p.template_name, p.preset_name);
                        }
                    }
                    Ok(())
                }
            }
        }
        PrebuildsCommand::Claims { since, output } => {
            let stats = client.claim_stats(&ClaimStatsQuery { window_seconds: Some(since.as_secs() as i64) }).await?;
            match output.format {
                Format::Json => output::json(&stats),
                Format::Table => {
                    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
                    output::table(
                        [
                            "TEMPLATE",
                            "PRESET",
                            "HITS",
                            "MISSES",
                            "MISS REASONS",
                            "HAND-OVER P50 MS",
                            "HAND-OVER P99 MS",
                        ],
                        stats.iter().map(|s| {
                            let reasons: Vec<String> =
                                s.misses_by_reason.iter().map(|(r, n)| format!("{r}={n}")).collect();
                            [
                                s.template_name.clone(),
                                s.preset_name.clone().unwrap_or_else(|| "-".into()),
                                s.hits.to_string(),
                                s.misses.to_string(),
                                reasons.join(" "),
                                ms(s.hit_p50_ms),
                                ms(s.hit_p99_ms),
                            ]
                        }),
                    );
                    Ok(())
                }
            }
        }
        PrebuildsCommand::Insights { since, output } => {
            // Whole seconds, which the server reads as such; it checks the bounds.
            let window = Some(format!("{}s", since.as_secs()));
            let insights = client.prebuild_insights(&PrebuildInsightsQuery { window }).await?;
            match output.format {
                Format::Json => output::json(&insights),
                Format::Table => {
                    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    let minutes = |s: Option<f64>| or_dash(s.map(|s| format!("{:.1}", s / 60.0)));
                    output::table(
                        [
                            "TEMPLATE",
                            "PRESET",
                            "VERSION",
                            "CLAIMS",
                            "HITS",
                            "HIT RATE",
                            "MISS REASONS",
                            "HAND-OVER P50/P95 MS",
                            "COLD READY MIN",
                            "CLAIM READY MIN",
                            "SAVED H",
                            "IDLE H",
                            "IDLE H/HIT",
                        ],
                        insights.presets.iter().map(|p| {
                            let reasons: Vec<String> =
                                p.misses_by_reason.iter().map(|(r, n)| format!("{r}={n}")).collect();
                            let hand_over = match (p.hand_over_p50_ms, p.hand_over_p95_ms) {
                                (Some(p50), Some(p95)) => format!("{p50:.1}/{p95:.1}"),
                                _ => "-".into(),
                            };
                            [
                                p.template_name.clone(),
                                or_dash(p.preset_name.clone()),
                                or_dash(p.template_version_name.clone()),
                                p.claims.to_string(),
                                p.hits.to_string(),
                                or_dash(p.hit_rate.map(|r| format!("{:.0}%", r * 100.0))),
                                reasons.join(" "),
                                hand_over,
                                minutes(p.cold_ready_seconds),
                                minutes(p.claim_ready_seconds),
                                or_dash(p.time_saved_seconds.map(|s| format!("{:.2}", s / 3600.0))),
                                format!("{:.2}", p.idle_instance_hours),
                                or_dash(p.instance_hours_per_hit.map(|h| format!("{h:.2}"))),
                            ]
                        }),
                    );
                    Ok(())
                }
            }
        }
        PrebuildsCommand::Pause | PrebuildsCommand::Resume => {
            let paused = matches!(command, PrebuildsCommand::Pause);
            client.set_prebuild_settings(&PrebuildSettings { reconciliation_paused: paused }).await?;
            println!("Prebuild reconciliation {}.", if paused { "paused" } else { "resumed" });
            Ok(())
        }
        PrebuildsCommand::Invalidate { template, preset, org } => {
            let template = client
                .template_by_name(&org.organization, &template)
                .await
                .with_context(|| format!("template {template:?}"))?;
            let done = client.invalidate_presets(template.id, &InvalidatePresetsRequest { preset }).await?;
            println!("Invalidated {}: their prebuilds will be replaced.", done.invalidated.join(", "));
            Ok(())
        }
    }
}

/// A preset's drift check in a table cell: `-` when there is none (not a
/// Terraform template, or no prebuild ready yet).
pub(super) fn drift_cell(check: Option<&PresetDriftCheck>) -> String {
    match check {
        None => "-".into(),
        Some(check) => match check.status {
            DriftCheckStatus::Pending => "pending".into(),
            DriftCheckStatus::Failed => "failed".into(),
            DriftCheckStatus::Done if check.replaced.is_empty() => "ok".into(),
            DriftCheckStatus::Done => format!("replaces {}", check.replaced.join(", ")),
        },
    }
}
