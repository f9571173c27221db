//! The inbox API: each user reads, marks and watches their own
//! notifications, and nobody else's.

use axum::extract::State;
use axum::response::Response;
use axum::response::sse::Event;
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_sdk::{MarkAllNotificationsReadResponse, NotificationsQuery, NotificationsResponse, Response as Body};

use super::extract::{Path, Query};
use super::{ApiError, AppState, message, sse};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(watch_inbox))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
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
    Ok(axum::Json(state.domain.inbox(&actor, query).await?))
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
    state.domain.mark_notification_read(&actor, id).await?;
    Ok(message("Marked as read."))
}

/// Marks all of the caller's notifications read.
#[utoipa::path(put, path = "/api/v2/notifications/inbox/read-all", tag = "notifications",
    security(("session_token" = [])),
    responses((status = 200, body = MarkAllNotificationsReadResponse), (status = 401, body = Body)))]
async fn mark_all_read(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<axum::Json<MarkAllNotificationsReadResponse>, ApiError> {
    Ok(axum::Json(state.domain.mark_all_notifications_read(&actor).await?))
}

/// Server-Sent Events: a `notification` event (a Notification) for each
/// notification the caller receives after the stream opened. Ends when the
/// server shuts down; clients reconnect and list the inbox to catch up.
#[utoipa::path(get, path = "/api/v2/notifications/inbox/watch", tag = "notifications",
    security(("session_token" = [])),
    responses((status = 200, content_type = "text/event-stream"), (status = 401, body = Body)))]
async fn watch_inbox(State(state): State<AppState>, actor: Actor) -> Result<Response, ApiError> {
    let notifications = state.domain.watch_inbox(&actor).await?;
    Ok(sse(
        &state,
        notifications.map(|n| {
            Event::default().event("notification").id(n.id.to_string()).json_data(n).expect("a notification serialises")
        }),
    ))
}
