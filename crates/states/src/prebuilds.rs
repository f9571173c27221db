//! Prebuild pools, claims and the history of each prebuild.

text_enum! {
    /// Whether a preset's pool is being kept, and if not why.
    pub enum PresetStatus as "preset status" {
        Normal = "normal",
        /// Recent creations failed; the next waits.
        Backoff = "backoff",
        /// The last creations all failed; none until a new version.
        HardLimited = "hard_limited",
        /// The preset's parameter values do not validate.
        ValidationFailed = "validation_failed",
    }
}

text_enum! {
    /// How a preset's drift check (the plan of a prebuild's claim) stands.
    pub enum DriftCheckStatus as "drift check status" {
        /// Queued or running.
        Pending = "pending",
        /// Done: its finding says what a claim would replace.
        Done = "done",
        /// The check could not be made (its error says why).
        Failed = "failed",
    }
}

text_enum! {
    /// Why a create request did not claim a prebuild.
    pub enum MissReason as "claim miss reason" {
        /// No preset applied (none named, none matched).
        NoPreset = "no_preset",
        /// The preset applied keeps no pool: it has no `prebuilds` block, or
        /// its template version is not the active one.
        NoPool = "no_pool",
        /// The preset keeps a pool but nothing in it is claimable now.
        NoEligible = "no_eligible",
        /// Reconciliation is paused site-wide.
        Paused = "paused",
        HardLimited = "hard_limited",
        Backoff = "backoff",
        /// The request almost matched a preset (charged to the closest).
        ParameterMismatch = "parameter_mismatch",
    }
}

text_enum! {
    /// An event in a prebuild's life.
    pub enum PrebuildEvent as "prebuild event" {
        Created = "created",
        /// It became claimable.
        Eligible = "eligible",
        Claimed = "claimed",
        Expired = "expired",
        Deleted = "deleted",
    }
}

text_enum! {
    /// Why the reconciler deleted a prebuild.
    pub enum DeletionReason as "prebuild deletion reason" {
        /// More than desired.
        Surplus = "surplus",
        /// Past its TTL, or invalidated.
        Expired = "expired",
        /// Its preset's version is no longer active, or its template is gone.
        Inactive = "inactive",
        /// Its latest build failed.
        Failed = "failed",
        /// Its start build succeeded, but its agents were not ready within
        /// the template's `agent_ready_timeout`: a failed creation.
        AgentsNotReady = "agents_not_ready",
    }
}

/// A template's `agent_ready_timeout` unless set (10 minutes; the schema's default too).
pub const DEFAULT_AGENT_READY_TIMEOUT_MS: i64 = 10 * 60 * 1000;
