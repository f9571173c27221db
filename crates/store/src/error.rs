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
    /// The database refused a value (a check constraint, a NUL character, a
    /// number out of range) that slipped past the checks before it; `field`
    /// names the column where the constraint tells which.
    #[error("{field} {problem}")]
    Refused { field: String, problem: String },
    /// A unique constraint no caller mapped to a field refused the write.
    #[error("{field} is already taken")]
    Duplicate { field: String },
    /// The first connection to PostgreSQL failed; `reason` is PostgreSQL's or the network's.
    #[error("{target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("database error: {0}")]
    Database(sqlx::Error),
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
        err.into()
    }
}

/// Refusals of bad input become errors naming the field and the rule
/// (never PostgreSQL's own text); anything else is a database error.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let sqlx::Error::Database(db) = &err else { return StoreError::Database(err) };
        let constraint = db.constraint().unwrap_or_default();
        // PostgreSQL names an unnamed constraint `<table>_<column>_check` (or `_key`).
        let column = |suffix: &str| {
            db.table()
                .and_then(|table| constraint.strip_prefix(table)?.strip_prefix('_')?.strip_suffix(suffix))
                .unwrap_or("input")
                .to_owned()
        };
        let refused = |field: String, problem: String| StoreError::Refused { field, problem };
        match db.code().as_deref() {
            // unique_violation
            Some("23505") => StoreError::Duplicate { field: column("_key") },
            // check_violation
            Some("23514") => refused(column("_check"), format!("is not allowed (rule {constraint})")),
            // foreign_key_violation
            Some("23503") => refused(column("_fkey"), "refers to something that does not exist".into()),
            // not_null_violation
            Some("23502") => {
                let column = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|pg| pg.column());
                refused(column.unwrap_or("input").to_owned(), "is required".into())
            }
            // character_not_in_repertoire (a NUL in text), untranslatable_character (`\u0000` in jsonb)
            Some("22021" | "22P05") => refused("input".into(), "must not contain a NUL character (\\u0000)".into()),
            // string_data_right_truncation, numeric_value_out_of_range, datetime_field_overflow
            Some("22001" | "22003" | "22008") => refused("input".into(), "is out of range".into()),
            _ => StoreError::Database(err),
        }
    }
}
