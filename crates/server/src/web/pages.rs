//! The pages' HTML, compiled into the binary (maud escapes every value it
//! interpolates).

use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use warmspace_sdk::{MissReason, Notification, ValidationError};

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

pub(super) fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(super::session::masked(token)); }
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

/// The sign-in page; `then` is where to go once signed in, if not to the workspaces.
pub fn login(token: &str, email: &str, then: Option<&str>, failed: Option<&Failure>) -> Html<String> {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            (failure(failed))
            form.stack method="post" action="/login" {
                (csrf(token))
                @if let Some(then) = then { input type="hidden" name="then" value=(then); }
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
