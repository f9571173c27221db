//! Browser sessions: the session token in an `HttpOnly`, `SameSite=Lax`
//! cookie (`Secure` behind https), and the CSRF token every state-changing
//! form carries.
//!
//! Signed in, a form's CSRF token is a keyed hash of the session token (the
//! session's secret is the key): any replica can check it, nothing is
//! stored, and a page that cannot read the `HttpOnly` cookie cannot compute
//! it. Before signing in (the sign-in and first-user forms) it is a random
//! value in a `SameSite=Strict` cookie that the form must repeat.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::WebError;
use crate::api::AppState;
use crate::domain::{Actor, Error};

/// The session token.
pub const SESSION_COOKIE: &str = "warmspace_session";
/// The CSRF token of forms shown before signing in.
pub const PRE_SESSION_COOKIE: &str = "warmspace_csrf";
/// The form field every state-changing form carries its CSRF token in.
pub const CSRF_FIELD: &str = "_csrf";

/// A signed-in person, and the CSRF token their forms carry.
pub struct Session {
    pub actor: Actor,
    pub csrf: String,
}

/// The CSRF token of forms posted within the session `token`.
fn session_csrf(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"warmspace dashboard csrf\0");
    hash.update(token.as_bytes());
    hex::encode(hash.finalize())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The CSRF token as a page carries it: XORed with a random pad drawn for
/// this page, pad first, in hex. Pages are sent compressed, and a secret
/// repeated unchanged in compressed pages that also reflect what a visitor
/// typed can be guessed from their sizes (BREACH); masked, it never repeats.
pub fn masked(token: &str) -> String {
    let pad: Vec<u8> = (0..token.len()).map(|_| rand::random()).collect();
    let xored: Vec<u8> = token.bytes().zip(&pad).map(|(t, p)| t ^ p).collect();
    hex::encode(pad) + &hex::encode(xored)
}

/// The token a form's masked value (see [`masked`]) carries.
fn unmasked(form: &str) -> Option<String> {
    let bytes = hex::decode(form).ok()?;
    let (pad, xored) = bytes.split_at(bytes.len() / 2);
    if pad.len() != xored.len() || pad.is_empty() {
        return None;
    }
    String::from_utf8(pad.iter().zip(xored).map(|(p, x)| p ^ x).collect()).ok()
}

/// Whether a form's masked token carries `expected`.
fn carries(form: &str, expected: &str) -> bool {
    unmasked(form).is_some_and(|token| same(&token, expected))
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The session token a browser's request carries, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty())
}

/// The request's cookies less the session's (for a workspace app, which is
/// not to act as the person), or `None` when no other is left.
pub fn cookies_without_session(headers: &HeaderMap) -> Option<String> {
    let kept: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(key, _)| key != SESSION_COOKIE))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether cookies must be `Secure`: the server is reached over https.
fn secure(state: &AppState) -> bool {
    state.domain.config().access_url.starts_with("https://")
}

fn set_cookie(state: &AppState, name: &str, value: &str, same_site: &str, max_age: Option<i64>) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure(state) {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie values are alphanumeric")
}

/// Signs in: the session token into its cookie, then on to `to`.
pub fn signed_in(state: &AppState, token: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(SET_COOKIE, set_cookie(state, SESSION_COOKIE, token, "Lax", None));
    response
}

/// Signs out: the session cookie removed, then on to `to`.
pub fn signed_out(state: &AppState, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(SET_COOKIE, set_cookie(state, SESSION_COOKIE, "", "Lax", Some(0)));
    response
}

/// The CSRF token for a form shown before signing in: the request's own,
/// or a new one with the cookie that holds it.
pub fn pre_session_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, PRE_SESSION_COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        Some(token) => (token.to_owned(), None),
        None => {
            let token = crate::auth::tokens::random(32);
            let cookie = set_cookie(state, PRE_SESSION_COOKIE, &token, "Strict", None);
            (token, Some(cookie))
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// Without a valid session, the browser is sent to sign in.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = session_token(&parts.headers) else {
            return Err(Redirect::to("/login").into_response());
        };
        match state.domain.authenticate(Some(token)).await {
            Ok(actor) => Ok(Session { actor, csrf: session_csrf(token) }),
            Err(Error::Unauthenticated { .. }) => Err(signed_out(state, "/login")),
            Err(err) => Err(WebError::from(err).into_response()),
        }
    }
}

/// A state-changing form posted within a session: refused with 403 unless
/// it carries the session's CSRF token; bad fields are a 400 naming them.
pub struct Form<T> {
    pub session: Session,
    pub fields: T,
}

/// A form posted before signing in, carrying the pre-session CSRF token.
pub struct PreSessionForm<T>(pub T);

const FORM_LIMIT: usize = 64 * 1024;

/// The body's fields and the CSRF token among them.
async fn fields<T: DeserializeOwned>(req: Request) -> Result<(Option<String>, T), WebError> {
    let body = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| WebError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    let csrf = form_urlencoded::parse(&body).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    if let Some((key, _)) = form_urlencoded::parse(&body).find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid {key}: must not contain a NUL character."),
        ));
    }
    Ok((csrf, decode(&body)?))
}

/// URL-encoded pairs (a form's body, a query string) as `T`; a bad one is a 400 naming its field.
fn decode<T: DeserializeOwned>(pairs: &[u8]) -> Result<T, WebError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(pairs));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        WebError::new(StatusCode::BAD_REQUEST, format!("Invalid {field}: {}", err.into_inner()))
    })
}

/// A page's query string as `T`; a bad one is a 400 page naming the field.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let query = parts.uri.query().unwrap_or_default();
        decode(query.as_bytes()).map(Query).map_err(IntoResponse::into_response)
    }
}

fn refused() -> WebError {
    WebError::new(StatusCode::FORBIDDEN, "The form's CSRF token is missing or wrong.")
        .detail("Reload the page and submit the form again.")
}

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let (csrf, fields) = fields(Request::from_parts(parts, body)).await.map_err(IntoResponse::into_response)?;
        if !csrf.is_some_and(|csrf| carries(&csrf, &session.csrf)) {
            return Err(refused().into_response());
        }
        Ok(Form { session, fields })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for PreSessionForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, Response> {
        let expected = cookie(req.headers(), PRE_SESSION_COOKIE).map(str::to_owned);
        let (csrf, fields) = fields(req).await.map_err(IntoResponse::into_response)?;
        match (csrf, expected) {
            (Some(csrf), Some(expected)) if !expected.is_empty() && carries(&csrf, &expected) => {
                Ok(PreSessionForm(fields))
            }
            _ => Err(refused().into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_per_page_and_carry_only_their_token() {
        let token = session_csrf("a-b");
        let (one, two) = (masked(&token), masked(&token));
        assert_ne!(one, two);
        assert!(carries(&one, &token) && carries(&two, &token));
        assert!(!carries(&one, &session_csrf("a-c")));
        assert!(!carries(&token, &token), "an unmasked token is refused");
        for bad in ["", "zz", "abc", &one[..one.len() - 2]] {
            assert!(!carries(bad, &token), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_whole() {
        assert_ne!(session_csrf("a-b"), session_csrf("a-c"));
        assert_eq!(session_csrf("a-b"), session_csrf("a-b"));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn finds_cookies_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("x=1; warmspace_session=abc-def; y=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc-def"));
        assert_eq!(cookie(&headers, "z"), None);
    }
}
