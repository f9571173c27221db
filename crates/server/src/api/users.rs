//! Users, the first user, and logging in and out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource, Role, Visibility};
use warmspace_sdk::{
    CreateFirstUserRequest, CreateFirstUserResponse, CreateUserRequest, FirstUserStatus, GetUsersResponse, LoginType,
    LoginWithPasswordRequest, LoginWithPasswordResponse, Response, User, UserStatus, UsersQuery, ValidationError,
};
use warmspace_store::{NewSession, NewUser, StoreError, UserFilter, UserRow};

use super::extract::{Json, Query};
use super::{ApiError, invalid, page};
use crate::AppState;
use crate::auth::subject_of;
use crate::auth::tokens::Token;
use crate::auth::{Actor, passwords};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(first_user_status, create_first_user))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
}

type Created<T> = (StatusCode, axum::Json<T>);

#[utoipa::path(get, path = "/api/v2/users/first", tag = "users",
    responses((status = 200, body = FirstUserStatus)))]
async fn first_user_status(State(state): State<AppState>) -> Result<axum::Json<FirstUserStatus>, ApiError> {
    Ok(axum::Json(FirstUserStatus { exists: state.store.human_user_exists().await? }))
}

/// Creates the first user, an owner. Refused once any human user exists.
#[utoipa::path(post, path = "/api/v2/users/first", tag = "users", request_body = CreateFirstUserRequest,
    responses((status = 201, body = CreateFirstUserResponse), (status = 400, body = Response),
              (status = 409, body = Response, description = "The first user already exists")))]
async fn create_first_user(
    State(state): State<AppState>,
    Json(req): Json<CreateFirstUserRequest>,
) -> Result<Created<CreateFirstUserResponse>, ApiError> {
    let mut problems = validate_identity(&req.username, &req.email, &req.name);
    problems.extend(validate_password(Some(&req.password), LoginType::Password));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let user = NewUser {
        username: req.username,
        email: req.email,
        name: req.name,
        login_type: LoginType::Password,
        hashed_password: Some(hash(req.password).await?),
        status: UserStatus::Active,
        roles: vec![Role::Owner],
    };
    let Some(user) = state.store.create_first_user(user).await? else {
        return Err(ApiError::new(StatusCode::CONFLICT, "The first user has already been created."));
    };
    tracing::info!(user = %user.username, "first user created");
    let organization_id = user.organization_ids.first().copied().unwrap_or_default();
    Ok((StatusCode::CREATED, axum::Json(CreateFirstUserResponse { user_id: user.id, organization_id })))
}

/// Exchanges an email and password for a session token.
#[utoipa::path(post, path = "/api/v2/users/login", tag = "users", request_body = LoginWithPasswordRequest,
    responses((status = 201, body = LoginWithPasswordResponse), (status = 400, body = Response),
              (status = 401, body = Response)))]
