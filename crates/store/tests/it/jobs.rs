//! The job queue against a real PostgreSQL: racing acquisition and the log cap.

use std::collections::HashSet;

use chrono::Utc;
use futures::future::join_all;
use uuid::Uuid;
use warmspace_states::{BuildReason, JobPriority, JobStatus, LogLevel, LogSource, LoginType, Transition, UserStatus};
use warmspace_store::jobs::{
    Holder, JobPayload, LOG_TRUNCATED_LINE, MAX_JOB_LOG_BYTES, NewLog, Notices, QueuePolicy, Worker,
};
use warmspace_store::testing::TestDatabase;
use warmspace_store::workspaces::{BuildCompletion, NewBuild, NewWorkspace, PREBUILDS_USER_ID};
use warmspace_store::{NewTemplate, NewTemplateVersion, NewUser, Store, StoreError, TemplateSettings};

async fn user(store: &Store) -> Uuid {
    store
        .create_user(NewUser {
            username: "admin".into(),
            email: "admin@example.com".into(),
            name: String::new(),
            login_type: LoginType::None,
            hashed_password: None,
            status: UserStatus::Active,
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
    Worker { id: Uuid::new_v4(), name: format!("daemon-{n}"), tags: Default::default(), key_id: None }
}

const POLICY: QueuePolicy = QueuePolicy { lease: std::time::Duration::from_secs(30), prebuild_share: 0.5 };

/// A template whose version "imported" (its job taken and completed by hand).
async fn template(store: &Store) -> (Uuid, Uuid) {
    let jobs = queue_imports(store, 1).await;
    let importer = worker(99);
    let job = store.acquire_job(&importer, &POLICY).await.unwrap().unwrap();
    assert_eq!(job.id, jobs[0]);
    let manifest = warmspace_template::parse("provisioner = \"echo\"\n").unwrap();
    store.complete_template_import(job.id, importer.id, &manifest).await.unwrap();
    let version = store.template_version_by_job(job.id).await.unwrap();
    let org = store.organization("default").await.unwrap().id;
    let template = store
        .create_template(&NewTemplate {
            organization_id: org,
            name: "t".into(),
            display_name: String::new(),
            description: String::new(),
            icon: String::new(),
            version_id: version.id,
            created_by: version.created_by,
            settings: TemplateSettings { autostop_requirement_weeks: 1, ..Default::default() },
        })
        .await
        .unwrap();
    (template.id, version.id)
}

/// Queues a workspace's first build, initiated by `initiator`; returns its job.
async fn queue_start(store: &Store, template: (Uuid, Uuid), owner: Uuid, initiator: Uuid, name: &str) -> Uuid {
    let org = store.organization("default").await.unwrap().id;
    let workspace = store
        .create_workspace(&NewWorkspace {
            organization_id: org,
            owner_id: owner,
            template_id: template.0,
            name: name.into(),
            ttl_ms: None,
            autostart_schedule: None,
            build: NewBuild {
                transition: Transition::Start,
                initiator_id: initiator,
                reason: if initiator == PREBUILDS_USER_ID { BuildReason::Prebuild } else { BuildReason::Initiator },
                template_version_id: template.1,
                preset_id: None,
                parameters: Default::default(),
                deadline: None,
                max_deadline: None,
            },
            miss: None,
        })
        .await
        .unwrap();
    workspace.latest_job_id
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
            while let Some(job) = store.acquire_job(&worker, &POLICY).await.unwrap() {
                assert_eq!(job.status, JobStatus::Running);
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

/// A daemon whose clock reading is older than a job it acquires (it read
/// the time, then waited for the queue's lock while the job was posted)
/// still starts the job no earlier than it was created.
#[tokio::test]
async fn a_job_never_starts_before_it_was_created() {
    let db = TestDatabase::new().await;
    let posting = db.store().await;
    posting.clock().advance(std::time::Duration::from_secs(5));
    let job = queue_imports(&posting, 1).await[0];
    let behind = db.store().await;
    let acquired = behind.acquire_job(&worker(1), &POLICY).await.unwrap().expect("the job");
    assert_eq!(acquired.id, job);
    let started = acquired.started_at.expect("a running job has started");
    assert!(started >= acquired.created_at, "started {started} before it was created {}", acquired.created_at);
}

#[tokio::test]
async fn acquisition_honours_tags_and_order() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let jobs = queue_imports(&store, 2).await;
    sqlx::query("UPDATE provisioner_jobs SET tags = '{\"os\": \"windows\"}' WHERE id = $1")
        .bind(jobs[0])
        .execute(&db.pool().await)
        .await
        .unwrap();
    let linux = Worker { tags: [("os".to_owned(), "linux".to_owned())].into(), ..worker(1) };
    assert_eq!(store.acquire_job(&linux, &POLICY).await.unwrap().unwrap().id, jobs[1], "the untagged job fits anyone");
    assert!(store.acquire_job(&linux, &POLICY).await.unwrap().is_none(), "the windows job waits for a windows daemon");
    let windows = Worker { tags: [("os".to_owned(), "windows".to_owned())].into(), ..worker(2) };
    assert_eq!(store.acquire_job(&windows, &POLICY).await.unwrap().unwrap().id, jobs[0]);
}

#[tokio::test]
async fn a_job_log_is_capped_at_one_mebibyte_with_a_final_line() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let job = queue_imports(&store, 1).await[0];
    // 3 MiB of 1000-byte lines, in batches, as a daemon would send them.
    let line = |i: usize| NewLog {
        created_at: Utc::now(),
        source: LogSource::Provisioner,
        level: LogLevel::Info,
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

#[tokio::test]
async fn a_line_over_64_kib_is_stored_cut_with_a_visible_marker() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let job = queue_imports(&store, 1).await[0];
    let line = |output: String| NewLog {
        created_at: Utc::now(),
        source: LogSource::Provisioner,
        level: LogLevel::Info,
        stage: String::new(),
        output,
    };
    // Over the cap by a lot; and with a two-byte character where the cut falls, which it must not split.
    let marker = "… [line truncated]";
    let split = 64 * 1024 - marker.len() - 1;
    let lines =
        [line("a".repeat(200_000)), line(format!("{}é{}", "b".repeat(split), "b".repeat(99))), line("short".into())];
    store.append_job_logs(job, &lines).await.unwrap();
    let stored: Vec<String> = store.job_logs(job, 0).await.unwrap().into_iter().map(|l| l.output).collect();
    for ((long, filler), len) in stored[..2].iter().zip(['a', 'b']).zip([64 * 1024, 64 * 1024 - 1]) {
        assert_eq!(long.len(), len, "cut to the cap, the marker included, at a character boundary");
        assert!(long.ends_with(marker), "{}", &long[long.len() - 40..]);
        assert!(long[..long.len() - marker.len()].chars().all(|c| c == filler));
    }
    assert_eq!(stored[2], "short");
    assert_eq!(store.job(job).await.unwrap().logs_length as usize, stored.iter().map(String::len).sum::<usize>());
}

#[tokio::test]
async fn a_person_s_build_queued_after_prebuild_work_runs_first() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let mut prebuild_jobs = Vec::new();
    for i in 0..5 {
        prebuild_jobs
            .push(queue_start(&store, template, PREBUILDS_USER_ID, PREBUILDS_USER_ID, &format!("pb{i}")).await);
    }
    let human = store.user_by_username("admin").await.unwrap().id;
    let user_job = queue_start(&store, template, human, human, "mine").await;

    let daemon = worker(1);
    let first = store.acquire_job(&daemon, &POLICY).await.unwrap().unwrap();
    assert_eq!(first.id, user_job, "the person's build jumps the prebuild queue");
    assert_eq!(first.priority, JobPriority::User);
    let second = store.acquire_job(&daemon, &POLICY).await.unwrap().unwrap();
    assert_eq!(second.id, prebuild_jobs[0], "then prebuild work, oldest first");
}

#[tokio::test]
async fn prebuild_jobs_take_at_most_their_share_of_the_daemons() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    for i in 0..4 {
        queue_start(&store, template, PREBUILDS_USER_ID, PREBUILDS_USER_ID, &format!("pb{i}")).await;
    }
    // Four live daemons at a share of one half: two may run prebuild work.
    let daemons: Vec<Worker> = (0..4).map(worker).collect();
    let mut taken = 0;
    for daemon in &daemons {
        if store.acquire_job(daemon, &POLICY).await.unwrap().is_some() {
            taken += 1;
        }
    }
    assert_eq!(taken, 2);
    // A person's job still gets a daemon.
    let human = store.user_by_username("admin").await.unwrap().id;
    let user_job = queue_start(&store, template, human, human, "mine").await;
    assert_eq!(store.acquire_job(&daemons[3], &POLICY).await.unwrap().unwrap().id, user_job);
}

/// Daemons asking at the same moment are served by one statement (rows
/// written by one transaction share its id, `xmin`), in the order they
/// asked: people's jobs first, oldest first, then prebuild work within its
/// share of the live daemons, counting the ones asking.
#[tokio::test]
async fn daemons_asking_together_are_served_by_one_statement_in_the_order_they_asked() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let human = store.user_by_username("admin").await.unwrap().id;
    let mut people = Vec::new();
    for i in 0..4 {
        people.push(queue_start(&store, template, human, human, &format!("mine{i}")).await);
        queue_start(&store, template, PREBUILDS_USER_ID, PREBUILDS_USER_ID, &format!("pb{i}")).await;
        queue_start(&store, template, PREBUILDS_USER_ID, PREBUILDS_USER_ID, &format!("pb{i}-2")).await;
    }
    // Ten daemons asking, and the one that imported the template: eleven
    // live at a share of one half, five may run prebuild work.
    let daemons: Vec<Worker> = (0..10).map(worker).collect();
    let taken = join_all(daemons.iter().map(|d| store.take_job(d, &POLICY))).await;
    let taken: Vec<Option<Uuid>> = taken.into_iter().map(|t| t.unwrap().map(|job| job.id)).collect();
    assert_eq!(taken[..4], people.iter().copied().map(Some).collect::<Vec<_>>()[..], "people's jobs, oldest first");
    assert!(taken[4..9].iter().all(Option::is_some), "{taken:?}");
    assert_eq!(taken[9], None, "the prebuild share is full");
    let ids: Vec<Uuid> = taken.iter().flatten().copied().collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 9, "each job once");
    let raw = db.pool().await;
    let (holders, transactions): (Vec<Option<Uuid>>, i64) = (
        sqlx::query_scalar(
            "SELECT worker_id FROM provisioner_jobs WHERE id = ANY ($1) ORDER BY array_position($1, id)",
        )
        .bind(&ids)
        .fetch_all(&raw)
        .await
        .unwrap(),
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM provisioner_jobs WHERE id = ANY ($1)")
            .bind(&ids)
            .fetch_one(&raw)
            .await
            .unwrap(),
    );
    let askers: Vec<Option<Uuid>> = daemons[..9].iter().map(|d| Some(d.id)).collect();
    assert_eq!(holders, askers, "each job is held by the daemon it was given to");
    assert_eq!(transactions, 1, "nine jobs taken by {transactions} transactions");
}

