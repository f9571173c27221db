//! Announcements between replicas over pub/sub. Each is published after
//! the transaction whose change it announces has committed (never inside
//! one), and none is load-bearing: a lost announcement only delays its
//! listeners until they next look at the durable state. Two are not made
//! here: a queued job and a claimed prebuild are announced by the store's
//! statement that queues or claims, as part of its transaction (so they are
//! delivered at its commit, and cost no statement of their own).

use uuid::Uuid;
use warmspace_store::jobs::{JOB_POSTED_CHANNEL, Notices, job_events_channel};
use warmspace_store::notifications::inbox_channel;
use warmspace_store::pubsub::{PubSub, PubSubError, Subscription};

/// Anything that may change a pool's picture is announced here; every
/// replica's reconciler wakes, and the one holding the lock acts.
pub const RECONCILE_CHANNEL: &str = "prebuilds_reconcile";

/// What a reconciliation trigger is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Something that changed one preset's pool alone (a claim, creations
    /// canceled): that preset is reconciled, reading only its rows.
    Preset(Uuid),
    /// A workspace build's job ended: the pool of the preset its workspace
    /// was made from, if any, is reconciled (the reconciler looks the
    /// preset up, so whoever finishes a job needs not know it).
    Job(Uuid),
    /// Something that may change any pool (a version activated, settings,
    /// pause or resume, an invalidation), with why, for logs: a full cycle.
    All(&'static str),
}

impl Trigger {
    fn payload(self) -> String {
        match self {
            Trigger::Preset(id) => format!("preset {id}"),
            Trigger::Job(id) => format!("job {id}"),
            Trigger::All(why) => why.to_owned(),
        }
    }

    /// A received trigger; anything but a named preset or job (including
    /// what an older replica announces) asks for a full cycle.
    pub fn parse(payload: &str) -> Trigger {
        let named = |prefix: &str| payload.strip_prefix(prefix).and_then(|id| id.parse().ok());
        match (named("preset "), named("job ")) {
            (Some(preset), _) => Trigger::Preset(preset),
            (None, Some(job)) => Trigger::Job(job),
            (None, None) => Trigger::All("announced"),
        }
    }
}

/// Published on a job's event channel when new log lines are stored.
pub const EVENT_LOGS: &str = "logs";
/// Published on a job's event channel when it has finished.
pub const EVENT_DONE: &str = "done";

#[derive(Clone, Debug)]
pub struct Events {
    pubsub: PubSub,
}

impl Events {
    pub fn new(pubsub: PubSub) -> Events {
        Events { pubsub }
    }

    async fn publish(&self, channel: &str, payload: &str) {
        if let Err(err) = self.pubsub.publish(channel, payload).await {
            tracing::warn!(channel, error = %err, "could not announce an event; listeners will catch up later");
        }
    }

    /// A job stored new log lines.
    pub async fn job_logs(&self, job_id: Uuid) {
        self.publish(&job_events_channel(job_id), EVENT_LOGS).await;
    }

    /// A job finished.
    pub async fn job_done(&self, job_id: Uuid) {
        self.publish(&job_events_channel(job_id), EVENT_DONE).await;
    }

    /// A workspace build finished (succeeded, failed or canceled, by its
    /// daemon or without one): its followers see the end, and the pools
    /// look again — a prebuild became ready, failed, or went away: the
    /// pool of the workspace's preset alone.
    pub async fn build_finished(&self, job_id: Uuid) {
        self.job_done(job_id).await;
        self.reconcile(Trigger::Job(job_id)).await;
    }

    /// What [`Events::build_finished`] announces, for a completion that
    /// makes its announcements itself once committed: the end, to the job's
    /// followers, and — only when the build's workspace was made from a
    /// preset — the reconciliation trigger naming the job. (No "logs"
    /// announcement: a follower woken by the end reads every line.)
    pub fn build_finished_notices(&self, job_id: Uuid) -> Notices {
        Notices {
            always: vec![(job_events_channel(job_id), EVENT_DONE.to_owned())],
            if_preset: Some((RECONCILE_CHANNEL.to_owned(), Trigger::Job(job_id).payload())),
        }
    }

    /// A prebuild of the preset was claimed (committed): the claim's own
    /// announcements (see `Claimed::announcements`) and the trigger that
    /// refills the preset's pool go out in one transaction.
    pub async fn claimed(&self, mut announcements: Vec<(String, String)>, preset_id: Uuid) {
        announcements.push((RECONCILE_CHANNEL.to_owned(), Trigger::Preset(preset_id).payload()));
        if let Err(err) = self.pubsub.publish_all(announcements).await {
            tracing::warn!(%preset_id, error = %err, "could not announce a claim; listeners will catch up later");
        }
    }

    /// Something changed a pool's picture: reconcile soon.
    pub async fn reconcile(&self, trigger: Trigger) {
        self.publish(RECONCILE_CHANNEL, &trigger.payload()).await;
    }

    /// A notification was stored for `user_id`.
    pub async fn notification(&self, user_id: Uuid, notification_id: Uuid) {
        self.publish(&inbox_channel(user_id), &notification_id.to_string()).await;
    }

    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, PubSubError> {
        self.pubsub.subscribe(channel).await
    }

    pub async fn job_posted(&self) -> Result<Subscription, PubSubError> {
        self.pubsub.subscribe(JOB_POSTED_CHANNEL).await
    }
}
