//! What the pools did lately: each pool's size over the last day, and the
//! latest create requests. Like the claim statistics they concern everyone's
//! requests and pools, so only those who may read every workspace (template
//! admins, owners) may read them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_prebuilds::reconcile;
use warmspace_store::claims::RecentClaimRow;
use warmspace_store::insights::PoolSampleRow;

use super::{Actor, Domain, Error, Result};

/// How far back a pool's history reaches.
pub const POOL_HISTORY_WINDOW: Duration = Duration::from_secs(86_400);
/// How often in that window the pool is sampled (97 samples a day).
pub const POOL_HISTORY_STEP: Duration = Duration::from_secs(15 * 60);
/// The most create requests [`Domain::recent_claims`] lists.
const MAX_RECENT_CLAIMS: i64 = 500;

/// A pool (a preset of an active template version) over a window ending now.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHistory {
    pub template_id: Uuid,
    pub template_name: String,
    pub preset_id: Uuid,
    pub preset_name: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Oldest first, one every [`POOL_HISTORY_STEP`] from `since`.
    pub samples: Vec<PoolSample>,
}

/// A pool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSample {
    pub at: DateTime<Utc>,
    /// What the preset's policy asks for at `at` (its schedules read in its
    /// zone), as its policy stands now, from the creation of its template
    /// version on (0 before). Desired counts are not stored: when the
    /// version was activated is not known, only when it was created.
    pub desired: u32,
    /// Prebuilds eligible at `at`, from their recorded lives.
    pub eligible: u32,
    /// Create requests charged to the preset in the step ending at `at`.
    pub hits: u32,
    pub misses: u32,
}

impl Domain {
    /// Every pool's size over the last [`POOL_HISTORY_WINDOW`]: desired and
    /// eligible every [`POOL_HISTORY_STEP`], and the hits and misses between.
    pub async fn pool_history(&self, actor: &Actor) -> Result<Vec<PoolHistory>> {
        actor.authorize_to("read pool history", Action::Read, Object::any(Resource::Workspace))?;
        let (raw, snapshot) = self.prebuilds_snapshot().await?;
        let pools: Vec<_> = raw.presets.iter().zip(&snapshot.presets).filter(|(_, state)| state.keeps_pool()).collect();
        // PostgreSQL keeps microseconds: the last sample is exactly `until`.
        let until = snapshot.now.trunc_subsecs(6);
        let since = until - chrono::Duration::from_std(POOL_HISTORY_WINDOW).map_err(Error::internal)?;
        let ids: Vec<Uuid> = pools.iter().map(|(row, _)| row.preset_id).collect();
        let mut rows: HashMap<Uuid, Vec<PoolSampleRow>> = HashMap::new();
        for row in self.store.pool_history(&ids, since, until, POOL_HISTORY_STEP).await? {
            rows.entry(row.preset_id).or_default().push(row);
        }
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(pools
            .into_iter()
            .map(|(row, state)| PoolHistory {
                template_id: row.template_id,
                template_name: row.template_name.clone(),
                preset_id: row.preset_id,
                preset_name: row.preset_name.clone(),
                since,
                until,
                samples: rows
                    .remove(&row.preset_id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| PoolSample {
                        at: r.at,
                        desired: if r.version_existed { reconcile::desired(state, r.at) } else { 0 },
                        eligible: count(r.eligible),
                        hits: count(r.hits),
                        misses: count(r.misses),
                    })
                    .collect(),
            })
            .collect())
    }

    /// The latest `limit` create requests (at most 500), newest first.
    pub async fn recent_claims(&self, actor: &Actor, limit: i64) -> Result<Vec<RecentClaimRow>> {
        actor.authorize_to("read prebuild claims", Action::Read, Object::any(Resource::Workspace))?;
        if !(1..=MAX_RECENT_CLAIMS).contains(&limit) {
            return Err(Error::field("limit", format!("must be between 1 and {MAX_RECENT_CLAIMS}")));
        }
        Ok(self.store.recent_claims(limit).await?)
    }
}
