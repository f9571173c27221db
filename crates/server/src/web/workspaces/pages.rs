//! The workspace pages' HTML.

use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use uuid::Uuid;
use warmspace_sdk::{
    AgentConnection, AppHealth, ParameterType, Preset, Template, TemplateVersionParameter, Workspace, WorkspaceAgent,
    WorkspaceAgentLog, WorkspaceApp, WorkspaceApps, WorkspaceBuild, WorkspaceStatus,
};
use warmspace_store::workspaces::PREBUILDS_USER_ID;

use super::{Action, Entered, Made, PARAMETER_FIELD, shown_value};
use crate::web::pages::{Chrome, Failure, csrf, failure, page};

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn or_dash(text: Option<String>) -> String {
    text.unwrap_or_else(|| "—".into())
}

fn question(action: Action, w: &Workspace) -> String {
    format!("{} workspace {}/{}?", action.verb(), w.owner_name, w.name)
}

/// The actions the workspace can take now, as links to their confirmation
/// (the page's script asks in a dialog instead, see [`confirm_dialog`]).
/// With `all`, the others are there too, hidden, for the script to show
/// when a build followed live ends.
fn actions(w: &Workspace, all: bool) -> Markup {
    html! {
        @for action in Action::ALL {
            @let offered = action.offered(w);
            @if offered || all {
                a href={ "/workspaces/" (w.id) "/" (action.path()) } hidden[!offered] { (action.verb()) }
            }
        }
    }
}

/// The one confirmation dialog of a page with action links: the script
/// points its form at the link clicked and shows that action's consequence.
fn confirm_dialog(chrome: &Chrome) -> Markup {
    html! {
        dialog #confirm {
            form #confirm-form method="post" {
                (csrf(&chrome.csrf))
                p #confirm-question {}
                @for action in Action::ALL {
                    p.consequence data-action=(action.path()) hidden { (action.consequence()) }
                }
                p.buttons {
                    button #confirm-yes type="submit" { "Confirm" }
                    " "
                    button #confirm-no.secondary type="submit" formmethod="dialog" formnovalidate { "Cancel" }
                }
            }
        }
    }
}

fn connection(c: AgentConnection) -> &'static str {
    match c {
        AgentConnection::Connecting => "connecting",
        AgentConnection::Connected => "connected",
        AgentConnection::Disconnected => "disconnected",
        AgentConnection::Timeout => "timed out",
    }
}

/// Each agent's lifecycle, in a word: `main ready, side starting`.
fn agents_summary(agents: &[WorkspaceAgent]) -> String {
    if agents.is_empty() {
        return "—".into();
    }
    agents.iter().map(|a| format!("{} {}", a.name, a.lifecycle_state)).collect::<Vec<_>>().join(", ")
}

pub fn workspaces(chrome: &Chrome, lines: &[(Workspace, Made)]) -> Html<String> {
    page(
        "Workspaces",
        Some(chrome),
        html! {
            h1 { @if chrome.all_workspaces { "All workspaces" } @else { "My workspaces" } }
            p { a.button href="/workspaces/new" { "New workspace" } }
            @if lines.is_empty() {
                p.empty { "No workspaces yet." }
            } @else {
                div.scroll {
                    table #workspaces {
                        thead { tr {
                            th { "Name" }
                            @if chrome.all_workspaces { th { "Owner" } }
                            th { "Template" } th { "Preset" } th { "Status" } th { "Agents" } th { "Made" } th {}
                        } }
                        tbody {
                            @for (w, made) in lines {
                                tr data-ws={ (w.owner_name) "/" (w.name) } {
                                    td { a href={ "/workspaces/" (w.id) } { (w.name) } }
                                    @if chrome.all_workspaces { td { (w.owner_name) } }
                                    td { (w.template_name) @if w.outdated { " " small { "(outdated)" } } }
                                    td.preset { (or_dash(w.preset_name.clone())) }
                                    td.status { (w.status) }
                                    td.agents { (agents_summary(&w.agents)) }
                                    td.made { (made.text) }
                                    td.acts { (actions(w, false)) }
                                }
                            }
                        }
                    }
                }
                (confirm_dialog(chrome))
            }
        },
    )
}

