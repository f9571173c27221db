//! The job queue's cost: acquiring a job is one statement, whichever kind
//! of work it finds.

use std::time::Duration;

use uuid::Uuid;
use warmspace_sdk::JobPriority;
use warmspace_server::Config;
use warmspace_server::testing::TestServer;
use warmspace_store::jobs::Worker;

use crate::common::*;

// A current-thread runtime: the server under test runs its tasks on this
// thread, so the statements counted here are its own and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn acquiring_a_job_is_one_statement() {
    let statements = Statements::on_this_thread();
    // No daemons and nothing in the background: the jobs wait for this test's acquires.
    let mut config = Config::default();
    config.provisioning.reap_interval = Duration::from_secs(3600);
    let server = TestServer::start_full(config, 0, false).await;
    let policy = server.domain.config().queue;
    let store = &server.store;
    let preset = store.seed_pools(1, false).await.unwrap()[0];
    store.seed_queued_builds(preset, 2, JobPriority::Prebuild).await.unwrap();
    store.seed_queued_builds(preset, 1, JobPriority::User).await.unwrap();
    let worker = Worker { id: Uuid::new_v4(), name: "counted".into(), tags: Default::default(), key_id: None };

    // A person's job, prebuild work within the share (of one daemon: one job), then nothing it may take.
    let mut taken = Vec::new();
    for expected in [Some(JobPriority::User), Some(JobPriority::Prebuild), None] {
        let (count, job) = statements.during(store.acquire_job(&worker, &policy)).await;
        let job = job.unwrap();
        assert_eq!(job.as_ref().map(|j| j.priority), expected);
        assert_eq!(count, 1, "acquiring ({expected:?}) took {count} statements");
        taken.extend(job);
    }
    assert_eq!(taken.len(), 2);
}
