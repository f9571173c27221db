//! The pages: each extracts its input, calls the domain layer as the API's
//! handlers do, and renders.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;
use warmspace_sdk::{
    CreateFirstUserRequest, CreateWorkspaceRequest, LoginWithPasswordRequest, NotificationsQuery, Workspace,
    WorkspacesQuery,
};
use warmspace_states::{BuildReason, JobStatus};
use warmspace_store::claims::CreationRecord;

use super::WebError;
use super::pages::{self, Chrome, Failure, PresetChoice, WorkspaceLine};
use super::session::{self, Form, PreSessionForm, Session};
use crate::api::{ApiError, AppState};
use crate::domain::{Domain, Error};

pub(super) type Page = Result<Response, WebError>;

/// The header of a signed-in page.
pub(super) async fn chrome(domain: &Domain, session: &Session) -> Result<Chrome, WebError> {
    let inbox = domain.inbox(&session.actor, NotificationsQuery { unread: true, limit: Some(1) }).await?;
    let pools = domain.may_see_pools(&session.actor);
    Ok(Chrome {
        username: session.actor.user.username.clone(),
        csrf: session.csrf.clone(),
        unread: inbox.unread_count,
        pools,
        provisioner: domain.may_see_provisioners(&session.actor),
        users: domain.may_see_all_users(&session.actor),
        all_workspaces: pools,
    })
}

pub(super) fn failure(err: Error) -> Failure {
    let api = ApiError::from(err);
    Failure { message: api.body.message, validations: api.body.validations }
}

