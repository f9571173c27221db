//! The Prebuilds page (template admins and owners): every pool, updated
//! live; pausing and resuming reconciliation; invalidating a template's or a
//! preset's pool (after a confirmation); what the pools gave and cost (the
//! insights of `GET /api/v2/prebuilds/insights`) with charts; each pool's
//! size over the last day; and the latest create requests.
//!
//! Those who may not see the pools are not told these pages exist: 404.

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{Html, IntoResponse, Redirect};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use maud::{Markup, html};
use serde::Deserialize;
use warmspace_sdk::{
    InvalidatePresetsRequest, PrebuildInsights, PrebuildInsightsQuery, PrebuildSettings, PrebuildsStatus,
    PresetInsight, PresetPoolStatus, PresetStatus,
};
use warmspace_store::claims::RecentClaimRow;

use super::WebError;
use super::charts::{self, Bar, BarChart, BarValue, LineChart, Marks, Series};
use super::handlers::{Page, chrome, parse_id};
use super::pages::{self, Chrome, csrf, miss_reason, page, time, urlencode};
use super::session::{Form, Query, Session};
use crate::api::AppState;
use crate::domain::{Actor, Domain, PoolHistory};

/// How many of the latest create requests the page lists.
const RECENT_CLAIMS: i64 = 50;

/// 404 unless the actor may see the pools.
fn pools_only(domain: &Domain, actor: &Actor) -> Result<(), WebError> {
    if domain.may_see_pools(actor) { Ok(()) } else { Err(WebError::not_found()) }
}

#[derive(Deserialize)]
pub struct InsightWindow {
    /// As the API takes it: `7d`, `24h`, … (default 7 days).
    #[serde(default)]
    window: Option<String>,
}

pub async fn prebuilds(State(state): State<AppState>, session: Session, Query(query): Query<InsightWindow>) -> Page {
    let domain = &state.domain;
    pools_only(domain, &session.actor)?;
    let actor = &session.actor;
    let window = query.window.filter(|w| !w.is_empty());
    let insights = domain.prebuild_insights(actor, PrebuildInsightsQuery { window: window.clone() }).await?;
    let status = domain.prebuilds_status(actor).await?;
    let history = domain.pool_history(actor).await?;
    let claims = domain.recent_claims(actor, RECENT_CLAIMS).await?;
    let chrome = chrome(domain, &session).await?;
    let view =
        View { status: &status, insights: &insights, window: window.as_deref(), history: &history, claims: &claims };
    Ok(render(&chrome, &view).into_response())
}

#[derive(Deserialize)]
pub struct PauseForm {
    paused: bool,
}

pub async fn pause(State(state): State<AppState>, form: Form<PauseForm>) -> Page {
    pools_only(&state.domain, &form.session.actor)?;
    let settings = PrebuildSettings { reconciliation_paused: form.fields.paused };
    state.domain.set_prebuild_settings(&form.session.actor, settings).await?;
    Ok(Redirect::to("/prebuilds").into_response())
}

/// Server-Sent Events: a `pools` event (the pools' status, as the API's
/// `GET /api/v2/prebuilds/status` gives it) when the stream opens and
/// whenever it changes (see [`Domain::watch_prebuilds_status`]).
pub async fn prebuild_events(State(state): State<AppState>, session: Session) -> Page {
    pools_only(&state.domain, &session.actor)?;
    let pools = state.domain.watch_prebuilds_status(&session.actor).await?;
    let events = pools.map(|status| {
        let json = serde_json::to_string(&status).expect("a pool status serialises");
        Event::default().event("pools").data(json)
    });
    Ok(crate::api::sse(&state, events))
}

/// What to invalidate: a template's pools, or one preset's (by name, of its active version).
#[derive(Deserialize)]
pub struct InvalidateTarget {
    template: String,
    #[serde(default)]
    preset: String,
}

/// Asks before invalidating: every prebuild of the pool is replaced.
pub async fn invalidate_page(
    State(state): State<AppState>,
    session: Session,
    Query(target): Query<InvalidateTarget>,
) -> Page {
    let domain = &state.domain;
    pools_only(domain, &session.actor)?;
    let template = domain.template(&session.actor, parse_id("template", &target.template)?).await?;
    let chrome = chrome(domain, &session).await?;
    let id = template.id.to_string();
    let question = match target.preset.as_str() {
        "" => html! {
            "Replace the prebuilds of every preset of " strong { (template.name) } "? "
            "They are deleted once their replacements are ready."
        },
        preset => html! {
            "Replace the prebuilds of preset " strong { (preset) } " of " strong { (template.name) } "? "
            "They are deleted once their replacements are ready."
        },
    };
    let fields = [("template", id.as_str()), ("preset", target.preset.as_str())];
    Ok(pages::confirm(&chrome, "Invalidate", question, "/prebuilds/invalidate", &fields, "/prebuilds").into_response())
}

