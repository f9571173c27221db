//! The job queue as provisioner daemons see it, whether they run in this
//! process or on another host: taking a job (and everything needed to run
//! it), renewing its lease, storing its log, recording how it ended; failing
//! jobs whose daemon vanished; and the keys external daemons authenticate with.

use std::collections::BTreeMap;

use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_provisioner::{AcquiredJob, JobKind, JobState, Worker};
use warmspace_sdk::{
    BuildJob, BuildOutcome, BuildReason, BuildResult, CreateProvisionerKeyRequest, CreateProvisionerKeyResponse,
    JobLogLine, JobStatus, LogLevel, LogSource, ProvisionerDaemon, ProvisionerKey,
};
use warmspace_store::StoreError;
use warmspace_store::agents::IssuedToken;
use warmspace_store::jobs::{self, JobPayload, NewLog};
use warmspace_store::workspaces::{BuildCompletion, BuildRow, PREBUILDS_USER_ID};
use warmspace_template::{BackendConfig, Manifest, Transition};

use super::views::{daemon_view, key_view};
use super::{Actor, Domain, Error, Found, Result, valid_slug};
use crate::auth::tokens::Token;
use crate::metrics::{CreationType, preset_labels};

/// A daemon's log lines as the store takes them.
fn new_logs(logs: Vec<JobLogLine>) -> Vec<NewLog> {
    logs.into_iter()
        .map(|l| NewLog {
            created_at: l.created_at,
            source: l.source,
            level: l.level,
            stage: l.stage,
            output: l.output,
        })
        .collect()
}

/// The owner a drift check plans a claim for (id, name, email): nobody,
/// but not the prebuilds user either, as every real claimant.
const DRIFT_CHECK_OWNER: (Uuid, &str, &str) =
    (Uuid::from_u128(0x2d1f7c3e_9a4b_4c5d_8e6f_0a1b2c3d4e5f), "drift-check", "drift-check@warmspace.invalid");

/// A template version's backend, as its import recorded it.
fn backend(config: Option<serde_json::Value>) -> std::result::Result<BackendConfig, StoreError> {
    let invalid = |message: String| StoreError::Invalid { field: "job", message };
    config
        .ok_or_else(|| invalid("the template version was never imported".into()))
        .and_then(|config| serde_json::from_value(config).map_err(|e| invalid(e.to_string())))
}

/// A job whose daemon has not reported for its lease is no longer its.
fn job_lost(err: StoreError) -> Error {
    match err {
        StoreError::NotFound => Error::JobLost,
        other => other.into(),
    }
}

impl Domain {
    /// Takes the next job `worker` may run (authenticated by a provisioner
    /// key, when external), with everything needed to run it: one call to
    /// the store, which returns the job with its payload.
    pub async fn acquire_job(&self, worker: &Worker, key_id: Option<String>) -> Result<Option<AcquiredJob>> {
        let queue_worker = jobs::Worker { id: worker.id, name: worker.name.clone(), tags: worker.tags.clone(), key_id };
        let policy = &self.config.queue;
        let Some(job) = self.store.take_job(&queue_worker, policy).await? else {
            return Ok(None);
        };
        self.observe_taken(&job);
        match self.describe(job.payload).await {
            Ok(kind) => Ok(Some(AcquiredJob { id: job.id, heartbeat_every: policy.lease / 3, kind })),
            // A job no daemon can even start must not stay running until its lease expires.
            Err(err) => {
                let message = format!("the job could not be started: {err}");
                self.store.fail_job(job.id, worker.id, &message).await.map_err(job_lost)?;
                self.metrics.build_ended(job.id, false, self.now());
                self.events.build_finished(job.id).await;
                Err(Error::internal(message))
            }
        }
    }

    /// The job's wait in the queue, and, for a build that creates a
    /// workspace, the start of its creation's duration: from what taking it
    /// returned, with no statement of their own.
    fn observe_taken(&self, job: &jobs::TakenJob) {
        let q = &job.queued;
        let labels = preset_labels(&q.organization_name, &q.template_name, q.preset_name.as_deref().unwrap_or(""));
        let waited = (q.started_at - q.created_at).as_seconds_f64().max(0.0);
        let by_prebuilds = q.initiator_id == PREBUILDS_USER_ID;
        self.metrics.observe_queue_wait(labels.clone(), &q.job_type.to_string(), by_prebuilds, waited);
        let JobPayload::Build(build) = &job.payload else { return };
        let kind = match (build.reason, build.transition, build.build_number) {
            (BuildReason::Claim, _, _) => CreationType::Claim,
            (_, Transition::Start, 1) if build.owner_id == PREBUILDS_USER_ID => CreationType::Prebuild,
            (_, Transition::Start, 1) => CreationType::Regular,
            _ => return,
        };
        self.metrics.build_started(job.id, q.created_at, labels, kind);
    }

