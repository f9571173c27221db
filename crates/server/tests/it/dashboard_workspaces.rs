//! The dashboard's workspace pages in a real headless Chromium against a
//! real server: live build logs, start / stop / update / delete behind a
//! confirmation, creating with parameters, bad values beside their field,
//! other people's workspaces, and schedule edits. Each test saves
//! full-page screenshots under `target/screenshots/`.

use std::collections::BTreeMap;

use serde_json::json;
use warmspace_sdk::{Client, Role, StatusCode, Transition, Workspace, WorkspaceStatus, WorkspacesQuery};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};

use crate::browser::Browser;
use crate::common::*;

/// [`ECHO`] with a parameter of each other type, an `eu` preset that
/// fixes the region, and one simulated agent.
fn parameters_manifest() -> String {
    format!(
        "{ECHO}{}",
        r#"
parameter "debug" {
  type    = "bool"
  default = false
  mutable = true
}
parameter "tags" {
  type    = "list(string)"
  default = []
  mutable = true
}
preset "eu" {
  parameters = { region = "eu" }
}
agent "main" {
  startup_script = "echo hi"
}
"#
    )
}

/// An owner (through the API) with the [`parameters_manifest`] template.
async fn owner_with_template(server: &TestServer) -> (Client, warmspace_sdk::Template) {
    let owner = server.owner().await;
    let template = push(&owner, "params", &[("warmspace.hcl", &parameters_manifest())]).await;
    (owner, template)
}

/// The owner, signed in, on the create form of the [`parameters_manifest`] template.
async fn on_the_create_form(server: &TestServer) -> (Client, Browser) {
    let (owner, _) = owner_with_template(server).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.goto("/workspaces/new").await;
    browser.click("#templates a").await;
    (owner, browser)
}

/// A running workspace of the owner's, its first build finished.
async fn running(owner: &Client, template: &warmspace_sdk::Template, name: &str) -> Workspace {
    let workspace = create(owner, template, name, &[]).await;
    let (_, done) = finish(owner, &workspace.latest_build).await;
    assert_eq!(done.status, WorkspaceStatus::Running, "{:?}", done.job.error);
    owner.workspace(workspace.id).await.unwrap()
}

/// The HTTP status the page now shown was served with.
async fn page_status(browser: &Browser) -> u64 {
    browser
        .script("return performance.getEntriesByType('navigation')[0].responseStatus;")
        .await
        .as_u64()
        .expect("the navigation's status")
}

/// Checks that the page fits a phone's width (a wide table scrolls within
/// itself) and saves a screenshot of it there.
async fn fits_a_phone(browser: &Browser, name: &str) {
    browser.client.set_window_size(390, 844).await.unwrap();
    let fits = browser.script("return document.documentElement.scrollWidth <= window.innerWidth;").await;
    assert_eq!(fits, json!(true), "{name}: the page fits a phone's width");
    browser.screenshot(name).await;
    browser.client.set_window_size(1280, 900).await.unwrap();
}

/// Clicks `css` (a submit button) and waits until the page it leads to has loaded.
async fn submit(browser: &Browser, css: &str) {
    browser.script("window.beforeSubmit = true; return null;").await;
    browser.click(css).await;
    browser.until("the next page", "window.beforeSubmit === undefined && document.readyState === 'complete'").await;
}

/// Opens the confirmation of the action link `css` and confirms it.
async fn confirm(browser: &Browser, css: &str) {
    browser.click(css).await;
    browser.until("the confirmation", "document.getElementById('confirm')?.open").await;
    submit(browser, "#confirm-yes").await;
}

fn parameters(w: &Workspace) -> BTreeMap<String, String> {
    w.latest_build.parameters.iter().map(|p| (p.name.clone(), p.value.clone())).collect()
}

