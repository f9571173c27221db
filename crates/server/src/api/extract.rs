//! Request extractors whose failures are API errors naming the field at
//! fault, instead of axum's plain-text rejections; and the credentials a
//! request carries, checked by the domain.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use warmspace_sdk::{AGENT_TOKEN_HEADER, PROVISIONER_KEY_HEADER, SESSION_TOKEN_HEADER, ValidationError};

use super::{ApiError, AppState};
use crate::domain::{Actor, AgentAuth, DaemonAuth};

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name)?.to_str().ok()
}

fn bearer(parts: &Parts) -> Option<&str> {
    header(parts, AUTHORIZATION.as_str())?.strip_prefix("Bearer ")
}

/// A person, by their session token (header, or `Authorization: Bearer`).
impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = header(parts, SESSION_TOKEN_HEADER).or_else(|| bearer(parts));
        Ok(state.domain.authenticate(token).await?)
    }
}

/// A workspace agent, by its token.
impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = header(parts, AGENT_TOKEN_HEADER).or_else(|| bearer(parts));
        Ok(state.domain.authenticate_agent(token).await?)
    }
}

/// An external provisioner daemon, by its key.
impl FromRequestParts<AppState> for DaemonAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(state.domain.authenticate_daemon(header(parts, PROVISIONER_KEY_HEADER)).await?)
    }
}

/// A JSON request body. Malformed input is a 400 whose validation names the
/// field (`roles[1]`, `email`), or `body` when the JSON itself is broken.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "Could not read the request body.").detail(e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Json).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.to_string();
            let (field, detail) = match inner.classify() {
                serde_json::error::Category::Data => (field_of(&path, &message), strip_position(&message)),
                _ => ("body".to_owned(), format!("malformed JSON: {message}")),
            };
            ApiError::invalid(vec![ValidationError { field, detail }])
        })
    }
}

/// serde reports a missing field at the path of the object that lacks it;
/// the field itself is the more useful name.
fn field_of(path: &str, message: &str) -> String {
    let named = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters, with a 400 naming the parameter on bad input.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded_deserializer(query);
        serde_path_to_error::deserialize(de).map(Query).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = if path == "." { "query".to_owned() } else { path };
            ApiError::invalid(vec![ValidationError { field, detail: message }])
        })
    }
}

fn serde_urlencoded_deserializer(query: &str) -> serde_urlencoded::Deserializer<'_> {
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_and_unknown_fields() {
        assert_eq!(field_of(".", "missing field `email` at line 1 column 2"), "email");
        assert_eq!(field_of("admin", "unknown field `admin`, expected one of"), "admin");
        assert_eq!(field_of("spec", "missing field `name`"), "spec.name");
        assert_eq!(field_of("roles[1]", "unknown variant `root`"), "roles[1]");
        assert_eq!(field_of(".", "expected value"), "body");
    }
}