/// Daemons racing for prebuild work never take more than the share, and
/// never hold back a person's job: each takes jobs until there are none it
/// may take, keeping the prebuild jobs (so they stay running) and finishing
/// the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_daemons_keep_prebuild_work_within_its_share() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    // Eight daemons known and live before the race (an empty queue's acquire
    // says a daemon is there), and the one that imported the template: at a
    // share of one half, four may run prebuild work.
    let daemons: Vec<Worker> = (0..8).map(worker).collect();
    for daemon in &daemons {
        assert!(store.acquire_job(daemon, &POLICY).await.unwrap().is_none());
    }
    let human = store.user_by_username("admin").await.unwrap().id;
    let mut user_jobs = HashSet::new();
    for i in 0..12 {
        queue_start(&store, template, PREBUILDS_USER_ID, PREBUILDS_USER_ID, &format!("pb{i}")).await;
        if i % 3 == 0 {
            user_jobs.insert(queue_start(&store, template, human, human, &format!("mine{i}")).await);
        }
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(daemons.len()));
    let racing = daemons.into_iter().map(|daemon| {
        let (store, start) = (store.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            let (mut prebuild, mut user) = (Vec::new(), Vec::new());
            while let Some(job) = store.acquire_job(&daemon, &POLICY).await.unwrap() {
                match job.priority {
                    JobPriority::Prebuild => prebuild.push(job.id),
                    JobPriority::User => {
                        user.push(job.id);
                        store.fail_job(job.id, daemon.id, "done").await.unwrap();
                    }
                }
            }
            (prebuild, user)
        })
    });
    let results: Vec<_> = join_all(racing).await.into_iter().map(Result::unwrap).collect();
    let prebuild: Vec<Uuid> = results.iter().flat_map(|(p, _)| p.clone()).collect();
    let user: HashSet<Uuid> = results.iter().flat_map(|(_, u)| u.clone()).collect();
    assert_eq!(prebuild.len(), 4, "prebuild work holds exactly its share of the eight daemons");
    assert_eq!(user, user_jobs, "every person's job was taken");
}

