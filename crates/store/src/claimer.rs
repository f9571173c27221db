//! Hands prebuilds over to the people claiming them at the same moment, one
//! statement for all of them (see [`crate::batching`]).
//!
//! A claim's statement costs PostgreSQL far more to start and commit than
//! its rows cost to write (executor start-up, its tables' `CHECK`
//! constraints prepared anew, a commit, a round trip): under a burst, the
//! claims that queue while one statement runs share the next, whatever
//! presets they are for. A lone claim runs at once, alone.
//!
//! Claims run on a connection of their own, when the store's budget has
//! room for it (at least three connections), set to always use the plan
//! PostgreSQL keeps for the prepared statement. Statements run one batch at
//! a time, so one connection is all they need; and from the shared pool,
//! each of its connections planned the statement anew for its first calls
//! (PostgreSQL compares five plans made for the values with the kept one
//! before it settles), 2.8 ms each, more than the statement takes to run:
//! with twenty connections that was most claims of a benchmark's level.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::batching::{self, Asked, Batch, Written};
use crate::claims::{CLAIM, CLAIM_ATTEMPTS, ClaimRequest, Claimed, ClaimedRow, is_build_number_taken, ms_since};
use crate::{Result, StoreError};

/// At most this many claims go in one statement.
const MAX_BATCH: usize = 32;

/// A claim, with the store's time when it was asked.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    request: ClaimRequest,
    at: DateTime<Utc>,
}

/// A handle on the task that carries out claims.
#[derive(Clone, Debug)]
pub(crate) struct Claimer {
    queue: mpsc::UnboundedSender<Asked<Claim, Option<Claimed>>>,
}

impl Claimer {
    /// Starts the task, which claims through `pool` and ends when every
    /// handle has been dropped.
    pub(crate) fn start(pool: PgPool) -> Claimer {
        Claimer { queue: batching::start::<Claims>(pool) }
    }

    /// Carries out `request` (asked at `at`) with whichever other claims
    /// are being made; `None` when its preset had no eligible prebuild left.
    pub(crate) async fn claim(&self, request: ClaimRequest, at: DateTime<Utc>) -> Result<Option<Claimed>> {
        batching::ask(&self.queue, Claim { request, at }).await
    }
}

/// One statement's worth of claims.
#[derive(Default)]
struct Claims(Vec<Asked<Claim, Option<Claimed>>>);

impl Batch for Claims {
    type Item = Asked<Claim, Option<Claimed>>;

    fn take(&mut self, item: Self::Item) -> Option<Self::Item> {
        batching::take_up_to(&mut self.0, MAX_BATCH, item)
    }

    async fn run(self, pool: PgPool) {
        // A claim whose name the user already has fails the statement; then
        // each claim runs alone, and only that one fails.
        batching::answer_each(&pool, self.0, write).await;
    }
}

fn write<'a>(pool: &'a PgPool, claims: &'a [Claim]) -> Written<'a, Option<Claimed>> {
    Box::pin(claim_all(pool, claims))
}

/// Carries out `claims` in one statement, tried again (up to
/// [`CLAIM_ATTEMPTS`] times) when a build queued for a picked prebuild (its
/// deletion, by the reconciler, which locks the workspace without changing
/// it) committed after the statement's snapshot and before its lock: the
/// statement then fails on the build's number, having written nothing, and
/// a new one sees the prebuild as it is.
async fn claim_all(pool: &PgPool, claims: &[Claim]) -> Result<Vec<Option<Claimed>>> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match run_claims(pool, claims).await {
            Ok(rows) => {
                let placed = batching::by_position(claims.len(), rows, |row| row.claimer);
                let claimed = placed.into_iter().zip(claims);
                return Ok(claimed.map(|(row, c)| row.map(|r| r.into_claimed(&c.request.parameters))).collect());
            }
            Err(err) if attempts < CLAIM_ATTEMPTS && is_build_number_taken(&err) => {
                tracing::debug!(claims = claims.len(), "a picked prebuild changed under the claims; claiming again");
            }
            Err(err) => return Err(StoreError::conflict_on(err, &[("workspaces_owner_name_key", "name")])),
        }
    }
}

async fn run_claims(pool: &PgPool, claims: &[Claim]) -> std::result::Result<Vec<ClaimedRow>, sqlx::Error> {
    let asked: Vec<ClaimRecord> = claims
        .iter()
        .enumerate()
        .map(|(n, claim)| {
            let r = &claim.request;
            ClaimRecord {
                // The statement's claims count from 1.
                i: n as i64 + 1,
                preset_id: r.preset_id,
                owner_id: r.user_id,
                name: &r.name,
                ttl_ms: r.ttl_ms,
                schedule: r.autostart_schedule.as_deref(),
                deadline: r.deadline,
                max_deadline: r.max_deadline,
                reinit: r.reinit,
                template_id: r.template_id,
                // The statement adds its own time up to the claim record's write.
                waited_ms: ms_since(r.arrived),
                build_id: Uuid::new_v4(),
                job_id: Uuid::new_v4(),
                parameters: &r.parameters,
            }
        })
        .collect();
    // The latest: none of the claims was asked after it.
    let at = claims.iter().map(|c| c.at).max().unwrap_or_else(Utc::now);
    sqlx::query_as::<_, ClaimedRow>(sqlx::AssertSqlSafe(CLAIM.as_str()))
        .bind(Json(&asked))
        .bind(at)
        .fetch_all(pool)
        .await
}

/// A claim as the statement reads it (see [`CLAIM`]).
#[derive(Serialize)]
struct ClaimRecord<'a> {
    i: i64,
    preset_id: Uuid,
    owner_id: Uuid,
    name: &'a str,
    ttl_ms: Option<i64>,
    schedule: Option<&'a str>,
    deadline: Option<DateTime<Utc>>,
    max_deadline: Option<DateTime<Utc>>,
    reinit: bool,
    template_id: Uuid,
    waited_ms: f64,
    build_id: Uuid,
    job_id: Uuid,
    parameters: &'a BTreeMap<String, String>,
}
