use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
pub use warmspace_states::{JobPriority, JobStatus, JobType, LogLevel, LogSource};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionerJob {
    pub id: Uuid,
    pub organization_id: Uuid,
    #[serde(rename = "type")]
    pub kind: JobType,
    pub status: JobStatus,
    pub initiator_id: Uuid,
    /// `user` for work somebody waits for, `prebuild` for pool upkeep.
    pub priority: JobPriority,
    pub tags: BTreeMap<String, String>,
    /// The daemon running (or that ran) the job.
    pub worker_id: Option<Uuid>,
    pub worker_name: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// Pending jobs ahead of this one (0 = next); only for pending jobs.
    pub queue_position: Option<i64>,
    /// The job's log hit the 1 MiB cap and was truncated.
    pub logs_overflowed: bool,
    /// What the job is for.
    pub metadata: ProvisionerJobMetadata,
}

/// What a job is for: the template version it imports (or builds from), and
/// for a workspace build, the workspace, the build and its transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionerJobMetadata {
    pub template_version_id: Option<Uuid>,
    pub template_version_name: Option<String>,
    pub template_id: Option<Uuid>,
    pub template_name: Option<String>,
    pub workspace_id: Option<Uuid>,
    pub workspace_name: Option<String>,
    pub workspace_build_id: Option<Uuid>,
    pub build_number: Option<i32>,
    pub transition: Option<super::Transition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionerJobLog {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// `provisioner_daemon` (the daemon's own lines) or `provisioner` (the backend's output).
    pub source: LogSource,
    pub level: LogLevel,
    pub stage: String,
    pub output: String,
}

/// Query of `GET …/provisionerjobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Comma-separated statuses to include (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many, newest first (default and maximum 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// Query of the job log endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines with a greater id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Stream the log as Server-Sent Events (`log` events, then one `end`) until the job finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

/// A log line as a daemon sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogLine {
    pub created_at: DateTime<Utc>,
    pub source: LogSource,
    pub level: LogLevel,
    #[serde(default)]
    pub stage: String,
    pub output: String,
}
