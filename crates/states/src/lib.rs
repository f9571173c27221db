//! Every state, transition, reason and kind that warmspace stores in the
//! database or sends on the wire, defined once. Each is an enum with one
//! text form; an unknown text is an error ([`UnknownValue`]), never a
//! default. With the `sqlx` feature they are stored in (checked) text
//! columns and decoded strictly; with `utoipa` they describe themselves in
//! the OpenAPI document. Beside them, the one rule about stored text that
//! both ends apply: how long a log line may be ([`cap_log_line`]).

#[macro_use]
mod macros;
mod agents;
mod apps;
mod builds;
mod connections;
mod jobs;
mod log_line;
mod prebuilds;
mod templates;
mod users;
mod workspaces;

pub use agents::AgentLifecycle;
pub use apps::{AppHealth, AppStatusState, DevcontainerState};
pub use builds::{BuildReason, Transition};
pub use connections::{ConnectionStatus, ConnectionType};
pub use jobs::{JobPriority, JobStatus, JobType, LogLevel, LogSource};
pub use log_line::{LINE_TRUNCATED_MARKER, MAX_LOG_LINE, cap_log_line};
pub use prebuilds::{
    DEFAULT_AGENT_READY_TIMEOUT_MS, DeletionReason, DriftCheckStatus, MissReason, PrebuildEvent, PresetStatus,
};
pub use templates::{ClaimMode, ParameterType, Provisioner};
pub use users::{LoginType, UserStatus};
pub use workspaces::WorkspaceStatus;

/// A text that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {kind} (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    /// What was being read, e.g. "job status".
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_serde_and_parsing_agree_and_unknown_text_is_an_error() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(*status));
            assert_eq!(serde_json::to_string(status).unwrap(), format!("\"{status}\""));
        }
        assert_eq!(ParameterType::ListString.as_str(), "list(string)");
        let err = "exploded".parse::<JobStatus>().unwrap_err();
        assert_eq!(err.kind, "job status");
        assert!(err.to_string().contains("\"exploded\" is not a job status"), "{err}");
        assert!(serde_json::from_str::<Transition>("\"restart\"").is_err());
        assert_eq!(JobPriority::from_i16(1), Ok(JobPriority::Prebuild));
        assert!(JobPriority::from_i16(2).is_err());
        assert_eq!(ClaimMode::default(), ClaimMode::Rebuild);
    }
}
