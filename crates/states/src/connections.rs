//! People's connections to workspaces, as the connection log records them.

text_enum! {
    /// What a connection carried.
    pub enum ConnectionType as "connection type" {
        /// An SSH session (`warmspace ssh`, OpenSSH through `config-ssh`, `scp`).
        Ssh = "ssh",
        /// One TCP connection forwarded to a port inside the workspace.
        PortForward = "port_forward",
        /// A workspace app opened through the server: one person's requests to
        /// one app while they keep coming, or one WebSocket.
        App = "app",
    }
}

text_enum! {
    /// Whether a connection is still open.
    pub enum ConnectionStatus as "connection status" {
        Ongoing = "ongoing",
        Completed = "completed",
    }
}
