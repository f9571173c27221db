//! Template versions: their backend, claim mode and parameter types.

text_enum! {
    /// The backend that runs a template's builds.
    pub enum Provisioner as "provisioner" {
        Echo = "echo",
        Exec = "exec",
        Terraform = "terraform",
    }
}

text_enum! {
    /// How a claim personalises a prebuild.
    #[derive(Default)]
    pub enum ClaimMode as "claim mode" {
        /// A `start` build as the new owner (the default).
        #[default]
        Rebuild = "rebuild",
        /// Ownership moves in one transaction; the agent re-runs its startup script.
        Reinit = "reinit",
    }
}

text_enum! {
    pub enum ParameterType as "parameter type" {
        String = "string",
        Number = "number",
        Bool = "bool",
        ListString = "list(string)",
    }
}
