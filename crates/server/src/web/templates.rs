//! The Templates pages: the list; a template's versions (the active one
//! marked, the others promotable) and its active version's presets with
//! their prebuild policy and live pool; a version with its presets and its
//! import log. Everyone may read templates, as through the API; promoting
//! needs the right to update templates, and the pools are shown to those who
//! may see them.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;
use warmspace_sdk::{JobStatus, Preset, PresetPoolStatus, ProvisionerJobLog, Template, TemplateVersion};

use super::WebError;
use super::handlers::{Page, chrome, parse_id, path_id};
use super::pages::{Chrome, csrf, page, time};
use super::prebuilds::{LIVE_POOLS, pool_cells, pool_headers};
use super::session::{Form, Session};
use crate::api::AppState;

pub async fn templates(State(state): State<AppState>, session: Session) -> Page {
    let domain = &state.domain;
    let templates = domain.list_templates(&session.actor, None).await?;
    let chrome = chrome(domain, &session).await?;
    Ok(list(&chrome, &templates).into_response())
}

pub async fn template(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Page {
    let domain = &state.domain;
    let actor = &session.actor;
    let template = domain.template(actor, path_id(&id)?).await?;
    let versions = domain.template_versions(actor, template.id).await?;
    let presets = domain.template_version_presets(actor, template.active_version_id).await?;
    // The live pools, for those who may see them: the active version's.
    let pools = if domain.may_see_pools(actor) {
        Some(domain.template_pools(actor, template.id).await?.into_iter().map(|p| (p.preset_id, p)).collect())
    } else {
        None
    };
    let chrome = chrome(domain, &session).await?;
    let view = TemplateView {
        template: &template,
        versions: &versions,
        presets: &presets,
        pools: pools.as_ref(),
        may_promote: domain.may_update_templates(actor),
    };
    Ok(render_template(&chrome, &view).into_response())
}

#[derive(Deserialize)]
pub struct PromoteForm {
    version: String,
}

/// Makes a version the template's active one.
pub async fn promote(State(state): State<AppState>, Path(id): Path<String>, form: Form<PromoteForm>) -> Page {
    let Form { session, fields } = form;
    let id = path_id(&id)?;
    let version = parse_id("version", &fields.version)?;
    state.domain.activate_template_version(&session.actor, id, version).await?;
    Ok(Redirect::to(&format!("/templates/{id}")).into_response())
}

pub async fn version(
    State(state): State<AppState>,
    session: Session,
    Path((id, version)): Path<(String, String)>,
) -> Page {
    let domain = &state.domain;
    let actor = &session.actor;
    let template = domain.template(actor, path_id(&id)?).await?;
    let version = domain.template_version(actor, path_id(&version)?).await?;
    if version.template_id != Some(template.id) {
        return Err(WebError::not_found());
    }
    let presets = domain.template_version_presets(actor, version.id).await?;
    let log = domain.template_version_log(actor, version.id, 0).await?;
    let chrome = chrome(domain, &session).await?;
    Ok(render_version(&chrome, &template, &version, &presets, &log).into_response())
}

fn title(t: &Template) -> &str {
    if t.display_name.is_empty() { &t.name } else { &t.display_name }
}

fn list(chrome: &Chrome, templates: &[Template]) -> Html<String> {
    page(
        "Templates",
        Some(chrome),
        html! {
            h1 { "Templates" }
            @if templates.is_empty() { p.empty { "No templates yet. Push one with " code { "warmspace templates push" } "." } }
            div.scroll {
                table #templates {
                    thead { tr { th { "Name" } th { "Description" } th { "Created" } } }
                    tbody {
                        @for t in templates {
                            tr {
                                td { a href={ "/templates/" (t.id) } { (title(t)) } @if title(t) != t.name { " " small { (t.name) } } }
                                td { (t.description) }
                                td { (time(t.created_at)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

struct TemplateView<'a> {
    template: &'a Template,
    versions: &'a [TemplateVersion],
    presets: &'a [Preset],
    /// The active version's pools, by preset; `None`: the person may not see pools.
    pools: Option<&'a HashMap<Uuid, PresetPoolStatus>>,
    may_promote: bool,
}

fn render_template(chrome: &Chrome, view: &TemplateView<'_>) -> Html<String> {
    let t = view.template;
    page(
        title(t),
        Some(chrome),
        html! {
            h1 { "Template " (title(t)) }
            @if !t.description.is_empty() { p { (t.description) } }
            h2 { "Presets of the active version" }
            section #presets { (presets_table(view.presets, view.pools)) }
            h2 { "Versions" }
            div.scroll {
                table #versions {
                    thead { tr { th { "Version" } th { "Created" } th { "Import" } th { "Message" } th {} } }
                    tbody {
                        @for v in view.versions.iter().rev() {
                            @let active = v.id == t.active_version_id;
                            tr id={ "version-" (v.id) } class=(if active { "active" } else { "" }) {
                                td {
                                    strong { (v.name) }
                                    @if active { " " span.mark { "active" } }
                                }
                                td { (time(v.created_at)) }
                                td {
                                    a.log href={ "/templates/" (t.id) "/versions/" (v.id) } { (v.job.status) }
                                    @if let Some(error) = &v.job.error { br; small.error-text { (error) } }
                                }
                                td { (v.message) }
                                td {
                                    @if !active && view.may_promote && v.job.status == JobStatus::Succeeded {
                                        form.promote.inline method="post" action={ "/templates/" (t.id) "/active" } {
                                            (csrf(&chrome.csrf))
                                            input type="hidden" name="version" value=(v.id);
                                            button type="submit" { "Promote" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A version's presets: their values and prebuild policy, and (given the
/// pools) each pool's live counts.
fn presets_table(presets: &[Preset], pools: Option<&HashMap<Uuid, PresetPoolStatus>>) -> Markup {
    html! {
        @if presets.is_empty() { p.empty { "This version has no presets." } }
        div.scroll {
            table #pools data-live=[pools.map(|_| LIVE_POOLS)] {
                thead { tr {
                    th { "Preset" } th { "Parameters" } th { "Prebuilds" }
                    @if pools.is_some() { (pool_headers()) }
                } }
                tbody {
                    @for p in presets {
                        @let pool = pools.and_then(|pools| pools.get(&p.id));
                        tr id=[pool.map(|_| format!("pool-{}", p.id))] {
                            td { strong { (p.name) } @if p.default { " " span.mark { "default" } } }
                            td.params {
                                @for v in &p.parameters { code { (v.name) "=" (v.value) } " " }
                            }
                            td.policy { (policy(p)) }
                            @match (pools, pool) {
                                (Some(_), Some(pool)) => { (pool_cells(pool)) }
                                (Some(_), None) => { td.empty colspan="7" { "no pool" } }
                                (None, _) => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A preset's prebuild policy in words: "2 instances, replaced after 1 h; 3 on `* 8-18 * * 1-5` (Europe/Berlin)".
fn policy(p: &Preset) -> String {
    let Some(policy) = &p.prebuilds else { return "no pool".into() };
    let instances = |n: i32| if n == 1 { "1 instance".to_string() } else { format!("{n} instances") };
    let mut words = instances(policy.instances);
    if let Some(ttl) = policy.ttl_seconds {
        words.push_str(&format!(", replaced after {}", duration(ttl)));
    }
    if let Some(scheduling) = &policy.scheduling {
        for s in &scheduling.schedules {
            words.push_str(&format!("; {} on {} ({})", instances(s.instances), s.cron, scheduling.timezone));
        }
    }
    words
}

/// Seconds as people say them: 90 s, 45 min, 24 h.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

fn render_version(
    chrome: &Chrome,
    t: &Template,
    v: &TemplateVersion,
    presets: &[Preset],
    log: &[ProvisionerJobLog],
) -> Html<String> {
    page(
        &format!("{} {}", t.name, v.name),
        Some(chrome),
        html! {
            h1 { a href={ "/templates/" (t.id) } { (title(t)) } " / " (v.name) }
            dl.facts {
                dt { "Active" } dd { (if v.id == t.active_version_id { "yes" } else { "no" }) }
                dt { "Created" } dd { (time(v.created_at)) }
                dt { "Import" } dd #import-status { (v.job.status) }
                @if let Some(error) = &v.job.error { dt { "Error" } dd.error-text { (error) } }
                dt { "Provisioner" } dd { (v.provisioner.map(|p| p.to_string()).unwrap_or_else(|| "—".into())) }
                dt { "Claims" } dd { (v.claim_mode.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                @if !v.message.is_empty() { dt { "Message" } dd { (v.message) } }
            }
            h2 { "Presets" }
            (presets_table(presets, None))
            h2 { "Import log" }
            @if log.is_empty() { p.empty { "No log lines." } }
            ol #log.log {
                @for line in log {
                    li class=(line.level.to_string()) {
                        span.at { (line.created_at.format("%H:%M:%S%.3f")) } " " (line.output)
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmspace_sdk::{PrebuildPolicy, PrebuildSchedule, PrebuildScheduling};

    #[test]
    fn policies_in_words() {
        let mut preset = Preset {
            id: Uuid::nil(),
            template_version_id: Uuid::nil(),
            name: "us".into(),
            description: String::new(),
            icon: String::new(),
            default: false,
            parameters: vec![],
            prebuilds: None,
            last_invalidated_at: None,
        };
        assert_eq!(policy(&preset), "no pool");
        preset.prebuilds = Some(PrebuildPolicy { instances: 1, ttl_seconds: None, scheduling: None });
        assert_eq!(policy(&preset), "1 instance");
        preset.prebuilds = Some(PrebuildPolicy {
            instances: 0,
            ttl_seconds: Some(86_400),
            scheduling: Some(PrebuildScheduling {
                timezone: "Europe/Berlin".into(),
                schedules: vec![PrebuildSchedule { cron: "* 8-18 * * 1-5".into(), instances: 3 }],
            }),
        });
        assert_eq!(policy(&preset), "0 instances, replaced after 24 h; 3 instances on * 8-18 * * 1-5 (Europe/Berlin)");
    }
}
