//! Statements shared by whatever is waiting when they run: group commit.
//!
//! A task per store takes requests from a queue and runs them as one
//! statement: the first request that arrives, and every other that is
//! already queued then and fits ([`Batch::take`]). While one batch runs the
//! next gathers, so batches are as large as the load makes them and no
//! request waits for a timer: a lone request runs at once, alone.
//!
//! A statement costs PostgreSQL about as much to start as a small one costs
//! to run (planning or plan lookup, executor start-up, its constraints'
//! expressions prepared anew, a commit, a round trip); under load, most of
//! what many small statements cost. See the publisher and the completer.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// What gathers into one statement.
pub(crate) trait Batch: Default + Send + 'static {
    /// A request, carrying whatever its answer is sent back through.
    type Item: Send + 'static;

    /// Takes `item` into the batch, or hands it back when it must wait for
    /// the next one. An empty batch takes anything.
    fn take(&mut self, item: Self::Item) -> Option<Self::Item>;

    /// Runs the batch and answers each request in it.
    fn run(self, pool: PgPool) -> impl Future<Output = ()> + Send;
}

/// Starts the task running batches of `B` through `pool`; it ends when
/// every sender has been dropped.
pub(crate) fn start<B: Batch>(pool: PgPool) -> mpsc::UnboundedSender<B::Item> {
    let (queue, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_batches::<B>(pool, rx));
    queue
}

async fn run_batches<B: Batch>(pool: PgPool, mut queue: mpsc::UnboundedReceiver<B::Item>) {
    let mut held = None;
    loop {
        let first = match held.take() {
            Some(item) => item,
            None => match queue.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let mut batch = B::default();
        // An empty batch takes anything.
        let _taken = batch.take(first);
        while let Ok(item) = queue.try_recv() {
            held = batch.take(item);
            if held.is_some() {
                break;
            }
        }
        batch.run(pool.clone()).await;
    }
}

/// [`Batch::take`] for a batch that takes any request while it holds
/// fewer than `max`.
pub(crate) fn take_up_to<T>(batch: &mut Vec<T>, max: usize, item: T) -> Option<T> {
    if batch.len() >= max {
        return Some(item);
    }
    batch.push(item);
    None
}

/// The rows of a batch's statement put back in the order of its `requests`
/// requests: each row names its request by `position`, counted from 1
/// (`WITH ORDINALITY`); a request no row names gets `None`.
pub(crate) fn by_position<R>(requests: usize, rows: Vec<R>, position: impl Fn(&R) -> i64) -> Vec<Option<R>> {
    let mut placed: Vec<Option<R>> = std::iter::repeat_with(|| None).take(requests).collect();
    for row in rows {
        if let Some(slot) = usize::try_from(position(&row) - 1).ok().and_then(|n| placed.get_mut(n)) {
            *slot = Some(row);
        }
    }
    placed
}

/// What a batch's statement answers: one answer for each request, in order.
pub(crate) type Written<'a, R> = Pin<Box<dyn Future<Output = Result<Vec<R>>> + Send + 'a>>;

/// Runs `write` over all of `items`; when that fails and there was more
/// than one, runs it over each alone, so one the database refuses fails by
/// itself and the others as they would have.
pub(crate) async fn together_or_alone<T, R>(
    pool: &PgPool,
    items: &[T],
    write: for<'a> fn(&'a PgPool, &'a [T]) -> Written<'a, R>,
) -> Vec<Result<R>> {
    match write(pool, items).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(err) if items.len() == 1 => vec![Err(err)],
        Err(err) => {
            tracing::debug!(error = %err, items = items.len(), "a batch failed; running its requests one by one");
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                let alone = write(pool, std::slice::from_ref(item)).await;
                answers.push(alone.and_then(|mut a| a.pop().ok_or(StoreError::NotFound)));
            }
            answers
        }
    }
}

/// A request queued for a batch, with where its answer goes.
pub(crate) type Asked<T, R> = (T, oneshot::Sender<Result<R>>);

/// Queues `request` for the task behind `queue` and waits for its answer.
pub(crate) async fn ask<T, R>(queue: &mpsc::UnboundedSender<Asked<T, R>>, request: T) -> Result<R> {
    let shutting_down = || StoreError::InProgress("the server is shutting down".into());
    let (answer, answered) = oneshot::channel();
    queue.send((request, answer)).map_err(|_| shutting_down())?;
    answered.await.map_err(|_| shutting_down())?
}

/// Runs `requests` through `write` ([`together_or_alone`]) and sends each
/// its answer.
pub(crate) async fn answer_each<T, R>(
    pool: &PgPool,
    requests: Vec<Asked<T, R>>,
    write: for<'a> fn(&'a PgPool, &'a [T]) -> Written<'a, R>,
) {
    let (items, answers): (Vec<T>, Vec<_>) = requests.into_iter().unzip();
    let written = together_or_alone(pool, &items, write).await;
    for (answer, result) in answers.into_iter().zip(written) {
        // The caller may have stopped waiting.
        answer.send(result).ok();
    }
}
