//! Provisioner jobs and their logs.

text_enum! {
    /// Where a provisioner job is in its life.
    pub enum JobStatus as "job status" {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Somebody asked to cancel it while a daemon ran it; the daemon is stopping.
        Canceling = "canceling",
        Canceled = "canceled",
    }
}

impl JobStatus {
    /// The job has ended and will not change again.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
    }

    /// Queued or being worked on.
    pub fn in_progress(self) -> bool {
        !self.is_finished()
    }
}

text_enum! {
    pub enum JobType as "job type" {
        /// Parse and validate a template version's files.
        TemplateVersionImport = "template_version_import",
        WorkspaceBuild = "workspace_build",
        /// Plan, without applying, what claiming an eligible prebuild would
        /// replace (the Terraform backend's drift check).
        PrebuildDriftCheck = "prebuild_drift_check",
    }
}

text_enum! {
    /// Who wrote a job log line.
    pub enum LogSource as "log source" {
        /// The daemon itself.
        ProvisionerDaemon = "provisioner_daemon",
        /// The backend's output (a script's lines, Terraform's).
        Provisioner = "provisioner",
    }
}

text_enum! {
    pub enum LogLevel as "log level" {
        Trace = "trace",
        Debug = "debug",
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
}

/// Which jobs are taken first: those somebody waits for, then pool upkeep.
/// Stored as a small integer (lower first), so the queue's index orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobPriority {
    /// Somebody is waiting: imports, user builds, claims.
    User = 0,
    /// Prebuild creation and deletion.
    Prebuild = 1,
}

impl JobPriority {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobPriority::User => "user",
            JobPriority::Prebuild => "prebuild",
        }
    }

    pub const fn as_i16(self) -> i16 {
        self as i16
    }

    pub fn from_i16(value: i16) -> Result<Self, crate::UnknownValue> {
        match value {
            0 => Ok(JobPriority::User),
            1 => Ok(JobPriority::Prebuild),
            _ => Err(crate::UnknownValue { kind: "job priority", value: value.to_string(), expected: &["0", "1"] }),
        }
    }
}

#[cfg(feature = "sqlx")]
impl sqlx::Type<sqlx::Postgres> for JobPriority {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <i16 as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

#[cfg(feature = "sqlx")]
impl sqlx::Encode<'_, sqlx::Postgres> for JobPriority {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i16 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_i16(), buf)
    }
}

#[cfg(feature = "sqlx")]
impl<'r> sqlx::Decode<'r, sqlx::Postgres> for JobPriority {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(JobPriority::from_i16(<i16 as sqlx::Decode<sqlx::Postgres>>::decode(value)?)?)
    }
}
