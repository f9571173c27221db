//! The pages' HTML, compiled into the binary (maud escapes every value it
//! interpolates).

use axum::http::StatusCode;
use axum::response::Html;
use maud::{DOCTYPE, Markup, html};
use warmspace_sdk::{Notification, PrebuildsStatus, ValidationError};

use super::session::CSRF_FIELD;

/// What the header of a signed-in page shows.
pub struct Chrome {
    pub username: String,
    pub csrf: String,
    pub unread: i64,
    /// The person may see the Prebuilds page.
    pub pools: bool,
    /// The person sees every workspace, not only their own.
    pub all_workspaces: bool,
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
                            @if c.pools { a #nav-prebuilds href="/prebuilds" { "Prebuilds" } }
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

pub fn prebuilds(chrome: &Chrome, status: &PrebuildsStatus) -> Html<String> {
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
            p.hint { "Counts update live." }
            @if status.presets.is_empty() {
                p.empty { "No preset keeps a pool." }
            }
            div.scroll {
                table #pools data-live="/prebuilds/events" {
                    thead { tr {
                        th { "Template" } th { "Preset" } th.num { "Desired" } th.num { "Eligible" }
                        th.num { "Running" } th.num { "Starting" } th { "Status" }
                    } }
                    tbody {
                        @for p in &status.presets {
                            tr id={ "pool-" (p.preset_id) } {
                                td { (p.template_name) @if !p.version_active { " " small { "(old version)" } } }
                                td { (p.preset_name) }
                                td.num data-field="desired" { (p.desired) }
                                td.num data-field="eligible" { (p.eligible) }
                                td.num data-field="running" { (p.running) }
                                td.num data-field="starting" { (p.starting) }
                                td data-field="status" { (p.status) }
                            }
                        }
                    }
                }
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
                        small { " " (n.created_at.format("%Y-%m-%d %H:%M UTC")) }
                        @if !n.content.is_empty() { p { (n.content) } }
                    }
                }
            }
        },
    )
}
