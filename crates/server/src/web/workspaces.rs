//! The workspace pages: the list, one workspace (builds with live logs,
//! agents, resources, schedule), creating one (template → preset →
//! parameters), and start / stop / update / delete behind a confirmation.
//! Like the API's handlers, each calls one domain function to act (which
//! checks permission) and reads what it shows through the domain.

mod pages;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warmspace_sdk::{
    BuildParameter, CreateWorkspaceBuildRequest, CreateWorkspaceRequest, ParameterType, TemplateVersionParameter,
    Workspace, WorkspaceStatus, WorkspacesQuery,
};
use warmspace_states::{BuildReason, JobStatus, Transition};
use warmspace_store::claims::CreationRecord;

use super::WebError;
use super::handlers::{NoFields, Page, chrome, failure, parse_id, path_id};
use super::pages::Failure;
use super::session::{Form, Session};
use crate::api::AppState;
use crate::domain::{Actor, Domain, Error, LogFollow};

/// How a workspace was made, in words: "claimed from the pool in 12 ms",
/// "built cold in 2 min (no eligible)", ….
pub struct Made {
    pub text: String,
    /// Claimed from a pool.
    pub claimed: bool,
}

fn made(w: &Workspace, record: Option<&CreationRecord>) -> Made {
    let text = match record {
        Some(r) if r.hit => {
            let ms = (r.latency_ms.round() as i64).max(1);
            return Made { text: format!("claimed from the pool in {ms} ms"), claimed: true };
        }
        None if w.owner_name == "prebuilds" => "a prebuild, waiting in its pool".into(),
        // A miss says why no prebuild was claimed; a template without
        // presets records none, its workspaces being built cold all the same.
        _ => {
            let reason = record.and_then(|r| r.reason);
            let why = reason.map(|reason| format!(" ({})", reason.as_str().replace('_', " "))).unwrap_or_default();
            let build = &w.latest_build;
            let first = build.build_number == 1 && build.reason == BuildReason::Initiator;
            match (first, build.job.status, build.job.completed_at) {
                (true, JobStatus::Succeeded, Some(done)) => {
                    let took = (done - build.job.created_at).to_std().unwrap_or_default();
                    format!("built cold in {}{why}", short(took))
                }
                (true, JobStatus::Pending | JobStatus::Running, _) => format!("building cold{why}"),
                _ => format!("built cold{why}"),
            }
        }
    };
    Made { text, claimed: false }
}

/// A duration as people say it: 850 ms, 12 s, 2 min.
fn short(d: Duration) -> String {
    match d.as_millis() {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{} s", ms / 1000),
        ms => format!("{} min", ms / 60_000),
    }
}

/// Each workspace with how it was made (one read for all of them).
async fn with_made(domain: &Domain, list: Vec<Workspace>) -> Result<Vec<(Workspace, Made)>, WebError> {
    let records = domain.creations(&list).await?;
    Ok(list
        .into_iter()
        .map(|w| {
            let made = made(&w, records.get(&w.id));
            (w, made)
        })
        .collect())
}

pub async fn list(State(state): State<AppState>, session: Session) -> Page {
    let domain = &state.domain;
    let chrome = chrome(domain, &session).await?;
    let list = domain.list_workspaces(&session.actor, WorkspacesQuery::default()).await?.workspaces;
    let lines = with_made(domain, list).await?;
    Ok(pages::workspaces(&chrome, &lines).into_response())
}

pub async fn show(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Page {
    let domain = &state.domain;
    let id = path_id(&id)?;
    let workspace = domain.workspace(&session.actor, id).await?;
    let builds = domain.builds(&session.actor, id).await?;
    let mut agent_logs = Vec::with_capacity(workspace.agents.len());
    for agent in &workspace.agents {
        agent_logs.push(domain.agent_logs(&session.actor, agent.id).await?);
    }
    let apps = domain.workspace_apps(&session.actor, id).await?;
    let chrome = chrome(domain, &session).await?;
    let (workspace, made) = with_made(domain, vec![workspace]).await?.remove(0);
    let shown =
        pages::Shown { workspace: &workspace, made: &made, builds: &builds, agent_logs: &agent_logs, apps: &apps };
    Ok(pages::workspace(&chrome, &shown).into_response())
}

// Start, stop, update and delete.

/// What the dashboard offers to do to a workspace, each behind a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Start, Action::Stop, Action::Update, Action::Delete];

    fn parse(path: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.path() == path)
    }

    /// Its path segment after the workspace's.
    pub fn path(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "Start",
            Action::Stop => "Stop",
            Action::Update => "Update",
            Action::Delete => "Delete",
        }
    }

    /// What confirming it does, for the person asked.
    pub fn consequence(self) -> &'static str {
        match self {
            Action::Start => "Its template's start runs again, with the values its parameters have now.",
            Action::Stop => "Its template's stop runs; it can be started again later.",
            Action::Update => {
                "It is built again on its template's active version, with the values its parameters have now."
            }
            Action::Delete => "Its template's delete runs and its resources are gone. This cannot be undone.",
        }
    }

    /// Whether the workspace, as it is now, can take it (the domain decides
    /// for good; this keeps pointless buttons off the page).
    pub fn offered(self, w: &Workspace) -> bool {
        if w.status.is_transitioning() || w.status == WorkspaceStatus::Deleted {
            return false;
        }
        match self {
            Action::Start => w.status != WorkspaceStatus::Running,
            Action::Stop => w.status != WorkspaceStatus::Stopped,
            Action::Update => w.outdated,
            Action::Delete => true,
        }
    }
}

