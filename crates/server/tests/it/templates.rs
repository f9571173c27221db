//! Files, template versions imported by real in-process daemons, templates
//! and the job queue, through the HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::Digest;
use warmspace_sdk::{
    Client, JobStatus, JobsQuery, LogEvent, Role, StatusCode, TemplateVersion, UpdateTemplateRequest,
    UpdateTemplateSettings,
};
use warmspace_server::Config;
use warmspace_server::testing::TestServer;

use crate::common::{api_status, create_template, try_create_template, upload_version, wait_imported};

pub(crate) fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/echo")
}

/// A directory holding `warmspace.hcl` with `manifest`.
fn template_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), manifest).unwrap();
    dir
}

/// Follows the import log to its end; returns the lines and the final job.
pub(crate) async fn follow(client: &Client, version: &TemplateVersion) -> (Vec<String>, warmspace_sdk::ProvisionerJob) {
    let mut events = Box::pin(client.follow_template_version_logs(version.id).await.unwrap());
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Some(event) = tokio::time::timeout_at(deadline, events.next()).await.expect("the import ends") {
        match event.unwrap() {
            LogEvent::Log(log) => lines.push(log.output),
            LogEvent::End(job) => return (lines, *job),
        }
    }
    panic!("the log stream ended without an end event");
}

#[tokio::test]
async fn the_design_example_imports_and_its_presets_are_listed() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let version = upload_version(&owner, &example_dir(), None).await;
    assert_eq!(version.name, "v1");
    let (lines, job) = follow(&owner, &version).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{lines:#?}");
    assert!(job.worker_name.is_some() && job.started_at.is_some() && job.completed_at.is_some());
    assert!(lines.iter().any(|l| l.contains("Parsing warmspace.hcl")), "{lines:#?}");

    let template = create_template(&owner, "example", &version).await;
    assert_eq!(template.active_version_id, version.id);
    let presets = owner.template_version_presets(version.id).await.unwrap();
    let small = presets.iter().find(|p| p.name == "us-small").expect("us-small");
    assert!(small.default);
    assert_eq!(small.description, "US East, 2 CPUs");
    assert_eq!(small.icon, "/icon/us.svg");
    let params: Vec<(&str, &str)> = small.parameters.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
    assert_eq!(params, [("cpus", "2"), ("region", "us")]);
    let policy = small.prebuilds.as_ref().expect("a prebuild policy");
    assert_eq!((policy.instances, policy.ttl_seconds), (1, Some(86400)));
    let scheduling = policy.scheduling.as_ref().expect("scheduling");
    assert_eq!(scheduling.timezone, "America/New_York");
    let schedules: Vec<(&str, i32)> = scheduling.schedules.iter().map(|s| (s.cron.as_str(), s.instances)).collect();
    assert_eq!(schedules, [("* 8-18 * * 1-5", 3), ("* 8-14 * * 6", 1)]);
    // A preset without a prebuilds block has no pool at all.
    let large = presets.iter().find(|p| p.name == "eu-large").unwrap();
    assert!(large.prebuilds.is_none() && !large.default);

    let parameters = owner.template_version_parameters(version.id).await.unwrap();
    let region = &parameters[0];
    assert_eq!((region.name.as_str(), region.kind.as_str(), region.mutable), ("region", "string", false));
    assert_eq!(region.options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>(), ["us", "eu"]);
    assert_eq!((parameters[1].validation_min, parameters[1].validation_max), (Some(1.0), Some(16.0)));

    // Stored relationally, not as a blob.
    let schedules: i64 = sqlx::query_scalar("SELECT count(*) FROM template_version_preset_prebuild_schedules")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(schedules, 2);
}

