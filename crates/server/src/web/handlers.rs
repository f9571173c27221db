//! The pages: each extracts its input, calls the domain layer as the API's
//! handlers do, and renders.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;
use warmspace_sdk::{CreateFirstUserRequest, LoginWithPasswordRequest, NotificationsQuery};

use super::WebError;
use super::pages::{self, Chrome, Failure};
use super::session::{self, Form, PreSessionForm, Query, Session};
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

/// Where to go once signed in (a page of this server, such as a workspace app).
#[derive(Deserialize)]
pub struct Then {
    #[serde(default)]
    then: Option<String>,
}

impl Then {
    /// The page asked for, if it is one of this server's (a path, never
    /// another site's address).
    fn accepted(&self) -> Option<&str> {
        self.then.as_deref().filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
    }

    /// Where to go: the page asked for, else the workspaces.
    fn path(&self) -> &str {
        self.accepted().unwrap_or("/workspaces")
    }
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(then): Query<Then>) -> Page {
    if !state.domain.first_user_exists().await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let (token, cookie) = session::pre_session_csrf(&state, &headers);
    Ok(with_cookie(pages::login(&token, "", then.accepted(), None).into_response(), cookie))
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(flatten)]
    then: Then,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    PreSessionForm(form): PreSessionForm<LoginForm>,
) -> Page {
    let email = form.email.clone();
    match state.domain.login(LoginWithPasswordRequest { email: form.email, password: form.password }).await {
        Ok(session) => Ok(session::signed_in(&state, &session.session_token, form.then.path())),
        Err(err @ (Error::Unauthenticated { .. } | Error::Invalid(_))) => {
            let status =
                if matches!(err, Error::Invalid(_)) { StatusCode::BAD_REQUEST } else { StatusCode::UNAUTHORIZED };
            let (token, _) = session::pre_session_csrf(&state, &headers);
            Ok((status, pages::login(&token, &email, form.then.accepted(), Some(&failure(err)))).into_response())
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

/// An id from the path: a malformed one names nothing, as an unknown one does not.
pub(super) fn path_id(id: &str) -> Result<Uuid, WebError> {
    id.parse().map_err(|_| WebError::not_found())
}

/// A UUID from a form or query field, or a 400 naming the field.
pub(super) fn parse_id(field: &str, value: &str) -> Result<Uuid, WebError> {
    value.parse().map_err(|_| WebError::new(StatusCode::BAD_REQUEST, format!("Invalid {field}: expected a UUID.")))
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
