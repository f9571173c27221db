//! Backends carry out workspace builds: `echo` simulates them, `exec` runs
//! the template's scripts, `terraform` runs the Terraform CLI on its `.tf` files. A backend reports how the build ended, the state
//! to keep for the next build, and the resources it touched.

mod echo;
mod exec;
mod terraform;

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use warmspace_sdk::{BuildJob, BuildOutcome};
use warmspace_template::BackendConfig;

use crate::logs::LogSink;

/// What a backend works with.
pub struct BuildContext<'a> {
    pub job: &'a BuildJob,
    /// The template version's files, unpacked into a directory of this build's own.
    pub files: &'a Path,
    pub log: &'a LogSink,
    /// Turns true when the build must stop: it was canceled, or the daemon lost the job.
    pub cancel: watch::Receiver<bool>,
    /// The daemon's own executable (`WARMSPACE_BINARY`), so a script can start `warmspace agent`.
    pub binary: &'a Path,
    /// How long a script that must stop gets between SIGTERM and SIGKILL
    /// (Terraform: between SIGINT and SIGKILL).
    pub stop_grace: Duration,
    /// The Terraform CLI the `terraform` backend runs: a path, or a name looked up on `PATH`.
    pub terraform: &'a Path,
    /// Terraform's plugin cache directory (`TF_PLUGIN_CACHE_DIR`), if one is configured.
    pub terraform_plugin_cache: Option<&'a Path>,
}

pub async fn run_build(ctx: BuildContext<'_>) -> BuildOutcome {
    match &ctx.job.backend {
        BackendConfig::Echo(config) => echo::run(config, ctx).await,
        BackendConfig::Exec(config) => exec::run(config, ctx).await,
        BackendConfig::Terraform => terraform::run(ctx).await,
    }
}

/// The drift check of a prebuild: the plan of its claim, never applied,
/// and the addresses of the resources the claim would replace. Only the
/// `terraform` backend plans.
pub async fn plan_claim(ctx: BuildContext<'_>) -> Result<Vec<String>, String> {
    match &ctx.job.backend {
        BackendConfig::Terraform => terraform::plan_claim(ctx).await,
        _ => Err("only templates with provisioner = \"terraform\" have their claims planned".into()),
    }
}

/// Resolves once `cancel` is true. A dropped sender can no longer cancel, so
/// then it never resolves.
async fn canceled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|&canceled| canceled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A start-or-other build of workspace `dev`, owned by `alice`, with no
/// parameters, agents or previous state, for the backends' tests: each sets
/// what its test is about over it (`BuildJob { …, ..test_job(…) }`).
#[cfg(test)]
fn test_job(transition: warmspace_template::Transition, backend: BackendConfig) -> BuildJob {
    BuildJob {
        build_id: uuid::Uuid::new_v4(),
        build_number: 1,
        transition,
        workspace_id: uuid::Uuid::new_v4(),
        workspace_name: "dev".into(),
        owner_id: uuid::Uuid::new_v4(),
        owner_name: "alice".into(),
        owner_email: "alice@example.com".into(),
        is_prebuild: false,
        is_claim: false,
        parameters: Default::default(),
        agent_tokens: Default::default(),
        backend,
        state: None,
        file_id: uuid::Uuid::new_v4(),
        server_url: "http://warmspace.test:3000".into(),
    }
}

/// Whether the processes a backend started are gone, for the tests of
/// timeouts and cancels.
#[cfg(test)]
mod process_checks {
    use std::time::Duration;

    use nix::sys::signal::kill;
    use nix::unistd::Pid;

    /// Whether a process still runs. Killed processes whose parent died may
    /// linger as zombies when PID 1 does not reap them; those count as gone.
    pub fn is_running(pid: Pid) -> bool {
        if kill(pid, None).is_err() {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Waits briefly for a signaled process to go away.
    pub async fn wait_gone(pid: Pid) -> bool {
        for _ in 0..50 {
            if !is_running(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
