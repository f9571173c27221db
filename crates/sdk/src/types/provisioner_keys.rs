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