#[tokio::test]
async fn expired_leases_fail_their_jobs_and_say_why() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let jobs = queue_imports(&store, 2).await;
    let short = QueuePolicy { lease: std::time::Duration::from_secs(1), ..POLICY };
    let daemon = worker(1);
    let held = store.acquire_job(&daemon, &short).await.unwrap().unwrap();
    let renewed = store.acquire_job(&worker(2), &POLICY).await.unwrap().unwrap();
    assert!(store.reap_expired_jobs().await.unwrap().is_empty(), "no lease has run out yet");
    // Later: the short lease has run out, the other has not.
    store.clock().advance(std::time::Duration::from_secs(5));

    assert_eq!(store.reap_expired_jobs().await.unwrap(), vec![held.id]);
    let failed = store.job(held.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed.error.unwrap().contains("daemon-1 stopped renewing its lease"));
    let log = store.job_logs(held.id, 0).await.unwrap();
    assert!(log.last().unwrap().output.contains("stopped heartbeating"));
    // The daemon that lost it learns so; the other job is untouched.
    assert_eq!(store.heartbeat_job(held.id, daemon.id, &POLICY).await.unwrap(), None);
    assert!(store.fail_job(held.id, daemon.id, "late").await.is_err());
    assert_eq!(store.job(renewed.id).await.unwrap().status, JobStatus::Running);
    assert_eq!(jobs.len(), 2);
}