#[tokio::test]
async fn an_invalid_manifest_fails_its_import_naming_block_and_field() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let manifest = std::fs::read_to_string(example_dir().join("warmspace.hcl"))
        .unwrap()
        .replace("America/New_York", "Mars/Olympus_Mons")
        .replace("instances = 1\n    expiration", "instances = -1\n    expiration");
    let dir = template_dir(&manifest);
    let version = upload_version(&owner, dir.path(), None).await;
    let (lines, job) = follow(&owner, &version).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains(r#"preset "us-small" › prebuilds › scheduling › timezone"#), "{error}");
    assert!(error.contains(r#"preset "us-small" › prebuilds › instances"#), "{error}");
    assert!(lines.iter().any(|l| l.contains("Mars/Olympus_Mons")), "the log names the problem too: {lines:#?}");

    // A version whose import failed cannot back a template.
    let refused = try_create_template(&owner, "broken", &version).await;
    let (status, body) = api_status(refused);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.validations[0].field, "template_version_id");
}

#[tokio::test]
async fn identical_uploads_share_one_id_and_oversized_ones_get_413() {
    let config = Config { max_file_size: 4096, ..Config::default() };
    let server = TestServer::start_with(config, 0).await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;

    let small =
        |byte: u8, len: usize| tar_of(&[("warmspace.hcl", tar::EntryType::Regular, &vec![byte; len][..], None)]);
    let a = owner.upload_tar(small(7, 100)).await.unwrap();
    let b = owner.upload_tar(small(7, 100)).await.unwrap();
    let c = member.upload_tar(small(7, 100)).await.unwrap();
    assert_eq!((a.id, a.id), (b.id, c.id));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM files").fetch_one(&server.db.pool().await).await.unwrap();
    assert_eq!(stored, 1, "the bytes are stored once");

    let (status, body) = api_status(owner.upload_tar(vec![0; 4097]).await);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.detail.contains("4096"), "{body:?}");

    // Reading: the uploaders may, another member may not.
    let own = member.upload_tar(small(1, 10)).await.unwrap();
    assert_eq!(member.download_file(own.id).await.unwrap(), small(1, 10));
    assert_eq!(owner.download_file(own.id).await.unwrap(), small(1, 10));
    let other = server.user(&owner, "other", &[]).await;
    assert_eq!(api_status(other.download_file(own.id).await).0, StatusCode::FORBIDDEN);
    assert_eq!(member.download_file(a.id).await.unwrap(), small(7, 100), "member uploaded the same bytes too");

    // The content type is checked.
    let resp = owner
        .request(reqwest::Method::POST, "api/v2/files")
        .unwrap()
        .header("content-type", "application/zip")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn many_daemons_run_each_import_exactly_once() {
    let server = TestServer::start_with(Config::default(), 4).await;
    let owner = server.owner().await;
    let dir = example_dir();
    let mut versions = Vec::new();
    for _ in 0..40 {
        versions.push(upload_version(&owner, &dir, None).await);
    }
    for version in &versions {
        let (lines, job) = follow(&owner, version).await;
        assert_eq!(job.status, JobStatus::Succeeded);
        let acquisitions = lines.iter().filter(|l| l.starts_with("Job acquired by")).count();
        assert_eq!(acquisitions, 1, "{lines:#?}");
    }
    let jobs = owner.provisioner_jobs("default", &JobsQuery::default()).await.unwrap();
    assert_eq!(jobs.len(), 40);
    let workers: std::collections::BTreeSet<_> = jobs.iter().filter_map(|j| j.worker_name.clone()).collect();
    assert!(workers.len() > 1, "the work is spread over the daemons: {workers:?}");
}

#[tokio::test]
async fn the_active_version_s_files_again_make_no_version_when_the_request_says_so() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let v1 = upload_version(&owner, &example_dir(), None).await;
    wait_imported(&owner, &v1).await;
    let template = create_template(&owner, "example", &v1).await;
    let file = owner.upload_tar(warmspace_sdk::archive::tar_directory(&example_dir()).unwrap()).await.unwrap();
    let request = warmspace_sdk::CreateTemplateVersionRequest {
        file_id: file.id,
        template_id: Some(template.id),
        name: None,
        message: String::new(),
        provisioner_tags: Default::default(),
        skip_if_unchanged: true,
    };
    let same = owner.create_template_version("default", &request).await.unwrap();
    assert!(same.unchanged);
    assert_eq!(same.id, v1.id, "the active version answers");
    assert_eq!(owner.template_versions(template.id).await.unwrap().len(), 1);
    // Not asked: the API stays explicit, and a version is made.
    let again = owner
        .create_template_version(
            "default",
            &warmspace_sdk::CreateTemplateVersionRequest { skip_if_unchanged: false, ..request },
        )
        .await
        .unwrap();
    assert!(!again.unchanged);
    assert_eq!(again.name, "v2");
}

