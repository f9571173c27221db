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
}

pub async fn run_build(ctx: BuildContext<'_>) -> BuildOutcome {
    match &ctx.job.backend {
        BackendConfig::Echo(config) => echo::run(config, ctx).await,
        BackendConfig::Exec(config) => exec::run(config, ctx).await,
        BackendConfig::Terraform => terraform::run(ctx).await,
    }
}

/// Resolves once `cancel` is true. A dropped sender can no longer cancel, so
/// then it never resolves.
async fn canceled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|&canceled| canceled).await.is_err() {
        std::future::pending::<()>().await;
    }
}
