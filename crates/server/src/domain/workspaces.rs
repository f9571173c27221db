//! Workspaces and their builds: creating one (claiming a prebuild when a
//! warm pool applies, else a cold build, and recording which it was),
//! reading and listing them, queueing and canceling builds, and their
//! lifecycle settings.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::Stream;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource, Visibility};
use warmspace_prebuilds::claim::{PresetMatch, PresetValues, match_preset};
use warmspace_prebuilds::schedule::Schedule;
use warmspace_sdk::{
    BuildParameter, CreateWorkspaceBuildRequest, CreateWorkspaceRequest, ProvisionerJobLog, Workspace, WorkspaceBuild,
    WorkspacesQuery, WorkspacesResponse,
};
use warmspace_states::{BuildReason, ClaimMode, JobStatus, MissReason, Transition, WorkspaceStatus};
use warmspace_store::claims::{ClaimMiss, ClaimRequest};
use warmspace_store::workspaces::{BuildRow, NewBuild, NewWorkspace, PREBUILDS_USER_ID, WorkspaceFilter, WorkspaceRow};
use warmspace_store::{CreateContext, PresetRow, StoreError};
use warmspace_template::{Parameter, ParameterInput, resolve_parameters};

use super::jobs::LogFollow;
use super::lifecycle::{requirement_of, start_deadlines, zone_of};
use super::templates::{MAX_TTL_MS, usable};
use super::users::invalid;
use super::{Actor, Domain, Error, Found, Result, page, valid_slug};
use crate::metrics::{CreationType, preset_labels};

/// A created workspace, and whether it was a warm prebuild handed over.
#[derive(Debug, Clone)]
pub struct Created {
    pub workspace: Workspace,
    pub claimed: bool,
}