fn action(path: &str) -> Result<Action, WebError> {
    Action::parse(path).ok_or_else(WebError::not_found)
}

/// The confirmation page: what the action links lead to when the page's
/// script does not open its dialog instead.
pub async fn confirm(State(state): State<AppState>, session: Session, Path((id, act)): Path<(String, String)>) -> Page {
    let (id, act) = (path_id(&id)?, action(&act)?);
    let workspace = state.domain.workspace(&session.actor, id).await?;
    let chrome = chrome(&state.domain, &session).await?;
    Ok(pages::confirm(&chrome, &workspace, act).into_response())
}

/// Carries out a confirmed action with the domain function the API (or, for
/// update, the CLI's) calls, then shows the workspace following its build.
pub async fn act(State(state): State<AppState>, Path((id, act)): Path<(String, String)>, form: Form<NoFields>) -> Page {
    let (id, act) = (path_id(&id)?, action(&act)?);
    let (domain, actor) = (&state.domain, &form.session.actor);
    let build = |transition| CreateWorkspaceBuildRequest {
        transition,
        template_version_id: None,
        rich_parameter_values: Vec::new(),
    };
    match act {
        Action::Start => domain.create_build(actor, id, build(Transition::Start)).await?,
        Action::Stop => domain.create_build(actor, id, build(Transition::Stop)).await?,
        Action::Delete => domain.create_build(actor, id, build(Transition::Delete)).await?,
        Action::Update => domain.update_workspace(actor, id).await?,
    };
    Ok(Redirect::to(&format!("/workspaces/{id}")).into_response())
}

// The workspace's own schedule.

