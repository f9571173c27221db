//! Provisioner daemons. A daemon asks its [`Coordinator`] for a job, runs
//! it, streams its log and reports the result. The coordinator is the only
//! way a daemon reaches the server: in process it is the store itself; on
//! another host it is the HTTP API. Daemons keep no state between jobs.

mod archive;
pub mod backend;
pub mod coordinator;
pub mod daemon;
mod import;
mod logs;
pub mod remote;
mod report;

pub use coordinator::{AcquiredJob, Coordinator, CoordinatorError, JobKind, JobState, WorkSignal, Worker};
pub use daemon::{DEFAULT_SHUTDOWN_GRACE, DEFAULT_STOP_GRACE, DEFAULT_TERRAFORM_BINARY, Daemon, DaemonConfig};
pub use remote::HttpCoordinator;