/// What the workspace's page shows.
pub struct Shown<'a> {
    pub workspace: &'a Workspace,
    pub made: &'a Made,
    /// Newest first.
    pub builds: &'a [WorkspaceBuild],
    /// Each agent's startup log, in the order of `workspace.agents`.
    pub agent_logs: &'a [Vec<WorkspaceAgentLog>],
    pub apps: &'a WorkspaceApps,
}

pub fn workspace(chrome: &Chrome, shown: &Shown<'_>) -> Html<String> {
    let w = shown.workspace;
    let latest = &w.latest_build;
    let running = w.status == WorkspaceStatus::Running;
    let ttl = w.ttl_ms.map(|ms| humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string());
    page(
        &w.name,
        Some(chrome),
        html! {
            h1 { (w.owner_name) " / " (w.name) }
            p #made class=(if shown.made.claimed { "made claimed" } else { "made" }) { (shown.made.text) }
            p #actions.acts data-ws={ (w.owner_name) "/" (w.name) } { (actions(w, true)) }
            dl.facts {
                dt { "Status" } dd #status { (w.status) }
                dt { "Template" } dd #template {
                    (w.template_name)
                    @if w.outdated { " " small { "(a newer version is active: update to use it)" } }
                }
                dt { "Version" } dd #version { (latest.template_version_name) }
                dt { "Preset" } dd #preset { (or_dash(w.preset_name.clone())) }
                dt { "Created" } dd { (at(w.created_at)) }
                dt { "Stops at" } dd #deadline { (or_dash(latest.deadline.filter(|_| running).map(at))) }
                @if let Some(max) = latest.max_deadline.filter(|_| running) {
                    dt { "Stops at the latest" } dd { (at(max)) }
                }
                @if let Some(dormant) = w.dormant_at {
                    dt { "Dormant since" } dd { (at(dormant)) }
                }
            }

            h2 { "Parameters" }
            @if latest.parameters.is_empty() { p.empty { "None." } } @else {
                table #parameters.narrow {
                    tbody { @for p in &latest.parameters {
                        tr { th { (p.name) } td data-parameter=(p.name) { (p.value) } }
                    } }
                }
            }

            h2 { "Agents" }
            @if w.agents.is_empty() { p.empty { "None." } } @else {
                div.scroll { table #agents {
                    thead { tr { th { "Name" } th { "Lifecycle" } th { "Connection" } th { "Ready at" } } }
                    tbody { @for a in &w.agents {
                        tr id={ "agent-" (a.name) } {
                            td { (a.name) }
                            td.lifecycle { (a.lifecycle_state) }
                            td.connection { (connection(a.connection)) }
                            td { (or_dash(a.ready_at.map(at))) }
                        }
                    } }
                } }
                @for (a, log) in w.agents.iter().zip(shown.agent_logs) {
                    details.agent-log id={ "agent-log-" (a.name) } {
                        summary { "Startup log of " (a.name) " (" (log.len()) (if log.len() == 1 { " line)" } else { " lines)" }) }
                        pre.log { @for line in log { (line.output) "\n" } }
                    }
                }
            }

            (apps(shown.apps, &w.agents))

            h2 { "Resources" }
            @if latest.resources.is_empty() { p.empty { "None." } } @else {
                div.scroll { table #resources {
                    thead { tr { th { "Address" } th { "Type" } th {} } }
                    tbody { @for r in &latest.resources {
                        tr { td { (r.address) } td { (r.kind) } td { @if r.replaced { "replaced on claim" } } }
                    } }
                } }
            }

            // Unclaimed prebuilds have no schedule of their own: the reconciler manages them.
            @if w.owner_id != PREBUILDS_USER_ID && w.status != WorkspaceStatus::Deleted {
                h2 { "Schedule" }
                @if w.dormant_at.is_some() {
                    form #wake.inline method="post" action={ "/workspaces/" (w.id) "/wake" } {
                        (csrf(&chrome.csrf))
                        span { "It is dormant: it cannot start until it is woken." }
                        button type="submit" { "Wake" }
                    }
                }
                form #ttl.inline method="post" action={ "/workspaces/" (w.id) "/ttl" } {
                    (csrf(&chrome.csrf))
                    label { "Stops after each start " input name="ttl" value=(ttl.unwrap_or_default()) placeholder="e.g. 8h"; }
                    button type="submit" { "Save" }
                    small { "Empty: it runs until stopped." }
                }
                form #autostart.inline method="post" action={ "/workspaces/" (w.id) "/autostart" } {
                    (csrf(&chrome.csrf))
                    label { "Starts by itself at " input.wide name="schedule" value=(w.autostart_schedule.clone().unwrap_or_default())
                        placeholder="e.g. CRON_TZ=Europe/Berlin 0 9 * * 1-5"; }
                    button type="submit" { "Save" }
                    small { "Five cron fields, optionally after CRON_TZ=<zone>. Empty: never." }
                }
                @if running {
                    form #extend.inline method="post" action={ "/workspaces/" (w.id) "/extend" } {
                        (csrf(&chrome.csrf))
                        label { "Keep it running for " input name="duration" placeholder="2h" required; " from now" }
                        button type="submit" { "Extend" }
                    }
                }
            }

            h2 { "Builds" }
            p.hint { "The latest build's log follows live; open an older one to read its log." }
            section #builds {
                @for b in shown.builds {
                    @let is_latest = b.id == latest.id;
                    details.build id={ "build-" (b.build_number) } open[is_latest] {
                        summary {
                            strong { "#" (b.build_number) " " (b.transition) }
                            " · " span.build-status { (b.status) }
                            " · " (b.reason) " by " (b.initiator_name) " · " (b.template_version_name)
                            " · " (at(b.created_at))
                        }
                        p.job-error hidden[b.job.error.is_none()] { (b.job.error.clone().unwrap_or_default()) }
                        pre.log data-log={ "/builds/" (b.id) "/log" } data-latest[is_latest] {}
                    }
                }
            }
            (confirm_dialog(chrome))
        },
    )
}