async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginWithPasswordRequest>,
) -> Result<Created<LoginWithPasswordResponse>, ApiError> {
    let mut problems = Vec::new();
    for (field, value) in [("email", &req.email), ("password", &req.password)] {
        if value.is_empty() {
            problems.push(invalid(field, "is required"));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let user = match state.store.user_by_email(&req.email).await {
        Ok(user) => Some(user),
        Err(StoreError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let hashed = user.as_ref().and_then(|u| u.hashed_password.clone());
    // System users and `none` logins have no hash, so they fail here like a wrong password.
    if !passwords::verify(req.password, hashed).await {
        return Err(ApiError::unauthorized("Incorrect email or password."));
    }
    let user = user.expect("a verified password belongs to a user");
    if user.status != UserStatus::Active {
        return Err(ApiError::unauthorized("Your account is suspended.").detail("Ask an owner to reactivate it."));
    }
    let token = Token::generate();
    let expires_at = Utc::now() + state.config.session_duration;
    state
        .store
        .create_session(&NewSession {
            id: token.id.clone(),
            hashed_secret: token.hashed_secret(),
            user_id: user.id,
            login_type: "password",
            expires_at,
        })
        .await?;
    state.store.touch_last_seen(user.id).await?;
    let session_token = token.to_header_value();
    Ok((StatusCode::CREATED, axum::Json(LoginWithPasswordResponse { session_token, expires_at })))
}

/// Ends the session whose token authenticates this request.
#[utoipa::path(post, path = "/api/v2/users/logout", tag = "users", security(("session_token" = [])),
    responses((status = 200, body = Response), (status = 401, body = Response)))]
async fn logout(State(state): State<AppState>, actor: Actor) -> Result<axum::Json<Response>, ApiError> {
    state.store.delete_session(&actor.session_id).await?;
    Ok(axum::Json(Response::message("Logged out.")))
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
    let mut filter = parse_search(query.q.as_deref().unwrap_or_default())?;
    filter.include_system = query.include_system;
    (filter.limit, filter.offset) = page(query.limit, query.offset)?;
    match warmspace_authz::visibility(&actor.subject, Action::Read, Resource::User) {
        Visibility::All => {}
        Visibility::OwnedBy(id) => filter.only = Some(id),
        Visibility::Nothing => actor.authorize(Action::Read, Object::any(Resource::User))?,
    }
    let (rows, count) = state.store.list_users(&filter).await?;
    Ok(axum::Json(GetUsersResponse { users: rows.into_iter().map(user_view).collect(), count }))
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
    actor.authorize(Action::Create, Object::any(Resource::User))?;
    let mut problems = validate_identity(&req.username, &req.email, &req.name);
    problems.extend(validate_password(req.password.as_deref(), req.login_type));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let hashed_password = match req.password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    let user = state
        .store
        .create_user(NewUser {
            username: req.username,
            email: req.email,
            name: req.name,
            login_type: req.login_type,
            hashed_password,
            status: req.status,
            roles: req.roles,
        })
        .await?;
    tracing::info!(user = %user.username, by = %actor.user.username, "user created");
    Ok((StatusCode::CREATED, axum::Json(user_view(user))))
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
    let row = find_user(&state, &actor, &user).await?;
    actor.authorize(Action::Read, Object::user(row.id))?;
    Ok(axum::Json(user_view(row)))
}

/// A user by id, username, or `me` (404 when there is none).
pub(super) async fn find_user(state: &AppState, actor: &Actor, user: &str) -> Result<UserRow, ApiError> {
    if user == "me" {
        return Ok(actor.user.clone());
    }
    let found = match Uuid::parse_str(user) {
        Ok(id) => state.store.user_by_id(id).await,
        Err(_) => state.store.user_by_username(user).await,
    };
    found.map_err(ApiError::missing("User"))
}

async fn hash(password: String) -> Result<String, ApiError> {
    passwords::hash(password).await.map_err(ApiError::internal)
}

fn user_view(row: UserRow) -> User {
    let roles = subject_of(&row).roles;
    User {
        id: row.id,
        username: row.username,
        email: row.email,
        name: row.name,
        login_type: row.login_type,
        status: row.status,
        is_system: row.is_system,
        roles,
        organization_ids: row.organization_ids,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_seen_at: row.last_seen_at,
    }
}

fn validate_identity(username: &str, email: &str, name: &str) -> Vec<ValidationError> {
    let mut problems = Vec::new();
    let username_ok = (1..=32).contains(&username.len())
        && username.split('-').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if !username_ok {
        problems.push(invalid(
            "username",
            "must be 1 to 32 letters or digits, with single hyphens between them (no leading or trailing hyphen)",
        ));
    }
    let email_ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    if !email_ok {
        problems.push(invalid("email", "must be an email address such as alice@example.com"));
    }
    if name.chars().count() > 128 {
        problems.push(invalid("name", "must be at most 128 characters"));
    }
    problems
}

fn validate_password(password: Option<&str>, login_type: LoginType) -> Vec<ValidationError> {
    let (min, max) = (passwords::MIN_LENGTH, passwords::MAX_LENGTH);
    match (login_type, password) {
        (LoginType::Password, None) => {
            vec![invalid("password", "is required for login_type password")]
        }
        (LoginType::Password, Some(p)) if !(min..=max).contains(&p.chars().count()) => {
            vec![invalid("password", format!("must be {min} to {max} characters"))]
        }
        (LoginType::None, Some(_)) => {
            vec![invalid("password", "must not be set for login_type none")]
        }
        _ => vec![],
    }
}

/// Parses `GET /users?q=`: `key:value` terms filter, other words search
/// usernames, emails and names.
fn parse_search(q: &str) -> Result<UserFilter, ApiError> {
    let mut filter = UserFilter::default();
    let mut words = Vec::new();
    for term in q.split_whitespace() {
        let Some((key, value)) = term.split_once(':') else {
            words.push(term);
            continue;
        };
        let bad = |detail: String| ApiError::field("q", detail);
        let given_twice = match key {
            "login_type" => {
                let login_type =
                    value.parse().map_err(|_| bad(format!("login_type:{value}: expected password or none")))?;
                filter.login_type.replace(login_type).is_some()
            }
            "status" => {
                let status = value.parse().map_err(|_| bad(format!("status:{value}: expected active or suspended")))?;
                filter.status.replace(status).is_some()
            }
            "role" => {
                let role = value.parse::<Role>().map_err(|e| bad(e.to_string()))?;
                filter.role.replace(role).is_some()
            }
            _ => {
                return Err(bad(format!("unknown filter {key:?}: expected login_type, status or role")));
            }
        };
        if given_twice {
            return Err(bad(format!("{key}: is given twice")));
        }
    }
    if !words.is_empty() {
        filter.text = Some(words.join(" "));
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms() {
        let f = parse_search("status:active  role:template-admin ali").unwrap();
        assert_eq!(f.status, Some(UserStatus::Active));
        assert_eq!(f.role, Some(Role::TemplateAdmin));
        assert_eq!(f.text.as_deref(), Some("ali"));
        assert!(parse_search("").unwrap().text.is_none());
        for bad in ["status:gone", "login_type:oidc", "role:admin", "colour:red", "status:active status:active"] {
            let err = parse_search(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err.body.validations[0].field, "q");
        }
    }

    #[test]
    fn identities() {
        assert!(validate_identity("alice-b2", "a@b.co", "").is_empty());
        fn fields(u: &str, e: &str, n: &str) -> Vec<String> {
            validate_identity(u, e, n).into_iter().map(|v| v.field).collect()
        }
        assert_eq!(fields("-alice", "a@b.co", ""), ["username"]);
        assert_eq!(fields("al--ice", "a@b.co", ""), ["username"]);
        assert_eq!(fields("al_ice", "a@b.co", ""), ["username"]);
        assert_eq!(fields(&"a".repeat(33), "a@b.co", ""), ["username"]);
        assert_eq!(fields("alice", "a@b", ""), ["email"]);
        assert_eq!(fields("alice", "a b@c.d", ""), ["email"]);
        assert_eq!(fields("alice", "@c.d", ""), ["email"]);
        assert_eq!(fields("alice", "a@b.co", &"n".repeat(129)), ["name"]);
    }
}