    async fn describe(&self, payload: JobPayload) -> std::result::Result<JobKind, StoreError> {
        let p = match payload {
            JobPayload::Import { template_version_id, file_id } => {
                return Ok(JobKind::TemplateImport { template_version_id, file_id });
            }
            JobPayload::Build(payload) => *payload,
            JobPayload::DriftCheck(payload) => return Ok(JobKind::DriftCheck(Box::new(self.claim_plan(*payload)?))),
            JobPayload::Missing => return Err(StoreError::NotFound),
        };
        let backend = backend(p.provisioner_config.map(|config| config.0))?;
        let is_claim = p.reason == BuildReason::Claim;
        // A start build brings up new agents, which need tokens; the raw
        // tokens exist only in this job, never in the database. A claim keeps
        // the tokens the prebuild's agents already run with.
        // With no agents declared and no token to revoke there is nothing to write.
        let agent_tokens = if p.transition == Transition::Start && !is_claim {
            if p.agent_names.is_empty() && !p.has_agent_tokens {
                Default::default()
            } else {
                self.issue_agent_tokens(p.workspace_id, p.agent_names).await?
            }
        } else {
            Default::default()
        };
        Ok(JobKind::WorkspaceBuild(Box::new(BuildJob {
            build_id: p.build_id,
            build_number: p.build_number,
            transition: p.transition,
            workspace_id: p.workspace_id,
            workspace_name: p.workspace_name,
            owner_id: p.owner_id,
            owner_name: p.owner_name,
            owner_email: p.owner_email,
            is_prebuild: p.owner_id == PREBUILDS_USER_ID,
            is_claim,
            parameters: p.parameters.0,
            agent_tokens,
            backend,
            state: p.previous_state.filter(|state| !state.is_empty()),
            file_id: p.file_id,
            server_url: self.config.access_url.clone(),
        })))
    }

    /// What a drift check plans: the claim build of the prebuild `p`
    /// describes, from the state its latest build left, by a placeholder
    /// owner (any owner other than the prebuilds user shows what depends on
    /// the owner). Nothing is applied, so no agent token is issued.
    fn claim_plan(&self, p: warmspace_store::workspaces::BuildPayload) -> std::result::Result<BuildJob, StoreError> {
        Ok(BuildJob {
            build_id: p.build_id,
            build_number: p.build_number + 1,
            transition: Transition::Start,
            workspace_id: p.workspace_id,
            workspace_name: p.workspace_name,
            owner_id: DRIFT_CHECK_OWNER.0,
            owner_name: DRIFT_CHECK_OWNER.1.into(),
            owner_email: DRIFT_CHECK_OWNER.2.into(),
            is_prebuild: false,
            is_claim: true,
            parameters: p.parameters.0,
            agent_tokens: Default::default(),
            backend: backend(p.provisioner_config.map(|config| config.0))?,
            state: p.previous_state.filter(|state| !state.is_empty()),
            file_id: p.file_id,
            server_url: self.config.access_url.clone(),
        })
    }

    /// Records a drift check's finding (what claiming the preset's
    /// prebuilds would replace), with the last log lines of its daemon
    /// (`key_id` as for [`Domain::append_job_logs`]).
    pub async fn complete_drift_check(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        key_id: Option<&str>,
        replaced: Vec<String>,
        logs: Vec<JobLogLine>,
    ) -> Result<()> {
        let holder = jobs::Holder { worker_id, key_id };
        let logs = new_logs(logs);
        self.store.complete_drift_check(job_id, holder, &replaced, &logs).await.map_err(job_lost)?;
        if !replaced.is_empty() {
            tracing::warn!(%job_id, resources = ?replaced, "drift check: claims would replace prebuilt resources");
        }
        self.events.job_done(job_id).await;
        Ok(())
    }