impl Domain {
    /// Creates a workspace for `owner`. When the request names a preset with
    /// a warm pool — or names none but repeats every value of one — an
    /// eligible prebuild is claimed: handed over in one transaction, then
    /// personalised by a claim build (or, for `claim = "reinit"`, by its
    /// agent). Otherwise, or when the pool is empty, a cold first build is
    /// queued, and the miss is recorded with it, saying why.
    ///
    /// A claim's hand-over time is measured once, from here (the request's
    /// arrival) to the claim record's write, the claim statement's last step
    /// before its commit; the record keeps it, the response carries it, the
    /// log says it.
    ///
    /// A claim request costs a fixed few statements whatever the pool's
    /// size: one read of everything the request decides from, the claim's
    /// one statement (whose result is the response: nothing is read again),
    /// and the pool's refill trigger.
    pub async fn create_workspace(&self, actor: &Actor, owner: &str, req: CreateWorkspaceRequest) -> Result<Created> {
        let arrived = Instant::now();
        let owner = self.find_user(actor, owner).await?;
        actor.authorize(Action::Create, Object { resource: Resource::Workspace, owner: Some(owner.id) })?;
        if !valid_slug(&req.name, 64) {
            return Err(Error::field(
                "name",
                "must be 1 to 64 lowercase letters or digits, with single hyphens between them (no leading or trailing hyphen)",
            ));
        }
        check_ttl("ttl_ms", req.ttl_ms)?;
        // The template, the version, its presets and parameters: one read.
        let CreateContext { template, organization_name, version, presets, parameters } =
            match self.store.create_context(req.template_id, req.template_version_id).await {
                Err(StoreError::NotFound) => return Err(Error::field("template_id", "no such template")),
                context => context?,
            };
        if req.autostart_schedule.is_some() && !template.allow_user_autostart {
            return Err(Error::field("autostart_schedule", "the template does not allow autostart"));
        }
        let autostart_schedule =
            req.autostart_schedule.as_deref().map(|s| check_autostart("autostart_schedule", s)).transpose()?;
        let version = usable(&template, version)?;
        let version_id = version.id;
        let requested = requested_values(&req.rich_parameter_values)?;

        let matched = preset_of(req.template_version_preset_id, &presets, &parameters, &requested)?;
        let preset = match matched {
            PresetMatch::Matched(id) => presets.iter().find(|p| p.id == id),
            _ => None,
        };
        let values = resolve_parameters(&ParameterInput {
            parameters: &parameters,
            previous: None,
            preset: preset.map(|p| (p.name.as_str(), &p.parameters.0)),
            requested: &requested,
            transition: Transition::Start,
        })
        .map_err(parameter_problems)?;
        let ttl_ms = req.ttl_ms.or((template.default_ttl_ms > 0).then_some(template.default_ttl_ms));
        // From now: for a claim, the template's rules apply from the claim on.
        let (deadline, max_deadline) =
            start_deadlines(self.now(), ttl_ms, &requirement_of(&template), zone_of(&owner.timezone));

        // Claim when a warm pool applies; else say why not.
        let pooled = |p: &PresetRow| p.desired_instances.is_some() && version_id == template.active_version_id;
        let miss = match (preset, matched) {
            (Some(preset), _) if pooled(preset) => {
                let reinit = version.claim_mode == Some(ClaimMode::Reinit);
                let claim = ClaimRequest {
                    preset_id: preset.id,
                    template_id: template.id,
                    user_id: owner.id,
                    name: req.name.clone(),
                    ttl_ms,
                    autostart_schedule: autostart_schedule.clone(),
                    deadline,
                    max_deadline,
                    parameters: values.clone(),
                    reinit,
                    arrived,
                };
                match self.store.claim_prebuild(claim).await? {
                    Some(claimed) => {
                        // Committed: tell the prebuild's agents (on every replica) and refill the pool.
                        self.events.claimed(claimed.announcements(), preset.id).await;
                        let hand_over_ms = claimed.hand_over_ms;
                        let labels = preset_labels(&organization_name, &template.name, &preset.name);
                        self.metrics.observe_claim(labels.clone(), hand_over_ms / 1000.0);
                        if reinit {
                            // Its build was done in the hand-over itself: no job
                            // will end to observe the creation by.
                            self.metrics.observe_creation(labels, CreationType::Claim, hand_over_ms / 1000.0);
                        }
                        // Shown as the claim's statement returned it: nothing is read again.
                        let mut workspace = self.claimed_view(claimed);
                        workspace.claim_hand_over_ms = Some(hand_over_ms);
                        tracing::info!(
                            claim = "hit", template = %template.name, preset = %preset.name, hand_over_ms,
                            workspace = %workspace.name, owner = %workspace.owner_name, by = %actor.user.username,
                            "prebuild claimed"
                        );
                        return Ok(Created { workspace, claimed: true });
                    }
                    None => Some((Some(preset.id), self.miss_reason(preset.id).await?)),
                }
            }
            (Some(preset), _) => Some((Some(preset.id), MissReason::NoPool)),
            (None, PresetMatch::Mismatch(id)) => Some((Some(id), MissReason::ParameterMismatch)),
            (None, _) => (!presets.is_empty()).then_some((None, MissReason::NoPreset)),
        };
        if let Some((_, reason)) = &miss {
            tracing::info!(
                claim = "miss", template = %template.name, preset = preset.map_or("", |p| p.name.as_str()),
                reason = reason.as_str(), owner = %owner.username, by = %actor.user.username,
                "no prebuild to claim; building cold"
            );
        }

        let workspace = self
            .store
            .create_workspace(&NewWorkspace {
                organization_id: template.organization_id,
                owner_id: owner.id,
                template_id: template.id,
                name: req.name,
                ttl_ms,
                autostart_schedule,
                build: NewBuild {
                    transition: Transition::Start,
                    initiator_id: actor.user.id,
                    reason: BuildReason::Initiator,
                    template_version_id: version_id,
                    preset_id: preset.map(|p| p.id),
                    parameters: values,
                    deadline,
                    max_deadline,
                },
                miss: miss.map(|(preset_id, reason)| ClaimMiss {
                    template_id: template.id,
                    preset_id,
                    reason,
                    arrived,
                }),
            })
            .await?;
        tracing::info!(workspace = %workspace.name, owner = %owner.username, by = %actor.user.username, "workspace created");
        Ok(Created { workspace: self.workspace_view(workspace).await?, claimed: false })
    }

