use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use warmspace_authz::{Action, Object, Role, Subject};
use warmspace_sdk::{SESSION_TOKEN_HEADER, UserStatus};
use warmspace_store::{Session, UserRow};

use super::tokens::Token;
use crate::AppState;
use crate::api::ApiError;

/// The authenticated caller of a request. Extracting it answers 401 when the
/// request carries no valid, unexpired session token of an active user.
pub struct Actor {
    pub user: UserRow,
    pub subject: Subject,
    pub session_id: String,
}

impl Actor {
    /// May this caller do `action` on `object`? (403 if not.)
    pub fn authorize(&self, action: Action, object: Object) -> Result<(), ApiError> {
        Ok(warmspace_authz::authorize(&self.subject, action, object)?)
    }
}

/// The roles a user acts with: those granted, plus `member` for every human.
pub fn subject_of(user: &UserRow) -> Subject {
    let mut roles = user.roles.0.clone();
    if !user.is_system && !roles.contains(&Role::Member) {
        roles.push(Role::Member);
    }
    roles.sort();
    Subject { user_id: user.id, roles }
}

fn token_from(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(SESSION_TOKEN_HEADER) {
        return value.to_str().ok();
    }
    parts.headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(raw) = token_from(parts) else {
            return Err(ApiError::unauthorized("You must be logged in.")
                .detail(format!("Send a session token in the {SESSION_TOKEN_HEADER} header.")));
        };
        let invalid = || ApiError::unauthorized("Invalid session token.");
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let Session { user, key_hashed_secret, key_expires_at, key_last_used_at } =
            state.store.session(&token.id).await?.ok_or_else(invalid)?;
        if !token.matches(&key_hashed_secret) {
            return Err(invalid());
        }
        let now = Utc::now();
        if key_expires_at <= now {
            return Err(ApiError::unauthorized("Your session has expired.").detail("Log in again."));
        }
        if user.status != UserStatus::Active {
            return Err(ApiError::unauthorized("Your account is suspended."));
        }
        // Sliding expiry, written at most once a minute per session.
        if now - key_last_used_at > chrono::Duration::minutes(1) {
            state.store.refresh_session(&token.id, now + state.config.session_duration).await?;
        }
        let subject = subject_of(&user);
        Ok(Actor { user, subject, session_id: token.id })
    }
}
