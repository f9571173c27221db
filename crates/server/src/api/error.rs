use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warmspace_sdk::{Response as Body, ValidationError};
use warmspace_store::StoreError;

/// An error answered as `{message, detail, validations[]}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Body,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: Body::message(message) }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.body.detail = detail.into();
        self
    }

    /// 400 naming the offending fields.
    pub fn invalid(validations: Vec<ValidationError>) -> Self {
        let fields: Vec<&str> = validations.iter().map(|v| v.field.as_str()).collect();
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid {}.", fields.join(", ")));
        err.body.validations = validations;
        err
    }

    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        ApiError::invalid(vec![ValidationError { field: field.into(), detail: detail.into() }])
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(denied: warmspace_authz::Denied) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden.").detail(format!("You are {denied}."))
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found."))
    }

    /// For `map_err` on a store lookup: a missing row is answered as a
    /// missing `what`, any other error as usual.
    pub fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |err| match err {
            StoreError::NotFound => ApiError::not_found(what),
            other => other.into(),
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.").detail(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::not_found("Resource"),
            StoreError::Conflict { field } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, format!("That {field} is already taken."));
                err.body.validations.push(ValidationError { field: field.into(), detail: "already taken".into() });
                err
            }
            StoreError::Invalid { field, message } => ApiError::field(field, message),
            StoreError::InProgress(message) => ApiError::new(StatusCode::CONFLICT, message),
            other => ApiError::internal(other),
        }
    }
}

impl From<warmspace_authz::Denied> for ApiError {
    fn from(denied: warmspace_authz::Denied) -> Self {
        ApiError::forbidden(denied)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