#[tokio::test]
async fn dashboard_build_log_lines_appear_live() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    // The start script prints a line, then waits for a gate the test opens
    // once the page shows that line: the second line cannot exist before.
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let start = format!(
        "#!/bin/sh\necho 'waiting for the gate'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'through the gate'\n",
        go.display()
    );
    let manifest = "provisioner = \"exec\"\nexec {\n  start   = \"start.sh\"\n  timeout = \"2m\"\n}\n";
    let template = push(&owner, "gated", &[("warmspace.hcl", manifest), ("start.sh", &start)]).await;
    let workspace = create(&owner, &template, "gated", &[]).await;

    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.goto(&format!("/workspaces/{}", workspace.id)).await;
    let log = "#build-1 pre.log";
    let shows = |text: &str| format!("document.querySelector('{log}')?.textContent.includes('{text}')");
    browser.until("the first line", &shows("waiting for the gate")).await;
    browser.script("window.stillHere = true; return null;").await;
    assert!(!browser.text(log).await.contains("through the gate"), "the gate is still closed");
    assert_ne!(browser.text("#status").await, "running");
    assert_eq!(browser.text("#made").await, "building cold");

    std::fs::write(&go, "").unwrap();
    browser.until("the second line", &shows("through the gate")).await;
    browser.until("the build's end", "document.getElementById('status')?.textContent === 'running'").await;
    assert_eq!(browser.script("return window.stillHere === true;").await, json!(true), "the page was not reloaded");
    assert_eq!(browser.text("#build-1 .build-status").await, "running");
    // The end also says how the workspace was made, now that it is.
    assert!(browser.text("#made").await.starts_with("built cold in "), "{}", browser.text("#made").await);
    assert_eq!(owner.workspace(workspace.id).await.unwrap().status, WorkspaceStatus::Running);
    browser.screenshot("dashboard-build-log-live").await;
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_stops_starts_updates_and_deletes_after_confirmation() {
    let server = TestServer::start().await;
    let (owner, template) = owner_with_template(&server).await;
    let workspace = running(&owner, &template, "dev").await;
    let page = format!("/workspaces/{}", workspace.id);
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;

    // The list: status, agents, template and actions for what the workspace can do now.
    let row = "#workspaces tr[data-ws='admin/dev']";
    browser.until("the agent ready", &format!("document.querySelector(\"{row} .agents\") !== null")).await;
    assert_eq!(browser.text(&format!("{row} .status")).await, "running");
    assert!(browser.exists(&format!("{row} a[href$='/stop']")).await);
    assert!(!browser.exists(&format!("{row} a[href$='/start']")).await, "a running workspace is not started");
    assert!(!browser.exists(&format!("{row} a[href$='/update']")).await, "it uses the active version");

    // Asked, and told no: nothing is queued.
    browser.click(&format!("{row} a[href$='/stop']")).await;
    browser.until("the confirmation", "document.getElementById('confirm')?.open").await;
    assert!(browser.text("#confirm-question").await.contains("Stop workspace admin/dev?"));
    browser.screenshot("dashboard-confirm-stop").await;
    browser.click("#confirm-no").await;
    browser.until("the confirmation closed", "!document.getElementById('confirm')?.open").await;
    assert_eq!(owner.workspace(workspace.id).await.unwrap().latest_build.build_number, 1);

    // Confirmed: stopped, followed live on the workspace's page.
    confirm(&browser, &format!("{row} a[href$='/stop']")).await;
    assert_eq!(browser.path().await, page);
    browser.until("stopped", "document.getElementById('status')?.textContent === 'stopped'").await;
    let stopped = owner.workspace(workspace.id).await.unwrap();
    assert_eq!((stopped.status, stopped.latest_build.build_number), (WorkspaceStatus::Stopped, 2));
    assert_eq!(stopped.latest_build.transition, Transition::Stop);
    assert_eq!(stopped.latest_build.initiator_name, "admin");

    // Started again from the workspace's own page.
    confirm(&browser, ".acts a[href$='/start']").await;
    browser.until("running", "document.getElementById('status')?.textContent === 'running'").await;
    assert_eq!(owner.workspace(workspace.id).await.unwrap().latest_build.build_number, 3);

    // A newer active version makes it outdated: update rebuilds it on that version.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("warmspace.hcl"),
        parameters_manifest().replace("duration_ms = 20", "duration_ms = 30"),
    )
    .unwrap();
    let version = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &version).await;
    owner.set_active_version(template.id, version.id).await.unwrap();
    browser.goto(&page).await;
    confirm(&browser, ".acts a[href$='/update']").await;
    browser.until("the update's build", "document.getElementById('build-4') !== null").await;
    browser.until("running", "document.getElementById('status')?.textContent === 'running'").await;
    let updated = owner.workspace(workspace.id).await.unwrap();
    assert_eq!(updated.latest_build.template_version_id, version.id);
    assert!(!updated.outdated);
    browser.screenshot("dashboard-workspace-updated").await;

    // Without the script's dialog, the link is a page that asks first.
    browser.goto(&format!("{page}/delete")).await;
    assert!(browser.text("h1").await.contains("Delete workspace admin/dev?"), "{}", browser.text("h1").await);
    assert_eq!(owner.workspace(workspace.id).await.unwrap().latest_build.build_number, 4, "asking changes nothing");
    submit(&browser, "#confirm-yes").await;
    browser.until("deleted", "document.getElementById('status')?.textContent === 'deleted'").await;
    assert_eq!(api_status(owner.workspace_by_name("me", "dev").await).0, StatusCode::NOT_FOUND);
    browser.goto("/workspaces").await;
    assert!(!browser.exists(row).await, "a deleted workspace is not listed");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_creates_a_workspace_with_edited_parameters() {
    let server = TestServer::start().await;
    let (owner, browser) = on_the_create_form(&server).await;

    // The preset's values are fixed; without a preset they are editable again.
    let region = "document.querySelector(\"[name='p:region']\")";
    browser.click("#preset-eu input").await;
    assert_eq!(browser.script(&format!("return [{region}.value, {region}.disabled];")).await, json!(["eu", true]));
    browser.click("#presets input[value='']").await;
    assert_eq!(browser.script(&format!("return [{region}.value, {region}.disabled];")).await, json!(["us", false]));
    assert_eq!(browser.script("return document.querySelector(\"[name='p:region']\").tagName;").await, json!("SELECT"));
    browser.click("#preset-eu input").await;

    browser.fill("#name", "tuned").await;
    browser.fill("[name='p:cpus']", "4").await;
    browser.script("document.querySelector(\"[name='p:debug']\").value = 'true'; return null;").await;
    browser.fill("[name='p:tags']", "alpha\nbeta").await;
    browser.screenshot("dashboard-create-parameters").await;
    fits_a_phone(&browser, "dashboard-create-parameters-phone").await;
    submit(&browser, "#submit").await;

    // The new workspace's page follows its build and shows the values it used.
    let created = owner.workspace_by_name("me", "tuned").await.unwrap();
    assert_eq!(browser.path().await, format!("/workspaces/{}", created.id));
    assert!(browser.text("#made").await.starts_with("buil"), "{}", browser.text("#made").await);
    assert_eq!(browser.text("#preset").await, "eu");
    browser.until("running", "document.getElementById('status')?.textContent === 'running'").await;
    let used = BTreeMap::from(
        [("region", "eu"), ("cpus", "4"), ("debug", "true"), ("tags", r#"["alpha","beta"]"#)]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(parameters(&created), used);
    assert_eq!(browser.text("#parameters [data-parameter=cpus]").await, "4");
    browser.screenshot("dashboard-created-with-parameters").await;

    // The list names the preset.
    browser.goto("/workspaces").await;
    assert_eq!(browser.text("#workspaces tr[data-ws='admin/tuned'] .preset").await, "eu");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_shows_a_bad_parameter_value_beside_its_field() {
    let server = TestServer::start().await;
    let (owner, browser) = on_the_create_form(&server).await;
    browser.fill("#name", "greedy").await;
    browser.fill("[name='p:cpus']", "99").await;
    submit(&browser, "#submit").await;

    assert_eq!(page_status(&browser).await, 400);
    assert!(
        browser.text("#problem-cpus").await.contains("99 is above the maximum 16"),
        "{}",
        browser.text("main").await
    );
    // The form comes back as it was sent.
    assert_eq!(browser.script("return document.getElementById('name').value;").await, json!("greedy"));
    assert_eq!(browser.script("return document.querySelector(\"[name='p:cpus']\").value;").await, json!("99"));
    browser.screenshot("dashboard-create-bad-parameter").await;
    assert_eq!(owner.workspaces(&WorkspacesQuery::default()).await.unwrap().count, 0, "nothing was created");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_people_cannot_act_on_others_workspaces() {
    let server = TestServer::start().await;
    let (owner, template) = owner_with_template(&server).await;
    let theirs = running(&owner, &template, "theirs").await;
    server.user(&owner, "alice", &[]).await;
    let bob = server.user(&owner, "bob", &[Role::TemplateAdmin]).await;
    let page = format!("/workspaces/{}", theirs.id);
    let browser = Browser::start(&server.url).await;

    // A member: as if it did not exist, whatever the way in (the API's
    // words, not those of a page that does not exist).
    browser.sign_in("alice@example.com", PASSWORD).await;
    assert!(!browser.text("main").await.contains("theirs"));
    for path in [page.clone(), format!("{page}/stop"), format!("/builds/{}/log", theirs.latest_build.id)] {
        browser.goto(&path).await;
        assert!(browser.text("h1").await.starts_with("404"), "{path}");
        assert_eq!(browser.text("#error").await, "Workspace not found.", "{path}");
    }
    // A stop form forged with the member's own CSRF token.
    browser.goto("/workspaces").await;
    browser
        .script(&format!(
            "const form = document.createElement('form');
             form.method = 'post'; form.action = '{page}/stop';
             form.append(document.querySelector('.signout input[name=_csrf]').cloneNode());
             document.body.append(form); window.beforeSubmit = true; form.submit(); return null;"
        ))
        .await;
    browser.until("the answer", "window.beforeSubmit === undefined && document.readyState === 'complete'").await;
    assert_eq!(browser.text("#error").await, "Workspace not found.");
    assert_eq!(page_status(&browser).await, 404);
    browser.screenshot("dashboard-member-other-workspace-404").await;

    // A template admin sees it, but may not stop it: the API's words.
    browser.goto("/workspaces").await;
    browser.click(".signout button").await;
    browser.until("the sign-in page", "location.pathname === '/login'").await;
    browser.sign_in("bob@example.com", PASSWORD).await;
    browser.goto(&page).await;
    assert_eq!(browser.text("#status").await, "running");
    confirm(&browser, ".acts a[href$='/stop']").await;
    assert_eq!(page_status(&browser).await, 403);
    let (status, api) = api_status(build(&bob, &theirs, "stop", &[]).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(browser.text("#error").await, api.message);
    browser.screenshot("dashboard-template-admin-stop-403").await;

    assert_eq!(owner.workspace(theirs.id).await.unwrap().latest_build.build_number, 1, "nothing was queued");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_edits_a_workspace_schedule() {
    let server = TestServer::start().await;
    let (owner, template) = owner_with_template(&server).await;
    let workspace = running(&owner, &template, "timed").await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.goto(&format!("/workspaces/{}", workspace.id)).await;

    browser.fill("#ttl [name=ttl]", "2h").await;
    submit(&browser, "#ttl button").await;
    assert_eq!(owner.workspace(workspace.id).await.unwrap().ttl_ms, Some(2 * 3600 * 1000));
    assert_eq!(browser.script("return document.querySelector('#ttl [name=ttl]').value;").await, json!("2h"));

    browser.fill("#autostart [name=schedule]", "CRON_TZ=Europe/Berlin 0 9 * * 1-5").await;
    submit(&browser, "#autostart button").await;
    let scheduled = owner.workspace(workspace.id).await.unwrap();
    assert_eq!(scheduled.autostart_schedule.as_deref(), Some("CRON_TZ=Europe/Berlin 0 9 * * 1-5"));

    browser.fill("#extend [name=duration]", "5h").await;
    submit(&browser, "#extend button").await;
    let extended = owner.workspace(workspace.id).await.unwrap();
    let deadline = extended.latest_build.deadline.expect("a deadline");
    assert!(deadline > chrono::Utc::now() + chrono::Duration::hours(4), "{deadline}");
    assert!(!browser.text("#deadline").await.is_empty());
    browser.screenshot("dashboard-workspace-schedule").await;
    fits_a_phone(&browser, "dashboard-workspace-phone").await;

    // Nonsense is refused, naming the field; an empty field means none.
    browser.fill("#ttl [name=ttl]", "soon").await;
    submit(&browser, "#ttl button").await;
    assert_eq!(page_status(&browser).await, 400);
    assert!(browser.text("main").await.contains("ttl"), "{}", browser.text("main").await);
    browser.goto(&format!("/workspaces/{}", workspace.id)).await;
    browser.fill("#ttl [name=ttl]", "").await;
    submit(&browser, "#ttl button").await;
    assert_eq!(owner.workspace(workspace.id).await.unwrap().ttl_ms, None);

    // A dormant workspace cannot start until woken: the page wakes it.
    owner.set_workspace_dormant(workspace.id, true).await.unwrap();
    browser.goto(&format!("/workspaces/{}", workspace.id)).await;
    submit(&browser, "#wake button").await;
    assert_eq!(owner.workspace(workspace.id).await.unwrap().dormant_at, None);
    assert!(!browser.exists("#wake").await);
    browser.finish().await;
}
