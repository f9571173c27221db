//! Human passwords, hashed with Argon2id (memory-hard) into PHC strings.
//! Hashing takes tens of milliseconds of CPU by design, so it runs on the
//! blocking pool rather than an async worker.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Whether `password` matches `hash`. With no hash (unknown user) it still
/// does the work of a verification, so response time does not reveal which
/// accounts exist.
pub async fn verify(password: String, hash: Option<String>) -> bool {
    static DECOY: LazyLock<String> = LazyLock::new(|| {
        Argon2::default().hash_password(uuid::Uuid::new_v4().as_bytes()).expect("hashing a decoy").to_string()
    });
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (DECOY.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
    })
    .await
    .unwrap_or(false)
}