pub async fn invalidate(State(state): State<AppState>, form: Form<InvalidateTarget>) -> Page {
    let Form { session, fields } = form;
    pools_only(&state.domain, &session.actor)?;
    let template = parse_id("template", &fields.template)?;
    let preset = Some(fields.preset).filter(|p| !p.is_empty());
    state.domain.invalidate_presets(&session.actor, template, InvalidatePresetsRequest { preset }).await?;
    Ok(Redirect::to("/prebuilds").into_response())
}

// The pools' table, shared with the templates page.

/// The header cells of [`pool_cells`].
pub(super) fn pool_headers() -> Markup {
    html! {
        th.num { "Desired" } th.num { "Eligible" } th.num { "Running" } th.num { "Starting" }
        th.num { "Expired" } th.num { "Failed" } th { "Status" }
    }
}

/// A pool's counts and status, each cell named by the field of the live
/// `pools` event that updates it (app.js).
pub(super) fn pool_cells(p: &PresetPoolStatus) -> Markup {
    html! {
        td.num data-field="desired" { (p.desired) }
        td.num data-field="eligible" { (p.eligible) }
        td.num data-field="running" { (p.running) }
        td.num data-field="starting" { (p.starting) }
        td.num data-field="expired" { (p.expired) }
        td.num data-field="failed" { (p.failed) }
        td data-field="status" { (status_text(p)) }
    }
}

/// A pool's status in words; app.js says the same of a live update.
fn status_text(p: &PresetPoolStatus) -> String {
    match (p.status, p.backoff_until) {
        (PresetStatus::Normal, _) => "normal".into(),
        (PresetStatus::Backoff, Some(until)) => format!("backoff until {}", until.format("%H:%M:%S UTC")),
        (PresetStatus::Backoff, None) => "backoff".into(),
        (PresetStatus::HardLimited, _) => "hard-limited".into(),
        (PresetStatus::ValidationFailed, _) => "validation failed".into(),
    }
}

/// Where a table of pools kept live (`data-live`) gets its updates.
pub(super) const LIVE_POOLS: &str = "/prebuilds/events";

// The page.

struct View<'a> {
    status: &'a PrebuildsStatus,
    insights: &'a PrebuildInsights,
    window: Option<&'a str>,
    history: &'a [PoolHistory],
    claims: &'a [RecentClaimRow],
}

