use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ProvisionerJob;
pub use warmspace_states::{BuildReason, Transition, WorkspaceStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workspace {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub template_id: Uuid,
    pub template_name: String,
    pub template_active_version_id: Uuid,
    pub name: String,
    /// The preset it was made from, if any.
    pub preset_id: Option<Uuid>,
    /// That preset's name.
    #[serde(default)]
    pub preset_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ttl_ms: Option<i64>,
    pub autostart_schedule: Option<String>,
    pub last_used_at: DateTime<Utc>,
    /// Marked dormant (unused for the template's time until dormant): it
    /// cannot start until woken.
    #[serde(default)]
    pub dormant_at: Option<DateTime<Utc>>,
    /// When its deletion for dormancy was queued.
    #[serde(default)]
    pub deleting_at: Option<DateTime<Utc>>,
    /// The latest build used a version other than the template's active one.
    pub outdated: bool,
    pub status: WorkspaceStatus,
    pub latest_build: WorkspaceBuild,
    pub agents: Vec<super::WorkspaceAgent>,
    /// Only in the answer to a create request that claimed a prebuild: the
    /// hand-over in milliseconds, from the request's arrival at the server to
    /// the claim's record being written, the claim statement's last step
    /// before its commit. The same value is recorded with the claim (`GET
    /// /prebuilds/claims`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_hand_over_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceBuild {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub build_number: i32,
    pub transition: Transition,
    pub initiator_id: Uuid,
    pub initiator_name: String,
    pub reason: BuildReason,
    pub template_version_id: Uuid,
    pub template_version_name: String,
    pub template_version_preset_id: Option<Uuid>,
    pub status: WorkspaceStatus,
    pub job: ProvisionerJob,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub parameters: Vec<BuildParameter>,
    pub resources: Vec<WorkspaceResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildParameter {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceResource {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub replaced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    pub template_id: Uuid,
    /// Default: the template's active version.
    #[serde(default)]
    pub template_version_id: Option<Uuid>,
    /// Lowercase letters, digits and single hyphens; unique among the owner's workspaces.
    pub name: String,
    #[serde(default)]
    pub rich_parameter_values: Vec<BuildParameter>,
    /// A preset of the version; its values are used and may not be overridden.
    #[serde(default)]
    pub template_version_preset_id: Option<Uuid>,
    /// Default: the template's default TTL.
    #[serde(default)]
    pub ttl_ms: Option<i64>,
    /// Five cron fields, optionally after `CRON_TZ=<zone> `; only where the template allows autostart.
    #[serde(default)]
    pub autostart_schedule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceBuildRequest {
    pub transition: Transition,
    /// Default: the version of the workspace's latest build.
    #[serde(default)]
    pub template_version_id: Option<Uuid>,
    /// Changed values; the others carry over from the latest build.
    #[serde(default)]
    pub rich_parameter_values: Vec<BuildParameter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkspacesResponse {
    pub workspaces: Vec<Workspace>,
    pub count: i64,
}

/// Query of `GET /api/v2/workspaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspacesQuery {
    /// `owner:me|<username>` (`owner:prebuilds` is the pool), `template:<name>`, `status:<status>`,
    /// `name:<part>`; other words match names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceTtlRequest {
    /// Null: no time to live.
    pub ttl_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceAutostartRequest {
    /// Null: no autostart.
    pub schedule: Option<String>,
}

/// Moves a running workspace's deadline (Coder's `schedule extend`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendWorkspaceRequest {
    /// The new deadline is this long from now (by the server's clock): at
    /// least 30 minutes, and not after the build's max deadline.
    pub duration_ms: i64,
}

/// Marks a workspace dormant, or wakes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceDormancyRequest {
    /// False wakes a dormant workspace, so that it can start again.
    pub dormant: bool,
}
