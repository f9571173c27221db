use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warmspace_sdk::{Response as Body, ValidationError};

use crate::domain;

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
}

impl From<domain::Error> for ApiError {
    fn from(err: domain::Error) -> Self {
        use domain::Error as E;
        match err {
            E::Invalid(validations) => ApiError::invalid(validations),
            E::Unauthenticated { message, detail } => ApiError::new(StatusCode::UNAUTHORIZED, message).detail(detail),
            E::Forbidden { message, detail } => ApiError::new(StatusCode::FORBIDDEN, message).detail(detail),
            E::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found.")),
            E::Conflict { message, detail, validations } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, message).detail(detail);
                err.body.validations = validations;
                err
            }
            E::JobLost => ApiError::new(StatusCode::GONE, "The job is not held by this daemon.")
                .detail("Its lease expired, it has finished, or another daemon holds it."),
            E::TooLarge { message, detail } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).detail(detail),
            // The cause was logged where it happened; it is the operator's to read, not the caller's.
            E::Internal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
                .detail("The server could not complete the request; its log says why. Try again later."),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
