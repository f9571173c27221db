//! When an agent re-initialises for a new owner (DESIGN §5.3), decided from
//! durable state alone, so a lost or repeated event can never change the
//! outcome: the stream only says *when* to look again.

use uuid::Uuid;
use warmspace_sdk::ReinitEvent;
use warmspace_store::agents::ReinitState;
use warmspace_store::workspaces::PREBUILDS_USER_ID;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Still an unclaimed prebuild: wait for a claim.
    WaitForClaim,
    /// A workspace that was never a prebuild: the agent should stop asking (409).
    Regular,
    /// The agent already serves the owner: nothing will ever happen (204).
    NothingToDo,
    /// Claimed, but the claim build is still under way: wait for its job.
    WaitForClaimBuild(Uuid),
    /// Claimed and built: re-initialise for the new owner, once.
    Reinit(ReinitEvent),
}

pub fn decide(workspace_id: Uuid, state: &ReinitState, serving: Uuid) -> Decision {
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