/// The page an action link leads to without the page's script: the question, and the form that answers it.
pub fn confirm(chrome: &Chrome, w: &Workspace, action: Action) -> Html<String> {
    let question = question(action, w);
    page(
        &question,
        Some(chrome),
        html! {
            h1 { (question) }
            p { (action.consequence()) }
            form #confirm-form.inline method="post" action={ "/workspaces/" (w.id) "/" (action.path()) } {
                (csrf(&chrome.csrf))
                button #confirm-yes type="submit" { (action.verb()) }
                a #confirm-no href={ "/workspaces/" (w.id) } { "Cancel" }
            }
        },
    )
}

pub fn choose_template(chrome: &Chrome, templates: &[Template]) -> Html<String> {
    page(
        "New workspace",
        Some(chrome),
        html! {
            h1 { "New workspace" }
            h2 { "Choose a template" }
            @if templates.is_empty() { p.empty { "No templates yet." } }
            ul #templates.cards {
                @for t in templates {
                    li {
                        a href={ "/workspaces/new?template=" (t.id) } {
                            strong { @if t.display_name.is_empty() { (t.name) } @else { (t.display_name) } }
                        }
                        @if !t.description.is_empty() { p { (t.description) } }
                    }
                }
            }
        },
    )
}

/// A preset offered on the create form, with the prebuilds eligible in its
/// pool right now (`None`: it keeps no pool).
pub struct PresetChoice {
    pub preset: Preset,
    pub warm: Option<u32>,
}

/// What the create form is made of.
pub struct CreateForm<'a> {
    pub template: &'a Template,
    pub presets: &'a [PresetChoice],
    pub parameters: &'a [TemplateVersionParameter],
    pub entered: &'a Entered,
}

