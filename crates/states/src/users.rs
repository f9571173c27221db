//! Users.

text_enum! {
    #[derive(Default)]
    pub enum LoginType as "login type" {
        /// Logs in with email and password.
        #[default]
        Password = "password",
        /// Cannot log in; uses API tokens only.
        None = "none",
    }
}

text_enum! {
    #[derive(Default)]
    pub enum UserStatus as "user status" {
        #[default]
        Active = "active",
        Suspended = "suspended",
    }
}