fn render(chrome: &Chrome, view: &View<'_>) -> Html<String> {
    let status = view.status;
    let paused = status.reconciliation_paused;
    page(
        "Prebuilds",
        Some(chrome),
        html! {
            h1 { "Prebuilds" }
            form #pause.inline method="post" action="/prebuilds/pause" {
                (csrf(&chrome.csrf))
                input type="hidden" name="paused" value=(if paused { "false" } else { "true" });
                span #reconciliation { "Reconciliation is " strong { (if paused { "paused" } else { "running" }) } ". " }
                button type="submit" { (if paused { "Resume" } else { "Pause" }) }
            }
            p.hint { "Counts update live. Invalidating replaces a pool's prebuilds (after a confirmation)." }
            @if status.presets.is_empty() {
                p.empty { "No preset keeps a pool." }
            }
            div.scroll {
                table #pools data-live=(LIVE_POOLS) {
                    thead { tr { th { "Template" } th { "Preset" } (pool_headers()) th { "Invalidate" } } }
                    tbody {
                        @for (i, p) in status.presets.iter().enumerate() {
                            @let first_of_template = i == 0 || status.presets[i - 1].template_id != p.template_id;
                            tr id={ "pool-" (p.preset_id) } {
                                td {
                                    (p.template_name)
                                    @if !p.version_active { " " small { "(old version)" } }
                                }
                                td { (p.preset_name) }
                                (pool_cells(p))
                                td {
                                    @if p.version_active {
                                        a.invalidate href={ "/prebuilds/invalidate?template=" (p.template_id) "&preset=" (urlencode(&p.preset_name)) } { "preset" }
                                        @if first_of_template {
                                            " · "
                                            a.invalidate-template data-template=(p.template_id)
                                                href={ "/prebuilds/invalidate?template=" (p.template_id) } { "template" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (drift_findings(&status.presets))
            (history(view.history))
            (insights(view.insights, view.window))
            (recent_claims(view.claims))
        },
    )
}

/// What the drift checks (Terraform templates) found: the presets whose
/// claims would replace resources their pools keep warm, and checks that
/// failed.
fn drift_findings(presets: &[PresetPoolStatus]) -> Markup {
    let checked: Vec<&PresetPoolStatus> = presets.iter().filter(|p| p.drift_check.is_some()).collect();
    if checked.is_empty() {
        return html! {};
    }
    let flagged: Vec<(&PresetPoolStatus, &str)> = checked
        .iter()
        .filter_map(|p| {
            let check = p.drift_check.as_ref()?;
            check.message.as_deref().or(check.error.as_deref()).map(|text| (*p, text))
        })
        .collect();
    html! {
        h2 { "Drift checks" }
        p.hint { "Once a pool's first prebuild is ready, the plan of its claim says what a claim would replace." }
        @if flagged.is_empty() {
            p.empty { "No claim would replace anything its pool keeps warm." }
        }
        ul #drift {
            @for (p, text) in &flagged {
                li id={ "drift-" (p.preset_id) } {
                    strong { (p.template_name) " / " (p.preset_name) }
                    @if !p.version_active { " " small { "(old version)" } }
                    ": "
                    @if p.drift_check.as_ref().is_some_and(|c| c.error.is_some()) { "the drift check failed: " }
                    (text)
                }
            }
        }
    }
}

/// Each pool over the last day: desired and eligible, and the create requests as marks.
fn history(pools: &[PoolHistory]) -> Markup {
    html! {
        h2 { "The last day" }
        p.hint { "Each pool every 15 minutes: desired (its policy at the time) and eligible prebuilds; claims from the pool and cold builds as dots." }
        @if pools.is_empty() { p.empty { "No pool yet." } }
        div.charts {
            @for pool in pools {
                section.history id={ "history-" (pool.preset_id) } {
                    h3 { (pool.template_name) " / " (pool.preset_name) }
                    (charts::line_chart(&pool_chart(pool)))
                }
            }
        }
    }
}

fn pool_chart(pool: &PoolHistory) -> LineChart {
    let x = |at: DateTime<Utc>| (at - pool.since).num_seconds() as f64;
    let span = x(pool.until);
    let hours = (span / 3600.0).round() as i64;
    let x_labels = (0..=4)
        .map(|i| {
            let ago = hours - hours * i / 4;
            let label = if ago == 0 { "now".to_string() } else { format!("{ago} h ago") };
            (span * i as f64 / 4.0, label)
        })
        .collect();
    let line = |name: &str, class, value: fn(&crate::domain::PoolSample) -> u32| Series {
        name: name.into(),
        class,
        points: pool.samples.iter().map(|s| (x(s.at), f64::from(value(s)))).collect(),
    };
    let marks = |name: &str, class, count: fn(&crate::domain::PoolSample) -> u32, what: &str| Marks {
        name: name.into(),
        class,
        points: pool
            .samples
            .iter()
            .map(|s| (x(s.at), count(s), format!("{} {what} in the 15 minutes to {}", count(s), time(s.at))))
            .collect(),
    };
    LineChart {
        title: format!("{} / {}: pool size over the last day", pool.template_name, pool.preset_name),
        x: (0.0, span),
        x_labels,
        series: vec![line("desired", "desired", |s| s.desired), line("eligible", "eligible", |s| s.eligible)],
        marks: vec![
            marks("claims", "hit", |s| s.hits, "claimed"),
            marks("cold builds", "miss", |s| s.misses, "built cold"),
        ],
    }
}

/// A preset's name in the insight charts: "template / preset".
fn insight_label(i: &PresetInsight) -> String {
    format!("{} / {}", i.template_name, i.preset_name.as_deref().unwrap_or("(no preset)"))
}

fn seconds(v: Option<f64>) -> String {
    v.map(|s| if s < 10.0 { format!("{s:.1} s") } else { format!("{s:.0} s") }).unwrap_or_else(|| "—".into())
}

fn insights(insights: &PrebuildInsights, window: Option<&str>) -> Markup {
    let requested: Vec<&PresetInsight> = insights.presets.iter().filter(|i| i.claims > 0).collect();
    let hit_rate = BarChart {
        title: "Hit rate per preset".into(),
        max: Some(1.0),
        bars: requested
            .iter()
            .map(|i| Bar {
                label: insight_label(i),
                values: vec![BarValue {
                    name: "hit rate",
                    class: "hit",
                    value: i.hit_rate,
                    text: match i.hit_rate {
                        Some(rate) => format!("{:.0}% of {}", rate * 100.0, i.claims),
                        None => "no requests".into(),
                    },
                }],
            })
            .collect(),
    };
    let timed: Vec<&PresetInsight> = insights
        .presets
        .iter()
        .filter(|i| i.claim_ready_seconds.is_some() || (i.claims > 0 && i.cold_ready_seconds.is_some()))
        .collect();
    let ready = BarChart {
        title: "Ready times: claimed from the pool, and built cold (median)".into(),
        max: None,
        bars: timed
            .iter()
            .map(|i| Bar {
                label: insight_label(i),
                values: vec![
                    BarValue {
                        name: "claim",
                        class: "claim",
                        value: i.claim_ready_seconds,
                        text: format!("claim {} (n={})", seconds(i.claim_ready_seconds), i.claim_ready_samples),
                    },
                    BarValue {
                        name: "cold",
                        class: "cold",
                        value: i.cold_ready_seconds,
                        text: format!("cold {} (n={})", seconds(i.cold_ready_seconds), i.cold_ready_samples),
                    },
                ],
            })
            .collect(),
    };
    html! {
        h2 { "What the pools gave and cost" }
        form #window.inline method="get" action="/prebuilds" {
            label { "Window " input name="window" value=(window.unwrap_or("7d")) size="6"; }
            button type="submit" { "Show" }
            span.hint { "from " (time(insights.since)) " to " (time(insights.until)) }
        }
        div.charts {
            section #hit-rate { h3 { "Hit rate" } (charts::bar_chart(&hit_rate)) }
            section #ready-times { h3 { "Ready times" } (charts::bar_chart(&ready)) }
        }
        div.scroll {
            table #insights {
                thead { tr {
                    th { "Template" } th { "Preset" } th.num { "Requests" } th.num { "Hits" } th { "Misses" }
                    th.num { "Hit rate" } th.num { "Hand-over p50" } th.num { "Time saved" }
                    th.num { "Idle instance-hours" } th.num { "Per hit" }
                } }
                tbody {
                    @for i in &insights.presets {
                        tr {
                            td { (i.template_name) }
                            td { (i.preset_name.as_deref().unwrap_or("(no preset)")) }
                            td.num { (i.claims) }
                            td.num { (i.hits) }
                            td {
                                @if i.misses == 0 { "0" }
                                @for (reason, n) in &i.misses_by_reason {
                                    span.reason { (miss_reason(*reason)) " " (n) }
                                }
                            }
                            td.num { (i.hit_rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "—".into())) }
                            td.num { (i.hand_over_p50_ms.map(|ms| format!("{ms:.0} ms")).unwrap_or_else(|| "—".into())) }
                            td.num { (seconds(i.time_saved_seconds)) }
                            td.num { (format!("{:.2}", i.idle_instance_hours)) }
                            td.num { (i.instance_hours_per_hit.map(|h| format!("{h:.2}")).unwrap_or_else(|| "—".into())) }
                        }
                    }
                }
            }
        }
    }
}

fn recent_claims(claims: &[RecentClaimRow]) -> Markup {
    html! {
        h2 { "Recent create requests" }
        @if claims.is_empty() { p.empty { "None yet." } }
        div.scroll {
            table #claims {
                thead { tr {
                    th { "When" } th { "Who" } th { "Template" } th { "Preset" } th { "Workspace" } th { "Outcome" }
                    th.num { "Took" }
                } }
                tbody {
                    @for c in claims {
                        tr class=(if c.hit { "hit" } else { "miss" }) {
                            td { (time(c.at)) }
                            td { (c.username) }
                            td { (c.template_name) }
                            td { (c.preset_name.as_deref().unwrap_or("—")) }
                            td { (c.workspace_name.as_deref().unwrap_or("—")) }
                            td {
                                @if c.hit { "claimed" } @else {
                                    "cold"
                                    @if let Some(reason) = c.reason { " (" (miss_reason(reason)) ")" }
                                }
                            }
                            td.num { (format!("{:.0} ms", c.latency_ms.max(1.0))) }
                        }
                    }
                }
            }
        }
    }
}