    /// How each of these workspaces, which the actor has been shown, was
    /// made, where its create request recorded it: claimed from a pool
    /// (with the hand-over time) or built cold (with why no prebuild was
    /// claimed). A prebuild never claimed has no record.
    pub async fn creations(
        &self,
        workspaces: &[Workspace],
    ) -> Result<std::collections::HashMap<Uuid, warmspace_store::claims::CreationRecord>> {
        let ids: Vec<Uuid> = workspaces.iter().map(|w| w.id).collect();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        // A workspace's latest record wins (a claim after a miss cannot happen, but order is cheap).
        Ok(self.store.creation_records(&ids).await?.into_iter().map(|r| (r.workspace_id, r)).collect())
    }

    /// Workspaces the actor may see: all for owners and template admins,
    /// their own for members.
    pub async fn list_workspaces(&self, actor: &Actor, query: WorkspacesQuery) -> Result<WorkspacesResponse> {
        let mut filter = self.parse_workspace_search(actor, query.q.as_deref().unwrap_or_default()).await?;
        (filter.limit, filter.offset) = page(query.limit, query.offset)?;
        match warmspace_authz::visibility(&actor.subject, Action::Read, Resource::Workspace) {
            Visibility::All => {}
            Visibility::OwnedBy(me) if filter.owner_id.is_none_or(|owner| owner == me) => filter.owner_id = Some(me),
            // Asking for someone else's workspaces without the right to see them: nothing.
            Visibility::OwnedBy(_) | Visibility::Nothing => {
                return Ok(WorkspacesResponse { workspaces: Vec::new(), count: 0 });
            }
        }
        let (rows, count) = self.store.list_workspaces(&filter).await?;
        Ok(WorkspacesResponse { workspaces: self.workspace_views(rows).await?, count })
    }

    pub async fn workspace_by_name(&self, actor: &Actor, owner: &str, name: &str) -> Result<Workspace> {
        let owner = self.find_user(actor, owner).await?;
        let workspace = self
            .store
            .workspace_by_name(owner.id, name)
            .await
            .found(format!("Workspace \"{}/{name}\"", owner.username))?;
        readable(actor, &workspace)?;
        self.workspace_view(workspace).await
    }

