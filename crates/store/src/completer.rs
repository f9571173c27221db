//! Records how builds ended, many per statement (see [`crate::batching`]).
//!
//! With many daemons finishing builds at once, each completion as its own
//! statement was measured to spend most of PostgreSQL's time starting
//! statements rather than writing rows. The completions that arrive while
//! one batch is written are written together by the next: one statement
//! that locks each job its worker still holds, stores its last log lines,
//! ends it, stores its build's state and resources and deletes the
//! workspace of a successful `delete`, and answers for each job alone.
//!
//! A batch that fails as a whole (a deadlock with another writer, a value
//! the database refuses) is written again one completion at a time (see
//! [`batching::together_or_alone`]).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;
use warmspace_states::{JobStatus, LogLevel, LogSource};

use crate::Result;
use crate::batching::{self, Asked, Batch, Written};
use crate::jobs::{MAX_JOB_LOG_BYTES, NewLog};

/// At most this many completions go in one statement.
const MAX_BATCH: usize = 64;

/// How one build ended, as its daemon reported it.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) job_id: Uuid,
    pub(crate) worker_id: Uuid,
    pub(crate) status: JobStatus,
    pub(crate) error: Option<String>,
    pub(crate) interrupted: bool,
    pub(crate) at: DateTime<Utc>,
    /// Empty when the backend keeps none (unlike never reported).
    pub(crate) state: Vec<u8>,
    /// (address, type, replaced).
    pub(crate) resources: Vec<(String, String, bool)>,
    /// Already cleaned of NUL characters and capped per line.
    pub(crate) logs: Vec<NewLog>,
}

/// What became of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written.
    Done,
    /// The lines would take the log past its cap: nothing was written.
    OverCap,
    /// The worker no longer holds the job.
    Lost,
    /// The job runs no workspace build.
    NoBuild,
}

/// The statement's word for it (`complete_provisioner_builds`, migration 0028).
impl TryFrom<String> for Outcome {
    type Error = String;

    fn try_from(word: String) -> Result<Outcome, String> {
        match word.as_str() {
            "done" => Ok(Outcome::Done),
            "over_cap" => Ok(Outcome::OverCap),
            "lost" => Ok(Outcome::Lost),
            "no_build" => Ok(Outcome::NoBuild),
            _ => Err(format!("unknown completion outcome {word:?}")),
        }
    }
}

/// What the statement says of one completion.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Completed {
    #[sqlx(try_from = "String")]
    pub(crate) outcome: Outcome,
    /// The status the job ended with, when done.
    pub(crate) status: Option<JobStatus>,
    pub(crate) logs_stored: i32,
    /// The build's workspace was made from a preset.
    pub(crate) from_preset: bool,
}

/// A handle on the task that writes completions.
#[derive(Clone, Debug)]
pub(crate) struct Completer {
    queue: mpsc::UnboundedSender<Asked<Completion, Completed>>,
}

impl Completer {
    /// Starts the writing task, which writes through `pool` and ends when
    /// every handle has been dropped.
    pub(crate) fn start(pool: PgPool) -> Completer {
        Completer { queue: batching::start::<Completions>(pool) }
    }

    /// Writes `completion` with whatever others are waiting, returning once
    /// it has committed.
    pub(crate) async fn complete(&self, completion: Completion) -> Result<Completed> {
        batching::ask(&self.queue, completion).await
    }
}

/// One statement's worth of completions.
#[derive(Default)]
struct Completions(Vec<Asked<Completion, Completed>>);

impl Batch for Completions {
    type Item = Asked<Completion, Completed>;

    fn take(&mut self, item: Self::Item) -> Option<Self::Item> {
        batching::take_up_to(&mut self.0, MAX_BATCH, item)
    }

    async fn run(self, pool: PgPool) {
        batching::answer_each(&pool, self.0, write).await;
    }
}

/// Writes `completions` in one statement; one row for each, in order.
fn write<'a>(pool: &'a PgPool, completions: &'a [Completion]) -> Written<'a, Completed> {
    Box::pin(write_all(pool, completions))
}

async fn write_all(pool: &PgPool, completions: &[Completion]) -> Result<Vec<Completed>> {
    let mut jobs = Columns::default();
    let mut resources = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut logs = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (n, c) in completions.iter().enumerate() {
        // The statement numbers completions from 1, in order (WITH ORDINALITY).
        let n = n as i32 + 1;
        jobs.ids.push(c.job_id);
        jobs.workers.push(c.worker_id);
        jobs.statuses.push(c.status);
        jobs.errors.push(c.error.as_deref());
        jobs.interrupted.push(c.interrupted);
        jobs.ats.push(c.at);
        jobs.states.push(c.state.as_slice());
        let bytes: usize = c.logs.iter().map(|l| l.output.len()).sum();
        jobs.log_bytes.push(i32::try_from(bytes).unwrap_or(i32::MAX));
        jobs.has_logs.push(!c.logs.is_empty());
        for (address, kind, replaced) in &c.resources {
            resources.0.push(n);
            resources.1.push(address.as_str());
            resources.2.push(kind.as_str());
            resources.3.push(*replaced);
        }
        for line in &c.logs {
            logs.0.push(n);
            logs.1.push(line.created_at);
            logs.2.push(line.level);
            logs.3.push(line.output.as_str());
            logs.4.push(line.source);
            logs.5.push(line.stage.as_str());
        }
    }
    let (log_levels, log_sources): (&[LogLevel], &[LogSource]) = (&logs.2, &logs.4);
    Ok(sqlx::query_as(COMPLETE)
        .bind(&jobs.ids)
        .bind(&jobs.workers)
        .bind(&jobs.statuses)
        .bind(&jobs.errors)
        .bind(&jobs.interrupted)
        .bind(&jobs.ats)
        .bind(&jobs.states)
        .bind(&jobs.log_bytes)
        .bind(&jobs.has_logs)
        .bind(&resources.0)
        .bind(&resources.1)
        .bind(&resources.2)
        .bind(&resources.3)
        .bind(&logs.0)
        .bind(&logs.1)
        .bind(log_levels)
        .bind(&logs.3)
        .bind(log_sources)
        .bind(&logs.5)
        .bind(MAX_JOB_LOG_BYTES as i32)
        .fetch_all(pool)
        .await?)
}

/// The per-job columns of a batch.
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<Uuid>,
    workers: Vec<Uuid>,
    statuses: Vec<JobStatus>,
    errors: Vec<Option<&'a str>>,
    interrupted: Vec<bool>,
    ats: Vec<DateTime<Utc>>,
    states: Vec<&'a [u8]>,
    log_bytes: Vec<i32>,
    has_logs: Vec<bool>,
}

/// The completions of a batch: `complete_provisioner_builds` (migration
/// 0028), whose arguments are the per-job columns, then the resources and
/// the log lines (each with the position of its job, from 1), then the cap.
const COMPLETE: &str = "SELECT * FROM complete_provisioner_builds($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13, $14, $15, $16, $17, $18, $19, $20)";
