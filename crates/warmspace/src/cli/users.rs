//! `warmspace users …`.

use rand::RngExt;
use rand::distr::Alphanumeric;
use serde::Serialize;
use warmspace_sdk::{CreateUserRequest, LoginType, Role, User, UserStatus, UsersQuery};

use super::Config;
use super::output::{self, Format, OutputArgs};

#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// List users (system users such as `prebuilds` only with --include-system).
    #[command(alias = "ls")]
    List {
        /// Filter: words match username, email or name; also login_type:, status:, role:.
        #[arg(long, default_value = "")]
        search: String,
        /// Include system users such as `prebuilds`.
        #[arg(long)]
        include_system: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create a user (owners only).
    Create {
        /// The login name: letters, digits and single hyphens.
        #[arg(long)]
        username: String,
        /// The email address, also used to log in.
        #[arg(long)]
        email: String,
        /// The display name.
        #[arg(long, default_value = "")]
        full_name: String,
        /// For password logins; a random one is generated and printed if omitted.
        #[arg(long, env = "WARMSPACE_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// How the user logs in: with a password, or not at all (API tokens only).
        #[arg(long, value_enum, default_value_t = LoginTypeArg::Password)]
        login_type: LoginTypeArg,
        /// A role beyond member: owner or template-admin. Repeatable.
        #[arg(long = "role")]
        roles: Vec<Role>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Suspend a user (owners only): they can no longer log in, and their sessions stop working.
    Suspend {
        /// The user's username or id.
        user: String,
    },
    /// Reactivate a suspended user (owners only).
    Activate {
        /// The user's username or id.
        user: String,
    },
    /// Replace a user's roles (owners only; not your own).
    EditRoles {
        /// The user's username or id.
        user: String,
        /// A role beyond member: owner or template-admin. Repeatable; none leaves a plain member.
        #[arg(long = "role")]
        roles: Vec<Role>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LoginTypeArg {
    Password,
    None,
}

pub async fn run(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let client = config.client()?;
    match command {
        UsersCommand::List { search, include_system, output } => {
            let mut users = Vec::new();
            loop {
                let page = client
                    .users(&UsersQuery {
                        q: Some(search.clone()).filter(|s| !s.is_empty()),
                        include_system,
                        limit: None,
                        offset: Some(users.len() as i64),
                    })
                    .await
                    .map_err(super::search_error)?;
                let done = page.users.is_empty() || users.len() + page.users.len() >= page.count as usize;
                users.extend(page.users);
                if done {
                    break;
                }
            }
            match output.format {
                Format::Json => output::json(&users)?,
                Format::Table => print_users(&users),
            }
        }
        UsersCommand::Create { username, email, full_name, password, login_type, roles, output } => {
            let login_type = match login_type {
                LoginTypeArg::Password => LoginType::Password,
                LoginTypeArg::None => LoginType::None,
            };
            let generated = (login_type == LoginType::Password && password.is_none())
                .then(|| rand::rng().sample_iter(Alphanumeric).take(20).map(char::from).collect::<String>());
            let user = client
                .create_user(&CreateUserRequest {
                    username,
                    email,
                    name: full_name,
                    password: password.or_else(|| generated.clone()),
                    login_type,
                    roles,
                    status: UserStatus::Active,
                })
                .await?;
            match output.format {
                // Shown this once and never again: a script needs it as a field.
                Format::Json => output::json(&CreatedUser { user, password: generated })?,
                Format::Table => {
                    println!("Created user {} <{}>.", user.username, user.email);
                    if let Some(password) = generated {
                        println!("Password: {password}");
                    }
                }
            }
        }
        UsersCommand::Suspend { user } => {
            let user = client.suspend_user(&user).await?;
            println!("Suspended user {}.", user.username);
        }
        UsersCommand::Activate { user } => {
            let user = client.activate_user(&user).await?;
            println!("Activated user {}.", user.username);
        }
        UsersCommand::EditRoles { user, roles } => {
            let user = client.set_user_roles(&user, &roles).await?;
            let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
            println!("User {} now has the roles {}.", user.username, roles.join(", "));
        }
    }
    Ok(())
}

/// A created user, with the password generated for them (if one was).
#[derive(Serialize)]
struct CreatedUser {
    #[serde(flatten)]
    user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

fn print_users(users: &[User]) {
    output::table(
        ["USERNAME", "EMAIL", "NAME", "ROLES", "STATUS", "LOGIN TYPE", "CREATED"],
        users.iter().map(|u| {
            [
                u.username.clone(),
                u.email.clone(),
                u.name.clone(),
                u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
                u.status.as_str().to_owned(),
                u.login_type.as_str().to_owned(),
                u.created_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        }),
    );
}
