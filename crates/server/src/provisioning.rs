//! The server's in-process provisioner daemons: the [`Coordinator`] they
//! reach the queue through (the domain's provisioning operations, called
//! directly rather than over HTTP), the daemons themselves, the one
//! subscription to posted jobs they share ([`JobBell`]), and the reaper of
//! expired leases.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use uuid::Uuid;
use warmspace_provisioner::{
    AcquiredJob, Coordinator, CoordinatorError, Daemon, DaemonConfig, JobState, WorkSignal, Worker,
};
use warmspace_sdk::{BuildOutcome, JobLogLine};
use warmspace_store::jobs::jobs_posted;
use warmspace_store::pubsub::{Event, Subscription};
use warmspace_template::Manifest;

use crate::domain::{self, Domain};

/// The queue as in-process daemons see it. Clones share the `bell` the
/// daemons are woken through and the archive fetched last.
#[derive(Clone)]
pub struct LocalCoordinator {
    domain: Domain,
    bell: JobBell,
    last_file: LastFile,
}

impl LocalCoordinator {
    pub fn new(domain: Domain, bell: JobBell) -> Self {
        LocalCoordinator { domain, bell, last_file: LastFile::default() }
    }
}

/// The archive fetched last, kept for the next job: a pool's builds all
/// run one template version, and a file id always names the same bytes
/// (files are stored once per hash and never rewritten). One archive, so
/// the memory it holds stays bounded.
#[derive(Clone, Default)]
struct LastFile(Arc<Mutex<Option<KeptFile>>>);

/// A file's id and its bytes.
type KeptFile = (Uuid, Arc<Vec<u8>>);

impl LastFile {
    fn get(&self, file_id: Uuid) -> Option<Arc<Vec<u8>>> {
        let last = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        last.as_ref().filter(|(id, _)| *id == file_id).map(|(_, data)| Arc::clone(data))
    }

    fn keep(&self, file_id: Uuid, data: Arc<Vec<u8>>) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((file_id, data));
    }
}

fn coordinator_error(err: domain::Error) -> CoordinatorError {
    use domain::Error as E;
    match err {
        E::JobLost => CoordinatorError::JobLost,
        // A database that failed may answer the next try.
        E::Internal(_) => CoordinatorError::Other(err.to_string()),
        E::Unauthenticated { .. } => CoordinatorError::Unauthorized(err.to_string()),
        E::Invalid(_) | E::Forbidden { .. } | E::NotFound(_) | E::Conflict { .. } | E::TooLarge { .. } => {
            CoordinatorError::Refused(err.to_string())
        }
    }
}

/// The one subscription to posted jobs that a server's in-process daemons
/// share: an announcement of N jobs wakes at most N idle daemons, where a
/// subscription per daemon would wake every one of them to find one job.
/// A wake that no idle daemon takes is kept (at most one per daemon) for
/// the next daemon to go idle: it may have looked for work just before the
/// jobs were committed.
#[derive(Clone)]
pub struct JobBell {
    wakes: Arc<Semaphore>,
    daemons: usize,
}

impl JobBell {
    /// A bell for `daemons` daemons.
    pub fn new(daemons: usize) -> JobBell {
        JobBell { wakes: Arc::new(Semaphore::new(0)), daemons }
    }

    /// Wakes as many idle daemons as `jobs` were posted, or every daemon
    /// when the number is unknown.
    pub fn ring(&self, jobs: Option<usize>) {
        // Only the listener rings, and waiters only take wakes: the count read here cannot grow meanwhile.
        let room = self.daemons.saturating_sub(self.wakes.available_permits());
        self.wakes.add_permits(jobs.unwrap_or(self.daemons).min(room));
    }

    /// What one daemon waits on.
    pub fn waiter(&self) -> BellWaiter {
        BellWaiter(Arc::clone(&self.wakes))
    }

    /// Rings for every announcement on `subscription` until it ends. A gap
    /// (announcements may have been lost) wakes everyone.
    pub async fn listen(self, mut subscription: Subscription) {
        while let Some(event) = subscription.recv().await {
            match event {
                Event::Message(payload) => self.ring(jobs_posted(&payload)),
                Event::Gap => self.ring(None),
            }
        }
    }
}

