use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Header carrying a provisioner key, for external daemons.
pub const PROVISIONER_KEY_HEADER: &str = "Warmspace-Provisioner-Key";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionerKey {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvisionerKeyRequest {
    /// Lowercase letters, digits and single hyphens.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateProvisionerKeyResponse {
    pub key: ProvisionerKey,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

/// A provisioner daemon as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionerDaemon {
    pub id: uuid::Uuid,
    pub name: String,
    /// It runs only jobs whose tags it has.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The provisioner key it authenticates with; absent for a daemon inside a server.
    pub key_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Seen within the last 90 seconds (what the prebuild share of the daemons is computed from).
    pub live: bool,
    /// Jobs it is running now.
    pub running_jobs: i64,
}
