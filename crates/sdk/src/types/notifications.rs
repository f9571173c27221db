//! The inbox: per-user notifications.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: Uuid,
    /// A short machine-readable kind, such as `prebuild_resources_replaced`.
    pub kind: String,
    pub title: String,
    pub content: String,
    /// What the notification is about, such as a workspace id.
    pub target_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// When it was marked read; `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// Answer of `GET /notifications/inbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationsResponse {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// Unread notifications in all, not only in this page.
    pub unread_count: i64,
}

/// Query of `GET /notifications/inbox`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only unread notifications.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unread: bool,
    /// At most this many, newest first (default 25, maximum 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// Answer of `PUT /notifications/inbox/read-all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MarkAllNotificationsReadResponse {
    /// How many notifications were unread and now are read.
    pub marked_read: u64,
}
