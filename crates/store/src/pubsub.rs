//! Pub/sub between replicas over PostgreSQL `LISTEN/NOTIFY`.
//!
//! Each process keeps one listening connection, owned by a background task
//! that holds every subscription. A message published on any replica reaches
//! the subscribers of its channel on every replica, this one included.
//! Notifications are not durable: those sent while the listening connection is
//! down are lost, so after a reconnection each subscriber receives
//! [`Event::Gap`] and should re-read whatever durable state it watches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::publisher::Publisher;

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7999;
/// PostgreSQL truncates identifiers, channel names included, past 63 bytes.
pub const MAX_CHANNEL: usize = 63;

const SUBSCRIBER_BUFFER: usize = 1024;
/// The longest wait between two attempts to reconnect the listener.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);
/// Waits between attempts to reconnect the listener: 100 ms doubling to
/// [`MAX_RECONNECT_WAIT`], for as long as the pub/sub runs.
const RECONNECT_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(MAX_RECONNECT_WAIT)
    .with_factor(2.0)
    .without_max_times();

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message(String),
    /// Messages may have been missed (the listener reconnected, or this
    /// subscriber fell behind): re-read the durable state.
    Gap,
}

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("channel name {0:?} is empty or longer than {MAX_CHANNEL} bytes")]
    BadChannel(String),
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge(usize),
    #[error("the pub/sub listener has stopped")]
    Stopped,
    #[error(transparent)]
    Database(#[from] Arc<sqlx::Error>),
}

enum Command {
    Subscribe { channel: String, reply: oneshot::Sender<broadcast::Receiver<Event>> },
    Release { channel: String },
    Close { done: oneshot::Sender<()> },
}

#[derive(Clone, Debug)]
pub struct PubSub {
    publisher: Publisher,
    commands: mpsc::UnboundedSender<Command>,
}

impl PubSub {
    /// Starts the listening task on its own connection (not one of the
    /// store's), publishing through the store's publisher.
    pub fn start(options: PgConnectOptions, store: &crate::Store) -> PubSub {
        let (commands, rx) = mpsc::unbounded_channel();
        let listener_pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        tokio::spawn(listen_loop(listener_pool, rx));
        PubSub { publisher: store.publisher().clone(), commands }
    }

    /// Publishes `payload` to every subscriber of `channel` on every replica,
    /// returning once it has been sent (with whatever else was waiting to
    /// be: see [`crate::publisher`]). Call it after the transaction whose
    /// change it announces has committed.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<(), PubSubError> {
        self.publish_all(vec![(channel.to_owned(), payload.to_owned())]).await
    }

    /// Publishes (channel, payload) messages in one transaction, in order
    /// (a message repeated in it is delivered once), returning once sent.
    pub async fn publish_all(&self, messages: Vec<(String, String)>) -> Result<(), PubSubError> {
        for (channel, payload) in &messages {
            check_channel(channel)?;
            if payload.len() > MAX_PAYLOAD {
                return Err(PubSubError::PayloadTooLarge(payload.len()));
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        match self.publisher.send(messages).await {
            Ok(sent) => sent.map_err(PubSubError::Database),
            Err(_) => Err(PubSubError::Stopped),
        }
    }

    /// Stops listening and closes the listening connection; subscribers see
    /// the end of their stream. Call before the database goes away, so
    /// shutting down logs no lost-connection warnings.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).is_ok() {
            // An error means the task ended without answering: it has stopped all the same.
            closed.await.ok();
        }
    }

    /// Subscribes to `channel`. When this returns the channel is being
    /// listened to, so anything published afterwards is delivered.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, PubSubError> {
        check_channel(channel)?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe { channel: channel.to_owned(), reply })
            .map_err(|_| PubSubError::Stopped)?;
        let receiver = rx.await.map_err(|_| PubSubError::Stopped)?;
        Ok(Subscription { channel: channel.to_owned(), receiver, commands: self.commands.clone() })
    }
}

fn check_channel(channel: &str) -> Result<(), PubSubError> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL {
        return Err(PubSubError::BadChannel(channel.to_owned()));
    }
    Ok(())
}

pub struct Subscription {
    channel: String,
    receiver: broadcast::Receiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Subscription {
    /// The next event; `None` once the pub/sub has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Event::Gap),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Subscription {
    /// An event already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Event> {
        match self.receiver.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Event::Gap),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Fails only once the listener has stopped, when there is nothing left to release.
        self.commands.send(Command::Release { channel: std::mem::take(&mut self.channel) }).ok();
    }
}

/// Channel name → the sender its subscribers receive from.
type Channels = HashMap<String, broadcast::Sender<Event>>;