#[tokio::test]
async fn a_pending_import_can_be_canceled_and_jobs_show_their_queue_position() {
    // No daemons: everything stays pending.
    let server = TestServer::start_with(Config::default(), 0).await;
    let owner = server.owner().await;
    let first = upload_version(&owner, &example_dir(), None).await;
    let second = upload_version(&owner, &example_dir(), None).await;
    let jobs =
        owner.provisioner_jobs("default", &JobsQuery { status: Some("pending".into()), limit: None }).await.unwrap();
    let position = |id| jobs.iter().find(|j| j.id == id).unwrap().queue_position;
    assert_eq!((position(first.job.id), position(second.job.id)), (Some(0), Some(1)));
    // Each job says what it is for: here, the version it imports.
    let first_job = jobs.iter().find(|j| j.id == first.job.id).unwrap();
    assert_eq!(
        (first_job.metadata.template_version_id, first_job.metadata.template_version_name.as_deref()),
        (Some(first.id), Some(first.name.as_str()))
    );
    assert_eq!(first_job.metadata.workspace_id, None);

    owner.cancel_template_version(first.id).await.unwrap();
    let canceled = owner.template_version(first.id).await.unwrap().job;
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert!(canceled.completed_at.is_some() && canceled.started_at.is_none());
    assert_eq!(api_status(owner.cancel_template_version(first.id).await).0, StatusCode::CONFLICT);
    assert_eq!(owner.template_version(second.id).await.unwrap().job.queue_position, Some(0));

    let (status, body) = api_status(
        owner.provisioner_jobs("default", &JobsQuery { status: Some("sleeping".into()), limit: None }).await,
    );
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "status"));
}

#[tokio::test]
async fn templates_are_created_activated_updated_and_deleted_by_template_admins_only() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;

    let v1 = upload_version(&admin, &example_dir(), None).await;
    assert_eq!(follow(&admin, &v1).await.1.status, JobStatus::Succeeded);
    let template = create_template(&admin, "example", &v1).await;
    let another = upload_version(&admin, &example_dir(), None).await;
    let (status, body) = api_status(try_create_template(&admin, "example", &another).await);
    assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::CONFLICT, "{status} {body:?}");

    let v2 = upload_version(&admin, &example_dir(), Some(template.id)).await;
    assert_eq!(v2.name, "v2");
    assert_eq!(follow(&admin, &v2).await.1.status, JobStatus::Succeeded);
    let activated = admin.set_active_version(template.id, v2.id).await.unwrap();
    assert_eq!(activated.active_version_id, v2.id);
    // A version of nothing cannot be activated on a template it does not belong to.
    let stray = upload_version(&admin, &example_dir(), None).await;
    assert_eq!(api_status(admin.set_active_version(template.id, stray.id).await).0, StatusCode::BAD_REQUEST);

    let update = UpdateTemplateRequest {
        description: Some("Simulated workspaces".into()),
        settings: UpdateTemplateSettings {
            default_ttl_ms: Some(3_600_000),
            autostop_requirement_days_of_week: Some(vec!["saturday".into(), "sunday".into()]),
            allow_user_autostart: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    let updated = admin.update_template(template.id, &update).await.unwrap();
    assert_eq!(updated.description, "Simulated workspaces");
    assert_eq!(updated.settings.default_ttl_ms, 3_600_000);
    assert_eq!(updated.settings.autostop_requirement_days_of_week, ["saturday", "sunday"]);
    assert!(!updated.settings.allow_user_autostart);
    assert_eq!(updated.settings.autostop_requirement_weeks, 1, "untouched settings keep their value");
    let bad = UpdateTemplateRequest {
        settings: UpdateTemplateSettings { failure_ttl_ms: Some(-5), ..Default::default() },
        ..Default::default()
    };
    let (status, body) = api_status(admin.update_template(template.id, &bad).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "settings.failure_ttl_ms"));

    // Members read templates but do not change them.
    assert_eq!(member.template(template.id).await.unwrap().name, "example");
    assert_eq!(api_status(member.update_template(template.id, &update).await).0, StatusCode::FORBIDDEN);
    assert_eq!(api_status(member.delete_template(template.id).await).0, StatusCode::FORBIDDEN);
    assert_eq!(api_status(member.provisioner_jobs("default", &JobsQuery::default()).await).0, StatusCode::FORBIDDEN);

    let versions = admin.template_versions(template.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["v1", "v2"]);
    admin.delete_template(template.id).await.unwrap();
    assert_eq!(api_status(admin.template(template.id).await).0, StatusCode::NOT_FOUND);
    assert!(admin.templates("default").await.unwrap().is_empty());
}

