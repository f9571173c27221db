//! What can go wrong in a domain operation, in terms its caller can act on.

use warmspace_sdk::ValidationError;
use warmspace_store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong: one entry per offending field.
    #[error("invalid {}", .0.iter().map(|v| v.field.as_str()).collect::<Vec<_>>().join(", "))]
    Invalid(Vec<ValidationError>),
    /// No valid credential.
    #[error("{message}")]
    Unauthenticated { message: String, detail: String },
    /// Authenticated, but not allowed: the message says what was refused, the detail what it needs.
    #[error("{message}")]
    Forbidden { message: String, detail: String },
    /// The thing does not exist, or the caller may not know it does. Names
    /// it as far as the caller named it: `Workspace "alice/dev"`.
    #[error("{0} not found")]
    NotFound(String),
    /// The request contradicts the current state (a name taken, a build under way).
    #[error("{message}")]
    Conflict { message: String, detail: String, validations: Vec<ValidationError> },
    /// A daemon reported on a job it no longer holds (its lease expired, or it finished elsewhere).
    #[error("this daemon no longer holds the job")]
    JobLost,
    #[error("{message}")]
    TooLarge { message: String, detail: String },
    /// Anything else: logged where it happens; the caller learns only that it did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn field(field: &str, detail: impl Into<String>) -> Error {
        Error::Invalid(vec![ValidationError { field: field.into(), detail: detail.into() }])
    }

    pub fn unauthenticated(message: impl Into<String>) -> Error {
        Error::Unauthenticated { message: message.into(), detail: String::new() }
    }

    /// The thing the caller named does not exist: `what` is its kind and, where the caller gave one, its name.
    pub fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound(what.into())
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict { message: message.into(), detail: String::new(), validations: Vec::new() }
    }

    /// Adds detail to a message-carrying error; other kinds are returned as they are.
    pub fn detail(mut self, more: impl Into<String>) -> Error {
        if let Error::Unauthenticated { detail, .. }
        | Error::Forbidden { detail, .. }
        | Error::Conflict { detail, .. }
        | Error::TooLarge { detail, .. } = &mut self
        {
            *detail = more.into();
        }
        self
    }

    pub fn internal(err: impl std::fmt::Display) -> Error {
        tracing::error!(error = %err, "internal error");
        Error::Internal(err.to_string())
    }
}

impl From<warmspace_authz::Denied> for Error {
    fn from(denied: warmspace_authz::Denied) -> Self {
        Error::Forbidden { message: format!("You may not {}.", denied.attempt), detail: denied.needs_sentence() }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Error::not_found("Resource"),
            StoreError::Conflict { field } => Error::Conflict {
                message: format!("That {field} is already taken."),
                detail: String::new(),
                validations: vec![ValidationError { field: field.into(), detail: "already taken".into() }],
            },
            StoreError::Invalid { field, message } => Error::field(field, message),
            StoreError::Refused { field, problem } => Error::field(&field, problem),
            StoreError::Duplicate { field } => Error::Conflict {
                message: format!("That {field} is already taken."),
                detail: String::new(),
                validations: vec![ValidationError { field, detail: "already taken".into() }],
            },
            StoreError::InProgress(message) => Error::conflict(message),
            other => Error::internal(other),
        }
    }
}

/// Names what a store lookup was for, so a missing row reads as "Workspace
/// not found" (or `User "alice" not found`) rather than as a generic miss.
pub trait Found<T> {
    fn found(self, what: impl Into<String>) -> Result<T>;
}

impl<T> Found<T> for Result<T, StoreError> {
    fn found(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|err| match err {
            StoreError::NotFound => Error::not_found(what),
            other => other.into(),
        })
    }
}
