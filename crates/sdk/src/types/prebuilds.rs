use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Every prebuild-configured preset's pool, as of now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrebuildsStatus {
    /// Reconciliation is paused: nothing is created or deleted.
    pub reconciliation_paused: bool,
    pub presets: Vec<PresetPoolStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresetPoolStatus {
    pub organization_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub template_version_id: Uuid,
    /// The preset's version is its template's active one.
    pub version_active: bool,
    pub preset_id: Uuid,
    pub preset_name: String,
    pub desired: u32,
    pub running: u32,
    pub eligible: u32,
    pub expired: u32,
    pub starting: u32,
    pub stopping: u32,
    pub deleting: u32,
    pub failed: u32,
    /// `normal`, `backoff`, `hard_limited` or `validation_failed`.
    pub status: String,
    pub backoff_until: Option<DateTime<Utc>>,
    pub validation_error: Option<String>,
    pub last_invalidated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrebuildSettings {
    pub reconciliation_paused: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidatePresetsRequest {
    /// One preset of the active version; all of its presets when absent.
    #[serde(default)]
    pub preset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvalidatePresetsResponse {
    /// The presets whose prebuilds will be replaced.
    pub invalidated: Vec<String>,
}
