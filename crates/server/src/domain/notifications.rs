//! The inbox: each person reads, marks and watches their own notifications
//! and nobody else's; template admins hear of trouble with pools.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use uuid::Uuid;
use warmspace_sdk::{MarkAllNotificationsReadResponse, Notification, NotificationsQuery, NotificationsResponse};
use warmspace_store::StoreError;
use warmspace_store::notifications::{NotificationRow, Notified, inbox_channel};
use warmspace_store::pubsub::{Event as PubSubEvent, Subscription};

use super::views::notification_view;
use super::{Actor, Domain, Error, Found, Result};

const DEFAULT_PAGE: i64 = 25;
const MAX_PAGE: i64 = 1000;
/// How much of the inbox a stream re-reads after announcements may have been lost.
const CATCH_UP_PAGE: i64 = 100;

impl Domain {
    /// Notifies every active owner and template admin, and announces the
    /// notifications to their open inbox streams. A notification is never
    /// worth failing the operation it reports on: failures are logged.
    pub async fn notify_template_admins(&self, kind: &str, title: &str, content: &str, target_id: Option<Uuid>) {
        let notified = match self.store.notify_template_admins(kind, title, content, target_id).await {
            Ok(notified) => notified,
            Err(err) => return tracing::warn!(kind, error = %err, "cannot notify template admins"),
        };
        // The insert has committed, so a stream fetching the notification finds it.
        self.announce(notified).await;
    }

    /// Announces committed notifications to their recipients' open inboxes.
    pub(super) async fn announce(&self, notified: Vec<Notified>) {
        for n in notified {
            self.events.notification(n.user_id, n.notification_id).await;
        }
    }

    /// The actor's notifications, newest first, and how many are unread.
    pub async fn inbox(&self, actor: &Actor, query: NotificationsQuery) -> Result<NotificationsResponse> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::field("limit", format!("must be between 1 and {MAX_PAGE}")));
        }
        let rows = self.store.notifications(actor.user.id, query.unread, limit).await?;
        let unread_count = self.store.unread_count(actor.user.id).await?;
        Ok(NotificationsResponse { notifications: rows.into_iter().map(notification_view).collect(), unread_count })
    }

    /// Marks one of the actor's notifications read. Somebody else's is as
    /// absent as a missing one, so ids cannot be probed.
    pub async fn mark_notification_read(&self, actor: &Actor, id: Uuid) -> Result<()> {
        self.store.mark_notification_read(actor.user.id, id).await.found("Notification")
    }

    pub async fn mark_all_notifications_read(&self, actor: &Actor) -> Result<MarkAllNotificationsReadResponse> {
        Ok(MarkAllNotificationsReadResponse { marked_read: self.store.mark_all_read(actor.user.id).await? })
    }

    /// Every notification the actor receives from now on, as it arrives.
    pub async fn watch_inbox(&self, actor: &Actor) -> Result<impl Stream<Item = Notification> + Send + 'static> {
        let user_id = actor.user.id;
        // Subscribe first: whatever is committed after the inbox is read below
        // is then announced to this stream.
        let events = self.events.subscribe(&inbox_channel(user_id)).await.map_err(Error::internal)?;
        // What exists now is not news; remembering it lets a catch-up after
        // lost announcements tell the new from the old.
        let known = self.store.notifications(user_id, false, CATCH_UP_PAGE).await?.into_iter().map(|n| n.id).collect();
        let watch = InboxWatch { domain: self.clone(), user_id, events, known };
        Ok(futures::stream::unfold(watch, |mut watch| async move {
            let batch = watch.next_batch().await?;
            Some((batch, watch))
        })
        .flat_map(|batch| futures::stream::iter(batch.into_iter().map(notification_view))))
    }
}

/// One open inbox stream.
struct InboxWatch {
    domain: Domain,
    user_id: Uuid,
    events: Subscription,
    /// Notifications already in the inbox or sent, never to be sent (again).
    known: HashSet<Uuid>,
}

impl InboxWatch {
    /// The next new notifications, oldest first; `None` ends the stream.
    async fn next_batch(&mut self) -> Option<Vec<NotificationRow>> {
        loop {
            let fresh = match self.events.recv().await? {
                PubSubEvent::Message(payload) => self.announced(&payload).await?,
                PubSubEvent::Gap => self.catch_up().await?,
            };
            if !fresh.is_empty() {
                self.known.extend(fresh.iter().map(|n| n.id));
                return Some(fresh);
            }
        }
    }

    /// The notification an announcement names, unless already sent.
    async fn announced(&self, payload: &str) -> Option<Vec<NotificationRow>> {
        let Ok(id) = payload.parse::<Uuid>() else {
            tracing::warn!(user_id = %self.user_id, payload, "inbox announcement is not a notification id");
            return Some(Vec::new());
        };
        if self.known.contains(&id) {
            return Some(Vec::new());
        }
        match self.domain.store.notification(self.user_id, id).await {
            Ok(row) => Some(vec![row]),
            // Gone again (its user deleted, say): nothing to tell.
            Err(StoreError::NotFound) => Some(Vec::new()),
            Err(err) => {
                tracing::warn!(user_id = %self.user_id, error = %err, "inbox stream cannot read a notification");
                None
            }
        }
    }

    /// Announcements may have been lost: whatever of the newest page this
    /// stream has not seen is new.
    async fn catch_up(&self) -> Option<Vec<NotificationRow>> {
        match self.domain.store.notifications(self.user_id, false, CATCH_UP_PAGE).await {
            Ok(rows) => Some(rows.into_iter().rev().filter(|n| !self.known.contains(&n.id)).collect()),
            Err(err) => {
                tracing::warn!(user_id = %self.user_id, error = %err, "inbox stream cannot re-read the inbox");
                None
            }
        }
    }
}
