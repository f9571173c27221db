use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
pub use warmspace_states::{DriftCheckStatus, MissReason, PresetStatus};

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
    /// Running, but whose agents were not ready within the template's
    /// `agent_ready_timeout`: failed creations, being replaced.
    #[serde(default)]
    pub agents_not_ready: u32,
    pub starting: u32,
    pub stopping: u32,
    pub deleting: u32,
    pub failed: u32,
    pub status: PresetStatus,
    pub backoff_until: Option<DateTime<Utc>>,
    pub validation_error: Option<String>,
    pub last_invalidated_at: Option<DateTime<Utc>>,
    /// The drift check of the preset's prebuilds (Terraform templates): what
    /// claiming one would replace. `None` until one has been queued.
    #[serde(default)]
    pub drift_check: Option<PresetDriftCheck>,
}

/// What the plan of a prebuild's claim says the claim would replace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresetDriftCheck {
    pub status: DriftCheckStatus,
    /// The prebuild whose claim was planned.
    pub workspace_id: Uuid,
    /// The check's provisioner job (its log holds the plan).
    pub job_id: Uuid,
    pub checked_at: Option<DateTime<Utc>>,
    /// Addresses of the resources a claim would replace (done checks).
    pub replaced: Vec<String>,
    /// Why the check failed.
    pub error: Option<String>,
    /// The finding in words, with the fix, when a claim would replace something.
    pub message: Option<String>,
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

/// Create requests that claimed a prebuild (hits) or not (misses, by reason), per preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimStats {
    pub template_name: String,
    /// Absent for requests no preset applied to.
    pub preset_id: Option<Uuid>,
    pub preset_name: Option<String>,
    pub hits: i64,
    pub misses: i64,
    pub misses_by_reason: std::collections::BTreeMap<MissReason, i64>,
    /// Hand-over of the hits, in ms: from the create request's arrival at the
    /// server to the claim's record being written, the claim statement's last
    /// step before its commit (what a create response's `claim_hand_over_ms`
    /// says).
    pub hit_p50_ms: Option<f64>,
    pub hit_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClaimStatsQuery {
    /// The window, in seconds back from now (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrebuildInsightsQuery {
    /// How far back from now: a number and a unit (`s`, `m`, `h`, `d`, `w`),
    /// such as `7d`, `24h` or `1d12h`; at most `90d`. Default `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// What each pool gave and cost over a window ending now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrebuildInsights {
    pub window_seconds: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub presets: Vec<PresetInsight>,
}

/// One preset's figures over the window (or, with no preset, its template's
/// create requests that no preset applied to). See docs/prebuilds.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresetInsight {
    pub organization_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    /// Absent for requests no preset applied to.
    pub template_version_id: Option<Uuid>,
    pub template_version_name: Option<String>,
    /// The preset's version is its template's active one.
    pub version_active: bool,
    pub preset_id: Option<Uuid>,
    pub preset_name: Option<String>,
    /// Create requests charged to the preset: hits + misses.
    pub claims: u64,
    pub hits: u64,
    pub misses: u64,
    pub misses_by_reason: std::collections::BTreeMap<MissReason, u64>,
    /// hits / claims, in [0, 1]; absent with no claims.
    pub hit_rate: Option<f64>,
    /// The hits' hand-over (request arrival to the claim's record), in ms.
    pub hand_over_p50_ms: Option<f64>,
    pub hand_over_p95_ms: Option<f64>,
    /// The template's median cold build-to-ready time (builds of create
    /// requests that missed), in seconds; absent with no sample.
    pub cold_ready_seconds: Option<f64>,
    pub cold_ready_samples: u64,
    /// The median time from this preset's claims to their agents being ready again, in seconds.
    pub claim_ready_seconds: Option<f64>,
    pub claim_ready_samples: u64,
    /// hits × (cold_ready_seconds − claim_ready_seconds), never negative;
    /// absent when there is no cold sample to compare with (or hits whose
    /// claims have not become ready yet).
    pub time_saved_seconds: Option<f64>,
    /// Prebuilds of the preset alive at some point in the window.
    pub prebuilds: u64,
    /// Instance-hours the preset's prebuilds spent unclaimed inside the window.
    pub idle_instance_hours: f64,
    /// idle_instance_hours / hits; absent with no hits.
    pub instance_hours_per_hit: Option<f64>,
}