#[tokio::test]
async fn a_canceled_running_job_is_told_on_its_heartbeat() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    queue_imports(&store, 1).await;
    let daemon = worker(1);
    let job = store.acquire_job(&daemon, &POLICY).await.unwrap().unwrap();
    assert_eq!(store.heartbeat_job(job.id, daemon.id, &POLICY).await.unwrap(), Some(JobStatus::Running));
    assert_eq!(store.cancel_job(job.id).await.unwrap(), Some(JobStatus::Canceling));
    assert_eq!(store.heartbeat_job(job.id, daemon.id, &POLICY).await.unwrap(), Some(JobStatus::Canceling));
    store.fail_job(job.id, daemon.id, "stopped").await.unwrap();
    assert_eq!(store.job(job.id).await.unwrap().status, JobStatus::Canceled, "a canceling job ends canceled");
    assert_eq!(store.cancel_job(job.id).await.unwrap(), None, "finished jobs cannot be canceled");
}

#[tokio::test]
async fn the_schema_keeps_deadlines_within_their_maximum() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let human = store.user_by_username("admin").await.unwrap().id;
    let job = queue_start(&store, template, human, human, "mine").await;
    let raw = db.pool().await;
    let set = |deadline: &'static str, max: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE workspace_builds SET deadline = {deadline}, max_deadline = {max} WHERE job_id = $1"
            )))
            .bind(job)
            .execute(&raw)
            .await
        }
    };
    assert!(set("now() + interval '1 hour'", "now() + interval '2 hours'").await.is_ok());
    assert!(set("now() + interval '1 hour'", "NULL").await.is_ok());
    let past_max = set("now() + interval '3 hours'", "now() + interval '2 hours'").await.unwrap_err();
    assert!(past_max.to_string().contains("workspace_builds_deadline_within_max"), "{past_max}");
    let zero = set("'1970-01-01 00:00:00+00'", "NULL").await.unwrap_err();
    assert!(zero.to_string().contains("workspace_builds_deadline_set"), "{zero}");
}

