//! Secrets people and machines present: passwords (hashed with Argon2id)
//! and tokens (`<id>-<secret>`, stored as the SHA-256 of the secret).

pub mod passwords;
pub mod tokens;
