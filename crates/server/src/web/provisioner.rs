//! The Provisioner page (template admins and owners, who may read jobs):
//! jobs queued (with their place in the queue), running (with their daemon)
//! and recently finished; the daemons; the provisioner keys, with forms to
//! create and delete them for those who may (owners). A new key's secret is
//! shown once, on the page that answers its creation.
//!
//! Those who may not read jobs are not told the page exists: 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use warmspace_sdk::{
    CreateProvisionerKeyRequest, CreateProvisionerKeyResponse, JobsQuery, ProvisionerDaemon, ProvisionerJob,
    ProvisionerKey,
};

use super::WebError;
use super::handlers::{NoFields, Page, chrome};
use super::pages::{self, Chrome, csrf, page, time, urlencode};
use super::session::{Form, Session};
use crate::api::AppState;
use crate::domain::{Actor, Domain};

/// The organization whose jobs are shown (the only one, until organizations arrive).
const ORGANIZATION: &str = "default";
/// At most this many jobs of each kind are listed.
const QUEUED: i64 = 200;
const RECENT: i64 = 50;

/// 404 unless the actor may read jobs.
fn provisioners_only(domain: &Domain, actor: &Actor) -> Result<(), WebError> {
    if domain.may_see_provisioners(actor) { Ok(()) } else { Err(WebError::not_found()) }
}

pub async fn provisioner(State(state): State<AppState>, session: Session) -> Page {
    provisioners_only(&state.domain, &session.actor)?;
    Ok(render(&state.domain, &session, None).await?.into_response())
}

/// Everything the page shows, read for `session`; `created` is a key just made (its secret shown once).
async fn render(
    domain: &Domain,
    session: &Session,
    created: Option<&CreateProvisionerKeyResponse>,
) -> Result<Html<String>, WebError> {
    let actor = &session.actor;
    let jobs = async |status: &str, limit: i64| {
        let query = JobsQuery { status: Some(status.into()), limit: Some(limit) };
        domain.list_jobs(actor, ORGANIZATION, query).await
    };
    let mut queued = jobs("pending", QUEUED).await?;
    queued.sort_by_key(|j| j.queue_position);
    let running = jobs("running,canceling", QUEUED).await?;
    let recent = jobs("succeeded,failed,canceled", RECENT).await?;
    let daemons = domain.provisioner_daemons(actor).await?;
    let keys = domain.provisioner_keys(actor).await?;
    let chrome = chrome(domain, session).await?;
    let view = View {
        queued: &queued,
        running: &running,
        recent: &recent,
        daemons: &daemons,
        keys: &keys,
        may_manage_keys: domain.may_manage_provisioner_keys(actor),
        created,
    };
    Ok(markup(&chrome, &view))
}

#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
}

/// Creates a key and answers with the page, the new secret on it.
pub async fn create_key(State(state): State<AppState>, form: Form<KeyForm>) -> Page {
    let Form { session, fields } = form;
    provisioners_only(&state.domain, &session.actor)?;
    let created =
        state.domain.create_provisioner_key(&session.actor, CreateProvisionerKeyRequest { name: fields.name }).await?;
    let page = render(&state.domain, &session, Some(&created)).await?;
    Ok((StatusCode::CREATED, page).into_response())
}

/// Asks before deleting a key: daemons using it can take no more jobs.
pub async fn delete_key_page(State(state): State<AppState>, session: Session, Path(name): Path<String>) -> Page {
    let domain = &state.domain;
    provisioners_only(domain, &session.actor)?;
    let chrome = chrome(domain, &session).await?;
    let question = html! {
        "Delete provisioner key " strong { (name) } "? Daemons that use it can take no more jobs."
    };
    let action = format!("/provisioner/keys/{}/delete", urlencode(&name));
    Ok(pages::confirm(&chrome, "Delete key", question, &action, &[], "/provisioner").into_response())
}

pub async fn delete_key(State(state): State<AppState>, Path(name): Path<String>, form: Form<NoFields>) -> Page {
    provisioners_only(&state.domain, &form.session.actor)?;
    state.domain.delete_provisioner_key(&form.session.actor, &name).await?;
    Ok(Redirect::to("/provisioner").into_response())
}

struct View<'a> {
    queued: &'a [ProvisionerJob],
    running: &'a [ProvisionerJob],
    recent: &'a [ProvisionerJob],
    daemons: &'a [ProvisionerDaemon],
    keys: &'a [ProvisionerKey],
    may_manage_keys: bool,
    created: Option<&'a CreateProvisionerKeyResponse>,
}

