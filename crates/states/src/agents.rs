//! Workspace agents.

text_enum! {
    /// Where an agent is in starting up (or shutting down).
    pub enum AgentLifecycle as "agent lifecycle state" {
        /// Its token is issued; it has not reported yet.
        Created = "created",
        /// Running its startup script.
        Starting = "starting",
        Ready = "ready",
        /// Its startup script failed.
        StartError = "start_error",
        ShuttingDown = "shutting_down",
        Off = "off",
    }
}
