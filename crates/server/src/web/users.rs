//! The Users page: the list with the CLI's filters (`warmspace users list
//! --search … --include-system`), and for owners a form to create users,
//! and per user forms to change their roles and to suspend or reactivate
//! them. Template admins, who may read every user, see the list alone.
//!
//! Those who see only themselves (members) are not told the page exists: 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use warmspace_sdk::{CreateUserRequest, GetUsersResponse, LoginType, Role, User, UserStatus, UsersQuery};

use super::WebError;
use super::handlers::{Page, chrome, failure};
use super::pages::{self, Chrome, Failure, csrf, page, time, urlencode};
use super::session::{Form, Query, Session};
use crate::api::AppState;
use crate::domain::{Actor, Domain, Error};

/// Users per page of the list.
const PAGE: i64 = 100;

/// 404 unless the actor may read every user.
fn users_only(domain: &Domain, actor: &Actor) -> Result<(), WebError> {
    if domain.may_see_all_users(actor) { Ok(()) } else { Err(WebError::not_found()) }
}

/// The list's filters, as the CLI takes them.
#[derive(Deserialize, Default)]
pub struct Filter {
    /// `--search`: words match username, email or name; also `login_type:`, `status:`, `role:`.
    #[serde(default)]
    q: String,
    /// `--include-system`.
    #[serde(default)]
    include_system: bool,
    #[serde(default)]
    offset: i64,
}

pub async fn users(State(state): State<AppState>, session: Session, Query(filter): Query<Filter>) -> Page {
    users_only(&state.domain, &session.actor)?;
    Ok(render(&state.domain, &session, &filter, None).await?.into_response())
}

async fn render(
    domain: &Domain,
    session: &Session,
    filter: &Filter,
    create: Option<(&CreateForm, &Failure)>,
) -> Result<Html<String>, WebError> {
    let query = UsersQuery {
        q: Some(filter.q.clone()).filter(|q| !q.is_empty()),
        include_system: filter.include_system,
        limit: Some(PAGE),
        offset: Some(filter.offset),
    };
    let listed = domain.list_users(&session.actor, query).await?;
    let chrome = chrome(domain, session).await?;
    let view = View {
        filter,
        listed: &listed,
        me: &session.actor.user.username,
        may_manage: domain.may_manage_users(&session.actor),
        create,
    };
    Ok(markup(&chrome, &view))
}

/// The create form's fields (checkboxes are absent when unchecked).
#[derive(Deserialize, Default)]
pub struct CreateForm {
    username: String,
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_type: LoginType,
    #[serde(default)]
    owner: bool,
    #[serde(default)]
    template_admin: bool,
}

/// Roles beyond `member`, from a form's checkboxes.
fn roles(owner: bool, template_admin: bool) -> Vec<Role> {
    [(owner, Role::Owner), (template_admin, Role::TemplateAdmin)]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| r)
        .collect()
}