/// What a job is for: a workspace's build, or a template version's import.
fn target(job: &ProvisionerJob) -> Markup {
    let m = &job.metadata;
    html! {
        @match (&m.workspace_name, &m.template_name) {
            (Some(workspace), _) => {
                (workspace) " #" (m.build_number.unwrap_or_default())
                @if let Some(transition) = m.transition { " " (transition) }
            }
            (None, Some(template)) => { (template) " " (m.template_version_name.as_deref().unwrap_or("")) }
            (None, None) => { (m.template_version_name.as_deref().unwrap_or("—")) }
        }
    }
}

fn kind(job: &ProvisionerJob) -> String {
    job.kind.as_str().replace('_', " ")
}

fn markup(chrome: &Chrome, view: &View<'_>) -> Html<String> {
    page(
        "Provisioner",
        Some(chrome),
        html! {
            h1 { "Provisioner" }
            @if let Some(created) = view.created {
                div.notice {
                    p { "Key " strong { (created.key.name) } " created. Its secret is shown this once:" }
                    p { code #secret { (created.secret) } }
                    p.hint { "Start a daemon elsewhere with " code { "warmspace provisioner start --url URL --key SECRET" } "." }
                }
            }
            h2 { "Queued" }
            @if view.queued.is_empty() { p.empty { "Nothing is waiting." } }
            div.scroll {
                table #queued {
                    thead { tr { th.num { "Place" } th { "Job" } th { "For" } th { "Priority" } th { "Queued" } th { "Tags" } } }
                    tbody {
                        @for job in view.queued {
                            tr id={ "job-" (job.id) } {
                                td.num data-field="position" { (job.queue_position.map(|p| p + 1).unwrap_or_default()) }
                                td { (kind(job)) }
                                td { (target(job)) }
                                td { (job.priority.as_str()) }
                                td { (time(job.created_at)) }
                                td { @for (k, v) in &job.tags { code { (k) "=" (v) } " " } }
                            }
                        }
                    }
                }
            }
            h2 { "Running" }
            @if view.running.is_empty() { p.empty { "Nothing is running." } }
            div.scroll {
                table #running {
                    thead { tr { th { "Job" } th { "For" } th { "Daemon" } th { "Started" } th { "Status" } } }
                    tbody {
                        @for job in view.running {
                            tr id={ "job-" (job.id) } {
                                td { (kind(job)) }
                                td { (target(job)) }
                                td { (job.worker_name.as_deref().unwrap_or("—")) }
                                td { (job.started_at.map(time).unwrap_or_default()) }
                                td { (job.status) }
                            }
                        }
                    }
                }
            }
            h2 { "Recently finished" }
            div.scroll {
                table #recent {
                    thead { tr { th { "Job" } th { "For" } th { "Status" } th { "Daemon" } th { "Finished" } th { "Error" } } }
                    tbody {
                        @for job in view.recent {
                            tr id={ "job-" (job.id) } {
                                td { (kind(job)) }
                                td { (target(job)) }
                                td { (job.status) }
                                td { (job.worker_name.as_deref().unwrap_or("—")) }
                                td { (job.completed_at.or(job.canceled_at).map(time).unwrap_or_default()) }
                                td.error-text { (job.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            h2 { "Daemons" }
            @if view.daemons.is_empty() { p.empty { "No daemon has been seen." } }
            div.scroll {
                table #daemons {
                    thead { tr { th { "Name" } th { "Key" } th { "Tags" } th { "Last seen" } th { "State" } th.num { "Running" } } }
                    tbody {
                        @for d in view.daemons {
                            tr {
                                td { (d.name) }
                                td { (d.key_name.as_deref().unwrap_or("built in")) }
                                td { @for (k, v) in &d.tags { code { (k) "=" (v) } " " } }
                                td { (time(d.last_seen_at)) }
                                td { (if d.live { "live" } else { "gone" }) }
                                td.num { (d.running_jobs) }
                            }
                        }
                    }
                }
            }
            h2 { "Keys" }
            p.hint { "Daemons on other hosts authenticate with a key." }
            @if view.keys.is_empty() { p.empty { "No keys." } }
            div.scroll {
                table #keys {
                    thead { tr { th { "Name" } th { "Id" } th { "Created" } th {} } }
                    tbody {
                        @for k in view.keys {
                            tr id={ "key-" (k.name) } {
                                td { (k.name) }
                                td { code { (k.id) } }
                                td { (time(k.created_at)) }
                                td {
                                    @if view.may_manage_keys {
                                        a.delete-key href={ "/provisioner/keys/" (urlencode(&k.name)) "/delete" } { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if view.may_manage_keys {
                form #create-key.inline method="post" action="/provisioner/keys" {
                    (csrf(&chrome.csrf))
                    label { "New key " input #key-name name="name" required placeholder="lowercase-with-hyphens"; }
                    button type="submit" { "Create key" }
                }
            }
        },
    )
}
