//! What travels between the server and a provisioner daemon: the job a
//! daemon acquires and what it reports back. In-process daemons use these
//! types directly; external ones receive them as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use warmspace_template::{BackendConfig, Manifest, Transition};

/// Everything a backend needs to carry out one workspace build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildJob {
    pub build_id: Uuid,
    pub build_number: i32,
    pub transition: Transition,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    /// Empty from a server that predates it.
    #[serde(default)]
    pub owner_email: String,
    /// The workspace is an unclaimed prebuild (owned by the prebuilds user).
    pub is_prebuild: bool,
    /// This build hands a prebuild to its new owner.
    pub is_claim: bool,
    /// Parameter name → value, already validated.
    pub parameters: BTreeMap<String, String>,
    /// Agent name → the token that agent authenticates with, for builds that issue one.
    pub agent_tokens: BTreeMap<String, String>,
    /// The template version's backend block.
    pub backend: BackendConfig,
    /// What the previous build of the workspace left in its state file, if anything.
    #[serde(default, with = "base64_opt")]
    pub state: Option<Vec<u8>>,
    /// The template version's archive.
    pub file_id: Uuid,
    /// How a workspace reaches the server (`WARMSPACE_URL`).
    pub server_url: String,
}

/// How a build ended, with what the backend wants kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BuildOutcome {
    pub result: BuildResult,
    /// The state file after the build, handed to the next build; `None` keeps no state.
    #[serde(default, with = "base64_opt")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub state: Option<Vec<u8>>,
    pub resources: Vec<Resource>,
    /// How long each stage, and each resource within it, took (the
    /// `terraform` backend; empty from the others and from older daemons).
    #[serde(default)]
    pub timings: Vec<BuildTiming>,
}

/// One timed step of a build: a whole stage (`resource` is `None`), or one
/// action on one resource within it (Terraform's `apply_start` to
/// `apply_complete`, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildTiming {
    /// `init`, `plan` or `apply`.
    pub stage: String,
    /// What was done: the stage's command (`terraform plan`), or the
    /// resource's action (`create`, `update`, `delete`, `state refresh` …).
    pub action: String,
    /// The resource's address, e.g. `terraform_data.home`.
    pub resource: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub ended_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", content = "error", rename_all = "snake_case")]
pub enum BuildResult {
    Succeeded,
    Failed(String),
    /// Stopped on request; the job becomes `canceled`.
    Canceled,
    /// The daemon stopped before the build finished (it was shutting down):
    /// the job fails, but the failure is not the template's, so prebuild
    /// backoff and the hard limit do not count it.
    Interrupted(String),
}

/// A resource a build reports, e.g. from an `exec` script's result file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resource {
    /// A stable name for the resource, e.g. `docker_container.workspace`.
    pub address: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The build destroyed and recreated it (matters on claims: the warm
    /// resource the pool kept was thrown away).
    #[serde(default)]
    pub replaced: bool,
}

mod base64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A daemon introducing itself when it asks for work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonWorker {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A job handed to an external daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquiredJobResponse {
    pub job_id: Uuid,
    /// Renew the lease this often.
    pub heartbeat_every_ms: u64,
    pub job: AcquiredJobKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AcquiredJobKind {
    TemplateImport {
        template_version_id: Uuid,
        file_id: Uuid,
    },
    WorkspaceBuild {
        build: Box<BuildJob>,
    },
    /// Plan, without applying, the claim of the prebuild `build` describes
    /// (as a claim build, by a placeholder owner).
    DriftCheck {
        build: Box<BuildJob>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub worker_id: Uuid,
}

/// Log lines of a job, from the daemon that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendJobLogsRequest {
    pub worker_id: Uuid,
    pub logs: Vec<crate::JobLogLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Stop the backend and report: the job was canceled.
    pub canceling: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteJobRequest {
    pub worker_id: Uuid,
    pub completion: JobCompletion,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobCompletion {
    Import {
        manifest: Box<Manifest>,
    },
    Build {
        outcome: BuildOutcome,
    },
    /// A drift check's finding: the addresses a claim would replace.
    DriftCheck {
        replaced: Vec<String>,
    },
    Failed {
        error: String,
    },
}
