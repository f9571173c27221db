//! Request extractors whose failures are API errors naming the field at
//! fault, instead of axum's plain-text rejections; and the credentials a
//! request carries, checked by the domain.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
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
/// field (`roles[1]`, `email`), or `body` when the JSON itself is broken. A
/// NUL character in any string or key is refused the same way: PostgreSQL
/// cannot store one.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body(req, state).await?;
        if let Some(field) = nul_in_json(&bytes) {
            return Err(nul_in(field));
        }
        deserialize_json(&bytes).map(Json)
    }
}

/// A JSON body of log output from a daemon or an agent (log lines, a job's
/// error): NUL characters in it are accepted here, and the store strips them
/// from the log output it keeps, since output is reported, not chosen.
pub struct LogJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for LogJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        deserialize_json(&body(req, state).await?).map(LogJson)
    }
}

async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError::new(e.status(), "Could not read the request body.").detail(e.body_text()))
}

fn deserialize_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
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

/// The path (`roles[1]`, `spec.name`) of the first string or key holding a
/// NUL character, if the body is JSON and has one.
fn nul_in_json(bytes: &[u8]) -> Option<String> {
    // JSON can carry a NUL only as the escape `\u0000`: most bodies need no second parse.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    // Malformed JSON is reported by the deserializer.
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    nul_path(&value, String::new())
}

fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "body".to_owned() } else { path }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') { Some(join(&printable(key))) } else { nul_path(item, join(key)) }
        }),
        _ => None,
    }
}

/// A name with its NUL characters written as the JSON escape, so the error can show it.
fn printable(name: &str) -> String {
    name.replace('\0', "\\u0000")
}

fn nul_in(field: String) -> ApiError {
    ApiError::invalid(vec![ValidationError { field, detail: "must not contain a NUL character (\\u0000)".into() }])
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

/// Query parameters, with a 400 naming the parameter on bad input (a NUL
/// character included).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((key, _)) =
            form_urlencoded::parse(query.as_bytes()).find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(nul_in(printable(&key)));
        }
        let de = serde_urlencoded_deserializer(query);
        serde_path_to_error::deserialize(de).map(Query).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = if path == "." { "query".to_owned() } else { path };
            ApiError::invalid(vec![ValidationError { field, detail: message }])
        })
    }
}

/// Path parameters, with a 400 naming the parameter (`workspace`) on bad
/// input (a NUL character included) instead of axum's plain-text rejection.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "Invalid path.").detail(e.body_text()))?;
        if let Some((key, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(nul_in(key.to_owned()));
        }
        let keys: Vec<&str> = raw.iter().map(|(key, _)| key).collect();
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => {
                let field = match err.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. } => key.as_str(),
                    ErrorKind::ParseErrorAtIndex { index, .. } => keys.get(*index).copied().unwrap_or("path"),
                    // A one-parameter path names its parameter even when the error does not.
                    _ => match keys[..] {
                        [key] => key,
                        _ => "path",
                    },
                };
                let detail = err.body_text();
                let detail = detail.strip_prefix("Invalid URL: ").unwrap_or(&detail);
                Err(ApiError::invalid(vec![ValidationError { field: field.to_owned(), detail: detail.to_owned() }]))
            }
            Err(other) => Err(ApiError::new(other.status(), "Invalid path.").detail(other.body_text())),
        }
    }
}

fn serde_urlencoded_deserializer(query: &str) -> serde_urlencoded::Deserializer<'_> {
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// JSON without NUL characters: keys and strings of printable ASCII.
    fn json() -> impl Strategy<Value = Value> {
        let leaf =
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), "[ -~]{0,6}".prop_map(Value::from)];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 1..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Puts a NUL into the string (or key) that `choice` picks, returning its path as the error should name it.
    fn plant(value: &mut Value, choice: usize, path: String) -> Option<String> {
        let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match value {
            Value::String(s) => {
                s.insert(s.len() / 2, '\0');
                Some(if path.is_empty() { "body".to_owned() } else { path })
            }
            Value::Array(items) => {
                let i = choice % items.len();
                plant(&mut items[i], choice / 3, format!("{path}[{i}]"))
            }
            Value::Object(map) => {
                let key = map.keys().nth(choice % map.len()).cloned()?;
                if choice.is_multiple_of(5) {
                    // The key itself.
                    let item = map.remove(&key)?;
                    let planted = format!("{key}\0");
                    map.insert(planted.clone(), item);
                    Some(join(&printable(&planted)))
                } else {
                    plant(map.get_mut(&key)?, choice / 3, join(&key))
                }
            }
            _ => None,
        }
    }

    proptest! {
        /// Any body with a NUL anywhere names the path to it; without one, nothing is refused.
        #[test]
        fn a_nul_anywhere_in_a_json_body_is_named_by_its_path(mut value in json(), choice in any::<usize>()) {
            prop_assert_eq!(nul_in_json(value.to_string().as_bytes()), None);
            if let Some(path) = plant(&mut value, choice, String::new()) {
                prop_assert_eq!(nul_in_json(value.to_string().as_bytes()), Some(path));
            }
        }
    }

    #[test]
    fn names_missing_and_unknown_fields() {
        assert_eq!(field_of(".", "missing field `email` at line 1 column 2"), "email");
        assert_eq!(field_of("admin", "unknown field `admin`, expected one of"), "admin");
        assert_eq!(field_of("spec", "missing field `name`"), "spec.name");
        assert_eq!(field_of("roles[1]", "unknown variant `root`"), "roles[1]");
        assert_eq!(field_of(".", "expected value"), "body");
    }
}
