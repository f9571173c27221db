//! Workspace apps (their health and the statuses reported about them) and
//! dev containers.

text_enum! {
    /// What an app's health check says.
    pub enum AppHealth as "app health" {
        /// The app has no health check.
        Disabled = "disabled",
        /// Its health check has no result yet.
        Initializing = "initializing",
        Healthy = "healthy",
        /// Its health check failed `threshold` times in a row.
        Unhealthy = "unhealthy",
    }
}

text_enum! {
    /// What something in the workspace (an AI coding agent, a script) says
    /// it is doing in an app.
    pub enum AppStatusState as "app status state" {
        Working = "working",
        Idle = "idle",
        Complete = "complete",
        Failure = "failure",
    }
}

text_enum! {
    /// Where a dev container is in coming up.
    pub enum DevcontainerState as "dev container state" {
        /// `devcontainer up` is running.
        Starting = "starting",
        Running = "running",
        /// It could not come up; the error says why.
        Error = "error",
    }
}