pub async fn create_user(State(state): State<AppState>, form: Form<CreateForm>) -> Page {
    let Form { session, fields } = form;
    let domain = &state.domain;
    users_only(domain, &session.actor)?;
    let request = CreateUserRequest {
        username: fields.username.clone(),
        email: fields.email.clone(),
        name: fields.name.clone(),
        password: Some(fields.password.clone()).filter(|p| !p.is_empty()),
        login_type: fields.login_type,
        roles: roles(fields.owner, fields.template_admin),
        status: UserStatus::Active,
    };
    match domain.create_user(&session.actor, request).await {
        Ok(_) => Ok(Redirect::to("/users").into_response()),
        // What was typed comes back with what is wrong with it.
        Err(err @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let status = if matches!(err, Error::Invalid(_)) { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
            let failed = failure(err);
            let page = render(domain, &session, &Filter::default(), Some((&fields, &failed))).await?;
            Ok((status, page).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: UserStatus,
}

pub async fn set_status(State(state): State<AppState>, Path(user): Path<String>, form: Form<StatusForm>) -> Page {
    users_only(&state.domain, &form.session.actor)?;
    state.domain.set_user_status(&form.session.actor, &user, form.fields.status).await?;
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
pub struct RolesForm {
    #[serde(default)]
    owner: bool,
    #[serde(default)]
    template_admin: bool,
}

pub async fn set_roles(State(state): State<AppState>, Path(user): Path<String>, form: Form<RolesForm>) -> Page {
    users_only(&state.domain, &form.session.actor)?;
    let roles = roles(form.fields.owner, form.fields.template_admin);
    state.domain.set_user_roles(&form.session.actor, &user, roles).await?;
    Ok(Redirect::to("/users").into_response())
}

struct View<'a> {
    filter: &'a Filter,
    listed: &'a GetUsersResponse,
    me: &'a str,
    may_manage: bool,
    /// A create form that failed: what was typed, and why.
    create: Option<(&'a CreateForm, &'a Failure)>,
}

/// The list's URL at `offset`, keeping its filters.
fn at_offset(filter: &Filter, offset: i64) -> String {
    let system = if filter.include_system { "&include_system=true" } else { "" };
    format!("/users?q={}{system}&offset={offset}", urlencode(&filter.q))
}

/// Whether the person may be changed from this page: not oneself, not a system user.
fn changeable(view: &View<'_>, user: &User) -> bool {
    view.may_manage && user.username != view.me && !user.is_system
}

fn markup(chrome: &Chrome, view: &View<'_>) -> Html<String> {
    let (filter, listed) = (view.filter, view.listed);
    let shown = listed.users.len() as i64;
    let (typed, failed) = match view.create {
        Some((typed, failed)) => (Some(typed), Some(failed)),
        None => (None, None),
    };
    page(
        "Users",
        Some(chrome),
        html! {
            h1 { "Users" }
            form #filter.inline method="get" action="/users" {
                label { "Search " input name="q" value=(filter.q) size="28" placeholder="alice status:active role:owner"; }
                label.choice { input type="checkbox" name="include_system" value="true" checked[filter.include_system]; " system users" }
                button type="submit" { "Filter" }
            }
            p.hint {
                "Words match username, email or name; " code { "status:active|suspended" } ", "
                code { "role:owner|template-admin|member" } " and " code { "login_type:password|none" } " filter, as "
                code { "warmspace users list --search" } " does."
            }
            p #count {
                @if shown == 0 { "No user matches." } @else {
                    "Users " (filter.offset + 1) "–" (filter.offset + shown) " of " (listed.count) "."
                }
                @if filter.offset > 0 { " " a href=(at_offset(filter, (filter.offset - PAGE).max(0))) { "Previous" } }
                @if filter.offset + shown < listed.count { " " a href=(at_offset(filter, filter.offset + PAGE)) { "Next" } }
            }
            div.scroll {
                table #users {
                    thead { tr {
                        th { "Username" } th { "Name" } th { "Email" } th { "Login" } th { "Roles" } th { "Status" }
                        th { "Last seen" } @if view.may_manage { th { "Change" } }
                    } }
                    tbody {
                        @for u in &listed.users {
                            @let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
                            tr id={ "user-" (u.username) } {
                                td { strong { (u.username) } @if u.is_system { " " small { "(system)" } } }
                                td { (u.name) }
                                td { (u.email) }
                                td { (u.login_type) }
                                td data-field="roles" { (roles.join(", ")) }
                                td data-field="status" { (u.status) }
                                td { (u.last_seen_at.map(time).unwrap_or_else(|| "never".into())) }
                                @if view.may_manage {
                                    td { div.actions {
                                        @if changeable(view, u) {
                                            form.roles.inline method="post" action={ "/users/" (u.id) "/roles" } {
                                                (csrf(&chrome.csrf))
                                                label.choice { input type="checkbox" name="owner" value="true" checked[u.roles.contains(&Role::Owner)]; " owner" }
                                                label.choice { input type="checkbox" name="template_admin" value="true" checked[u.roles.contains(&Role::TemplateAdmin)]; " template admin" }
                                                button.secondary type="submit" { "Save roles" }
                                            }
                                            @let suspended = u.status == UserStatus::Suspended;
                                            form.status.inline method="post" action={ "/users/" (u.id) "/status" } {
                                                (csrf(&chrome.csrf))
                                                input type="hidden" name="status" value=(if suspended { "active" } else { "suspended" });
                                                button type="submit" { (if suspended { "Activate" } else { "Suspend" }) }
                                            }
                                        }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
            @if view.may_manage {
                h2 { "New user" }
                (pages::failure(failed))
                form #create-user.stack method="post" action="/users" {
                    (csrf(&chrome.csrf))
                    label { "Username" input #new-username name="username" value=[typed.map(|t| &t.username)] required; }
                    label { "Email" input #new-email type="email" name="email" value=[typed.map(|t| &t.email)] required; }
                    label { "Name (optional)" input #new-name name="name" value=[typed.map(|t| &t.name)]; }
                    label { "Password" input #new-password type="password" name="password"; }
                    label { "Login"
                        select #new-login-type name="login_type" {
                            option value="password" selected[typed.is_none_or(|t| t.login_type == LoginType::Password)] { "password" }
                            option value="none" selected[typed.is_some_and(|t| t.login_type == LoginType::None)] { "none (API tokens only; no password)" }
                        }
                    }
                    fieldset {
                        legend { "Roles beyond member" }
                        label.choice { input type="checkbox" name="owner" value="true" checked[typed.is_some_and(|t| t.owner)]; " owner" }
                        label.choice { input type="checkbox" name="template_admin" value="true" checked[typed.is_some_and(|t| t.template_admin)]; " template admin" }
                    }
                    button type="submit" { "Create user" }
                }
            }
        },
    )
}
