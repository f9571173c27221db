//! The dashboard's operator pages in a real headless Chromium against a real
//! server: templates (live pools, promoting a version, import logs),
//! invalidating pools, the insight charts and recent claims, the provisioner
//! page, users (create, roles, suspend), and what members may not see. Each
//! test saves full-page screenshots under `target/screenshots/`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use warmspace_sdk::{Client, JobStatus, JobsQuery, Role, UserStatus, WorkspacesQuery};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};

use crate::browser::Browser;
use crate::common::*;

/// An owner (through the API) with an echo template `pool` whose `us`
/// preset keeps a pool of one, filled.
async fn warm_pool(server: &TestServer) -> (Client, warmspace_sdk::Template) {
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    until_eligible(&owner, 1).await;
    (owner, template)
}

/// The ids of the unclaimed prebuilds.
async fn prebuilds(owner: &Client) -> Vec<Uuid> {
    let query = WorkspacesQuery { q: Some("owner:prebuilds".into()), ..Default::default() };
    owner.workspaces(&query).await.unwrap().workspaces.into_iter().map(|w| w.id).collect()
}

/// Polls the API until `done` holds (or fails after a minute, saying `what`).
async fn until<F: AsyncFn() -> bool>(what: &str, done: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a form from the page as a forger would: with the page's own CSRF
/// token (a person's session), to `action`, with `fields`.
async fn post_from_page(browser: &Browser, action: &str, fields: &[(&str, &str)]) {
    let fields = serde_json::to_string(&fields.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()).unwrap();
    browser
        .script(&format!(
            "const form = document.createElement('form');
             form.method = 'post'; form.action = {action:?};
             const add = (name, value) => {{
                 const input = document.createElement('input');
                 input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
             }};
             add('_csrf', document.querySelector('input[name=_csrf]').value);
             for (const [name, value] of {fields}) add(name, value);
             document.body.appendChild(form); form.submit(); return null;"
        ))
        .await;
}

#[tokio::test]
async fn dashboard_templates_show_a_presets_live_pool_and_promote_a_version() {
    let server = TestServer::start().await;
    let (owner, template) = warm_pool(&server).await;
    let us = preset_id(&owner, &template, "us").await;
    // A second version whose `us` pool is two, imported but not active.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), manifest(2, "rebuild", "")).unwrap();
    let second = upload_version(&owner, dir.path(), Some(template.id)).await;
    wait_imported(&owner, &second).await;

    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.click("#nav-templates").await;
    browser.click(&format!("#templates a[href='/templates/{}']", template.id)).await;
    browser.until("the template's page", &format!("location.pathname === '/templates/{}'", template.id)).await;

    // The active version is marked; the other can be promoted.
    let active = format!("#version-{}", template.active_version_id);
    assert!(browser.text(&active).await.contains("active"), "{}", browser.text(&active).await);
    assert!(!browser.exists(&format!("{active} form.promote")).await, "the active version is not offered");
    let newer = format!("#version-{}", second.id);
    assert!(browser.exists(&format!("{newer} form.promote")).await);

    // The active version's presets, with their policy and live pool.
    let row = format!("#pools #pool-{us}");
    assert_eq!(browser.text(&format!("{row} [data-field=desired]")).await, "1");
    assert_eq!(browser.text(&format!("{row} [data-field=eligible]")).await, "1");
    assert_eq!(browser.text(&format!("{row} [data-field=status]")).await, "normal");
    assert!(browser.text(&format!("{row} .policy")).await.contains("1 instance"));
    assert!(browser.text("#presets").await.contains("eu"), "a preset without a pool is listed too");
    browser.screenshot("dashboard-template").await;

    // Promoting the second version: it becomes active, and its pool (of two) fills while the page is open.
    browser.click(&format!("{newer} form.promote button")).await;
    browser
        .until(
            "the promoted version marked",
            &format!(
                "document.querySelector('{newer}') && document.querySelector('{newer}').textContent.includes('active')"
            ),
        )
        .await;
    assert_eq!(owner.template(template.id).await.unwrap().active_version_id, second.id);
    let new_us = preset_id(&owner, &owner.template(template.id).await.unwrap(), "us").await;
    let new_row = format!("#pools #pool-{new_us}");
    assert_eq!(browser.text(&format!("{new_row} [data-field=desired]")).await, "2");
    browser
        .until(
            "the new pool filled, live",
            &format!("document.querySelector('{new_row} [data-field=eligible]').textContent === '2'"),
        )
        .await;
    browser.screenshot("dashboard-template-promoted").await;

    // Each version's import log.
    browser.click(&format!("{newer} a.log")).await;
    browser.until("the version's page", &format!("location.pathname.endsWith('/versions/{}')", second.id)).await;
    let lines = owner.template_version_logs(second.id).await.unwrap();
    assert!(!lines.is_empty());
    let log = browser.text("#log").await;
    for line in &lines {
        assert!(log.contains(line.output.trim()), "{log} lacks {:?}", line.output);
    }
    browser.screenshot("dashboard-template-version").await;

    // Bad ids are a 404 page, not a failure.
    browser.goto("/templates/not-a-template").await;
    assert!(browser.text("h1").await.starts_with("404"));
    browser.goto(&format!("/templates/{}", Uuid::new_v4())).await;
    assert!(browser.text("h1").await.starts_with("404"));
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_invalidating_a_preset_replaces_its_pool() {
    let server = TestServer::start().await;
    let (owner, template) = warm_pool(&server).await;
    let before = prebuilds(&owner).await;
    assert_eq!(before.len(), 1);

    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.click("#nav-prebuilds").await;
    let us = preset_id(&owner, &template, "us").await;
    browser.click(&format!("#pool-{us} a.invalidate")).await;
    // A confirmation first: nothing is invalidated by following the link.
    browser.until("the confirmation", "document.getElementById('confirm') !== null").await;
    assert!(browser.text("#confirm").await.contains("us"));
    browser.screenshot("dashboard-invalidate-confirm").await;
    let status = owner.prebuilds_status().await.unwrap();
    assert!(status.presets.iter().all(|p| p.last_invalidated_at.is_none()), "not yet invalidated");
    browser.click("#confirm button[type=submit]").await;
    browser.until("the prebuilds page", "location.pathname === '/prebuilds'").await;

    // The pool is replaced: the old prebuild goes, a new one becomes eligible.
    until("the pool replaced", async || {
        let now = prebuilds(&owner).await;
        let status = owner.prebuilds_status().await.unwrap();
        let pool = status.presets.iter().find(|p| p.preset_id == us).unwrap();
        !now.contains(&before[0]) && pool.eligible == 1
    })
    .await;
    let invalidated = owner.prebuilds_status().await.unwrap();
    let first = invalidated.presets.iter().find(|p| p.preset_id == us).unwrap().last_invalidated_at.unwrap();
    browser
        .until(
            "the page showing the new prebuild",
            &format!("document.querySelector('#pool-{us} [data-field=eligible]').textContent === '1'"),
        )
        .await;

    // The whole template, likewise.
    browser.click(&format!("a.invalidate-template[data-template='{}']", template.id)).await;
    browser.until("the confirmation", "document.getElementById('confirm') !== null").await;
    assert!(browser.text("#confirm").await.contains("every preset of pool"), "{}", browser.text("#confirm").await);
    browser.click("#confirm button[type=submit]").await;
    browser.until("the prebuilds page", "location.pathname === '/prebuilds'").await;
    let again = owner.prebuilds_status().await.unwrap();
    assert!(again.presets.iter().find(|p| p.preset_id == us).unwrap().last_invalidated_at.unwrap() > first);
    browser.screenshot("dashboard-invalidated").await;

    // Nonsense is refused with a page saying what is wrong.
    browser.goto("/prebuilds/invalidate?template=nonsense").await;
    assert!(browser.text("h1").await.starts_with("400"));
    browser.goto(&format!("/prebuilds/invalidate?template={}&preset=mars", template.id)).await;
    browser.click("#confirm button[type=submit]").await;
    browser.until("the refusal", "document.querySelector('h1').textContent.startsWith('400')").await;
    assert!(browser.text("#error").await.contains("preset"), "{}", browser.text("#error").await);
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_insight_charts_show_pool_history_hit_rate_and_ready_times() {
    let server = TestServer::start().await;
    let (owner, template) = warm_pool(&server).await;
    let us = preset_id(&owner, &template, "us").await;
    let eu = preset_id(&owner, &template, "eu").await;
    // Two claims from the pool (the second once it has refilled), and one cold build (eu keeps no pool).
    for name in ["first", "second"] {
        until_eligible(&owner, 1).await;
        let w = owner.create_workspace("me", &request(&template, name, Some(us), &[])).await.unwrap();
        assert!(claimed(&w), "{name} was claimed");
        finish(&owner, &w.latest_build).await;
    }
    let cold = owner.create_workspace("me", &request(&template, "cold", Some(eu), &[])).await.unwrap();
    assert!(!claimed(&cold));
    finish(&owner, &cold.latest_build).await;
    until_eligible(&owner, 1).await;

    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.goto("/prebuilds?window=1d").await;

    // The pool over the last day: desired and eligible as lines, the claims as marks.
    let history = format!("#history-{us} svg");
    for series in ["desired", "eligible"] {
        let points = browser
            .script(&format!(
                "const s = document.querySelector(\"{history} [data-series='{series}']\"); return s && Number(s.dataset.points);"
            ))
            .await;
        assert_eq!(points, json!(97), "{series}: a sample every 15 minutes over the day");
    }
    let marks = browser
        .script(&format!("return document.querySelector(\"{history} g[data-series='claims']\").dataset.count;"))
        .await;
    assert_eq!(marks, json!("2"));
    // The eligible line ends at the pool's one prebuild, as the desired one does (once the
    // reconciler has recorded the refill's prebuild as eligible: the page is drawn anew until then).
    let last = |series: &str| {
        format!(
            "(() => {{ const p = document.querySelector(\"{history} [data-series='{series}']\").getAttribute('points')
                 .trim().split(' '); return p[p.length - 1].split(',')[1]; }})()"
        )
    };
    let refilled = format!("{} === {}", last("eligible"), last("desired"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while browser.script(&format!("return {refilled};")).await != json!(true) {
        assert!(tokio::time::Instant::now() < deadline, "the history never showed the refilled pool");
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.goto("/prebuilds?window=1d").await;
    }
    assert!(!browser.exists(&format!("#history-{eu}")).await, "a preset without a pool has no pool history");

    // Hit rate per preset: us all hits, eu all misses.
    let rate = |preset: &str| {
        format!(
            "const g = document.querySelector(\"#hit-rate g[data-label='pool / {preset}'] rect[data-series='hit rate']\");
             return g && g.dataset.value;"
        )
    };
    assert_eq!(browser.script(&rate("us")).await, json!("1"));
    assert_eq!(browser.script(&rate("eu")).await, json!("0"));
    // Claim and cold ready times, both measured.
    for series in ["claim", "cold"] {
        let value = browser
            .script(&format!(
                "const r = document.querySelector(\"#ready-times g[data-label='pool / us'] rect[data-series='{series}']\");
                 return r && r.dataset.value;"
            ))
            .await;
        let seconds: f64 = value.as_str().unwrap_or_default().parse().unwrap_or(-1.0);
        assert!(seconds >= 0.0, "{series} ready time: {value}");
    }
    // The figures, and the recent claims with their outcome.
    let insights = browser.text("#insights").await;
    assert!(insights.contains("no pool"), "{insights}");
    let claims = browser.text("#claims").await;
    assert_eq!(claims.matches("claimed").count(), 2, "{claims}");
    assert!(claims.contains("cold (no pool)"), "{claims}");
    browser.screenshot("dashboard-insights").await;

    // The window is the API's: a bad one is a 400 naming it.
    browser.goto("/prebuilds?window=forever").await;
    assert!(browser.text("h1").await.starts_with("400"));
    assert!(browser.text("#error").await.contains("window"));
    // At phone width the charts fit.
    browser.goto("/prebuilds").await;
    browser.client.set_window_size(390, 844).await.unwrap();
    assert_eq!(
        browser.script("return document.documentElement.scrollWidth <= window.innerWidth;").await,
        json!(true),
        "the page fits a phone's width"
    );
    browser.screenshot("dashboard-insights-phone").await;
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_provisioner_page_shows_jobs_daemons_and_keys() {
    let server = TestServer::start_with(quiet(), 1).await;
    let owner = server.owner().await;
    // A template whose builds take two minutes: one stays running while the page is read.
    let slow =
        push(&owner, "slow", &[("warmspace.hcl", "provisioner = \"echo\"\necho {\n  duration_ms = 120000\n}\n")]).await;
    let running = create(&owner, &slow, "busy", &[]).await;
    until("the build running", async || {
        owner.build(running.latest_build.id).await.unwrap().job.status == JobStatus::Running
    })
    .await;
    // Two imports no daemon can take (no daemon has their tag): they wait in the queue.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmspace.hcl"), "provisioner = \"echo\"\n").unwrap();
    let tags = BTreeMap::from([("zone".to_string(), "nowhere".to_string())]);
    for _ in 0..2 {
        let file = owner.upload_tar(warmspace_sdk::archive::tar_directory(dir.path()).unwrap()).await.unwrap();
        owner
            .create_template_version(
                "default",
                &warmspace_sdk::CreateTemplateVersionRequest {
                    file_id: file.id,
                    template_id: None,
                    name: None,
                    message: String::new(),
                    provisioner_tags: tags.clone(),
                    skip_if_unchanged: false,
                },
            )
            .await
            .unwrap();
    }
    let jobs = owner.provisioner_jobs("default", &JobsQuery::default()).await.unwrap();
    let build = jobs.iter().find(|j| j.metadata.workspace_id == Some(running.id)).unwrap();
    let daemon = build.worker_name.clone().unwrap();

    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.click("#nav-provisioner").await;
    let queued = browser.text("#queued").await;
    assert_eq!(queued.matches("template version import").count(), 2, "{queued}");
    let positions = browser
        .script(
            "return [...document.querySelectorAll('#queued tbody tr [data-field=position]')].map(c => c.textContent);",
        )
        .await;
    assert_eq!(positions, json!(["1", "2"]));
    let running_row = browser.text(&format!("#job-{}", build.id)).await;
    assert!(running_row.contains("busy") && running_row.contains(&daemon), "{running_row}");
    assert!(browser.text("#recent").await.contains("succeeded"), "the template's import");
    let daemons = browser.text("#daemons").await;
    assert!(daemons.contains(&daemon) && daemons.contains("live"), "{daemons}");
    browser.screenshot("dashboard-provisioner").await;

    // Keys: created with the secret shown once, then deleted after a confirmation.
    browser.fill("#key-name", "far-away").await;
    browser.click("#create-key button").await;
    let secret = browser.text("#secret").await;
    let keys = owner.provisioner_keys().await.unwrap();
    let key = keys.iter().find(|k| k.name == "far-away").expect("the key was created");
    assert!(secret.starts_with(&key.id), "{secret}");
    browser.screenshot("dashboard-provisioner-key").await;
    browser.goto("/provisioner").await;
    assert!(!browser.exists("#secret").await, "the secret is shown once");
    browser.click("#key-far-away a.delete-key").await;
    browser.until("the confirmation", "document.getElementById('confirm') !== null").await;
    assert!(owner.provisioner_keys().await.unwrap().iter().any(|k| k.name == "far-away"), "not deleted yet");
    browser.click("#confirm button[type=submit]").await;
    browser.until("the provisioner page", "location.pathname === '/provisioner'").await;
    assert!(owner.provisioner_keys().await.unwrap().is_empty());
    // A bad name is refused, saying which field.
    browser.fill("#key-name", "Not A Name").await;
    browser.click("#create-key button").await;
    browser.until("the refusal", "document.querySelector('h1').textContent.startsWith('400')").await;
    assert!(browser.text("#error").await.contains("name"));
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_owner_creates_users_changes_roles_and_suspends_a_user_who_can_then_not_sign_in() {
    let server = TestServer::start_with(quiet(), 0).await;
    let owner = server.owner().await;
    let owner_browser = Browser::start(&server.url).await;
    owner_browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    owner_browser.click("#nav-users").await;

    // Create a user through the form.
    owner_browser.fill("#new-username", "alice").await;
    owner_browser.fill("#new-email", "alice@example.com").await;
    owner_browser.fill("#new-password", PASSWORD).await;
    owner_browser.click("#create-user button[type=submit]").await;
    owner_browser.until("alice listed", "document.getElementById('user-alice') !== null").await;
    let alice = owner.user("alice").await.unwrap();
    assert_eq!(alice.roles, vec![Role::Member]);
    assert_eq!(owner_browser.text("#user-alice [data-field=status]").await, "active");
    owner_browser.screenshot("dashboard-users").await;

    // Alice signs in, in a browser of her own.
    let alice_browser = Browser::start(&server.url).await;
    alice_browser.sign_in("alice@example.com", PASSWORD).await;

    // Roles: alice becomes a template admin.
    owner_browser.click("#user-alice form.roles input[name=template_admin]").await;
    owner_browser.click("#user-alice form.roles button").await;
    owner_browser
        .until(
            "the new role",
            "document.querySelector('#user-alice [data-field=roles]').textContent.includes('template-admin')",
        )
        .await;
    assert_eq!(owner.user("alice").await.unwrap().roles, vec![Role::TemplateAdmin, Role::Member]);

    // Suspended, alice's session ends and she cannot sign in again.
    owner_browser.click("#user-alice form.status button").await;
    owner_browser
        .until(
            "alice suspended",
            "document.querySelector('#user-alice [data-field=status]').textContent === 'suspended'",
        )
        .await;
    assert_eq!(owner.user("alice").await.unwrap().status, UserStatus::Suspended);
    alice_browser.goto("/workspaces").await;
    alice_browser.until("the sign-in page", "location.pathname === '/login'").await;
    alice_browser.fill("#email", "alice@example.com").await;
    alice_browser.fill("#password", PASSWORD).await;
    alice_browser.click("#submit").await;
    assert_eq!(alice_browser.text("#error p").await, "Your account is suspended.");
    alice_browser.screenshot("dashboard-suspended-sign-in").await;

    // The filters are the CLI's: status:suspended finds alice alone.
    owner_browser.fill("#filter input[name=q]", "status:suspended").await;
    owner_browser.click("#filter button").await;
    owner_browser.until("the filtered list", "location.search.includes('status')").await;
    let listed = owner_browser.script("return [...document.querySelectorAll('#users tbody tr')].map(r => r.id);").await;
    assert_eq!(listed, json!(["user-alice"]));
    assert!(!owner_browser.exists("#user-prebuilds").await);
    owner_browser.goto("/users?include_system=true").await;
    assert!(owner_browser.exists("#user-prebuilds").await, "system users on request");
    owner_browser.goto("/users?q=colour:red").await;
    assert!(owner_browser.text("h1").await.starts_with("400"));

    // Reactivated, she signs in again.
    owner_browser.goto("/users").await;
    owner_browser.click("#user-alice form.status button").await;
    owner_browser
        .until("alice active", "document.querySelector('#user-alice [data-field=status]').textContent === 'active'")
        .await;
    alice_browser.sign_in("alice@example.com", PASSWORD).await;
    // An owner cannot suspend themselves: the refusal says so.
    owner_browser.goto("/users").await;
    assert!(!owner_browser.exists("#user-admin form.status").await, "no suspend button for oneself");
    post_from_page(&owner_browser, "/users/admin/status", &[("status", "suspended")]).await;
    owner_browser.until("the refusal", "document.querySelector('h1').textContent.startsWith('409')").await;
    assert!(owner_browser.text("#error").await.contains("yourself"));
    assert_eq!(owner.user("admin").await.unwrap().status, UserStatus::Active);
    owner_browser.finish().await;
    alice_browser.finish().await;
}

#[tokio::test]
async fn dashboard_members_get_404_on_operator_pages() {
    let server = TestServer::start_with(quiet(), 0).await;
    let owner = server.owner().await;
    server.user(&owner, "alice", &[]).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in("alice@example.com", PASSWORD).await;
    for link in ["#nav-prebuilds", "#nav-users", "#nav-provisioner"] {
        assert!(!browser.exists(link).await, "no {link} for a member");
    }
    let admin = owner.user("admin").await.unwrap();
    for path in [
        "/prebuilds",
        "/prebuilds/invalidate?template=00000000-0000-0000-0000-000000000000",
        "/users",
        "/users?q=status:active",
        "/provisioner",
    ] {
        browser.goto(path).await;
        assert!(browser.text("h1").await.starts_with("404"), "{path}");
    }
    browser.screenshot("dashboard-member-operator-404").await;
    // Forms posted with her own valid CSRF token: the same 404, and nothing changed.
    browser.goto("/workspaces").await;
    post_from_page(&browser, &format!("/users/{}/status", admin.id), &[("status", "suspended")]).await;
    browser.until("the 404", "document.querySelector('h1').textContent.startsWith('404')").await;
    assert_eq!(owner.user("admin").await.unwrap().status, UserStatus::Active);
    browser.goto("/workspaces").await;
    post_from_page(&browser, "/provisioner/keys", &[("name", "mine")]).await;
    browser.until("the 404", "document.querySelector('h1').textContent.startsWith('404')").await;
    assert!(owner.provisioner_keys().await.unwrap().is_empty());
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_template_admins_see_operator_pages_without_the_owners_forms() {
    let server = TestServer::start_with(quiet(), 0).await;
    let owner = server.owner().await;
    server.user(&owner, "tad", &[Role::TemplateAdmin]).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in("tad@example.com", PASSWORD).await;
    for link in ["#nav-prebuilds", "#nav-users", "#nav-provisioner"] {
        assert!(browser.exists(link).await, "{link} for a template admin");
    }
    browser.click("#nav-users").await;
    assert!(browser.text("#users").await.contains("admin@example.com"), "template admins read every user");
    assert!(!browser.exists("#create-user").await && !browser.exists("form.status").await, "but change none");
    browser.screenshot("dashboard-template-admin-users").await;
    browser.click("#nav-provisioner").await;
    browser.find("#keys").await;
    assert!(!browser.exists("#create-key").await, "keys are the owners'");
    // The owners' form posted anyway: refused as the API refuses it, nothing created.
    post_from_page(&browser, "/provisioner/keys", &[("name", "mine")]).await;
    browser.until("the refusal", "document.querySelector('h1').textContent.startsWith('403')").await;
    assert!(owner.provisioner_keys().await.unwrap().is_empty());
    browser.finish().await;
}
