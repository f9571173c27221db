//! `warmspace agent`: the process inside a workspace.

use anyhow::bail;
use url::Url;
use warmspace_agent::{AgentError, AgentOptions, Exit};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The server the agent connects back to.
    #[arg(long, env = "WARMSPACE_AGENT_URL", value_name = "URL")]
    url: Url,
    /// The agent token its workspace's build issued (not a user's session token).
    #[arg(long, env = "WARMSPACE_AGENT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: String,
}

/// Runs the agent until its workspace stops, a signal arrives, or its token
/// stops working.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    match warmspace_agent::run(AgentOptions::new(args.url, args.token), super::shutdown_signal()).await {
        Ok(Exit::Stopped | Exit::Shutdown) => Ok(()),
        Err(AgentError::Unauthorized) => bail!("the agent token is not valid (revoked, or the workspace was deleted)"),
        Err(err) => Err(err.into()),
    }
}