impl CreateForm<'_> {
    /// The preset chosen: as sent, else one with a warm pool, else the default one.
    fn chosen(&self) -> Option<&Preset> {
        let presets = || self.presets.iter();
        match self.entered.preset {
            Some(id) => id.and_then(|id| presets().find(|p| p.preset.id == id)),
            None => presets().find(|p| p.warm.is_some_and(|n| n > 0)).or_else(|| presets().find(|p| p.preset.default)),
        }
        .map(|p| &p.preset)
    }

    /// The failure as shown above the form: its message, and the problems
    /// of no field of its own (the others are shown beside their fields).
    fn unplaced(&self) -> Option<Failure> {
        let placed = |field: &str| {
            ["name", "template_version_preset_id"].contains(&field) || self.parameters.iter().any(|p| p.name == field)
        };
        self.entered.failure.as_ref().map(|f| Failure {
            message: f.message.clone(),
            validations: f.validations.iter().filter(|v| !placed(&v.field)).cloned().collect(),
        })
    }

    /// Why the value sent for `field` was refused, beside its field.
    fn problem(&self, field: &str) -> Markup {
        let validations = self.entered.failure.iter().flat_map(|f| &f.validations);
        html! {
            @for v in validations.filter(|v| v.field == field) {
                span.problem id={ "problem-" (field) } { (v.detail) }
            }
        }
    }
}

/// A preset's values as its parameters' fields show them, as JSON for the
/// page's script, which fixes them when the preset is chosen.
fn preset_values(preset: Option<&Preset>, parameters: &[TemplateVersionParameter]) -> String {
    let values: serde_json::Map<String, serde_json::Value> = preset
        .into_iter()
        .flat_map(|p| &p.parameters)
        .map(|v| {
            let kind = parameters.iter().find(|p| p.name == v.name).map_or(ParameterType::String, |p| p.kind);
            (v.name.clone(), shown_value(kind, &v.value).into())
        })
        .collect();
    serde_json::Value::Object(values).to_string()
}

fn parameter_field(form: &CreateForm<'_>, p: &TemplateVersionParameter, chosen: Option<&Preset>) -> Markup {
    let default = p.default_value.as_deref().map(|v| shown_value(p.kind, v)).unwrap_or_default();
    let fixed = chosen.and_then(|preset| preset.parameters.iter().find(|v| v.name == p.name));
    let value = match fixed {
        Some(v) => shown_value(p.kind, &v.value),
        None => form.entered.values.get(&p.name).cloned().unwrap_or_else(|| default.clone()),
    };
    let name = format!("{PARAMETER_FIELD}{}", p.name);
    let choices: Vec<(String, String)> = match p.kind {
        _ if !p.options.is_empty() => p.options.iter().map(|o| (o.value.clone(), o.name.clone())).collect(),
        ParameterType::Bool => ["true", "false"].map(|b| (b.to_owned(), b.to_owned())).to_vec(),
        _ => Vec::new(),
    };
    let mut hints = Vec::new();
    if !p.mutable {
        hints.push("Cannot be changed once the workspace is built.".to_owned());
    }
    match (p.validation_min, p.validation_max) {
        (Some(min), Some(max)) => hints.push(format!("From {min} to {max}.")),
        (Some(min), None) => hints.push(format!("At least {min}.")),
        (None, Some(max)) => hints.push(format!("At most {max}.")),
        (None, None) => {}
    }
    if p.kind == ParameterType::ListString {
        hints.push("One item per line.".to_owned());
    }
    html! {
        label.parameter id={ "param-" (p.name) } {
            span {
                @if p.display_name.is_empty() { (p.name) } @else { (p.display_name) }
                @if p.required { " " small { "(required)" } }
            }
            @if !choices.is_empty() {
                select name=(name) data-param=(p.name) data-default=(default) disabled[fixed.is_some()] {
                    @if !choices.iter().any(|(v, _)| *v == value) { option value=(value) selected { (value) } }
                    @for (v, label) in &choices { option value=(v) selected[*v == value] { (label) } }
                }
            } @else if p.kind == ParameterType::ListString {
                textarea name=(name) rows="3" data-param=(p.name) data-default=(default) disabled[fixed.is_some()] { (value) }
            } @else {
                input name=(name) type=(if p.kind == ParameterType::Number { "number" } else { "text" })
                    step=[(p.kind == ParameterType::Number).then_some("any")]
                    value=(value) data-param=(p.name) data-default=(default) disabled[fixed.is_some()];
            }
            @if !p.description.is_empty() { small { (p.description) } }
            @for hint in &hints { small { (hint) } }
            (form.problem(&p.name))
        }
    }
}

