/// Why a store call failed, in terms the API can turn into a status code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `field` names the input at fault.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    /// The request contradicts the stored state; `field` names the input at fault.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// Another operation on the same thing is under way.
    #[error("{0}")]
    InProgress(String),
    /// The first connection to PostgreSQL failed; `reason` is PostgreSQL's or the network's.
    #[error("{target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Turns a unique violation on one of `constraints` into a conflict naming
    /// its field; other errors pass through.
    pub(crate) fn conflict_on(err: sqlx::Error, constraints: &[(&str, &'static str)]) -> StoreError {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
            && let Some(name) = db.constraint()
            && let Some((_, field)) = constraints.iter().find(|(c, _)| *c == name)
        {
            return StoreError::Conflict { field };
        }
        StoreError::Database(err)
    }
}
