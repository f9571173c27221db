//! Users, the first user, and logging in and out.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warmspace_sdk::{
    CreateFirstUserRequest, CreateFirstUserResponse, CreateUserRequest, FirstUserStatus, GetUsersResponse,
    LoginWithPasswordRequest, LoginWithPasswordResponse, Response, UpdateRolesRequest, User, UserStatus, UsersQuery,
};

use super::extract::{Json, Path, Query};
use super::{ApiError, AppState, Created, created, message};
use crate::domain::Actor;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(first_user_status, create_first_user))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
        .routes(routes!(update_timezone))
        .routes(routes!(set_status))
        .routes(routes!(update_roles))
}

#[utoipa::path(get, path = "/api/v2/users/first", tag = "users",
    responses((status = 200, body = FirstUserStatus)))]
async fn first_user_status(State(state): State<AppState>) -> Result<axum::Json<FirstUserStatus>, ApiError> {
    Ok(axum::Json(FirstUserStatus { exists: state.domain.first_user_exists().await? }))
}

/// Creates the first user, an owner. Refused once any human user exists.
#[utoipa::path(post, path = "/api/v2/users/first", tag = "users", request_body = CreateFirstUserRequest,
    responses((status = 201, body = CreateFirstUserResponse), (status = 400, body = Response),
              (status = 409, body = Response, description = "The first user already exists")))]
async fn create_first_user(
    State(state): State<AppState>,
    Json(req): Json<CreateFirstUserRequest>,
) -> Result<Created<CreateFirstUserResponse>, ApiError> {
    Ok(created(state.domain.create_first_user(req).await?))
}

/// Exchanges an email and password for a session token.
#[utoipa::path(post, path = "/api/v2/users/login", tag = "users", request_body = LoginWithPasswordRequest,
    responses((status = 201, body = LoginWithPasswordResponse), (status = 400, body = Response),
              (status = 401, body = Response)))]
async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginWithPasswordRequest>,
) -> Result<Created<LoginWithPasswordResponse>, ApiError> {
    Ok(created(state.domain.login(req).await?))
}

/// Ends the session whose token authenticates this request.
#[utoipa::path(post, path = "/api/v2/users/logout", tag = "users", security(("session_token" = [])),
    responses((status = 200, body = Response), (status = 401, body = Response)))]
async fn logout(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Response>, ApiError> {
    state.domain.logout(&actor).await?;
    Ok(message("Logged out."))
}

/// Lists users. Owners and template admins see everyone; members see
/// themselves. System users appear only with `include_system=true`.
#[utoipa::path(get, path = "/api/v2/users", tag = "users", params(UsersQuery), security(("session_token" = [])),
    responses((status = 200, body = GetUsersResponse), (status = 400, body = Response),
              (status = 401, body = Response)))]
async fn list_users(
    State(state): State<AppState>,
    actor: Actor,
    Query(query): Query<UsersQuery>,
) -> Result<axum::Json<GetUsersResponse>, ApiError> {
    Ok(axum::Json(state.domain.list_users(&actor, query).await?))
}

/// Creates a user. Owners only.
#[utoipa::path(post, path = "/api/v2/users", tag = "users", request_body = CreateUserRequest,
    security(("session_token" = [])),
    responses((status = 201, body = User), (status = 400, body = Response), (status = 401, body = Response),
              (status = 403, body = Response), (status = 409, body = Response)))]
async fn create_user(
    State(state): State<AppState>,
    actor: Actor,
    Json(req): Json<CreateUserRequest>,
) -> Result<Created<User>, ApiError> {
    Ok(created(state.domain.create_user(&actor, req).await?))
}

/// One user, by id, username, or `me`.
#[utoipa::path(get, path = "/api/v2/users/{user}", tag = "users", security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id, a username, or `me`")),
    responses((status = 200, body = User), (status = 401, body = Response), (status = 403, body = Response),
              (status = 404, body = Response)))]
async fn get_user(
    State(state): State<AppState>,
    actor: Actor,
    Path(user): Path<String>,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.domain.user(&actor, &user).await?))
}

/// Sets the IANA zone a user's autostop requirement and zone-less autostart
/// schedules are read in (one's own, or anyone's for owners).
#[utoipa::path(put, path = "/api/v2/users/{user}/timezone", tag = "users", security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id, a username, or `me`")),
    request_body = warmspace_sdk::UpdateUserTimezoneRequest,
    responses((status = 200, body = User), (status = 400, body = Response), (status = 403, body = Response),
              (status = 404, body = Response)))]
async fn update_timezone(
    State(state): State<AppState>,
    actor: Actor,
    Path(user): Path<String>,
    Json(req): Json<warmspace_sdk::UpdateUserTimezoneRequest>,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.domain.set_user_timezone(&actor, &user, &req.timezone).await?))
}

/// `suspend` or `activate`: what `PUT /users/{user}/status/{change}` does.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusChange {
    Suspend,
    Activate,
}

/// Suspends a user (they can no longer log in, and their sessions stop
/// working) or reactivates them. Owners only; not oneself.
#[utoipa::path(put, path = "/api/v2/users/{user}/status/{change}", tag = "users", security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id or a username"),
           ("change" = String, Path, description = "`suspend` or `activate`")),
    responses((status = 200, body = User), (status = 400, body = Response), (status = 403, body = Response),
              (status = 404, body = Response), (status = 409, body = Response)))]
async fn set_status(
    State(state): State<AppState>,
    actor: Actor,
    Path((user, change)): Path<(String, StatusChange)>,
) -> Result<axum::Json<User>, ApiError> {
    let status = match change {
        StatusChange::Suspend => UserStatus::Suspended,
        StatusChange::Activate => UserStatus::Active,
    };
    Ok(axum::Json(state.domain.set_user_status(&actor, &user, status).await?))
}

/// Replaces a user's site roles (`member` is implied). Owners only; not one's own.
#[utoipa::path(put, path = "/api/v2/users/{user}/roles", tag = "users", security(("session_token" = [])),
    params(("user" = String, Path, description = "A user id or a username")), request_body = UpdateRolesRequest,
    responses((status = 200, body = User), (status = 400, body = Response), (status = 403, body = Response),
              (status = 404, body = Response), (status = 409, body = Response)))]
async fn update_roles(
    State(state): State<AppState>,
    actor: Actor,
    Path(user): Path<String>,
    Json(req): Json<UpdateRolesRequest>,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.domain.set_user_roles(&actor, &user, req.roles).await?))
}