fn with_cookie(mut response: Response, cookie: Option<axum::http::HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Page {
    if session::cookie(&headers, session::SESSION_COOKIE).is_some_and(|t| !t.is_empty()) {
        return Ok(Redirect::to("/workspaces").into_response());
    }
    let to = if state.domain.first_user_exists().await? { "/login" } else { "/setup" };
    Ok(Redirect::to(to).into_response())
}

// Signing in and out.

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    if !state.domain.first_user_exists().await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let (token, cookie) = session::pre_session_csrf(&state, &headers);
    Ok(with_cookie(pages::login(&token, "", None).into_response(), cookie))
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    PreSessionForm(form): PreSessionForm<LoginForm>,
) -> Page {
    let email = form.email.clone();
    match state.domain.login(LoginWithPasswordRequest { email: form.email, password: form.password }).await {
        Ok(session) => Ok(session::signed_in(&state, &session.session_token, "/workspaces")),
        Err(err @ (Error::Unauthenticated { .. } | Error::Invalid(_))) => {
            let status =
                if matches!(err, Error::Invalid(_)) { StatusCode::BAD_REQUEST } else { StatusCode::UNAUTHORIZED };
            let (token, _) = session::pre_session_csrf(&state, &headers);
            Ok((status, pages::login(&token, &email, Some(&failure(err)))).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn setup_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    if state.domain.first_user_exists().await? {
        return Ok(Redirect::to("/login").into_response());
    }
    let (token, cookie) = session::pre_session_csrf(&state, &headers);
    Ok(with_cookie(pages::setup(&token, "", "", None).into_response(), cookie))
}

#[derive(Deserialize)]
pub struct SetupForm {
    username: String,
    email: String,
    password: String,
}

pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    PreSessionForm(form): PreSessionForm<SetupForm>,
) -> Page {
    let (username, email, password) = (form.username.clone(), form.email.clone(), form.password.clone());
    let created = state
        .domain
        .create_first_user(CreateFirstUserRequest {
            username: form.username,
            email: form.email,
            password: form.password,
            name: String::new(),
        })
        .await;
    match created {
        Ok(_) => {
            let session = state.domain.login(LoginWithPasswordRequest { email, password }).await?;
            Ok(session::signed_in(&state, &session.session_token, "/workspaces"))
        }
        Err(err @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let status = if matches!(err, Error::Invalid(_)) { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
            let (token, _) = session::pre_session_csrf(&state, &headers);
            Ok((status, pages::setup(&token, &username, &email, Some(&failure(err)))).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn logout(State(state): State<AppState>, form: Form<NoFields>) -> Page {
    state.domain.logout(&form.session.actor).await?;
    Ok(session::signed_out(&state, "/login"))
}

// Workspaces.

/// How a workspace was made, in words.
fn made(w: &Workspace, record: Option<&CreationRecord>) -> (String, bool) {
    match record {
        Some(r) if r.hit => (format!("claimed from the pool in {} ms", (r.latency_ms.round() as i64).max(1)), true),
        Some(r) => {
            let why = r.reason.map(|reason| format!(" ({})", reason.as_str().replace('_', " "))).unwrap_or_default();
            let build = &w.latest_build;
            let first = build.build_number == 1 && build.reason == BuildReason::Initiator;
            match (first, build.job.status, build.job.completed_at) {
                (true, JobStatus::Succeeded, Some(done)) => {
                    let took = (done - build.job.created_at).to_std().unwrap_or_default();
                    (format!("built cold in {}{why}", short(took)), false)
                }
                (true, JobStatus::Pending | JobStatus::Running, _) => (format!("building cold{why}"), false),
                _ => (format!("built cold{why}"), false),
            }
        }
        None if w.owner_name == "prebuilds" => ("a prebuild, waiting in its pool".into(), false),
        None => ("—".into(), false),
    }
}

/// A duration as people say it: 850 ms, 12 s, 2 min.
fn short(d: Duration) -> String {
    match d.as_millis() {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{} s", ms / 1000),
        ms => format!("{} min", ms / 60_000),
    }
}

/// The names of the presets these workspaces were made from.
async fn preset_names(domain: &Domain, session: &Session, list: &[Workspace]) -> HashMap<Uuid, String> {
    let versions: std::collections::BTreeSet<Uuid> =
        list.iter().filter(|w| w.preset_id.is_some()).map(|w| w.latest_build.template_version_id).collect();
    let mut names = HashMap::new();
    for version in versions {
        // A version the person may not read leaves its presets unnamed.
        if let Ok(presets) = domain.template_version_presets(&session.actor, version).await {
            names.extend(presets.into_iter().map(|p| (p.id, p.name)));
        }
    }
    names
}

async fn lines(domain: &Domain, session: &Session, list: &[Workspace]) -> Result<Vec<WorkspaceLine>, WebError> {
    let records = domain.creations(list).await?;
    let presets = preset_names(domain, session, list).await;
    Ok(list
        .iter()
        .map(|w| {
            let (made, claimed) = made(w, records.get(&w.id));
            WorkspaceLine {
                id: w.id,
                name: w.name.clone(),
                owner: w.owner_name.clone(),
                template: w.template_name.clone(),
                preset: w.preset_id.map(|id| presets.get(&id).cloned().unwrap_or_else(|| id.to_string())),
                status: w.status.to_string(),
                made,
                claimed,
            }
        })
        .collect())
}

pub async fn workspaces(State(state): State<AppState>, session: Session) -> Page {
    let domain = &state.domain;
    let chrome = chrome(domain, &session).await?;
    let list = domain.list_workspaces(&session.actor, WorkspacesQuery::default()).await?.workspaces;
    let lines = lines(domain, &session, &list).await?;
    Ok(pages::workspaces(&chrome, &lines).into_response())
}

pub(super) fn parse_id(field: &str, value: &str) -> Result<Uuid, WebError> {
    value.parse().map_err(|_| WebError::new(StatusCode::BAD_REQUEST, format!("Invalid {field}: expected a UUID.")))
}

pub async fn workspace(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Page {
    let domain = &state.domain;
    let id = id.parse::<Uuid>().map_err(|_| WebError::not_found())?;
    let workspace = domain.workspace(&session.actor, id).await?;
    let builds = domain.builds(&session.actor, id).await?;
    let chrome = chrome(domain, &session).await?;
    let line = lines(domain, &session, std::slice::from_ref(&workspace)).await?.remove(0);
    Ok(pages::workspace(&chrome, &line, &builds).into_response())
}

pub async fn new_workspace(State(state): State<AppState>, session: Session, RawQuery(query): RawQuery) -> Page {
    let domain = &state.domain;
    let chrome = chrome(domain, &session).await?;
    let template = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "template")
        .map(|(_, v)| v.into_owned());
    let Some(template) = template else {
        let templates = domain.list_templates(&session.actor, None).await?;
        return Ok(pages::choose_template(&chrome, &templates).into_response());
    };
    let template = domain.template(&session.actor, parse_id("template", &template)?).await?;
    let warm: BTreeMap<Uuid, u32> = domain.warm_presets(&session.actor, template.id).await?;
    let presets = domain
        .template_version_presets(&session.actor, template.active_version_id)
        .await?
        .into_iter()
        .map(|preset| PresetChoice { warm: warm.get(&preset.id).copied(), preset })
        .collect::<Vec<_>>();
    Ok(pages::create_form(&chrome, &template, &presets).into_response())
}

#[derive(Deserialize)]
pub struct CreateForm {
    template_id: String,
    name: String,
    #[serde(default)]
    preset_id: String,
}

pub async fn create_workspace(State(state): State<AppState>, form: Form<CreateForm>) -> Page {
    let Form { session, fields } = form;
    let template_id = parse_id("template_id", &fields.template_id)?;
    let preset = match fields.preset_id.as_str() {
        "" => None,
        id => Some(parse_id("preset_id", id)?),
    };
    let created = state
        .domain
        .create_workspace(
            &session.actor,
            "me",
            CreateWorkspaceRequest {
                template_id,
                template_version_id: None,
                name: fields.name,
                rich_parameter_values: Vec::new(),
                template_version_preset_id: preset,
                ttl_ms: None,
                autostart_schedule: None,
            },
        )
        .await?;
    Ok(Redirect::to(&format!("/workspaces/{}", created.workspace.id)).into_response())
}

// Notifications.

pub async fn notifications(State(state): State<AppState>, session: Session) -> Page {
    let domain = &state.domain;
    let inbox = domain.inbox(&session.actor, NotificationsQuery { unread: false, limit: Some(100) }).await?;
    let mut chrome = chrome(domain, &session).await?;
    chrome.unread = inbox.unread_count;
    Ok(pages::notifications(&chrome, &inbox.notifications).into_response())
}

pub async fn read_all(State(state): State<AppState>, form: Form<NoFields>) -> Page {
    state.domain.mark_all_notifications_read(&form.session.actor).await?;
    Ok(Redirect::to("/notifications").into_response())
}

/// Server-Sent Events: an `unread` event (`{"unread": n}`) when the stream
/// opens and whenever a notification arrives.
pub async fn notification_events(State(state): State<AppState>, session: Session) -> Page {
    let domain = state.domain.clone();
    let arrivals = domain.watch_inbox(&session.actor).await?;
    let actor = session.actor;
    let counts = futures::stream::once(async {}).chain(arrivals.map(|_| ())).then(move |()| {
        let (domain, actor) = (domain.clone(), actor.clone());
        async move {
            let inbox = domain.inbox(&actor, NotificationsQuery { unread: true, limit: Some(1) }).await;
            inbox.map(|inbox| inbox.unread_count)
        }
    });
    let events = counts
        .take_while(|count| std::future::ready(count.is_ok()))
        .filter_map(|count| std::future::ready(count.ok()))
        .map(|unread| Event::default().event("unread").data(format!("{{\"unread\":{unread}}}")));
    Ok(crate::api::sse(&state, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations() {
        assert_eq!(short(Duration::from_millis(850)), "850 ms");
        assert_eq!(short(Duration::from_secs(12)), "12 s");
        assert_eq!(short(Duration::from_secs(150)), "2 min");
    }
}
