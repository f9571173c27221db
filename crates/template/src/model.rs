//! What a parsed, validated manifest says. Every value here has passed the
//! rules of DESIGN §3, so consumers need not check again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use warmspace_states::{ClaimMode, ParameterType, Provisioner, Transition};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub provisioner: Provisioner,
    pub claim: ClaimMode,
    /// In file order.
    pub parameters: Vec<Parameter>,
    /// In file order.
    pub presets: Vec<Preset>,
    /// In file order.
    pub agents: Vec<Agent>,
    /// The block of the backend named by `provisioner`.
    pub backend: BackendConfig,
}

/// Values of every type travel as strings (as in build requests and presets):
/// numbers in their shortest decimal form (`2`, `2.5`), bools as `true` /
/// `false`, and `list(string)` as a JSON array (`["a","b"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub display_name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// `None` means the parameter is required.
    pub default: Option<String>,
    pub mutable: bool,
    pub options: Vec<ParameterOption>,
    pub validation: Option<Validation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterOption {
    pub name: String,
    pub value: String,
    pub description: String,
    pub icon: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// For numbers: inclusive bounds.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// For strings: a regular expression the whole value must match.
    pub regex: Option<String>,
    /// Shown instead of the generic message when a value fails.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub icon: String,
    pub default: bool,
    /// Parameter name → value (as a string, see [`Parameter`]).
    pub parameters: BTreeMap<String, String>,
    /// `None` when the preset has no `prebuilds` block: it has no pool at
    /// all, which is not the same as a pool of 0.
    pub prebuilds: Option<PrebuildPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrebuildPolicy {
    pub instances: u32,
    /// Unclaimed prebuilds older than this are replaced.
    pub ttl_seconds: Option<u64>,
    pub scheduling: Option<Scheduling>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduling {
    /// An IANA zone name, e.g. `America/New_York`.
    pub timezone: String,
    /// No two of these cover the same minute.
    pub schedules: Vec<ScheduleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Five fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    pub instances: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Lowercase letters, digits and single hyphens.
    pub name: String,
    pub startup_script: String,
    pub env: BTreeMap<String, String>,
    /// In file order; app names are unique across the manifest's agents.
    #[serde(default)]
    pub apps: Vec<App>,
    /// In file order.
    #[serde(default)]
    pub devcontainers: Vec<Devcontainer>,
}

/// Something served inside the workspace (a web IDE, a dev server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Lowercase letters, digits and single hyphens, like agent names.
    pub name: String,
    /// The name itself when the manifest gives none.
    pub display_name: String,
    /// An `http` or `https` URL, as seen from inside the workspace.
    pub url: String,
    /// `None`: the app's health is `disabled`.
    pub healthcheck: Option<Healthcheck>,
}

/// How the agent decides whether an app is healthy: an HTTP GET of `url`
/// every `interval`; a 2xx or 3xx answer is healthy, `threshold` failures in a
/// row unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    pub url: String,
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    pub threshold: u32,
}

/// A dev container the agent brings up with the `devcontainer` CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devcontainer {
    /// Lowercase letters, digits and single hyphens, like agent names.
    pub name: String,
    /// `--workspace-folder`: relative paths are from the agent's working directory.
    pub workspace_folder: String,
    /// `--config`, when the configuration is not in the folder's usual place.
    pub config_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum BackendConfig {
    Echo(EchoConfig),
    Exec(ExecConfig),
    /// Terraform reads the template's `.tf` files; it has no block here.
    Terraform,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoConfig {
    /// How long each build takes.
    pub duration_ms: u64,
    /// Transitions whose builds fail.
    pub fail_on: Vec<Transition>,
    /// Resource addresses a claim build reports as replaced.
    pub replace_on_claim: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecConfig {
    /// Script paths relative to the template root, per transition. `start`
    /// is required; a missing `stop` or `delete` does nothing.
    pub start: String,
    pub stop: Option<String>,
    pub delete: Option<String>,
    /// Scripts running longer are killed (default 10 minutes).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
