//! The job queue's cost: acquiring a job is one statement, whichever kind
//! of work it finds.

use std::time::Duration;

use uuid::Uuid;
use warmspace_sdk::{BuildOutcome, BuildResult, JobLogLine, JobPriority, LogLevel, LogSource, Resource};
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

// A zero-work job end to end, as an in-process daemon runs it: taking it
// (with its payload) is one statement, and its end — with its last log
// lines and its resources — is one more, followed once committed by one
// announcing it (shared with whatever else is being announced then).
#[tokio::test(flavor = "current_thread")]
async fn a_zero_work_job_costs_one_statement_to_take_and_one_to_finish() {
    let statements = Statements::on_this_thread();
    let mut config = Config::default();
    config.provisioning.reap_interval = Duration::from_secs(3600);
    let server = TestServer::start_full(config, 0, false).await;
    let domain = &server.domain;
    let preset = server.store.seed_pools(1, false).await.unwrap()[0];
    server.store.seed_queued_builds(preset, 2, JobPriority::User).await.unwrap();
    let worker = warmspace_provisioner::Worker { id: Uuid::new_v4(), name: "counted".into(), tags: Default::default() };

    for logs in [Vec::new(), vec![line("Job acquired by counted"), line("Simulated start finished")]] {
        let (count, job) = statements.during(domain.acquire_job(&worker, None)).await;
        let job = job.unwrap().expect("a queued job");
        assert!(matches!(job.kind, warmspace_provisioner::JobKind::WorkspaceBuild(_)));
        assert_eq!(count, 1, "taking a job with its payload took {count} statements");
        let outcome = BuildOutcome {
            result: BuildResult::Succeeded,
            state: None,
            resources: vec![Resource {
                address: "echo_workspace.main".into(),
                kind: "echo_workspace".into(),
                replaced: false,
            }],
            timings: Vec::new(),
        };
        let lines = logs.len();
        let (count, done) = statements.during(domain.complete_build(job.id, worker.id, None, outcome, logs)).await;
        done.unwrap();
        assert_eq!(count, 2, "finishing a job with {lines} log lines took {count} statements");
        let stored = server.store.job(job.id).await.unwrap();
        assert_eq!(stored.status, warmspace_sdk::JobStatus::Succeeded);
        assert_eq!(server.store.job_logs(job.id, 0).await.unwrap().len(), lines);
    }
}

fn line(output: &str) -> JobLogLine {
    JobLogLine {
        created_at: chrono::Utc::now(),
        source: LogSource::ProvisionerDaemon,
        level: LogLevel::Info,
        stage: String::new(),
        output: output.into(),
    }
}