    pub async fn workspace(&self, actor: &Actor, id: Uuid) -> Result<Workspace> {
        let workspace = self.store.workspace(id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        self.workspace_view(workspace).await
    }

    /// Queues a build: `start`, `stop` or `delete`. Every parameter value is
    /// validated before anything is queued. Refused while another build of
    /// the workspace is pending or running.
    pub async fn create_build(
        &self,
        actor: &Actor,
        id: Uuid,
        req: CreateWorkspaceBuildRequest,
    ) -> Result<WorkspaceBuild> {
        let workspace = self.store.workspace(id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        if workspace.deleted {
            return Err(Error::not_found("Workspace"));
        }
        let transition = req.transition;
        let actions: &[Action] = match transition {
            Transition::Start | Transition::Stop => &[Action::Read, Action::Update],
            // Deleting needs read, update and delete.
            Transition::Delete => &[Action::Read, Action::Update, Action::Delete],
        };
        authorize_workspace(actor, workspace.owner_id, actions)?;
        if transition == Transition::Start && workspace.dormant_at.is_some() {
            return Err(Error::conflict("The workspace is dormant.").detail(format!(
                "Wake it first (warmspace schedule wake {}, or PUT /api/v2/workspaces/{}/dormant with dormant false).",
                workspace.name, workspace.id
            )));
        }
        let template = self.store.template(workspace.template_id).await?;
        // Without a version, a build keeps the one of the latest build (so a
        // delete uses the version the workspace was built with).
        let version_id = req.template_version_id.unwrap_or(workspace.latest_version_id);
        self.usable_version(&template, version_id).await?;
        let latest = self.store.build(workspace.latest_build_id).await?;
        let parameters = self.store.version_parameters(version_id).await?;
        let requested = requested_values(&req.rich_parameter_values)?;
        let values = resolve_parameters(&ParameterInput {
            parameters: &parameters,
            previous: Some(&latest.parameters.0),
            preset: None,
            requested: &requested,
            transition,
        })
        .map_err(parameter_problems)?;
        let (deadline, max_deadline) = match transition {
            Transition::Start => {
                let owner = self.store.user_by_id(workspace.owner_id).await?;
                start_deadlines(self.now(), workspace.ttl_ms, &requirement_of(&template), zone_of(&owner.timezone))
            }
            _ => (None, None),
        };
        let build = self
            .store
            .create_build(
                workspace.id,
                &NewBuild {
                    transition,
                    initiator_id: actor.user.id,
                    reason: BuildReason::Initiator,
                    template_version_id: version_id,
                    preset_id: None,
                    parameters: values,
                    deadline,
                    max_deadline,
                },
            )
            .await?;
        tracing::info!(workspace = %workspace.name, transition = %transition, by = %actor.user.username, "build queued");
        self.build_view(build).await
    }

    /// Rebuilds a workspace on its template's active version (Coder's
    /// `update`): a `start` build on that version with the latest build's
    /// values carried over, under the same checks as any build. Refused when
    /// the workspace already uses the active version.
    pub async fn update_workspace(&self, actor: &Actor, id: Uuid) -> Result<WorkspaceBuild> {
        let workspace = self.store.workspace(id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        if workspace.latest_version_id == workspace.template_active_version_id {
            return Err(Error::conflict("The workspace already uses the template's active version."));
        }
        let req = CreateWorkspaceBuildRequest {
            transition: Transition::Start,
            template_version_id: Some(workspace.template_active_version_id),
            rich_parameter_values: Vec::new(),
        };
        self.create_build(actor, id, req).await
    }

    /// A workspace's builds, newest first.
    pub async fn builds(&self, actor: &Actor, id: Uuid) -> Result<Vec<WorkspaceBuild>> {
        let workspace = self.store.workspace(id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        self.build_views(self.store.builds(id).await?).await
    }

    pub async fn build(&self, actor: &Actor, id: Uuid) -> Result<WorkspaceBuild> {
        let (_, build) = self.readable_build(actor, id).await?;
        self.build_view(build).await
    }

    /// A build's log lines after `after`.
    pub async fn build_log(&self, actor: &Actor, id: Uuid, after: i64) -> Result<Vec<ProvisionerJobLog>> {
        let (_, build) = self.readable_build(actor, id).await?;
        self.job_log(build.job_id, after).await
    }

    /// Follows a build's log until the build ends.
    pub async fn follow_build_log(
        &self,
        actor: &Actor,
        id: Uuid,
        after: i64,
    ) -> Result<impl Stream<Item = LogFollow> + Send + 'static> {
        let (_, build) = self.readable_build(actor, id).await?;
        self.follow_job_log(build.job_id, after).await
    }

    /// Cancels a build: at once if no daemon has it yet, else its daemon
    /// stops the backend. Returns what happened, for a person.
    pub async fn cancel_build(&self, actor: &Actor, id: Uuid) -> Result<&'static str> {
        let (workspace, build) = self.readable_build(actor, id).await?;
        authorize_workspace(actor, workspace.owner_id, &[Action::Read, Action::Update])?;
        match self.store.cancel_job(build.job_id).await? {
            Some(JobStatus::Canceled) => {
                self.events.build_finished(build.job_id).await;
                Ok("Build canceled.")
            }
            Some(_) => Ok("Cancel requested; the daemon is stopping the build."),
            None => Err(Error::conflict("The build has already finished.")),
        }
    }

    /// Sets or clears a workspace's time to live (zero clears it); the next
    /// start's deadline follows it. Clearing it also clears the running
    /// build's deadline — except that a max deadline (the template's
    /// autostop requirement) stays the deadline. Refused for unclaimed
    /// prebuilds, which only the reconciler manages.
    pub async fn update_workspace_ttl(&self, actor: &Actor, id: Uuid, ttl_ms: Option<i64>) -> Result<Workspace> {
        let workspace = self.lifecycle_target(actor, id).await?;
        let ttl_ms = ttl_ms.filter(|ttl| *ttl != 0);
        check_ttl("ttl_ms", ttl_ms)?;
        self.store.set_workspace_lifecycle(workspace.id, ttl_ms, workspace.autostart_schedule.clone()).await?;
        if ttl_ms.is_none() && workspace.status() == WorkspaceStatus::Running {
            let build = self.store.build(workspace.latest_build_id).await?;
            if build.deadline.is_some() {
                self.store.set_build_deadline(workspace.id, build.id, build.max_deadline).await?;
            }
        }
        self.workspace_view(self.store.workspace(id).await?).await
    }

    /// Sets or clears a workspace's autostart schedule. Refused for unclaimed prebuilds.
    pub async fn update_workspace_autostart(
        &self,
        actor: &Actor,
        id: Uuid,
        schedule: Option<String>,
    ) -> Result<Workspace> {
        let workspace = self.lifecycle_target(actor, id).await?;
        let schedule = match schedule.as_deref() {
            Some(schedule) => {
                let template = self.store.template(workspace.template_id).await?;
                if !template.allow_user_autostart {
                    return Err(Error::field("schedule", "the template does not allow autostart"));
                }
                Some(check_autostart("schedule", schedule)?)
            }
            None => None,
        };
        self.store.set_workspace_lifecycle(workspace.id, workspace.ttl_ms, schedule).await?;
        self.workspace_view(self.store.workspace(id).await?).await
    }

    /// A workspace whose lifecycle settings the actor may change.
    pub(super) async fn lifecycle_target(&self, actor: &Actor, id: Uuid) -> Result<WorkspaceRow> {
        let workspace = self.store.workspace(id).await.found("Workspace")?;
        readable(actor, &workspace)?;
        authorize_workspace(actor, workspace.owner_id, &[Action::Read, Action::Update])?;
        if workspace.owner_id == PREBUILDS_USER_ID {
            return Err(Error::conflict("An unclaimed prebuild has no schedule of its own.").detail(
                "The reconciler manages prebuilds; the workspace takes the template's settings once claimed.",
            ));
        }
        Ok(workspace)
    }

    pub(super) async fn readable_build(&self, actor: &Actor, id: Uuid) -> Result<(WorkspaceRow, BuildRow)> {
        let build = self.store.build(id).await.found("Build")?;
        let workspace = self.store.workspace(build.workspace_id).await?;
        readable(actor, &workspace)?;
        Ok((workspace, build))
    }

    /// Parses `GET /workspaces?q=`.
    async fn parse_workspace_search(&self, actor: &Actor, q: &str) -> Result<WorkspaceFilter> {
        let mut filter = WorkspaceFilter::default();
        for term in q.split_whitespace() {
            // Each problem names the term it is in: a query can hold several.
            let bad = |problem: String| Error::field("q", format!("{term:?}: {problem}"));
            match term.split_once(':') {
                Some(("owner", who)) => {
                    let owner = self.find_user(actor, who).await.map_err(|_| bad(format!("no user {who:?}")))?;
                    filter.owner_id = Some(owner.id);
                }
                Some(("template", name)) => filter.template_name = Some(name.to_owned()),
                Some(("status", status)) => {
                    let status: WorkspaceStatus = status.parse().map_err(|e| bad(format!("{e}")))?;
                    filter.include_deleted |= status == WorkspaceStatus::Deleted;
                    filter.status = Some(status);
                }
                Some(("name", name)) => filter.name = Some(name.to_owned()),
                Some((key, _)) => {
                    return Err(bad(format!("unknown filter {key:?} (expected owner, template, status or name)")));
                }
                None => filter.name = Some(term.to_owned()),
            }
        }
        Ok(filter)
    }
}

pub(super) fn readable(actor: &Actor, workspace: &WorkspaceRow) -> Result<()> {
    // Not found rather than forbidden: nobody learns which workspaces others have.
    authorize_workspace(actor, workspace.owner_id, &[Action::Read]).map_err(|_| Error::not_found("Workspace"))
}

/// May the actor do all of `actions` to a workspace? An unclaimed prebuild
/// is checked as a `prebuilt_workspace` first (template admins manage the
/// pool), then as the workspace it also is.
fn authorize_workspace(actor: &Actor, owner: Uuid, actions: &[Action]) -> Result<()> {
    let all = |object: Object| actions.iter().try_for_each(|action| actor.authorize(*action, object));
    if owner == PREBUILDS_USER_ID && all(Object { resource: Resource::PrebuiltWorkspace, owner: None }).is_ok() {
        return Ok(());
    }
    all(Object { resource: Resource::Workspace, owner: Some(owner) })
}

/// A time to live: positive, and at most [`MAX_TTL_MS`].
fn check_ttl(field: &str, ttl_ms: Option<i64>) -> Result<()> {
    match ttl_ms {
        Some(ttl) if ttl <= 0 => Err(Error::field(field, "must be positive (or null for none)")),
        Some(ttl) if ttl > MAX_TTL_MS => Err(Error::field(field, format!("must be at most {MAX_TTL_MS} (30 days)"))),
        _ => Ok(()),
    }
}

/// An autostart schedule: five cron fields, optionally after `CRON_TZ=<zone> `.
fn check_autostart(field: &str, schedule: &str) -> Result<String> {
    let bad = |detail: String| Error::field(field, detail);
    let cron = match schedule.strip_prefix("CRON_TZ=") {
        Some(rest) => {
            let (zone, cron) = rest.split_once(' ').ok_or_else(|| bad("expected CRON_TZ=<zone> <cron>".into()))?;
            zone.parse::<chrono_tz::Tz>().map_err(|_| bad(format!("{zone:?} is not an IANA time zone")))?;
            cron
        }
        None => schedule,
    };
    Schedule::parse(cron)
        .map_err(|e| bad(format!("{e} (expected five cron fields, optionally after CRON_TZ=<zone>)")))?;
    Ok(schedule.trim().to_owned())
}

/// The preset a create request uses: the one it names, else the one whose
/// every value it repeats (values compared as their parameter's type means them).
fn preset_of(
    named: Option<Uuid>,
    presets: &[PresetRow],
    parameters: &[Parameter],
    requested: &BTreeMap<String, String>,
) -> Result<PresetMatch> {
    if let Some(id) = named {
        presets
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::field("template_version_preset_id", "not a preset of the template version"))?;
        return Ok(PresetMatch::Matched(id));
    }
    let canonical: BTreeMap<String, String> = requested
        .iter()
        .map(|(name, value)| match parameters.iter().find(|p| &p.name == name) {
            Some(parameter) => (name.clone(), parameter.canonical(value)),
            None => (name.clone(), value.clone()),
        })
        .collect();
    let candidates: Vec<PresetValues> =
        presets.iter().map(|p| PresetValues { id: p.id, values: &p.parameters.0 }).collect();
    Ok(match_preset(&candidates, &canonical))
}

fn requested_values(values: &[BuildParameter]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for value in values {
        if map.insert(value.name.clone(), value.value.clone()).is_some() {
            return Err(Error::field("rich_parameter_values", format!("{:?} is given twice", value.name)));
        }
    }
    Ok(map)
}

fn parameter_problems(problems: Vec<warmspace_template::ParameterProblem>) -> Error {
    Error::Invalid(problems.into_iter().map(|p| invalid(&p.parameter, p.message)).collect())
}
