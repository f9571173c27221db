//! Workspace builds.

text_enum! {
    /// What a build does to its workspace.
    pub enum Transition as "build transition" {
        Start = "start",
        Stop = "stop",
        Delete = "delete",
    }
}

text_enum! {
    /// Why a build was queued.
    pub enum BuildReason as "build reason" {
        /// A person asked for it.
        Initiator = "initiator",
        Autostart = "autostart",
        Autostop = "autostop",
        Dormancy = "dormancy",
        FailedStop = "failed_stop",
        /// The latest start failed longer ago than the template's failure TTL: stopped.
        FailureTtl = "failure_ttl",
        /// The reconciler keeps a pool: creating or deleting a prebuild.
        Prebuild = "prebuild",
        /// A person claimed a prebuild; this build personalises it.
        Claim = "claim",
    }
}
