//! Bad input of every kind gets a 4xx JSON error naming the field, never a
//! 500, a panic or the database's text; log output with NUL characters is
//! kept, stripped of them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use warmspace_sdk::{
    AppendJobLogsRequest, Client, CompleteJobRequest, DaemonWorker, JobCompletion, JobLogLine, LogLevel, LogSource,
    Response,
};
use warmspace_server::testing::TestServer;

use crate::common::upload_version;

fn fields(response: &Response) -> Vec<&str> {
    response.validations.iter().map(|v| v.field.as_str()).collect()
}

/// Sends a request with an optional raw body; returns the status and the
/// body, which must be our JSON error shape.
async fn send(client: &Client, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Response) {
    let mut req = client.request(method.clone(), path).unwrap();
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, body)
}

#[tokio::test]
async fn a_nul_anywhere_in_a_request_is_a_400_naming_the_field() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let user = |name: &str, roles: Value| {
        json!({"username": "ab", "name": name, "email": "x@example.com", "password": "correct horse battery",
               "roles": roles})
        .to_string()
    };
    let cases = [
        (user("a\u{0}b", json!([])), "name"),
        (user("ab", json!(["owner", "ow\u{0}ner"])), "roles[1]"),
        (
            json!({"username": "ab", "email": "x@example.com", "nested": {"k\u{0}ey": 1}}).to_string(),
            "nested.k\\u0000ey",
        ),
    ];
    for (body, field) in &cases {
        let (status, response) = send(&owner, Method::POST, "api/v2/users", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {response:?}");
        assert_eq!(fields(&response), [*field], "{body}: {response:?}");
        assert!(response.validations[0].detail.contains("NUL"), "{response:?}");
    }

    // Query parameters and path segments.
    let (status, response) = send(&owner, Method::GET, "api/v2/users?q=a%00b", None).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["q"]), "{response:?}");
    let (status, response) = send(&owner, Method::GET, "api/v2/users/a%00b", None).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["user"]), "{response:?}");
    let (status, response) = send(&owner, Method::GET, "api/v2/organizations/default/templates/a%00b", None).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["name"]), "{response:?}");
}

#[tokio::test]
async fn rejected_paths_queries_and_bodies_answer_our_json_error() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;

    let (status, response) = send(&owner, Method::GET, "api/v2/workspaces/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&response), ["workspace"], "{response:?}");
    assert!(!response.message.is_empty() && !response.validations[0].detail.is_empty(), "{response:?}");

    let (status, response) = send(&owner, Method::GET, "api/v2/templates/123/versions", None).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["template"]), "{response:?}");

    let (status, response) = send(&owner, Method::GET, "api/v2/users?limit=99999999999999999999", None).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["limit"]), "{response:?}");

    let (status, response) = send(&owner, Method::POST, "api/v2/users", Some("{\"username\": ")).await;
    assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["body"]), "{response:?}");

    // Out-of-range numbers are refused with their name, never overflow.
    for window in ["0", "-5", "9223372036854775807", "-9223372036854775808", "99999999999999999999"] {
        let path = format!("api/v2/prebuilds/claims?window_seconds={window}");
        let (status, response) = send(&owner, Method::GET, &path, None).await;
        assert_eq!((status, fields(&response)), (StatusCode::BAD_REQUEST, vec!["window_seconds"]), "{window}");
    }
}

#[tokio::test]
async fn nul_characters_in_log_output_and_job_errors_are_stripped() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let key = owner.create_provisioner_key("outside").await.unwrap();
    let daemon = server.client().with_provisioner_key(key.secret);
    let version = upload_version(&owner, &crate::templates::example_dir(), None).await;

    let worker = DaemonWorker { id: Uuid::new_v4(), name: "outside-1".into(), tags: Default::default() };
    let job = daemon.acquire_job(&worker).await.unwrap().expect("the import job");
    let line = JobLogLine {
        created_at: chrono::Utc::now(),
        source: LogSource::Provisioner,
        level: LogLevel::Info,
        stage: "st\u{0}age".into(),
        output: "a\u{0}b".into(),
    };
    daemon.append_job_logs(job.job_id, &AppendJobLogsRequest { worker_id: worker.id, logs: vec![line] }).await.unwrap();
    let failed = JobCompletion::Failed { error: "bad\u{0} thing".into() };
    daemon.complete_job(job.job_id, &CompleteJobRequest { worker_id: worker.id, completion: failed }).await.unwrap();

    let logs = owner.template_version_logs(version.id).await.unwrap();
    assert!(logs.iter().any(|l| l.output == "ab" && l.stage == "stage"), "{logs:#?}");
    let job = owner.template_version(version.id).await.unwrap().job;
    assert_eq!(job.error.as_deref(), Some("bad thing"));
}
