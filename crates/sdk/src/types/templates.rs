use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ProvisionerJob;
pub use warmspace_states::{ClaimMode, ParameterType, Provisioner};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateVersion {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub template_id: Option<Uuid>,
    pub name: String,
    pub message: String,
    pub file_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    /// The import job; the version is usable once it has succeeded.
    pub job: ProvisionerJob,
    /// From the manifest, once imported.
    pub provisioner: Option<Provisioner>,
    /// From the manifest, once imported.
    pub claim_mode: Option<ClaimMode>,
    /// Only in the answer to a create request with `skip_if_unchanged`: its
    /// files were those of the active version, which this is; nothing was created.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateVersionRequest {
    /// An uploaded tar archive with `warmspace.hcl` at its root.
    pub file_id: Uuid,
    /// The template the version is for; omit when creating a new template from it.
    #[serde(default)]
    pub template_id: Option<Uuid>,
    /// Default: `v<N>`, numbered within the template.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: String,
    /// Only daemons with all of these tags run the version's jobs.
    #[serde(default)]
    pub provisioner_tags: BTreeMap<String, String>,
    /// With a `template_id`: when the file's content (its hash) is that of the
    /// template's active version, create nothing and answer 200 with the
    /// active version, marked `unchanged`.
    #[serde(default)]
    pub skip_if_unchanged: bool,
}

/// Lifecycle settings of a template, in milliseconds where durations; 0 disables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateSettings {
    /// A new workspace's default time to live.
    pub default_ttl_ms: i64,
    /// Days (`monday` … `sunday`) on which workspaces must stop: the autostop requirement.
    pub autostop_requirement_days_of_week: Vec<String>,
    /// The requirement applies every this many weeks.
    pub autostop_requirement_weeks: i32,
    /// The hour (0 … 23, in the owner's time zone) at which workspaces must
    /// stop on the requirement's days.
    #[serde(default)]
    pub autostop_requirement_hour: i32,
    /// Autostart builds the template's active version (not the version of
    /// the workspace's latest build).
    #[serde(default)]
    pub require_active_version: bool,
    pub allow_user_autostart: bool,
    /// Failed workspaces are stopped after this long.
    pub failure_ttl_ms: i64,
    /// Unused workspaces become dormant after this long.
    pub time_til_dormant_ms: i64,
    /// Dormant workspaces are deleted after this long.
    pub time_til_dormant_autodelete_ms: i64,
    /// A prebuild whose agents are not all ready this long after its start
    /// build succeeded counts as a failed creation and is replaced.
    pub agent_ready_timeout_ms: i64,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            default_ttl_ms: 0,
            autostop_requirement_days_of_week: Vec::new(),
            autostop_requirement_weeks: 1,
            autostop_requirement_hour: 0,
            require_active_version: false,
            allow_user_autostart: true,
            failure_ttl_ms: 0,
            time_til_dormant_ms: 0,
            time_til_dormant_autodelete_ms: 0,
            agent_ready_timeout_ms: warmspace_states::DEFAULT_AGENT_READY_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub active_version_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub settings: TemplateSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateRequest {
    /// Lowercase letters, digits and single hyphens, at most 64 characters.
    pub name: String,
    /// A successfully imported version that belongs to no template yet.
    pub template_version_id: Uuid,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub icon: String,
    /// Lifecycle settings; absent ones take their defaults.
    #[serde(default)]
    pub settings: UpdateTemplateSettings,
}

/// A partial update: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default)]
    pub settings: UpdateTemplateSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplateSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop_requirement_days_of_week: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop_requirement_weeks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop_requirement_hour: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_active_version: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_autostart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_ttl_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_til_dormant_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_til_dormant_autodelete_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ready_timeout_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateActiveVersionRequest {
    /// The version to activate.
    pub id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateVersionParameter {
    pub name: String,
    pub display_name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Absent for required parameters.
    pub default_value: Option<String>,
    pub required: bool,
    pub mutable: bool,
    pub options: Vec<TemplateVersionParameterOption>,
    pub validation_min: Option<f64>,
    pub validation_max: Option<f64>,
    pub validation_regex: Option<String>,
    pub validation_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateVersionParameterOption {
    pub name: String,
    pub value: String,
    pub description: String,
    pub icon: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preset {
    pub id: Uuid,
    pub template_version_id: Uuid,
    pub name: String,
    pub description: String,
    pub icon: String,
    pub default: bool,
    pub parameters: Vec<PresetParameter>,
    /// Absent when the preset keeps no pool.
    pub prebuilds: Option<PrebuildPolicy>,
    pub last_invalidated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresetParameter {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrebuildPolicy {
    /// Pool size when no schedule applies.
    pub instances: i32,
    /// Unclaimed prebuilds older than this many seconds are replaced.
    pub ttl_seconds: Option<i64>,
    pub scheduling: Option<PrebuildScheduling>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrebuildScheduling {
    pub timezone: String,
    pub schedules: Vec<PrebuildSchedule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrebuildSchedule {
    pub cron: String,
    pub instances: i32,
}