async fn listen_loop(pool: PgPool, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut channels = Channels::new();
    // Subscriptions waiting for the connection to come back.
    let mut waiting: Vec<(String, oneshot::Sender<broadcast::Receiver<Event>>)> = Vec::new();
    let mut backoff = RECONNECT_BACKOFF.build();
    let mut connected_before = false;
    loop {
        let mut listener = match connect(&pool, &channels, &mut waiting).await {
            Ok(listener) => listener,
            Err(err) => {
                // Built without a limit on attempts, the backoff never runs out; the maximum only satisfies the type.
                let delay = backoff.next().unwrap_or(MAX_RECONNECT_WAIT);
                tracing::warn!(error = %err, retry_in = ?delay, "pub/sub listener cannot connect");
                // Keep accepting commands while down so that a stopped PubSub ends this task.
                if let Stop::Yes(done) = wait_or_queue(&mut commands, &mut channels, &mut waiting, delay).await {
                    return finish(pool, done).await;
                }
                continue;
            }
        };
        // Connected: the next loss starts over from the shortest wait.
        backoff = RECONNECT_BACKOFF.build();
        if connected_before {
            tracing::info!("pub/sub listener reconnected");
            broadcast_gap(&channels);
        }
        connected_before = true;

        loop {
            tokio::select! {
                command = commands.recv() => {
                    let outcome = match command {
                        None => return finish(pool, None).await,
                        Some(Command::Close { done }) => {
                            drop(listener);
                            return finish(pool, Some(done)).await;
                        }
                        Some(Command::Subscribe { channel, reply }) => {
                            subscribe(&mut listener, &mut channels, channel, reply, &mut waiting).await
                        }
                        Some(Command::Release { channel }) => release(&mut listener, &mut channels, &channel).await,
                    };
                    if let Err(err) = outcome {
                        tracing::warn!(error = %err, "pub/sub listener lost its connection");
                        break;
                    }
                }
                notification = listener.try_recv() => match notification {
                    Ok(Some(n)) => {
                        if let Some(sender) = channels.get(n.channel()) {
                            // Fails only when nobody subscribes any more (they are releasing).
                            sender.send(Event::Message(n.payload().to_owned())).ok();
                        }
                    }
                    // sqlx reconnected and re-listened by itself; anything sent meanwhile is gone.
                    Ok(None) => broadcast_gap(&channels),
                    Err(err) => {
                        tracing::warn!(error = %err, "pub/sub listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}

async fn connect(
    pool: &PgPool,
    channels: &Channels,
    waiting: &mut Vec<(String, oneshot::Sender<broadcast::Receiver<Event>>)>,
) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    let names: Vec<&str> = channels.keys().map(String::as_str).collect();
    listener.listen_all(names).await?;
    for (channel, reply) in waiting.drain(..) {
        listener.listen(&channel).await?;
        answer(reply, &channels[&channel]);
    }
    Ok(listener)
}

async fn finish(pool: PgPool, done: Option<oneshot::Sender<()>>) {
    pool.close().await;
    if let Some(done) = done {
        // The closer may have given up waiting; it needs no answer then.
        done.send(()).ok();
    }
}

enum Stop {
    No,
    /// Closed, or every handle dropped (`None`).
    Yes(Option<oneshot::Sender<()>>),
}

/// While disconnected: sleeps `delay`, queueing subscriptions for when the
/// connection returns.
async fn wait_or_queue(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    channels: &mut Channels,
    waiting: &mut Vec<(String, oneshot::Sender<broadcast::Receiver<Event>>)>,
    delay: Duration,
) -> Stop {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return Stop::No,
            command = commands.recv() => match command {
                None => return Stop::Yes(None),
                Some(Command::Close { done }) => return Stop::Yes(Some(done)),
                Some(Command::Subscribe { channel, reply }) => {
                    channels.entry(channel.clone()).or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0);
                    waiting.push((channel, reply));
                }
                Some(Command::Release { channel }) => {
                    if channels.get(&channel).is_some_and(|s| s.receiver_count() == 0)
                        && !waiting.iter().any(|(c, _)| *c == channel)
                    {
                        channels.remove(&channel);
                    }
                }
            },
        }
    }
}

async fn subscribe(
    listener: &mut PgListener,
    channels: &mut Channels,
    channel: String,
    reply: oneshot::Sender<broadcast::Receiver<Event>>,
    waiting: &mut Vec<(String, oneshot::Sender<broadcast::Receiver<Event>>)>,
) -> Result<(), sqlx::Error> {
    if let Some(sender) = channels.get(&channel) {
        answer(reply, sender);
        return Ok(());
    }
    channels.insert(channel.clone(), broadcast::channel(SUBSCRIBER_BUFFER).0);
    if let Err(err) = listener.listen(&channel).await {
        // Answer once the connection is back and the LISTEN has really run.
        waiting.push((channel, reply));
        return Err(err);
    }
    answer(reply, &channels[&channel]);
    Ok(())
}

async fn release(listener: &mut PgListener, channels: &mut Channels, channel: &str) -> Result<(), sqlx::Error> {
    if channels.get(channel).is_some_and(|s| s.receiver_count() == 0) {
        channels.remove(channel);
        listener.unlisten(channel).await?;
    }
    Ok(())
}

/// Hands a subscriber its receiver. A subscriber that stopped waiting for it
/// (its request was dropped) needs none.
fn answer(reply: oneshot::Sender<broadcast::Receiver<Event>>, sender: &broadcast::Sender<Event>) {
    reply.send(sender.subscribe()).ok();
}

fn broadcast_gap(channels: &Channels) {
    for sender in channels.values() {
        // Fails only when nobody subscribes any more.
        sender.send(Event::Gap).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_from_100ms_up_to_5s_and_never_give_up() {
        // backon doubles in f32: compare to the nearest millisecond.
        let waits: Vec<u128> =
            RECONNECT_BACKOFF.build().take(9).map(|wait| (wait + Duration::from_micros(500)).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(RECONNECT_BACKOFF.build().take(10_000).filter(|&wait| wait <= MAX_RECONNECT_WAIT).count(), 10_000);
    }
}