pub fn create_form(chrome: &Chrome, form: &CreateForm<'_>) -> Html<String> {
    let (template, presets, parameters) = (form.template, form.presets, form.parameters);
    let chosen = form.chosen();
    let chosen_id: Option<Uuid> = chosen.map(|p| p.id);
    page(
        "New workspace",
        Some(chrome),
        html! {
            h1 { "New workspace from " (template.name) }
            (failure(form.unplaced().as_ref()))
            form #create.stack method="post" action="/workspaces" {
                (csrf(&chrome.csrf))
                input type="hidden" name="template_id" value=(template.id);
                label {
                    "Name"
                    input #name name="name" value=(form.entered.name) required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="64";
                    (form.problem("name"))
                }
                fieldset #presets {
                    legend { "Preset" }
                    label.choice {
                        input type="radio" name="preset_id" value="" data-values="{}" checked[chosen_id.is_none()];
                        " None (choose every value)"
                    }
                    @for choice in presets {
                        label.choice id={ "preset-" (choice.preset.name) } {
                            input type="radio" name="preset_id" value=(choice.preset.id)
                                data-values=(preset_values(Some(&choice.preset), parameters))
                                checked[chosen_id == Some(choice.preset.id)];
                            " " strong { (choice.preset.name) }
                            @match choice.warm {
                                Some(n) => { " " span.warm data-preset=(choice.preset.id) { (n) " warm" } }
                                None => { " " span.cold { "no pool: built cold" } }
                            }
                            @if !choice.preset.description.is_empty() { br; small { (choice.preset.description) } }
                        }
                    }
                    (form.problem("template_version_preset_id"))
                }
                @if !parameters.is_empty() {
                    fieldset #parameters {
                        legend { "Parameters" }
                        p.hint { "The values the chosen preset sets are fixed." }
                        @for p in parameters { (parameter_field(form, p, chosen)) }
                    }
                }
                button #submit type="submit" { "Create workspace" }
            }
        },
    )
}

/// The apps with their health and latest status, and the dev containers
/// with their state, when the template declares any. A status's URI is
/// shown as text: it comes from inside the workspace, and is no link to follow blindly.
/// An app's "Open" link is there while it can answer: its agent connected,
/// and the app healthy or not checked.
fn apps(apps: &WorkspaceApps, agents: &[WorkspaceAgent]) -> Markup {
    let openable = |app: &WorkspaceApp| {
        matches!(app.health, AppHealth::Healthy | AppHealth::Disabled)
            && agents.iter().any(|a| a.id == app.agent_id && a.connection == AgentConnection::Connected)
    };
    html! {
        @if !apps.apps.is_empty() {
            h2 { "Apps" }
            div.scroll { table #apps {
                thead { tr { th { "App" } th { "URL" } th { "Health" } th { "Latest status" } th { "At" } th {} } }
                tbody { @for a in &apps.apps {
                    tr id={ "app-" (a.name) } {
                        td { (a.display_name) @if a.display_name != a.name { " " small { "(" (a.name) ")" } } }
                        td { code { (a.url) } }
                        td.health { (a.health) }
                        @match &a.latest_status {
                            Some(s) => {
                                td.status {
                                    strong { (s.state) } " " (s.message)
                                    @if let Some(uri) = &s.uri { " " small { code { (uri) } } }
                                }
                                td { (at(s.created_at)) }
                            }
                            None => { td.status { "-" } td { "-" } }
                        }
                        td { @if openable(a) { a.open href=(a.proxy_url) target="_blank" rel="noopener" { "Open" } } }
                    }
                } }
            } }
        }
        @if !apps.devcontainers.is_empty() {
            h2 { "Dev containers" }
            div.scroll { table #devcontainers {
                thead { tr { th { "Name" } th { "Folder" } th { "State" } } }
                tbody { @for d in &apps.devcontainers {
                    tr id={ "devcontainer-" (d.name) } {
                        td { (d.name) }
                        td { code { (d.workspace_folder) } @if let Some(c) = &d.config_path { " " small { "(" (c) ")" } } }
                        td.state {
                            @match d.state { Some(state) => (state), None => "not reported yet" }
                            @if let Some(error) = &d.error { ": " (error) }
                        }
                    }
                } }
            } }
        }
    }
}
