//! The warmspace API as Rust types, and a typed HTTP client for it.
//!
//! The server serialises exactly these types, so the CLI, the agent and
//! external daemons cannot drift from what the server speaks.

pub mod archive;
pub mod client;
pub mod tunnel;
pub mod types;

pub use client::{Client, ClientError, LogEvent, install_crypto_provider};
pub use reqwest::StatusCode;
pub use types::*;

/// Header carrying a session or API token (`Authorization: Bearer` works too).
pub const SESSION_TOKEN_HEADER: &str = "Warmspace-Session-Token";

/// The fixed identity of the user that owns unclaimed prebuilds.
pub const PREBUILDS_USER_ID: uuid::Uuid = uuid::uuid!("c42fdf75-3097-471c-8c33-fb52454d81c0");
pub const PREBUILDS_USERNAME: &str = "prebuilds";
