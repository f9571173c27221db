//! Workspace agents: what each learns about itself, what it reports
//! (lifecycle, heartbeats, logs), and when it re-initialises for the new
//! owner of the prebuild it runs in (DESIGN §5.3).

use std::time::Duration;

use futures::Stream;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{
    AgentHeartbeatRequest, AgentLifecycle, AgentLogLine, AgentManifest, LogSource, ReinitEvent, WorkspaceAgentLog,
};
use warmspace_states::BuildReason;
use warmspace_store::agents::ReinitState;
use warmspace_store::jobs::{NewLog, job_events_channel};
use warmspace_store::pubsub::Subscription;
use warmspace_store::workspaces::{PREBUILDS_USER_ID, claim_channel};

use super::{Actor, AgentAuth, Domain, Error, Result};

/// A waiting re-init stream looks at durable state at least this often.
const REINIT_POLL: Duration = Duration::from_secs(30);

/// What the re-init endpoint answers an agent.
pub enum Reinit<S> {
    /// A workspace that was never a prebuild: the agent should stop asking.
    Regular,
    /// The agent already serves the owner: nothing will ever happen.
    NothingToDo,
    /// One re-init event, once there is one to send, then the end.
    Stream(S),
}

impl Domain {
    pub async fn agent_manifest(&self, auth: &AgentAuth) -> Result<AgentManifest> {
        let m = self.store.agent_manifest(auth.agent_id).await?;
        Ok(AgentManifest {
            agent_id: m.agent_id,
            agent_name: m.agent_name,
            workspace_id: m.workspace_id,
            workspace_name: m.workspace_name,
            owner_id: m.owner_id,
            owner_name: m.owner_name,
            template_version_id: m.template_version_id,
            env: m.env.map(|env| env.0).unwrap_or_default(),
            startup_script: m.startup_script.unwrap_or_default(),
            server_url: self.config.access_url.clone(),
            apps: m.apps.map(|apps| apps.0).unwrap_or_default(),
            devcontainers: m.devcontainers.map(|d| d.0).unwrap_or_default(),
        })
    }

    /// Records an agent's lifecycle change. The one that makes the last of
    /// its workspace's agents ready ends what a user waits for: the build's
    /// ready time is observed then, from what the same statement returned;
    /// and if the workspace is a prebuild, its pool is reconciled.
    pub async fn agent_lifecycle(&self, auth: &AgentAuth, state: AgentLifecycle) -> Result<()> {
        if let Some(ready) = self.store.set_agent_lifecycle(auth.agent_id, state).await? {
            // A prebuild just became eligible: its pool may now retire the
            // expired prebuilds it kept standing in (make before break).
            if let Some(preset) = ready.prebuild_preset_id {
                self.events.reconcile(super::Trigger::Preset(preset)).await;
            }
            let seconds = (self.now() - ready.build_created_at).as_seconds_f64().max(0.0);
            self.metrics.observe_build_ready(
                &ready.organization_name,
                &ready.template_name,
                &ready.transition.to_string(),
                ready.reason == BuildReason::Claim,
                seconds,
            );
        }
        Ok(())
    }

    /// Records that the agent is alive (and whom it serves). True when its
    /// workspace has been stopped or deleted, so it should exit.
    /// A heartbeat with open sessions is activity: the workspace was used
    /// now, and its deadline moves (within its max deadline).
    pub async fn agent_heartbeat(&self, auth: &AgentAuth, req: AgentHeartbeatRequest) -> Result<bool> {
        let stop = self.store.agent_heartbeat(auth.agent_id, req.serving_owner_id).await?;
        if req.sessions > 0
            && !stop
            && let Err(err) = self.record_agent_activity(auth.agent_id).await
        {
            tracing::warn!(agent = %auth.agent_id, error = %err, "cannot record workspace activity");
        }
        Ok(stop)
    }

    /// The agent is going away on purpose.
    pub async fn agent_disconnected(&self, auth: &AgentAuth) -> Result<()> {
        Ok(self.store.agent_disconnected(auth.agent_id).await?)
    }

    /// Appends startup-script output to the agent's log (capped at 1 MiB).
    pub async fn append_agent_logs(&self, auth: &AgentAuth, lines: Vec<AgentLogLine>) -> Result<()> {
        let logs: Vec<NewLog> = lines
            .into_iter()
            .map(|l| NewLog {
                created_at: l.created_at,
                // Agent logs keep no source nor stage.
                source: LogSource::Provisioner,
                level: l.level,
                stage: String::new(),
                output: l.output,
            })
            .collect();
        self.store.append_agent_logs(auth.agent_id, &logs).await?;
        Ok(())
    }

    /// An agent's log, for people who may read its workspace.
    pub async fn agent_logs(&self, actor: &Actor, agent: Uuid) -> Result<Vec<WorkspaceAgentLog>> {
        let not_found = || Error::not_found("Agent");
        let row = self.store.agent(agent).await.map_err(|_| not_found())?;
        let workspace = self.store.workspace(row.workspace_id).await?;
        actor
            .authorize(Action::Read, Object { resource: Resource::Workspace, owner: Some(workspace.owner_id) })
            .map_err(|_| not_found())?;
        Ok(self
            .store
            .agent_logs(agent, 0)
            .await?
            .into_iter()
            .map(|(id, created_at, level, output)| WorkspaceAgentLog { id, created_at, level, output })
            .collect())
    }