    /// New tokens for the agents `names` (those the build's version
    /// declares), revoking any other agent's: agent name → raw token.
    async fn issue_agent_tokens(
        &self,
        workspace_id: Uuid,
        names: Vec<String>,
    ) -> std::result::Result<BTreeMap<String, String>, StoreError> {
        let mut raw = BTreeMap::new();
        let mut issued = Vec::new();
        for name in names {
            let token = Token::generate();
            issued.push(IssuedToken {
                agent_name: name.clone(),
                token_id: token.id.clone(),
                hashed_secret: token.hashed_secret(),
            });
            raw.insert(name, token.to_header_value());
        }
        self.store.issue_agent_tokens(workspace_id, &issued).await?;
        Ok(raw)
    }

    /// The bytes of a template version's archive, for the daemon running its job.
    pub async fn daemon_file(&self, file_id: Uuid) -> Result<Vec<u8>> {
        self.store.file_data(file_id).await.found("File")
    }

    /// Renews the lease of a job `worker_id` holds; says whether it is being canceled.
    pub async fn job_heartbeat(&self, job_id: Uuid, worker_id: Uuid) -> Result<JobState> {
        match self.store.heartbeat_job(job_id, worker_id, &self.config.queue).await? {
            None => Err(Error::JobLost),
            Some(JobStatus::Canceling) => Ok(JobState::Canceling),
            Some(_) => Ok(JobState::Running),
        }
    }

    /// Appends lines to the log of a job that `worker_id` (an external
    /// daemon authenticated by `key_id`, or an in-process one) holds.
    pub async fn append_job_logs(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        key_id: Option<String>,
        logs: Vec<JobLogLine>,
    ) -> Result<()> {
        let logs = new_logs(logs);
        let holder = jobs::Holder { worker_id, key_id: key_id.as_deref() };
        if self.store.append_held_job_logs(job_id, holder, &logs).await.map_err(job_lost)? > 0 {
            self.events.job_logs(job_id).await;
        }
        Ok(())
    }

    /// Records a successful import: everything the manifest declares.
    pub async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<()> {
        self.store.complete_template_import(job_id, worker_id, &manifest).await.map_err(job_lost)?;
        self.events.job_done(job_id).await;
        Ok(())
    }