#[tokio::test]
async fn an_unknown_state_in_a_row_is_a_decode_error_never_a_default() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let human = store.user_by_username("admin").await.unwrap().id;
    let job = queue_start(&store, template, human, human, "mine").await;
    let workspace = store.workspace_by_name(human, "mine").await.unwrap().id;
    // As if a newer release (or a hand edit) wrote values this binary does not know.
    let raw = db.pool().await;
    for sql in [
        "ALTER TABLE provisioner_jobs DROP CONSTRAINT provisioner_jobs_status_check",
        "ALTER TABLE workspace_builds DROP CONSTRAINT workspace_builds_transition_check",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    sqlx::query("UPDATE provisioner_jobs SET status = 'exploded' WHERE id = $1").bind(job).execute(&raw).await.unwrap();
    let err = store.job(job).await.expect_err("an unknown job status does not decode");
    assert!(err.to_string().contains("\"exploded\" is not a job status"), "{err}");
    sqlx::query("UPDATE provisioner_jobs SET status = 'pending' WHERE id = $1").bind(job).execute(&raw).await.unwrap();
    sqlx::query("UPDATE workspace_builds SET transition = 'restart' WHERE workspace_id = $1")
        .bind(workspace)
        .execute(&raw)
        .await
        .unwrap();
    // Not silently a delete (nor anything else).
    let err = store.workspace(workspace).await.expect_err("an unknown transition does not decode");
    assert!(err.to_string().contains("\"restart\" is not a build transition"), "{err}");
}

// A build's end carries its daemon's last lines: stored with it when they
// fit, capped (with the truncation line) when they would overflow the log;
// a job being canceled ends canceled; a daemon that no longer holds the job
// changes nothing.
#[tokio::test]
async fn a_build_ends_with_its_last_lines_capped_like_any_batch() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let admin = store.user_by_username("admin").await.unwrap().id;
    for name in ["one", "two"] {
        queue_start(&store, template, admin, admin, name).await;
    }
    let daemon = worker(1);
    let line = |size: usize| NewLog {
        created_at: Utc::now(),
        source: LogSource::Provisioner,
        level: LogLevel::Info,
        stage: "start".into(),
        output: "x".repeat(size),
    };
    let done = BuildCompletion {
        status: JobStatus::Succeeded,
        error: None,
        interrupted: false,
        state: None,
        resources: vec![("echo_workspace.main".into(), "echo_workspace".into(), false)],
    };
    let holder = Holder { worker_id: daemon.id, key_id: None };
    let notices = Notices::default();

    let first = store.take_job(&daemon, &POLICY).await.unwrap().expect("a job");
    assert!(matches!(first.payload, JobPayload::Build(ref b) if b.workspace_name == "one"));
    let small = [line(10), line(20)];
    let stranger = Holder { worker_id: Uuid::new_v4(), key_id: None };
    let lost = store.complete_build_with_logs(first.id, stranger, &done, &small, &notices).await;
    assert!(matches!(lost, Err(StoreError::NotFound)), "{lost:?}");
    assert_eq!(store.job(first.id).await.unwrap().status, JobStatus::Running);
    let ended = store.complete_build_with_logs(first.id, holder, &done, &small, &notices).await.unwrap();
    assert_eq!((ended.status, ended.logs_stored), (JobStatus::Succeeded, 2));
    let row = store.job(first.id).await.unwrap();
    assert_eq!(row.logs_length, 30);
    assert_eq!(store.job_logs(first.id, 0).await.unwrap().len(), 2);

    let second = store.take_job(&daemon, &POLICY).await.unwrap().expect("a job");
    store.cancel_job(second.id).await.unwrap();
    let big: Vec<NewLog> = (0..MAX_JOB_LOG_BYTES / 60_000 + 1).map(|_| line(60_000)).collect();
    let ended = store.complete_build_with_logs(second.id, holder, &done, &big, &notices).await.unwrap();
    assert_eq!(ended.status, JobStatus::Canceled, "a canceling job ends canceled");
    let stored = store.job_logs(second.id, 0).await.unwrap();
    assert_eq!(stored.last().unwrap().output, LOG_TRUNCATED_LINE);
    let row = store.job(second.id).await.unwrap();
    assert!(row.logs_overflowed);
    assert_eq!(row.logs_length as usize, MAX_JOB_LOG_BYTES);
}