/// An idle daemon's side of the [`JobBell`].
pub struct BellWaiter(Arc<Semaphore>);

impl WorkSignal for BellWaiter {
    async fn wait(&mut self, timeout: Duration) {
        // Woken or not, the daemon looks for work; a wake it takes is used up.
        if let Ok(Ok(wake)) = tokio::time::timeout(timeout, self.0.acquire()).await {
            wake.forget();
        }
    }
}

impl Coordinator for LocalCoordinator {
    type Signal = BellWaiter;

    /// The bell is listening before any daemon starts (see [`Daemons::start`]).
    async fn work_signal(&self) -> Result<BellWaiter, CoordinatorError> {
        Ok(self.bell.waiter())
    }

    async fn acquire(&self, worker: &Worker) -> Result<Option<AcquiredJob>, CoordinatorError> {
        self.domain.acquire_job(worker, None).await.map_err(coordinator_error)
    }

    async fn file(&self, file_id: Uuid) -> Result<Vec<u8>, CoordinatorError> {
        if let Some(data) = self.last_file.get(file_id) {
            return Ok(data.to_vec());
        }
        let data = self.domain.daemon_file(file_id).await.map_err(coordinator_error)?;
        self.last_file.keep(file_id, Arc::new(data.clone()));
        Ok(data)
    }

    async fn heartbeat(&self, job_id: Uuid, worker_id: Uuid) -> Result<JobState, CoordinatorError> {
        self.domain.job_heartbeat(job_id, worker_id).await.map_err(coordinator_error)
    }

    async fn append_logs(&self, job_id: Uuid, worker_id: Uuid, logs: Vec<JobLogLine>) -> Result<(), CoordinatorError> {
        self.domain.append_job_logs(job_id, worker_id, None, logs).await.map_err(coordinator_error)
    }

    async fn complete_import(&self, job_id: Uuid, worker_id: Uuid, manifest: Manifest) -> Result<(), CoordinatorError> {
        self.domain.complete_import(job_id, worker_id, manifest).await.map_err(coordinator_error)
    }

    async fn complete_build(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        outcome: BuildOutcome,
        logs: Vec<JobLogLine>,
    ) -> Result<(), CoordinatorError> {
        self.domain.complete_build(job_id, worker_id, None, outcome, logs).await.map_err(coordinator_error)
    }

    async fn complete_drift_check(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        replaced: Vec<String>,
        logs: Vec<JobLogLine>,
    ) -> Result<(), CoordinatorError> {
        let domain = &self.domain;
        domain.complete_drift_check(job_id, worker_id, None, replaced, logs).await.map_err(coordinator_error)
    }

    async fn fail_job(&self, job_id: Uuid, worker_id: Uuid, error: String) -> Result<(), CoordinatorError> {
        self.domain.fail_job(job_id, worker_id, &error).await.map_err(coordinator_error)
    }
}

/// The in-process daemons of one server, and the lease reaper. Stopping
/// gives builds under way their shutdown grace, no more.
pub struct Daemons {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemons {
    /// Starts `count` daemons named `<host>-1` … `<host>-<count>`, the
    /// subscription to posted jobs they share, and the reaper that fails
    /// jobs whose daemon stopped heartbeating (on every replica: it is one
    /// idempotent update). The daemons start once the subscription
    /// listens, so a job posted meanwhile is not missed.
    pub fn start(domain: Domain, count: usize, binary: PathBuf) -> Daemons {
        let (stop, stopped) = watch::channel(false);
        let timing = domain.config().provisioning.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(reap(domain.clone(), timing.reap_interval, stopped.clone()));
        if count > 0 {
            tasks.spawn(run_daemons(domain, count, binary, stopped));
        }
        Daemons { stop, tasks }
    }

    /// Tells the daemons to take no more jobs and to wind down those under
    /// way; [`Daemons::stop`] then waits for them.
    pub fn begin_stop(&self) -> impl FnOnce() + Send + 'static {
        let stop = self.stop.clone();
        move || {
            stop.send_replace(true);
        }
    }

