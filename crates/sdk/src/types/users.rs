use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warmspace_authz::Role;
pub use warmspace_states::{LoginType, UserStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    /// Display name; may be empty.
    pub name: String,
    pub login_type: LoginType,
    pub status: UserStatus,
    /// System users (such as `prebuilds`) are not people and cannot log in.
    pub is_system: bool,
    /// Site roles; every human user has `member`.
    pub roles: Vec<Role>,
    pub organization_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The IANA zone the user's autostop requirement and zone-less
    /// autostart schedules are read in.
    #[serde(default)]
    pub timezone: String,
}

/// Sets the zone a user's schedules are read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserTimezoneRequest {
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// Replaces a user's site roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRolesRequest {
    /// Roles beyond `member`, which every user has; empty for a plain member.
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFirstUserRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateFirstUserResponse {
    pub user_id: Uuid,
    pub organization_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirstUserStatus {
    /// Whether a human user exists; `POST /users/first` only works while it is false.
    pub exists: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginWithPasswordRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginWithPasswordResponse {
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// Required for `login_type` `password`, refused for `none`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub login_type: LoginType,
    /// Roles beyond `member`, which every user has.
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub status: UserStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GetUsersResponse {
    pub users: Vec<User>,
    /// How many users match the filter, ignoring `limit` and `offset`.
    pub count: i64,
}

/// Query parameters of `GET /api/v2/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Search terms: free text matches username, email or name; `login_type:password|none`,
    /// `status:active|suspended`, `role:owner|template-admin|member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Also list system users such as `prebuilds`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}