/// An archive entry: path, kind, content, link target.
type Entry<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

/// A tar archive written entry by entry as given, links (`target`) and
/// unsafe paths included: what a hostile client could upload.
fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data, target) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Written directly: the tar crate's own setters refuse `..` and absolute paths.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(target) = target {
            header.set_link_name(target).unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn archives_with_links_or_paths_outside_the_template_are_refused_at_upload() {
    let server = TestServer::start_with(Config::default(), 0).await;
    let owner = server.owner().await;
    use tar::EntryType::{Link, Regular, Symlink};
    let cases: [(&[Entry<'_>], &str); 5] = [
        (&[("warmspace.hcl", Symlink, b"", Some("/etc/passwd"))], "symbolic link"),
        (&[("conf", Symlink, b"", Some("/etc")), ("warmspace.hcl", Regular, b"x", None)], "symbolic link"),
        (&[("a", Regular, b"x", None), ("warmspace.hcl", Link, b"", Some("/etc/passwd"))], "hard link"),
        (&[("/tmp/warmspace.hcl", Regular, b"x", None)], "relative path"),
        (&[("../warmspace.hcl", Regular, b"x", None)], "relative path"),
    ];
    for (entries, problem) in cases {
        let (status, body) = api_status(owner.upload_tar(tar_of(entries)).await);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{entries:?}: {body:?}");
        assert_eq!(body.validations[0].field, "file", "{body:?}");
        assert!(body.validations[0].detail.contains(problem), "{entries:?}: {body:?}");
    }
    let (status, body) = api_status(owner.upload_tar(b"not a tar archive".repeat(40)).await);
    assert_eq!((status, body.validations[0].field.as_str()), (StatusCode::BAD_REQUEST, "file"), "{body:?}");
}

/// A version of an archive stored as it is, past the upload's checks (as a
/// file stored before them was), to see what the import makes of it.
async fn version_of_stored(server: &TestServer, owner: &Client, archive: Vec<u8>) -> TemplateVersion {
    let hash = hex::encode(sha2::Sha256::digest(&archive));
    let me = owner.user("me").await.unwrap();
    let file = server.store.upload_file(&hash, "application/x-tar", &archive, me.id).await.unwrap();
    let request = warmspace_sdk::CreateTemplateVersionRequest {
        file_id: file.id,
        template_id: None,
        name: None,
        message: String::new(),
        provisioner_tags: Default::default(),
        skip_if_unchanged: false,
    };
    owner.create_template_version("default", &request).await.unwrap()
}

#[tokio::test]
async fn the_import_refuses_links_and_says_what_is_wrong_with_the_manifest() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "provisioner = \"the provisioner host's secret\"\n").unwrap();
    let target = secret.path().to_str().unwrap();

    // The daemon unpacks through the same checks: a link never reads the host's files.
    let linked = tar_of(&[("warmspace.hcl", tar::EntryType::Symlink, b"", Some(target))]);
    let (_, job) = follow(&owner, &version_of_stored(&server, &owner, linked).await).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("symbolic link") && !error.contains("secret"), "{error}");

    let latin1 = tar_of(&[("warmspace.hcl", tar::EntryType::Regular, b"provisioner = \"\xe9cho\"\n", None)]);
    let (_, job) = follow(&owner, &version_of_stored(&server, &owner, latin1).await).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("warmspace.hcl is not UTF-8"), "{error}");

    // A NUL fails the import at once, naming the field, instead of holding it until its lease expires.
    let manifest = "provisioner = \"echo\"\npreset \"p\" {\n  description = \"a\\u0000b\"\n}\necho {\n}\n";
    let version = upload_version(&owner, template_dir(manifest).path(), None).await;
    let (_, job) = follow(&owner, &version).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert!(error.contains(r#"preset "p" › description: must not contain a NUL"#), "{error}");
}
