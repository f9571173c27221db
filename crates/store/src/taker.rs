//! Hands out jobs to the daemons asking at the same moment, one statement
//! for all of them (see [`crate::batching`]).
//!
//! Daemons that ask together share a statement when they have the same
//! tags and the same queue policy (a job fits a daemon by its tags, so the
//! pick is shared only between daemons that fit the same jobs); the others
//! ask in the next one. `take_provisioner_jobs` (migration 0028) gives out
//! the jobs in the order the daemons asked.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::mpsc;

use crate::Result;
use crate::batching::{self, Asked, Batch, Written};
use crate::jobs::{DAEMON_LIVENESS, DAEMON_TOUCH_EVERY, QueuePolicy, TakenJob, TakenRow, Worker};

/// At most this many daemons are served by one statement.
const MAX_BATCH: usize = 64;

/// A daemon asking for a job.
#[derive(Debug, Clone)]
pub(crate) struct Take {
    pub(crate) worker: Worker,
    pub(crate) policy: QueuePolicy,
    pub(crate) at: DateTime<Utc>,
}

/// A handle on the task that hands out jobs.
#[derive(Clone, Debug)]
pub(crate) struct Taker {
    queue: mpsc::UnboundedSender<Asked<Take, Option<TakenJob>>>,
}

impl Taker {
    /// Starts the task, which takes through `pool` and ends when every
    /// handle has been dropped.
    pub(crate) fn start(pool: PgPool) -> Taker {
        Taker { queue: batching::start::<Takes>(pool) }
    }

    /// Takes a job for `take`'s worker, with whichever other daemons are
    /// asking; `None` when there is none for it.
    pub(crate) async fn take(&self, take: Take) -> Result<Option<TakenJob>> {
        batching::ask(&self.queue, take).await
    }
}

/// One statement's worth of daemons asking.
#[derive(Default)]
struct Takes(Vec<Asked<Take, Option<TakenJob>>>);

impl Batch for Takes {
    type Item = Asked<Take, Option<TakenJob>>;

    fn take(&mut self, item: Self::Item) -> Option<Self::Item> {
        let fits = self.0.first().is_none_or(|(first, _)| {
            first.worker.tags == item.0.worker.tags
                && first.policy.lease == item.0.policy.lease
                && first.policy.prebuild_share == item.0.policy.prebuild_share
        });
        if !fits {
            return Some(item);
        }
        batching::take_up_to(&mut self.0, MAX_BATCH, item)
    }

    async fn run(self, pool: PgPool) {
        // A daemon that stopped waiting leaves its job, if any, to go back when its lease runs out.
        batching::answer_each(&pool, self.0, write).await;
    }
}

/// Takes a job for each of `takes` in one statement; `None` for those there
/// was none for. All of them have the same tags and policy.
fn write<'a>(pool: &'a PgPool, takes: &'a [Take]) -> Written<'a, Option<TakenJob>> {
    Box::pin(take_all(pool, takes))
}

async fn take_all(pool: &PgPool, takes: &[Take]) -> Result<Vec<Option<TakenJob>>> {
    let Some(first) = takes.first() else { return Ok(Vec::new()) };
    let ids: Vec<_> = takes.iter().map(|t| t.worker.id).collect();
    let names: Vec<&str> = takes.iter().map(|t| t.worker.name.as_str()).collect();
    let keys: Vec<Option<&str>> = takes.iter().map(|t| t.worker.key_id.as_deref()).collect();
    // The latest: none of the daemons asked after it.
    let at = takes.iter().map(|t| t.at).max().unwrap_or(first.at);
    let sql = format!(
        "SELECT * FROM take_provisioner_jobs($1, $2, $3, $4, $5, $6, $7, interval '{DAEMON_LIVENESS}', \
                                             interval '{DAEMON_TOUCH_EVERY}')"
    );
    let rows: Vec<TakenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&names)
        .bind(&keys)
        .bind(Json(&first.worker.tags))
        .bind(first.policy.lease)
        .bind(at)
        .bind(first.policy.prebuild_share)
        .fetch_all(pool)
        .await?;
    let placed = batching::by_position(takes.len(), rows, |row| row.taker);
    Ok(placed.into_iter().map(|row| row.map(TakenRow::into_taken)).collect())
}