    /// The re-init decision for an agent that serves `serving`, and, when
    /// there may be one to send, the stream that sends it.
    pub async fn agent_reinit(
        &self,
        auth: &AgentAuth,
        serving: Uuid,
    ) -> Result<Reinit<impl Stream<Item = ReinitEvent> + Send + 'static>> {
        let workspace_id = auth.workspace_id;
        // Subscribe before reading durable state: a claim landing in between
        // is then seen by the stream rather than lost.
        let claims = self.events.subscribe(&claim_channel(workspace_id)).await.map_err(Error::internal)?;
        match decide(workspace_id, &self.store.reinit_state(workspace_id).await?, serving) {
            Decision::Regular => return Ok(Reinit::Regular),
            Decision::NothingToDo => return Ok(Reinit::NothingToDo),
            _ => {}
        }
        let domain = self.clone();
        let stream = futures::stream::unfold(Some((domain, claims)), move |state| async move {
            let (domain, mut claims) = state?;
            loop {
                let current = match domain.store.reinit_state(workspace_id).await {
                    Ok(current) => current,
                    Err(err) => {
                        tracing::warn!(%workspace_id, error = %err, "re-init stream cannot read the workspace");
                        return None;
                    }
                };
                let job = match decide(workspace_id, &current, serving) {
                    // Sent once; the next step ends the stream.
                    Decision::Reinit(event) => return Some((event, None)),
                    Decision::Regular | Decision::NothingToDo => return None,
                    Decision::WaitForClaim => None,
                    Decision::WaitForClaimBuild(job) => Some(job),
                };
                // Whatever wakes us, the decision is made again from durable state.
                wait_for_change(&domain, &mut claims, job).await;
            }
        });
        Ok(Reinit::Stream(stream))
    }
}

/// Waits for a claim announcement, the end of the claim build's job, or the
/// backup poll, whichever comes first.
async fn wait_for_change(domain: &Domain, claims: &mut Subscription, claim_job: Option<Uuid>) {
    let job_events = match claim_job {
        Some(job) => domain.events.subscribe(&job_events_channel(job)).await.ok(),
        None => None,
    };
    tokio::select! {
        _ = claims.recv() => {}
        _ = async {
            match job_events {
                Some(mut events) => { events.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
        _ = tokio::time::sleep(REINIT_POLL) => {}
    }
}

/// When an agent re-initialises, decided from durable state alone, so a
/// lost or repeated event can never change the outcome: the stream only
/// says *when* to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Still an unclaimed prebuild: wait for a claim.
    WaitForClaim,
    /// A workspace that was never a prebuild: the agent should stop asking.
    Regular,
    /// The agent already serves the owner: nothing will ever happen.
    NothingToDo,
    /// Claimed, but the claim build is still under way: wait for its job.
    WaitForClaimBuild(Uuid),
    /// Claimed and built: re-initialise for the new owner, once.
    Reinit(ReinitEvent),
}

fn decide(workspace_id: Uuid, state: &ReinitState, serving: Uuid) -> Decision {
    if state.owner_id == PREBUILDS_USER_ID {
        return Decision::WaitForClaim;
    }
    if state.first_build_initiator != PREBUILDS_USER_ID {
        return Decision::Regular;
    }
    if state.owner_id == serving {
        return Decision::NothingToDo;
    }
    match (state.claim_job_id, state.claim_job_status) {
        (Some(job), Some(status)) if status.in_progress() => Decision::WaitForClaimBuild(job),
        _ => Decision::Reinit(ReinitEvent { workspace_id, owner_id: state.owner_id, reason: "claimed".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Uuid = Uuid::from_u128(1);
    const ALICE: Uuid = Uuid::from_u128(2);
    const BOB: Uuid = Uuid::from_u128(3);

    fn state(owner: Uuid, first: Uuid, claim: Option<&str>) -> ReinitState {
        ReinitState {
            owner_id: owner,
            deleted: false,
            first_build_initiator: first,
            claim_job_id: claim.map(|_| Uuid::from_u128(9)),
            claim_job_status: claim.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn the_cases_of_the_design() {
        let prebuild = PREBUILDS_USER_ID;
        // An unclaimed prebuild's agent serves the prebuilds user and waits.
        assert_eq!(decide(WS, &state(prebuild, prebuild, None), prebuild), Decision::WaitForClaim);
        // A workspace a person created is never re-initialised.
        assert_eq!(decide(WS, &state(ALICE, ALICE, None), ALICE), Decision::Regular);
        assert_eq!(decide(WS, &state(ALICE, ALICE, None), prebuild), Decision::Regular);
        // Claimed by Alice, claim build running: wait for it.
        assert_eq!(
            decide(WS, &state(ALICE, prebuild, Some("running")), prebuild),
            Decision::WaitForClaimBuild(Uuid::from_u128(9))
        );
        // Claim build done (whatever its outcome): one re-init for Alice.
        for status in ["succeeded", "failed", "canceled"] {
            assert_eq!(
                decide(WS, &state(ALICE, prebuild, Some(status)), prebuild),
                Decision::Reinit(ReinitEvent { workspace_id: WS, owner_id: ALICE, reason: "claimed".into() })
            );
        }
        // The agent already serves Alice (e.g. it reconnected after a server restart): nothing.
        assert_eq!(decide(WS, &state(ALICE, prebuild, Some("succeeded")), ALICE), Decision::NothingToDo);
        // An agent still serving someone else than the current owner is brought up to date.
        assert!(
            matches!(decide(WS, &state(BOB, prebuild, Some("succeeded")), ALICE), Decision::Reinit(e) if e.owner_id == BOB)
        );
    }
}
