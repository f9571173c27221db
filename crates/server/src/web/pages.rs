//! The pages' HTML, compiled into the binary (maud escapes every value it
//! interpolates).

use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use uuid::Uuid;
use warmspace_sdk::MissReason;
use warmspace_sdk::{Notification, Preset, Template, ValidationError, WorkspaceBuild};

use super::session::CSRF_FIELD;

/// What the header of a signed-in page shows.
pub struct Chrome {
    pub username: String,
    pub csrf: String,
    pub unread: i64,
    /// The person may see the Prebuilds page.
    pub pools: bool,
    /// The person may see the Provisioner page.
    pub provisioner: bool,
    /// The person may see the Users page.
    pub users: bool,
    /// The person sees every workspace, not only their own.
    pub all_workspaces: bool,
}

/// A workspace as a row of the list and the head of its page.
pub struct WorkspaceLine {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub template: String,
    pub preset: Option<String>,
    pub status: String,
    /// How it was made: "claimed from the pool in 12 ms", "built cold in 2 min", ….
    pub made: String,
    /// Claimed from a pool.
    pub claimed: bool,
}

pub(super) fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

pub(super) fn page(title: &str, chrome: Option<&Chrome>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · warmspace" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "warmspace" }
                    @if let Some(c) = chrome {
                        nav {
                            a href="/workspaces" { "Workspaces" }
                            a href="/workspaces/new" { "New workspace" }
                            a #nav-templates href="/templates" { "Templates" }
                            @if c.pools { a #nav-prebuilds href="/prebuilds" { "Prebuilds" } }
                            @if c.provisioner { a #nav-provisioner href="/provisioner" { "Provisioner" } }
                            @if c.users { a #nav-users href="/users" { "Users" } }
                            a #nav-notifications href="/notifications" {
                                "Notifications"
                                span #unread.badge hidden[c.unread == 0] { (c.unread) }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            (csrf(&c.csrf))
                            span.who { (c.username) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

pub(super) fn problems(validations: &[ValidationError]) -> Markup {
    html! {
        @if !validations.is_empty() {
            ul.problems { @for v in validations { li { strong { (v.field) } " " (v.detail) } } }
        }
    }
}

pub fn error(status: StatusCode, message: &str, detail: &str, validations: &[ValidationError]) -> Html<String> {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p #error { (message) }
            @if !detail.is_empty() { p.detail { (detail) } }
            (problems(validations))
            p { a href="/" { "Back to the dashboard" } }
        },
    )
}

/// Why a create request was not a claim, in words: `no eligible`.
pub(super) fn miss_reason(reason: MissReason) -> String {
    reason.as_str().replace('_', " ")
}

/// A value as one part of a URL (a path segment, a query value).
pub(super) fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An instant as the pages show it.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A page asking to confirm an action that cannot be undone: `question`,
/// then a form posting `fields` to `action` (the page that asked is where
/// "Cancel" goes back to).
pub(super) fn confirm(
    chrome: &Chrome,
    title: &str,
    question: Markup,
    action: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> Html<String> {
    page(
        title,
        Some(chrome),
        html! {
            h1 { (title) }
            form #confirm.stack method="post" action=(action) {
                (csrf(&chrome.csrf))
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                p { (question) }
                div.actions {
                    button type="submit" { (title) }
                    a.button.secondary href=(back) { "Cancel" }
                }
            }
        },
    )
}

/// A form's failure shown above it again.
pub struct Failure {
    pub message: String,
    pub validations: Vec<ValidationError>,
}

pub(super) fn failure(failed: Option<&Failure>) -> Markup {
    html! {
        @if let Some(f) = failed {
            div #error.error { p { (f.message) } (problems(&f.validations)) }
        }
    }
}

pub fn login(token: &str, email: &str, failed: Option<&Failure>) -> Html<String> {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            (failure(failed))
            form.stack method="post" action="/login" {
                (csrf(token))
                label { "Email" input #email type="email" name="email" value=(email) required autofocus; }
                label { "Password" input #password type="password" name="password" required; }
                button #submit type="submit" { "Sign in" }
            }
        },
    )
}

pub fn setup(token: &str, username: &str, email: &str, failed: Option<&Failure>) -> Html<String> {
    page(
        "Set up",
        None,
        html! {
            h1 { "Create the first user" }
            p { "This server has no users yet. The first one is an owner." }
            (failure(failed))
            form.stack method="post" action="/setup" {
                (csrf(token))
                label { "Username" input #username name="username" value=(username) required autofocus; }
                label { "Email" input #email type="email" name="email" value=(email) required; }
                label { "Password" input #password type="password" name="password" required; }
                button #submit type="submit" { "Create and sign in" }
            }
        },
    )
}

pub fn workspaces(chrome: &Chrome, lines: &[WorkspaceLine]) -> Html<String> {
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
                            th { "Template" } th { "Preset" } th { "Status" } th { "Made" }
                        } }
                        tbody {
                            @for w in lines {
                                tr {
                                    td { a href={ "/workspaces/" (w.id) } { (w.name) } }
                                    @if chrome.all_workspaces { td { (w.owner) } }
                                    td { (w.template) }
                                    td { (w.preset.as_deref().unwrap_or("—")) }
                                    td { span.status { (w.status) } }
                                    td.made { (w.made) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn workspace(chrome: &Chrome, w: &WorkspaceLine, builds: &[WorkspaceBuild]) -> Html<String> {
    page(
        &w.name,
        Some(chrome),
        html! {
            h1 { (w.owner) " / " (w.name) }
            p #made class=(if w.claimed { "made claimed" } else { "made" }) { (w.made) }
            dl.facts {
                dt { "Status" } dd #status { (w.status) }
                dt { "Template" } dd { (w.template) }
                dt { "Preset" } dd { (w.preset.as_deref().unwrap_or("—")) }
            }
            h2 { "Builds" }
            div.scroll {
                table #builds {
                    thead { tr { th { "#" } th { "Transition" } th { "Reason" } th { "Status" } th { "By" } th { "Version" } } }
                    tbody {
                        @for b in builds {
                            tr {
                                td { (b.build_number) }
                                td { (b.transition) }
                                td { (b.reason) }
                                td { (b.status) }
                                td { (b.initiator_name) }
                                td { (b.template_version_name) }
                            }
                        }
                    }
                }
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

pub fn create_form(chrome: &Chrome, template: &Template, presets: &[PresetChoice]) -> Html<String> {
    let first_warm = presets.iter().position(|p| p.warm.is_some_and(|n| n > 0));
    page(
        "New workspace",
        Some(chrome),
        html! {
            h1 { "New workspace from " (template.name) }
            form #create.stack method="post" action="/workspaces" {
                (csrf(&chrome.csrf))
                input type="hidden" name="template_id" value=(template.id);
                label { "Name" input #name name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="64"; }
                fieldset #presets {
                    legend { "Preset" }
                    label.choice {
                        input type="radio" name="preset_id" value="" checked[presets.is_empty()];
                        " None (the template's defaults)"
                    }
                    @for (i, choice) in presets.iter().enumerate() {
                        label.choice id={ "preset-" (choice.preset.name) } {
                            input type="radio" name="preset_id" value=(choice.preset.id)
                                checked[first_warm == Some(i) || (first_warm.is_none() && i == 0)];
                            " " strong { (choice.preset.name) }
                            @match choice.warm {
                                Some(n) => { " " span.warm data-preset=(choice.preset.id) { (n) " warm" } }
                                None => { " " span.cold { "no pool: built cold" } }
                            }
                            @if !choice.preset.description.is_empty() { br; small { (choice.preset.description) } }
                        }
                    }
                }
                button #submit type="submit" { "Create workspace" }
            }
        },
    )
}

pub fn notifications(chrome: &Chrome, items: &[Notification]) -> Html<String> {
    page(
        "Notifications",
        Some(chrome),
        html! {
            h1 { "Notifications" }
            form #read-all.inline method="post" action="/notifications/read-all" {
                (csrf(&chrome.csrf))
                button type="submit" disabled[chrome.unread == 0] { "Mark all read" }
            }
            @if items.is_empty() { p.empty { "Nothing here." } }
            ul #inbox.cards {
                @for n in items {
                    li class=(if n.read_at.is_none() { "unread" } else { "read" }) {
                        strong { (n.title) }
                        small { " " (time(n.created_at)) }
                        @if !n.content.is_empty() { p { (n.content) } }
                    }
                }
            }
        },
    )
}