// Completions that arrive together are written together (the completer),
// yet each is answered for itself: one whose worker no longer holds its job
// is refused, a canceled one ends canceled, and every job keeps its own
// lines and state. Rows written by one transaction share its id (`xmin`):
// fewer transaction ids than completions shows they were written together.
// One the database refuses (two resources at one address) fails the batch's
// statement; then each is written alone and only that one fails.
#[tokio::test]
async fn completions_arriving_together_are_written_together_and_each_answered_for_itself() {
    const JOBS: usize = 12;
    let db = TestDatabase::new().await;
    let store = db.store().await;
    let template = template(&store).await;
    let admin = store.user_by_username("admin").await.unwrap().id;
    for n in 0..2 * JOBS {
        queue_start(&store, template, admin, admin, &format!("ws-{n}")).await;
    }
    let daemon = worker(1);
    let mut jobs = Vec::new();
    while let Some(job) = store.take_job(&daemon, &POLICY).await.unwrap() {
        jobs.push(job.id);
    }
    assert_eq!(jobs.len(), 2 * JOBS);
    let (together, then) = jobs.split_at(JOBS);
    let (canceled, lost, refused) = (together[3], together[7], then[5]);
    store.cancel_job(canceled).await.unwrap();

    let raw = db.pool().await;
    let holder = Holder { worker_id: daemon.id, key_id: None };
    let stranger = Holder { worker_id: Uuid::new_v4(), key_id: None };
    let notices = Notices::default();
    for round in [together, then] {
        let completions: Vec<(BuildCompletion, Vec<NewLog>)> =
            round.iter().map(|&job| completion(job, job == refused)).collect();
        let answers = join_all(round.iter().zip(&completions).map(|(&job, (done, logs))| {
            let by = if job == lost { stranger } else { holder };
            store.complete_build_with_logs(job, by, done, logs, &notices)
        }))
        .await;
        let mut transactions = HashSet::new();
        for ((&job, answer), (_, logs)) in round.iter().zip(&answers).zip(&completions) {
            let row = store.job(job).await.unwrap();
            if job == lost || job == refused {
                let expected_not_found = job == lost;
                assert_eq!(matches!(answer, Err(StoreError::NotFound)), expected_not_found, "{job}: {answer:?}");
                assert!(answer.is_err(), "{job}: {answer:?}");
                assert_eq!(row.status, JobStatus::Running, "a refused completion changes nothing");
                assert!(store.job_logs(job, 0).await.unwrap().is_empty());
                continue;
            }
            let ended = answer.as_ref().unwrap_or_else(|e| panic!("{job}: {e}"));
            let expected = if job == canceled { JobStatus::Canceled } else { JobStatus::Succeeded };
            assert_eq!((ended.status, ended.logs_stored, row.status), (expected, 3, expected));
            let stored: Vec<String> = store.job_logs(job, 0).await.unwrap().into_iter().map(|l| l.output).collect();
            let sent: Vec<String> = logs.iter().map(|l| l.output.clone()).collect();
            assert_eq!(stored, sent, "each job keeps its own lines, in order");
            let (xmin, state): (String, Vec<u8>) = sqlx::query_as(
                "SELECT j.xmin::text, b.provisioner_state FROM provisioner_jobs j \
                 JOIN workspace_builds b ON b.job_id = j.id WHERE j.id = $1",
            )
            .bind(job)
            .fetch_one(&raw)
            .await
            .unwrap();
            assert_eq!(state, job.as_bytes().to_vec(), "each build keeps its own state");
            transactions.insert(xmin);
        }
        if round == together {
            assert!(
                transactions.len() <= JOBS / 3,
                "{} completions written by {} transactions",
                JOBS - 1,
                transactions.len()
            );
        }
    }
}

