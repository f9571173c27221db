//! The inbox API: each user reads, marks and watches their own
//! notifications, and nobody else's.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{
    MarkAllNotificationsReadResponse, Notification, NotificationsQuery, NotificationsResponse, Response as Body,
};
use warmspace_store::notifications::{NotificationRow, inbox_channel};
use warmspace_store::pubsub::{Event as PubSubEvent, PubSub, Subscription};
use warmspace_store::{Store, StoreError};

use super::ApiError;
use super::extract::Query;
use crate::AppState;
use crate::auth::Actor;

const DEFAULT_PAGE: i64 = 25;
const MAX_PAGE: i64 = 1000;
/// How much of the inbox a stream re-reads after announcements may have been lost.
const CATCH_UP_PAGE: i64 = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(watch_inbox))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
}

/// Notifies every active owner and template admin, and announces the
/// notifications to their open inbox streams.
///
/// Takes the store and pub/sub rather than the whole state so that code
/// outside request handling (the provisioning coordinator) can call it.
/// Failures are logged rather than returned: a notification is never worth
/// failing the operation it reports on.
pub async fn notify_template_admins(
    store: &Store,
    pubsub: &PubSub,
    kind: &str,
    title: &str,
    content: &str,
    target_id: Option<Uuid>,
) {
    let notified = match store.notify_template_admins(kind, title, content, target_id).await {
        Ok(notified) => notified,
        Err(err) => return tracing::warn!(kind, error = %err, "cannot notify template admins"),
    };
    // The insert has committed, so a stream fetching the notification finds it.
    for n in notified {
        announce(pubsub, n.user_id, n.notification_id).await;
    }
}

/// Tells `user_id`'s open inbox streams about a committed notification.
async fn announce(pubsub: &PubSub, user_id: Uuid, notification_id: Uuid) {
    if let Err(err) = pubsub.publish(&inbox_channel(user_id), &notification_id.to_string()).await {
        // The notification is stored all the same; streams only miss it live.
        tracing::warn!(%user_id, %notification_id, error = %err, "cannot announce a notification");
    }
}

/// The caller's notifications, newest first, and how many are unread.
#[utoipa::path(get, path = "/api/v2/notifications/inbox", tag = "notifications", params(NotificationsQuery),
    security(("session_token" = [])),
    responses((status = 200, body = NotificationsResponse), (status = 400, body = Body),
              (status = 401, body = Body)))]
async fn list_inbox(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<NotificationsQuery>,
) -> Result<axum::Json<NotificationsResponse>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let rows = state.store.notifications(actor.user.id, query.unread, limit).await?;
    let unread_count = state.store.unread_count(actor.user.id).await?;
    Ok(axum::Json(NotificationsResponse {
        notifications: rows.into_iter().map(notification_view).collect(),
        unread_count,
    }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(put, path = "/api/v2/notifications/inbox/{id}/read", tag = "notifications",
    params(("id" = Uuid, Path)), security(("session_token" = [])),
    responses((status = 200, body = Body), (status = 401, body = Body),
              (status = 404, body = Body, description = "No such notification in the caller's inbox")))]
async fn mark_read(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Body>, ApiError> {
    // Somebody else's notification is as absent as a missing one, so ids cannot be probed.
    state.store.mark_notification_read(actor.user.id, id).await.map_err(ApiError::missing("Notification"))?;
    Ok(axum::Json(Body::message("Marked as read.")))
}

/// Marks all of the caller's notifications read.
#[utoipa::path(put, path = "/api/v2/notifications/inbox/read-all", tag = "notifications",
    security(("session_token" = [])),
    responses((status = 200, body = MarkAllNotificationsReadResponse), (status = 401, body = Body)))]
async fn mark_all_read(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<axum::Json<MarkAllNotificationsReadResponse>, ApiError> {
    let marked_read = state.store.mark_all_read(actor.user.id).await?;
    Ok(axum::Json(MarkAllNotificationsReadResponse { marked_read }))
}

/// Server-Sent Events: a `notification` event (a Notification) for each
/// notification the caller receives after the stream opened. Ends when the
/// server shuts down; clients reconnect and list the inbox to catch up.
#[utoipa::path(get, path = "/api/v2/notifications/inbox/watch", tag = "notifications",
    security(("session_token" = [])),
    responses((status = 200, content_type = "text/event-stream"), (status = 401, body = Body)))]
async fn watch_inbox(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let user_id = actor.user.id;
    // Subscribe first: whatever is committed after the inbox is read below is
    // then announced to this stream.
    let events = state.pubsub.subscribe(&inbox_channel(user_id)).await.map_err(ApiError::internal)?;
    // What exists now is not news; remembering it lets a catch-up after lost
    // announcements tell the new from the old.
    let known = state.store.notifications(user_id, false, CATCH_UP_PAGE).await?.into_iter().map(|n| n.id).collect();
    let shutting_down = state.shutting_down();
    let watch = Watch { store: state.store.clone(), user_id, events, known };
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let batch = watch.next_batch().await?;
        Some((batch, watch))
    })
    .flat_map(|batch| futures::stream::iter(batch.into_iter().map(|n| Ok(notification_event(n)))))
    // Clients reconnect to another replica (or this one, restarted).
    .take_until(shutting_down);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One open inbox stream.
struct Watch {
    store: Store,
    user_id: Uuid,
    events: Subscription,
    /// Notifications already in the inbox or sent, never to be sent (again).
    known: HashSet<Uuid>,
}

impl Watch {
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
        match self.store.notification(self.user_id, id).await {
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
        match self.store.notifications(self.user_id, false, CATCH_UP_PAGE).await {
            Ok(rows) => Some(rows.into_iter().rev().filter(|n| !self.known.contains(&n.id)).collect()),
            Err(err) => {
                tracing::warn!(user_id = %self.user_id, error = %err, "inbox stream cannot re-read the inbox");
                None
            }
        }
    }
}

fn notification_event(row: NotificationRow) -> Event {
    Event::default()
        .event("notification")
        .id(row.id.to_string())
        .json_data(notification_view(row))
        .expect("a notification serialises")
}

fn notification_view(row: NotificationRow) -> Notification {
    Notification {
        id: row.id,
        kind: row.kind,
        title: row.title,
        content: row.content,
        target_id: row.target_id,
        created_at: row.created_at,
        read_at: row.read_at,
    }
}
