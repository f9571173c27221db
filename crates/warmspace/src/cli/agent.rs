//! `warmspace agent`: the process inside a workspace.

use anyhow::{Context, bail};
use warmspace_agent::{AgentError, AgentOptions, Exit};

use super::Config;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {}

/// Runs the agent until its workspace stops, a signal arrives, or its token
/// stops working. The server URL and token come from `WARMSPACE_AGENT_URL`
/// and `WARMSPACE_AGENT_TOKEN`, else from `--url` and `--token`.
pub async fn run(config: &Config, _args: AgentArgs) -> anyhow::Result<()> {
    let url = match std::env::var("WARMSPACE_AGENT_URL") {
        Ok(url) => url.parse().context("WARMSPACE_AGENT_URL is not a URL")?,
        Err(_) => config.url()?.context("which server? pass --url or set WARMSPACE_AGENT_URL")?,
    };
    let token = match std::env::var("WARMSPACE_AGENT_TOKEN") {
        Ok(token) => token,
        Err(_) => config.token_flag().context("pass --token or set WARMSPACE_AGENT_TOKEN")?.to_owned(),
    };
    match warmspace_agent::run(AgentOptions::new(url, token), super::shutdown_signal()).await {
        Ok(Exit::Stopped | Exit::Shutdown) => Ok(()),
        Err(AgentError::Unauthorized) => bail!("the agent token is not valid (revoked, or the workspace was deleted)"),
        Err(err) => Err(err.into()),
    }
}