/// A successful build of `job` with three lines of its own and its id as
/// state; `refused`: with two resources at one address.
fn completion(job: Uuid, refused: bool) -> (BuildCompletion, Vec<NewLog>) {
    let resource = |address: &str| (address.to_owned(), "echo_workspace".to_owned(), false);
    let done = BuildCompletion {
        status: JobStatus::Succeeded,
        error: None,
        interrupted: false,
        state: Some(job.as_bytes().to_vec()),
        resources: match refused {
            true => vec![resource("echo_workspace.main"), resource("echo_workspace.main")],
            false => vec![resource("echo_workspace.main")],
        },
    };
    let logs = (0..3)
        .map(|n| NewLog {
            created_at: Utc::now(),
            source: LogSource::Provisioner,
            level: LogLevel::Info,
            stage: "start".into(),
            output: format!("{job} line {n}"),
        })
        .collect();
    (done, logs)
}

/// The pick inside `acquire_provisioner_job` (migration 0012), as the
/// function runs it: with a generic plan (migration 0018) over a queue of
/// many pending jobs.
const PICK: &str = "SELECT q.id FROM provisioner_jobs q \
     WHERE q.status = 'pending' AND q.priority = 0 AND q.tags <@ $1 \
     ORDER BY q.created_at, q.id FOR UPDATE SKIP LOCKED LIMIT 1";

/// The first plan node (depth first) that `wanted` accepts.
fn plan_node<'a>(
    node: &'a serde_json::Value,
    wanted: &dyn Fn(&serde_json::Value) -> bool,
) -> Option<&'a serde_json::Value> {
    if wanted(node) {
        return Some(node);
    }
    node["Plans"].as_array().into_iter().flatten().find_map(|child| plan_node(child, wanted))
}

#[tokio::test]
async fn taking_a_job_walks_the_pending_index_in_queue_order_and_reads_one_row() {
    let db = TestDatabase::new().await;
    let store = db.store().await;
    // As many as `warmspace bench queue` queues.
    let preset = store.seed_pools(1, false).await.unwrap()[0];
    store.seed_queued_builds(preset, 2_000, JobPriority::User).await.unwrap();
    let raw = db.pool().await;
    sqlx::query("ANALYZE provisioner_jobs").execute(&raw).await.unwrap();
    let mut connection = raw.acquire().await.unwrap();
    for statement in [
        "SET plan_cache_mode = force_generic_plan".to_owned(),
        format!("PREPARE pick (jsonb) AS {PICK}"),
        "BEGIN".to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *connection).await.unwrap();
    }
    let explained: serde_json::Value = sqlx::query_scalar("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE pick ('{}')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    sqlx::raw_sql("ROLLBACK; DEALLOCATE pick; RESET plan_cache_mode").execute(&mut *connection).await.unwrap();
    let plan = &explained[0]["Plan"];
    let sort = plan_node(plan, &|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Sort")));
    assert!(sort.is_none(), "the queue is read in order, not sorted: {plan}");
    let scan = plan_node(plan, &|n| n["Index Name"] == "provisioner_jobs_pending_in_order").expect("the pending index");
    assert_eq!(scan["Actual Rows"], 1, "the scan stops at the first job it can lock: {plan}");
}

#[tokio::test]
async fn a_take_commits_without_waiting_for_its_flush_and_leaves_the_session_as_it_was() {
    let db = TestDatabase::new().await;
    let raw = db.pool().await;
    let mut connection = raw.acquire().await.unwrap();
    // As a durable database has it (the test cluster turns it off for speed).
    sqlx::query("SET synchronous_commit = on").execute(&mut *connection).await.unwrap();
    // Read after the function has run, within the statement's own transaction
    // (the aggregate reads every row the function returns first).
    let during: String = sqlx::query_scalar(
        "SELECT current_setting('synchronous_commit') FROM (SELECT count(*) FROM acquire_provisioner_job( \
             gen_random_uuid(), 'counted', '{}'::jsonb, NULL, interval '1 minute', now(), 0.5, \
             interval '1 minute', interval '10 seconds')) taken",
    )
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    assert_eq!(during, "off", "the take's transaction commits asynchronously");
    let after: String =
        sqlx::query_scalar("SELECT current_setting('synchronous_commit')").fetch_one(&mut *connection).await.unwrap();
    assert_eq!(after, "on", "only that transaction: the connection's next one waits for its flush");
}