    pub async fn stop(mut self) {
        // Nobody listening means every task has ended already.
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Subscribes to posted jobs (retrying until it can, or until told to
/// stop), then runs `count` daemons woken through one [`JobBell`].
async fn run_daemons(domain: Domain, count: usize, binary: PathBuf, mut stop: watch::Receiver<bool>) {
    let subscription = loop {
        match domain.events().job_posted().await {
            Ok(subscription) => break subscription,
            Err(err) => {
                tracing::warn!(error = %err, "provisioner daemons cannot listen for jobs; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(SUBSCRIBE_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let bell = JobBell::new(count);
    let listener = tokio::spawn(bell.clone().listen(subscription));
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "warmspace".into());
    let timing = domain.config().provisioning.clone();
    let coordinator = LocalCoordinator::new(domain, bell);
    let mut daemons = JoinSet::new();
    for i in 1..=count {
        let config = DaemonConfig {
            name: format!("{host}-{i}"),
            tags: Default::default(),
            poll_interval: timing.poll_interval,
            binary: binary.clone(),
            stop_grace: timing.stop_grace,
            shutdown_grace: timing.shutdown_grace,
            terraform_binary: timing.terraform_binary.clone(),
            terraform_plugin_cache_dir: timing.terraform_plugin_cache_dir.clone(),
        };
        let daemon = Daemon::new(coordinator.clone(), config);
        let stopped = stop.clone();
        daemons.spawn(async move {
            // In-process daemons present no credential, so nothing can refuse one.
            if let Err(err) = daemon.run(stopped).await {
                tracing::error!(error = %err, "provisioner daemon stopped");
            }
        });
    }
    while daemons.join_next().await.is_some() {}
    listener.abort();
}

/// The wait between two attempts to subscribe to posted jobs (the pub/sub
/// reconnects by itself; this only covers its not being up yet).
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

async fn reap(domain: Domain, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(err) = domain.reap_expired_jobs().await {
            tracing::warn!(error = %err, "cannot reap expired job leases");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures::FutureExt;

    use super::*;

    type Wait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

    /// How many of `waits` (each polled once before, and still pending) have been woken.
    fn woken(waits: &mut [Wait<'_>]) -> usize {
        waits.iter_mut().map(|wait| wait.as_mut().now_or_never().is_some()).filter(|&woken| woken).count()
    }

    // Each wait is polled without the runtime ever running timers, so none ends by its backup poll.
    #[tokio::test]
    async fn an_announcement_of_n_jobs_wakes_at_most_n_idle_daemons() {
        let bell = JobBell::new(4);
        let mut waiters: Vec<BellWaiter> = (0..4).map(|_| bell.waiter()).collect();
        let mut waits: Vec<Wait<'_>> =
            waiters.iter_mut().map(|w| Box::pin(w.wait(Duration::from_secs(60))) as Wait<'_>).collect();
        assert_eq!(woken(&mut waits), 0, "nothing announced, nobody wakes");
        bell.ring(Some(2));
        assert_eq!(woken(&mut waits), 2, "two jobs wake two of the four idle daemons");
    }

    #[tokio::test]
    async fn an_announcement_nobody_waits_for_is_kept_for_the_next_idle_daemon_up_to_one_per_daemon() {
        let bell = JobBell::new(2);
        // Both daemons busy (or looking for work) while five jobs are announced.
        bell.ring(Some(5));
        let (mut first, mut second, mut third) = (bell.waiter(), bell.waiter(), bell.waiter());
        assert!(pin!(first.wait(Duration::from_secs(60))).now_or_never().is_some());
        assert!(pin!(second.wait(Duration::from_secs(60))).now_or_never().is_some());
        assert!(pin!(third.wait(Duration::from_secs(60))).now_or_never().is_none(), "no more wakes than daemons");
    }

    #[tokio::test]
    async fn a_gap_or_an_announcement_without_a_count_wakes_every_daemon() {
        let bell = JobBell::new(3);
        bell.ring(None);
        let mut waiters: Vec<BellWaiter> = (0..4).map(|_| bell.waiter()).collect();
        let woken = waiters.iter_mut().map(|w| pin!(w.wait(Duration::from_secs(60))).now_or_never().is_some());
        assert_eq!(woken.filter(|&woken| woken).count(), 3);
    }
}
