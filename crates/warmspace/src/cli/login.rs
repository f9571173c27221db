//! `warmspace login` and `warmspace logout`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use url::Url;
use warmspace_sdk::{Client, CreateFirstUserRequest, LoginWithPasswordRequest};

use super::Config;

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The server's URL; `host:port` alone means http for this machine, else https (default: --url or
    /// WARMSPACE_URL, else the last one logged in to).
    #[arg(id = "server_url", value_name = "URL", value_parser = super::config::server_url)]
    url: Option<Url>,
    /// Username of the first user, when the server has none yet.
    #[arg(long, env = "WARMSPACE_FIRST_USER_USERNAME")]
    first_user_username: Option<String>,
    /// Email of the first user; also used to log in when the server already has users.
    #[arg(long, env = "WARMSPACE_FIRST_USER_EMAIL")]
    first_user_email: Option<String>,
    /// Password of the first user; also used to log in when the server already has users.
    #[arg(long, env = "WARMSPACE_FIRST_USER_PASSWORD", hide_env_values = true)]
    first_user_password: Option<String>,
    /// Display name of the first user.
    #[arg(long, env = "WARMSPACE_FIRST_USER_FULL_NAME", default_value = "")]
    first_user_full_name: String,
    /// Email to log in with.
    #[arg(long)]
    email: Option<String>,
    /// Password to log in with (prefer the prompt or WARMSPACE_PASSWORD).
    #[arg(long, env = "WARMSPACE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

pub async fn login(config: &Config, args: LoginArgs) -> anyhow::Result<()> {
    let url = match args.url.clone() {
        Some(url) => url,
        None => config.url()?.context("which server? run `warmspace login URL`")?,
    };
    let client = Client::new(url.clone());
    client.build_info().await.with_context(|| format!("{url} does not answer as a warmspace server"))?;

    let (email, password) = if client.first_user_exists().await? {
        let email = value(args.email.or(args.first_user_email), "Email", "--email", false)?;
        let password = value(args.password.or(args.first_user_password), "Password", "--password", true)?;
        (email, password)
    } else {
        println!("{url} has no users yet: creating the first one, an owner.");
        let username = value(args.first_user_username, "Username", "--first-user-username", false)?;
        let email = value(args.first_user_email.or(args.email), "Email", "--first-user-email", false)?;
        let password = value(args.first_user_password.or(args.password), "Password", "--first-user-password", true)?;
        client
            .create_first_user(&CreateFirstUserRequest {
                username,
                email: email.clone(),
                password: password.clone(),
                name: args.first_user_full_name,
            })
            .await
            .context("creating the first user")?;
        (email, password)
    };
    let session = client.login(&LoginWithPasswordRequest { email, password }).await.context("logging in")?;
    let client = client.with_token(&session.session_token);
    let me = client.user("me").await?;
    config.save_session(&url, &session.session_token)?;
    println!("Logged in to {url} as {} ({}).", me.username, roles(&me));
    Ok(())
}

fn roles(user: &warmspace_sdk::User) -> String {
    user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

/// A value from its flag, else a prompt — but only on a terminal: a script
/// must never hang waiting for input it cannot give.
fn value(given: Option<String>, prompt: &str, flag: &str, secret: bool) -> anyhow::Result<String> {
    if let Some(value) = given {
        return Ok(value);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{flag} is required when standard input is not a terminal");
    }
    let value = if secret {
        rpassword::prompt_password(format!("{prompt}: "))?
    } else {
        print!("{prompt}: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim().to_owned()
    };
    Ok(value)
}

pub async fn logout(config: &Config) -> anyhow::Result<()> {
    let client = config.client()?;
    if let Err(err) = client.logout().await {
        // The local session goes regardless; the server may already have ended it.
        tracing::warn!(error = %err, "the server did not end the session");
    }
    config.forget_session()?;
    println!("Logged out of {}.", client.base_url());
    Ok(())
}
