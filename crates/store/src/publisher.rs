//! Sends pub/sub messages (`NOTIFY`) after the changes they announce have
//! committed, many per transaction.
//!
//! Why not `NOTIFY` inside the transaction that makes the change, which
//! would deliver it exactly at commit: PostgreSQL serialises every
//! committing transaction that has notified, behind one database-wide lock
//! held from before its commit record is written until it is flushed. Under
//! load that turned each claim and each job completion into a turn in one
//! queue (measured: most of the queue's backends waiting on that lock at 16
//! daemons). Messages sent from here commit in batches instead: one
//! statement for whatever has been queued meanwhile, so the lock is taken
//! once per batch, while the changes themselves commit side by side.
//!
//! The price: a message is sent just after its change commits rather than
//! with it, so a process that dies in between loses it. Every listener
//! already treats messages as hints over durable state (a missed one is
//! found by the next periodic pass or by re-reading after a reconnection).

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::batching::{self, Batch};

/// At most this many messages go in one statement.
const MAX_BATCH: usize = 256;

/// The outcome of sending a message, shared by everything sent with it.
pub type Sent = Result<(), Arc<sqlx::Error>>;

/// Messages to send in one transaction, in order, with whatever else is
/// waiting; and who waits for them.
struct Outgoing {
    messages: Vec<(String, String)>,
    sent: oneshot::Sender<Sent>,
}

/// A handle on the task that sends messages in order, in batches.
#[derive(Clone, Debug)]
pub(crate) struct Publisher {
    queue: mpsc::UnboundedSender<Outgoing>,
}

impl Publisher {
    /// Starts the sending task, which sends through `pool` and ends when
    /// every handle has been dropped.
    pub(crate) fn start(pool: PgPool) -> Publisher {
        Publisher { queue: batching::start::<Messages>(pool) }
    }

    /// Sends messages together, returning once they have been sent; a
    /// failure is logged (by the sending task) and otherwise ignored: the
    /// change they announce has committed whatever happens to them.
    /// Channels and payloads must already be valid (see `pubsub`).
    pub(crate) async fn announce(&self, messages: Vec<(String, String)>) {
        if !messages.is_empty() {
            // An error (the task is gone) was logged where it happened.
            self.send(messages).await.ok();
        }
    }

    /// Queues messages to be sent together; the answer comes once they have
    /// been sent (or failed).
    pub(crate) fn send(&self, messages: Vec<(String, String)>) -> oneshot::Receiver<Sent> {
        let (sent, answer) = oneshot::channel();
        if self.queue.send(Outgoing { messages, sent }).is_err() {
            // Only when the task has panicked: it ends with the last handle, and this is one.
            tracing::warn!("pub/sub messages were dropped: the publisher has stopped");
        }
        answer
    }
}

/// One statement's worth of queued messages.
#[derive(Default)]
struct Messages {
    messages: Vec<(String, String)>,
    sent: Vec<oneshot::Sender<Sent>>,
}

impl Batch for Messages {
    type Item = Outgoing;

    /// Takes `outgoing` into the batch, or hands it back when it must wait
    /// for the next one: the batch is full, or it repeats a message already
    /// in the batch (PostgreSQL delivers a message repeated within one
    /// transaction once, and two daemons woken by "1" each are not one).
    fn take(&mut self, outgoing: Outgoing) -> Option<Outgoing> {
        let fits = self.messages.len() + outgoing.messages.len() <= MAX_BATCH || self.messages.is_empty();
        if !fits || outgoing.messages.iter().any(|m| self.messages.contains(m)) {
            return Some(outgoing);
        }
        self.messages.extend(outgoing.messages);
        self.sent.push(outgoing.sent);
        None
    }

    async fn run(self, pool: PgPool) {
        let (channels, payloads): (Vec<&str>, Vec<&str>) =
            self.messages.iter().map(|(c, p)| (c.as_str(), p.as_str())).unzip();
        let outcome = sqlx::query!(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(c, p, i) ORDER BY i",
            &channels as &[&str],
            &payloads as &[&str],
        )
        .execute(&pool)
        .await
        .map(drop)
        .map_err(Arc::new);
        if let Err(err) = &outcome {
            tracing::warn!(error = %err, messages = self.messages.len(), "pub/sub messages could not be sent");
        }
        for sent in self.sent {
            // The sender may have stopped waiting.
            sent.send(outcome.clone()).ok();
        }
    }
}