/// A duration as typed into a form ("8h", "90m"); empty (or `manual`) for none.
fn duration_field(field: &str, text: &str) -> Result<Option<i64>, WebError> {
    let text = text.trim();
    if text.is_empty() || text == "manual" {
        return Ok(None);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| Error::field(field, format!("{text:?} is not a duration such as 8h or 90m ({e})")))?;
    Ok(Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

fn back_to(id: Uuid) -> Page {
    Ok(Redirect::to(&format!("/workspaces/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct TtlForm {
    ttl: String,
}

/// How long the workspace runs after each start (`warmspace schedule stop`).
pub async fn set_ttl(State(state): State<AppState>, Path(id): Path<String>, form: Form<TtlForm>) -> Page {
    let id = path_id(&id)?;
    let ttl_ms = duration_field("ttl", &form.fields.ttl)?;
    state.domain.update_workspace_ttl(&form.session.actor, id, ttl_ms).await?;
    back_to(id)
}

#[derive(Deserialize)]
pub struct AutostartForm {
    schedule: String,
}

/// When the workspace starts by itself (`warmspace schedule start`).
pub async fn set_autostart(State(state): State<AppState>, Path(id): Path<String>, form: Form<AutostartForm>) -> Page {
    let id = path_id(&id)?;
    let schedule = Some(form.fields.schedule.trim().to_owned()).filter(|s| !s.is_empty() && s != "manual");
    state.domain.update_workspace_autostart(&form.session.actor, id, schedule).await?;
    back_to(id)
}

#[derive(Deserialize)]
pub struct ExtendForm {
    duration: String,
}

/// Moves a running workspace's stop (`warmspace schedule extend`).
pub async fn extend(State(state): State<AppState>, Path(id): Path<String>, form: Form<ExtendForm>) -> Page {
    let id = path_id(&id)?;
    let Some(by_ms) = duration_field("duration", &form.fields.duration)? else {
        return Err(Error::field("duration", "is required: how long from now, such as 2h").into());
    };
    state.domain.extend_workspace(&form.session.actor, id, by_ms).await?;
    back_to(id)
}

/// Wakes a dormant workspace so that it can start again (`warmspace schedule wake`).
pub async fn wake(State(state): State<AppState>, Path(id): Path<String>, form: Form<NoFields>) -> Page {
    let id = path_id(&id)?;
    state.domain.set_workspace_dormant(&form.session.actor, id, false).await?;
    back_to(id)
}

// A build's log, live.

/// The `end` event of a followed build: how the build ended, and, when it
/// is still the workspace's latest, what the workspace's page shows of it.
#[derive(Serialize, Default)]
struct Ended {
    /// The build's status, as its row shows it.
    build_status: Option<WorkspaceStatus>,
    error: Option<String>,
    /// The build is the workspace's latest: its status is the workspace's.
    latest: bool,
    made: Option<String>,
    claimed: bool,
    /// The actions the workspace now offers (their paths), when the build is its latest.
    actions: Vec<&'static str>,
}

async fn ended(domain: &Domain, actor: &Actor, build_id: Uuid) -> Result<Ended, WebError> {
    let build = domain.build(actor, build_id).await?;
    let workspace = domain.workspace(actor, build.workspace_id).await?;
    let latest = workspace.latest_build.id == build.id;
    let actions = Action::ALL.into_iter().filter(|a| latest && a.offered(&workspace)).map(Action::path).collect();
    let (_, made) = with_made(domain, vec![workspace]).await?.remove(0);
    Ok(Ended {
        build_status: Some(build.status),
        error: build.job.error,
        latest,
        made: Some(made.text),
        claimed: made.claimed,
        actions,
    })
}

/// Server-Sent Events: a build's log as `log` events (the API's log lines,
/// each with its id, so that a reconnecting `EventSource` resumes after the
/// last one it got), then one `end` event ([`Ended`]) when the build has
/// finished. The lines come from the same domain stream as the API's
/// `GET /api/v2/workspacebuilds/{build}/logs?follow=true`.
pub async fn build_log(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let id = path_id(&id)?;
    let after =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let follow = state.domain.follow_build_log(&session.actor, id, after).await?;
    let (domain, actor) = (state.domain.clone(), session.actor);
    let events = follow.then(move |item| {
        let (domain, actor) = (domain.clone(), actor.clone());
        async move {
            match item {
                LogFollow::Line(line) => Event::default()
                    .event("log")
                    .id(line.id.to_string())
                    .json_data(line)
                    .expect("a log line serialises"),
                LogFollow::End(_) => {
                    let end = ended(&domain, &actor, id).await.unwrap_or_else(|err| {
                        tracing::warn!(build = %id, error = ?err, "cannot read how a followed build ended");
                        Ended::default()
                    });
                    Event::default().event("end").json_data(end).expect("an end serialises")
                }
            }
        }
    });
    Ok(crate::api::sse(&state, events))
}

// Creating one.

/// Template parameters travel in form fields named `p:<name>`.
const PARAMETER_FIELD: &str = "p:";

/// A parameter's value as a form field shows it: a `list(string)` value (a
/// JSON array) one item per line, others as they are.
fn shown_value(kind: ParameterType, value: &str) -> String {
    match (kind, serde_json::from_str::<Vec<String>>(value)) {
        (ParameterType::ListString, Ok(items)) => items.join("\n"),
        _ => value.to_owned(),
    }
}

/// A form field's value as the domain takes it: a `list(string)` field's
/// lines as a JSON array, others as they are.
fn sent_value(kind: ParameterType, field: &str) -> String {
    match kind {
        ParameterType::ListString => {
            let items: Vec<&str> = field.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            serde_json::to_string(&items).expect("strings serialise")
        }
        _ => field.to_owned(),
    }
}

/// What the create form shows: the choices it was last sent with, and why
/// they were refused.
#[derive(Default)]
pub struct Entered {
    pub name: String,
    /// `None`: the page chooses (a warm preset, else the default one).
    pub preset: Option<Option<Uuid>>,
    /// Fields by parameter name, as typed.
    pub values: BTreeMap<String, String>,
    pub failure: Option<Failure>,
}

async fn create_page(
    domain: &Domain,
    session: &Session,
    template_id: Uuid,
    entered: Entered,
    status: StatusCode,
) -> Page {
    let chrome = chrome(domain, session).await?;
    let template = domain.template(&session.actor, template_id).await?;
    let warm: BTreeMap<Uuid, u32> = domain.warm_presets(&session.actor, template.id).await?;
    let presets = domain
        .template_version_presets(&session.actor, template.active_version_id)
        .await?
        .into_iter()
        .map(|preset| pages::PresetChoice { warm: warm.get(&preset.id).copied(), preset })
        .collect::<Vec<_>>();
    let parameters = domain.template_version_parameters(&session.actor, template.active_version_id).await?;
    let form = pages::CreateForm { template: &template, presets: &presets, parameters: &parameters, entered: &entered };
    Ok((status, pages::create_form(&chrome, &form)).into_response())
}

pub async fn new(State(state): State<AppState>, session: Session, RawQuery(query): RawQuery) -> Page {
    let domain = &state.domain;
    let template = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "template")
        .map(|(_, v)| v.into_owned());
    let Some(template) = template else {
        let chrome = chrome(domain, &session).await?;
        let templates = domain.list_templates(&session.actor, None).await?;
        return Ok(pages::choose_template(&chrome, &templates).into_response());
    };
    create_page(domain, &session, parse_id("template", &template)?, Entered::default(), StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    template_id: String,
    name: String,
    #[serde(default)]
    preset_id: String,
    /// `p:<parameter>` fields (and the CSRF token, ignored here).
    #[serde(flatten)]
    fields: HashMap<String, String>,
}

/// Creates the workspace as the API would for `me`, then shows it following
/// its build. Refused values come back on the form, each beside its field.
pub async fn create(State(state): State<AppState>, form: Form<CreateForm>) -> Page {
    let Form { session, fields: form } = form;
    let domain = &state.domain;
    let template_id = parse_id("template_id", &form.template_id)?;
    let preset = match form.preset_id.as_str() {
        "" => None,
        id => Some(parse_id("preset_id", id)?),
    };
    let values: BTreeMap<String, String> = form
        .fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.strip_prefix(PARAMETER_FIELD)?.to_owned(), value)))
        .collect();
    // The version's parameter types say how each field's text is sent.
    let template = domain.template(&session.actor, template_id).await?;
    let kinds: HashMap<String, ParameterType> = domain
        .template_version_parameters(&session.actor, template.active_version_id)
        .await?
        .into_iter()
        .map(|p: TemplateVersionParameter| (p.name, p.kind))
        .collect();
    let rich_parameter_values = values
        .iter()
        .map(|(name, value)| BuildParameter {
            name: name.clone(),
            value: kinds.get(name).map_or_else(|| value.clone(), |kind| sent_value(*kind, value)),
        })
        .collect();
    let request = CreateWorkspaceRequest {
        template_id,
        // The active version: the one whose parameters the form showed, and whose pools can be claimed from.
        template_version_id: None,
        name: form.name.clone(),
        rich_parameter_values,
        template_version_preset_id: preset,
        ttl_ms: None,
        autostart_schedule: None,
    };
    match domain.create_workspace(&session.actor, "me", request).await {
        Ok(created) => Ok(Redirect::to(&format!("/workspaces/{}", created.workspace.id)).into_response()),
        Err(err @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let status = if matches!(err, Error::Invalid(_)) { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
            let entered = Entered { name: form.name, preset: Some(preset), values, failure: Some(failure(err)) };
            create_page(domain, &session, template_id, entered, status).await
        }
        Err(err) => Err(err.into()),
    }
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

    #[test]
    fn list_fields_are_one_item_per_line() {
        assert_eq!(sent_value(ParameterType::ListString, "a\r\n b \n\n"), r#"["a","b"]"#);
        assert_eq!(sent_value(ParameterType::ListString, ""), "[]");
        assert_eq!(shown_value(ParameterType::ListString, r#"["a","b"]"#), "a\nb");
        assert_eq!(sent_value(ParameterType::Number, " 4"), " 4", "other types are the domain's to judge");
        assert_eq!(shown_value(ParameterType::String, r#"["a"]"#), r#"["a"]"#);
    }

    #[test]
    fn durations_from_forms() {
        assert_eq!(duration_field("ttl", "2h").unwrap(), Some(7_200_000));
        assert_eq!(duration_field("ttl", " ").unwrap(), None);
        assert_eq!(duration_field("ttl", "manual").unwrap(), None);
        let refused = duration_field("ttl", "soon").unwrap_err();
        assert_eq!(refused.validations[0].field, "ttl");
    }
}