    /// Records how a build ended, with the last log lines of the daemon
    /// holding it (`key_id` as for [`Domain::append_job_logs`]; an external
    /// daemon sends its lines before, and none here). A claim build
    /// that replaced resources the pool kept warm says so in its log and
    /// tells the template admins. The job's end, its lines and the
    /// announcements that follow (its followers see the end; the pool of
    /// the workspace's preset, if any, looks again) are one store call.
    pub async fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        key_id: Option<&str>,
        outcome: BuildOutcome,
        logs: Vec<JobLogLine>,
    ) -> Result<()> {
        let replaced: Vec<String> =
            outcome.resources.iter().filter(|r| r.replaced).map(|r| r.address.clone()).collect();
        let claim = match replaced.is_empty() {
            true => None,
            false => self.store.build_by_job(job_id).await.ok().filter(|b| b.reason == BuildReason::Claim),
        };
        let mut logs = new_logs(logs);
        if claim.is_some() {
            // With the job's end, so everyone following the log sees it.
            logs.extend(self.replaced_lines(&replaced));
        }
        let (status, error, interrupted) = match outcome.result {
            BuildResult::Succeeded => (JobStatus::Succeeded, None, false),
            BuildResult::Failed(error) => (JobStatus::Failed, Some(error), false),
            BuildResult::Canceled => (JobStatus::Canceled, Some("canceled".to_owned()), false),
            BuildResult::Interrupted(error) => (JobStatus::Failed, Some(error), true),
        };
        let holder = jobs::Holder { worker_id, key_id };
        // Before the completion: true whether or not it gets through.
        self.record_timings(job_id, holder, outcome.timings).await.map_err(|err| match err {
            Error::NotFound { .. } => Error::JobLost,
            other => other,
        })?;
        let completion = BuildCompletion {
            status,
            error,
            interrupted,
            state: outcome.state,
            resources: outcome.resources.into_iter().map(|r| (r.address, r.kind, r.replaced)).collect(),
        };
        let notices = self.events.build_finished_notices(job_id);
        let completed = self
            .store
            .complete_build_with_logs(job_id, holder, &completion, &logs, &notices)
            .await
            .map_err(job_lost)?;
        self.metrics.build_ended(job_id, completed.status == JobStatus::Succeeded, self.now());
        if let Some(build) = claim {
            self.tell_template_admins(&build, &replaced).await;
        }
        Ok(())
    }

    pub async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: &str) -> Result<()> {
        self.store.fail_job(job_id, worker_id, error).await.map_err(job_lost)?;
        self.metrics.build_ended(job_id, false, self.now());
        // Imports fail here too; waking the reconciler for one costs a cycle that finds nothing to do.
        self.events.build_finished(job_id).await;
        Ok(())
    }

    /// Fails (or, if being canceled, cancels) every job whose lease ran out.
    /// Returns how many. Safe on every replica at once: one idempotent update.
    pub async fn reap_expired_jobs(&self) -> Result<usize> {
        let reaped = self.store.reap_expired_jobs().await?;
        for job_id in &reaped {
            tracing::warn!(%job_id, "job failed: its daemon stopped heartbeating");
            self.events.job_done(*job_id).await;
        }
        if !reaped.is_empty() {
            // Once for all of them: one cycle sees every reaped job.
            self.events.reconcile(super::Trigger::All("lease expired")).await;
        }
        Ok(reaped.len())
    }

    /// A claim rebuilt resources the pool had kept warm: what its build log says.
    fn replaced_lines(&self, replaced: &[String]) -> Vec<NewLog> {
        replaced
            .iter()
            .map(|address| NewLog {
                created_at: self.now(),
                source: LogSource::ProvisionerDaemon,
                level: LogLevel::Warn,
                stage: "start".into(),
                output: format!(
                    "warning: the claim replaced {address}, which the prebuild had ready; \
                     the template rebuilds it for each new owner, so the pool saves less time than it could"
                ),
            })
            .collect()
    }

    /// Template admins hear of claims that rebuilt warm resources.
    async fn tell_template_admins(&self, build: &BuildRow, replaced: &[String]) {
        // Named, not numbered: the workspace as its new owner and the template admins know it.
        let workspace = match self.store.workspace(build.workspace_id).await {
            Ok(ws) => format!(
                "{}/{} (template {}, version {})",
                ws.owner_name, ws.name, ws.template_name, build.template_version_name
            ),
            Err(_) => format!("a workspace of template version {}", build.template_version_name),
        };
        tracing::warn!(%workspace, resources = ?replaced, "a claim replaced prebuilt resources");
        let content = format!(
            "Claiming workspace {workspace} rebuilt {}. Those resources are rebuilt for every new owner, \
             so claims from this pool are slower than they could be.",
            replaced.join(", ")
        );
        self.notify_template_admins(
            "prebuild_resources_replaced",
            "A prebuild claim replaced warm resources",
            &content,
            Some(build.workspace_id),
        )
        .await;
    }

    /// Creates a provisioner key for daemons on other hosts. The secret is shown once.
    pub async fn create_provisioner_key(
        &self,
        actor: &Actor,
        req: CreateProvisionerKeyRequest,
    ) -> Result<CreateProvisionerKeyResponse> {
        actor.authorize(Action::Create, Object::any(Resource::ProvisionerDaemon))?;
        if !valid_slug(&req.name, 64) {
            return Err(Error::field("name", "must be lowercase letters or digits with single hyphens, at most 64"));
        }
        let token = Token::generate();
        let key =
            self.store.create_provisioner_key(&token.id, &req.name, &token.hashed_secret(), actor.user.id).await?;
        tracing::info!(key = %key.name, by = %actor.user.username, "provisioner key created");
        Ok(CreateProvisionerKeyResponse { key: key_view(key), secret: token.to_header_value() })
    }

    pub async fn provisioner_keys(&self, actor: &Actor) -> Result<Vec<ProvisionerKey>> {
        actor.authorize(Action::Read, Object::any(Resource::ProvisionerDaemon))?;
        Ok(self.store.provisioner_keys().await?.into_iter().map(key_view).collect())
    }

    /// Whether the actor may create and delete provisioner keys (owners).
    pub fn may_manage_provisioner_keys(&self, actor: &Actor) -> bool {
        actor.authorize(Action::Create, Object::any(Resource::ProvisionerDaemon)).is_ok()
    }

    /// Every provisioner daemon, most recently seen first.
    pub async fn provisioner_daemons(&self, actor: &Actor) -> Result<Vec<ProvisionerDaemon>> {
        actor.authorize(Action::Read, Object::any(Resource::ProvisionerDaemon))?;
        Ok(self.store.provisioner_daemons().await?.into_iter().map(daemon_view).collect())
    }

    /// Deletes a key; daemons using it can take no more jobs.
    pub async fn delete_provisioner_key(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.authorize(Action::Delete, Object::any(Resource::ProvisionerDaemon))?;
        self.store.delete_provisioner_key(name).await.found("Provisioner key")
    }
}
