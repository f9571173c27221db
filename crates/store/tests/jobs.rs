//! The job queue against a real PostgreSQL: racing acquisition and the log cap.

use std::collections::HashSet;

use chrono::Utc;
use futures::future::join_all;
use uuid::Uuid;
use warmspace_store::jobs::{LOG_TRUNCATED_LINE, MAX_JOB_LOG_BYTES, NewLog, Worker};
use warmspace_store::testing::TestDatabase;
use warmspace_store::{NewTemplateVersion, NewUser, Store};

async fn user(store: &Store) -> Uuid {
    store
        .create_user(NewUser {
            username: "admin".into(),
            email: "admin@example.com".into(),
            name: String::new(),
            login_type: "none",
            hashed_password: None,
            status: "active",
            roles: vec![],
        })
        .await
        .unwrap()
        .id
}

/// Queues `count` import jobs; returns their ids.
async fn queue_imports(store: &Store, count: usize) -> Vec<Uuid> {
    let user = user(store).await;
    let org = store.organization("default").await.unwrap().id;
    let file = store.upload_file(&"0".repeat(64), "application/x-tar", b"", user).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..count {
        let version = store
            .create_template_version(&NewTemplateVersion {
                organization_id: org,
                template_id: None,
                name: None,
                message: String::new(),
                file_id: file.id,
                created_by: user,
                tags: Default::default(),
            })
            .await
            .unwrap();
        jobs.push(version.job_id);
    }
    jobs
}

fn worker(n: usize) -> Worker {
    Worker { id: Uuid::new_v4(), name: format!("daemon-{n}"), tags: Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_daemons_acquire_each_job_exactly_once() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let queued = queue_imports(&store, 300).await;

    // Eight daemons, each on its own connection, race until the queue is empty.
    let daemons = (0..8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let worker = worker(n);
            let mut taken = Vec::new();
            while let Some(job) = store.acquire_job(&worker).await.unwrap() {
                assert_eq!(job.status, "running");
                assert_eq!(job.worker_name.as_deref(), Some(worker.name.as_str()));
                taken.push(job.id);
                store.fail_job(job.id, worker.id, "done").await.unwrap();
            }
            taken
        })
    });
    let taken: Vec<Uuid> = join_all(daemons).await.into_iter().flat_map(|r| r.unwrap()).collect();
    let unique: HashSet<_> = taken.iter().collect();
    assert_eq!(taken.len(), queued.len(), "no job was taken twice");
    assert_eq!(unique, queued.iter().collect(), "every job was taken");
}

#[tokio::test]
async fn acquisition_honours_tags_and_order() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let jobs = queue_imports(&store, 2).await;
    sqlx::query("UPDATE provisioner_jobs SET tags = '{\"os\": \"windows\"}' WHERE id = $1")
        .bind(jobs[0])
        .execute(store.pool())
        .await
        .unwrap();
    let linux = Worker { tags: [("os".to_owned(), "linux".to_owned())].into(), ..worker(1) };
    assert_eq!(store.acquire_job(&linux).await.unwrap().unwrap().id, jobs[1], "the untagged job fits anyone");
    assert!(store.acquire_job(&linux).await.unwrap().is_none(), "the windows job waits for a windows daemon");
    let windows = Worker { tags: [("os".to_owned(), "windows".to_owned())].into(), ..worker(2) };
    assert_eq!(store.acquire_job(&windows).await.unwrap().unwrap().id, jobs[0]);
}

#[tokio::test]
async fn a_job_log_is_capped_at_one_mebibyte_with_a_final_line() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let job = queue_imports(&store, 1).await[0];
    // 3 MiB of 1000-byte lines, in batches, as a daemon would send them.
    let line = |i: usize| NewLog {
        created_at: Utc::now(),
        source: "provisioner".into(),
        level: "info".into(),
        stage: "apply".into(),
        output: format!("{i:>999}"),
    };
    let lines: Vec<NewLog> = (0..3 * MAX_JOB_LOG_BYTES / 1000 + 1).map(line).collect();
    for batch in lines.chunks(500) {
        store.append_job_logs(job, batch).await.unwrap();
    }
    let stored = store.job_logs(job, 0).await.unwrap();
    let (last, body) = stored.split_last().unwrap();
    assert_eq!(last.output, LOG_TRUNCATED_LINE);
    assert_eq!(body.iter().map(|l| l.output.len()).sum::<usize>(), MAX_JOB_LOG_BYTES);
    let row = store.job(job).await.unwrap();
    assert!(row.logs_overflowed);
    assert_eq!(row.logs_length as usize, MAX_JOB_LOG_BYTES);
    // Later lines are dropped, the truncation line is not repeated.
    assert_eq!(store.append_job_logs(job, &[line(0)]).await.unwrap(), 0);
    assert_eq!(store.job_logs(job, last.id).await.unwrap().len(), 0);
}
