//! The protocol external provisioner daemons speak, driven with their keys:
//! what a daemon may do to a job depends on whether it holds the job.

use chrono::Utc;
use uuid::Uuid;
use warmspace_sdk::{
    AppendJobLogsRequest, Client, CompleteJobRequest, DaemonWorker, JobCompletion, JobLogLine, LogLevel, LogSource,
    StatusCode,
};
use warmspace_server::Config;
use warmspace_server::testing::TestServer;

use crate::common::*;

/// A client authenticated with a new provisioner key named `name`.
async fn daemon_client(server: &TestServer, owner: &Client, name: &str) -> Client {
    let key = owner.create_provisioner_key(name).await.unwrap();
    server.client().with_provisioner_key(key.secret)
}

fn worker(name: &str) -> DaemonWorker {
    DaemonWorker { id: Uuid::new_v4(), name: name.into(), tags: Default::default() }
}

fn lines(worker_id: Uuid, output: &str) -> AppendJobLogsRequest {
    let line = JobLogLine {
        created_at: Utc::now(),
        source: LogSource::Provisioner,
        level: LogLevel::Info,
        stage: String::new(),
        output: output.into(),
    };
    AppendJobLogsRequest { worker_id, logs: vec![line] }
}

#[tokio::test]
async fn only_the_daemon_holding_a_job_writes_its_log_and_never_once_it_finished() {
    // No in-process daemons: the job waits for ours.
    let server = TestServer::start_with(Config::default(), 0).await;
    let owner = server.owner().await;
    let (holder_client, other_client) =
        (daemon_client(&server, &owner, "holder").await, daemon_client(&server, &owner, "other").await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), "provisioner = \"echo\"\n").unwrap();
    let version = upload_version(&owner, dir.path(), None).await;
    let holder = worker("holder");
    let job = holder_client.acquire_job(&holder).await.unwrap().expect("the import job");
    // The other key's daemon has asked for work too: it is known, it just does not hold this job.
    let other = worker("other");
    assert!(other_client.acquire_job(&other).await.unwrap().is_none());

    let refused = |result| {
        let (status, body) = api_status(result);
        assert_eq!(status, StatusCode::GONE, "{body:?}");
        assert!(body.message.contains("not held by this daemon"), "{body:?}");
    };
    refused(other_client.append_job_logs(job.job_id, &lines(other.id, "from another daemon")).await);
    // Naming the holder's worker id does not help a daemon with another key.
    refused(other_client.append_job_logs(job.job_id, &lines(holder.id, "impersonating the holder")).await);
    holder_client.append_job_logs(job.job_id, &lines(holder.id, "from the holder")).await.unwrap();

    let failed = JobCompletion::Failed { error: "gave up".into() };
    holder_client
        .complete_job(job.job_id, &CompleteJobRequest { worker_id: holder.id, completion: failed })
        .await
        .unwrap();
    refused(holder_client.append_job_logs(job.job_id, &lines(holder.id, "after the end")).await);

    let log: Vec<String> =
        owner.template_version_logs(version.id).await.unwrap().into_iter().map(|l| l.output).collect();
    assert_eq!(log, ["from the holder"]);
}

#[tokio::test]
async fn daemons_are_listed_with_their_key_and_liveness() {
    // No in-process daemons: the one listed is ours, acquiring with a key.
    let server = TestServer::start_with(Config::default(), 0).await;
    let owner = server.owner().await;
    assert_eq!(owner.provisioner_daemons().await.unwrap(), Vec::new());
    let daemon = daemon_client(&server, &owner, "far-away").await;
    let me = worker("far-1");
    assert!(daemon.acquire_job(&me).await.unwrap().is_none(), "nothing to do, but seen");
    let daemons = owner.provisioner_daemons().await.unwrap();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let seen = &daemons[0];
    assert_eq!((seen.id, seen.name.as_str(), seen.key_name.as_deref()), (me.id, "far-1", Some("far-away")));
    assert!(seen.live);
    assert_eq!(seen.running_jobs, 0);
    // Template admins may read them, members may not.
    let admin = server.user(&owner, "ta", &[warmspace_sdk::Role::TemplateAdmin]).await;
    assert_eq!(admin.provisioner_daemons().await.unwrap().len(), 1);
    let member = server.user(&owner, "m", &[]).await;
    assert_eq!(api_status(member.provisioner_daemons().await).0, StatusCode::FORBIDDEN);
}
