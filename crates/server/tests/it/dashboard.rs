//! The dashboard in a real headless Chromium against a real server: signing
//! in, creating a workspace from a warm pool, pools updating live,
//! permissions, CSRF, notifications. Each test saves full-page screenshots
//! under `target/screenshots/`.

use serde_json::json;
use warmspace_sdk::{Client, PrebuildSettings};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};

use crate::browser::Browser;
use crate::common::*;

/// An owner (through the API) with an echo template whose `us` preset keeps
/// a pool of one, filled.
async fn warm_pool(server: &TestServer) -> Client {
    let owner = server.owner().await;
    push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    until_eligible(&owner, 1).await;
    owner
}

#[tokio::test]
async fn dashboard_first_user_sets_up_signs_out_and_signs_in() {
    let server = TestServer::start_with(quiet(), 0).await;
    let browser = Browser::start(&server.url).await;

    // No user yet: the dashboard asks for the first one.
    browser.goto("/").await;
    browser.until("the set-up page", "location.pathname === '/setup'").await;
    browser.screenshot("dashboard-setup").await;
    browser.fill("#username", "admin").await;
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#submit").await;
    browser.until("the workspaces page", "location.pathname === '/workspaces'").await;
    assert_eq!(browser.text("h1").await, "All workspaces", "the first user is an owner");
    assert_eq!(browser.text(".who").await, "admin");
    // The session cookie is out of the page's reach.
    assert_eq!(browser.script("return document.cookie.includes('warmspace_session');").await, json!(false));
    browser.screenshot("dashboard-workspaces-empty").await;

    // Signed out, the pages send the browser to sign in; set-up is over.
    browser.click(".signout button").await;
    browser.until("the sign-in page", "location.pathname === '/login'").await;
    browser.goto("/workspaces").await;
    browser.until("the sign-in page", "location.pathname === '/login'").await;
    browser.goto("/setup").await;
    browser.until("the sign-in page", "location.pathname === '/login'").await;

    // A wrong password is said so; the right one signs in.
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", "not the password").await;
    browser.click("#submit").await;
    assert_eq!(browser.text("#error p").await, "Incorrect email or password.");
    browser.screenshot("dashboard-sign-in-refused").await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    assert_eq!(browser.text(".who").await, "admin");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_pages_carry_a_strict_csp_and_api_paths_stay_json() {
    let server = TestServer::start_with(quiet(), 0).await;
    drop(server.client()); // installs the TLS provider reqwest needs
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["login", "setup", "static/app.js", "nowhere"] {
        let response = http.get(server.url.join(path).unwrap()).send().await.unwrap();
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    // Pages go compressed to a browser that takes it, the API as before.
    let page = http.get(server.url.join("setup").unwrap()).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(page.headers().get("content-encoding").map(|e| e.to_str().unwrap()), Some("gzip"), "{page:?}");
    let missing = http.get(server.url.join("nowhere").unwrap()).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let api = http.get(server.url.join("api/v2/nowhere").unwrap()).send().await.unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.json::<serde_json::Value>().await.unwrap()["message"], "Route not found.");

    // A sign-in form posted without its CSRF token (or with another) is refused.
    let form = |pairs: &[(&str, &str)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let refused = http
        .post(server.url.join("login").unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", OWNER_EMAIL), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = http
        .post(server.url.join("login").unwrap())
        .header("cookie", "warmspace_csrf=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", OWNER_EMAIL), ("password", PASSWORD), ("_csrf", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn dashboard_refuses_a_form_without_its_csrf_token() {
    let server = TestServer::start_with(quiet(), 0).await;
    server.owner().await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;

    // The sign-out form, stripped of its token by a page script: refused, still signed in.
    browser.script("document.querySelector('.signout input[name=_csrf]').remove(); return null;").await;
    browser.click(".signout button").await;
    browser.until("the refusal", "document.querySelector('h1').textContent.startsWith('403')").await;
    assert!(browser.text("#error").await.contains("CSRF token is missing or wrong"));
    browser.screenshot("dashboard-csrf-refused").await;
    browser.goto("/workspaces").await;
    assert_eq!(browser.path().await, "/workspaces", "the session was not ended");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_creates_a_workspace_from_a_warm_pool_and_says_it_was_claimed() {
    let server = TestServer::start().await;
    warm_pool(&server).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;

    browser.click("nav a[href='/workspaces/new']").await;
    browser.click("#templates a").await;
    assert_eq!(browser.text("#preset-us .warm").await, "1 warm");
    assert_eq!(browser.text("#preset-eu .cold").await, "no pool: built cold");
    assert_eq!(browser.script("return document.querySelector('#preset-us input').checked;").await, json!(true));
    browser.fill("#name", "mine").await;
    browser.screenshot("dashboard-create").await;
    browser.click("#submit").await;
    browser.until("the workspace's page", "location.pathname.startsWith('/workspaces/')").await;
    let made = browser.text("#made").await;
    assert!(made.starts_with("claimed from the pool in ") && made.ends_with(" ms"), "{made}");
    browser.screenshot("dashboard-workspace-claimed").await;

    // The list says so too; a cold one (a preset without a pool) says it was built cold.
    browser.goto("/workspaces/new").await;
    browser.click("#templates a").await;
    browser.click("#preset-eu input").await;
    browser.fill("#name", "cold").await;
    browser.click("#submit").await;
    browser.until("the workspace's page", "location.pathname.startsWith('/workspaces/')").await;
    assert!(browser.text("#made").await.starts_with("buil"), "{}", browser.text("#made").await);
    browser.goto("/workspaces").await;
    let rows = browser.text("#workspaces").await;
    assert!(rows.contains("claimed from the pool in"), "{rows}");
    assert!(rows.contains("(no pool)"), "{rows}");
    browser.screenshot("dashboard-workspaces").await;
    // At phone width the page does not overflow sideways (a wide table scrolls within itself).
    browser.client.set_window_size(390, 844).await.unwrap();
    assert_eq!(
        browser.script("return document.documentElement.scrollWidth <= window.innerWidth;").await,
        json!(true),
        "the page fits a phone's width"
    );
    browser.screenshot("dashboard-workspaces-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();

    // Bad input is a page that says what is wrong, not a failure.
    browser.goto("/workspaces/new?template=nonsense").await;
    assert!(browser.text("h1").await.starts_with("400"));
    assert!(browser.text("#error").await.contains("template"));
    browser.goto("/workspaces/not-a-workspace").await;
    assert!(browser.text("h1").await.starts_with("404"));
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_pool_counts_drop_and_come_back_without_a_reload() {
    let server = TestServer::start().await;
    let owner = warm_pool(&server).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    browser.click("#nav-prebuilds").await;
    let cell = "#pools [data-field=eligible]";
    assert_eq!(browser.text(cell).await, "1");
    // Once the stream has spoken it is subscribed: every change from here on
    // is seen. Each value the cell takes is recorded, and a marker shows
    // that the page is never reloaded.
    browser.until("the live stream", "document.getElementById('pools').dataset.updated").await;
    browser
        .script(&format!(
            "window.stillHere = true; window.seen = [];
             const cell = document.querySelector('{cell}');
             new MutationObserver(() => window.seen.push(cell.textContent))
                 .observe(cell, {{ childList: true, characterData: true, subtree: true }});
             return null;"
        ))
        .await;

    let template = owner.templates("default").await.unwrap().remove(0);
    let us = preset_id(&owner, &template, "us").await;
    let claimed = owner.create_workspace("me", &request(&template, "taken", Some(us), &[])).await.unwrap();
    assert!(claimed.claim_hand_over_ms.is_some(), "the pool's prebuild was claimed");
    // The claim empties the pool, the reconciler refills it: the page shows both.
    browser.until("the pool emptied", "window.seen.includes('0')").await;
    browser
        .until(
            "the pool refilled",
            "window.seen.lastIndexOf('1') > window.seen.indexOf('0') && window.seen.includes('1')",
        )
        .await;
    assert_eq!(browser.text(cell).await, "1");
    assert_eq!(browser.script("return window.stillHere === true;").await, json!(true), "the page was not reloaded");
    browser.screenshot("dashboard-prebuilds").await;

    // Pause and resume are forms.
    browser.click("#pause button").await;
    browser.until("paused", "document.getElementById('reconciliation').textContent.includes('paused')").await;
    assert!(owner.prebuild_settings().await.unwrap().reconciliation_paused);
    browser.click("#pause button").await;
    browser.until("running", "document.getElementById('reconciliation').textContent.includes('running')").await;
    assert_eq!(owner.prebuild_settings().await.unwrap(), PrebuildSettings { reconciliation_paused: false });
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_members_see_no_prebuilds_page() {
    let server = TestServer::start_with(quiet(), 0).await;
    let owner = server.owner().await;
    server.user(&owner, "alice", &[]).await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in("alice@example.com", PASSWORD).await;
    assert_eq!(browser.text("h1").await, "My workspaces");
    assert!(browser.exists("nav a[href='/workspaces/new']").await);
    assert!(!browser.exists("#nav-prebuilds").await, "no link to the pools");
    for path in ["/prebuilds", "/prebuilds/events"] {
        browser.goto(path).await;
        assert!(browser.text("h1").await.starts_with("404"), "{path}");
    }
    browser.screenshot("dashboard-member-prebuilds-404").await;
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_badge_counts_unread_live_and_mark_all_read_clears_it() {
    let server = TestServer::start_with(quiet(), 0).await;
    server.owner().await;
    let browser = Browser::start(&server.url).await;
    browser.sign_in(OWNER_EMAIL, PASSWORD).await;
    assert_eq!(browser.script("return document.getElementById('unread').hidden;").await, json!(true));

    // Arriving while the page is open, the notifications show on the badge.
    server.domain.notify_template_admins("test", "Pool in trouble", "The us pool keeps failing.", None).await;
    server.domain.notify_template_admins("test", "Pool in trouble again", "Still failing.", None).await;
    browser
        .until(
            "two unread",
            "!document.getElementById('unread').hidden && document.getElementById('unread').textContent === '2'",
        )
        .await;
    browser.click("#nav-notifications").await;
    assert!(browser.text("#inbox").await.contains("Pool in trouble"));
    browser.screenshot("dashboard-notifications").await;
    browser.click("#read-all button").await;
    browser.until("the inbox page again", "document.querySelector('#read-all button').disabled").await;
    assert_eq!(browser.script("return document.getElementById('unread').hidden;").await, json!(true));
    assert_eq!(browser.text("#unread").await, "");
    browser.finish().await;
}

#[tokio::test]
async fn dashboard_session_cookies_are_http_only_lax_and_secure_behind_https() {
    for (access_url, secure) in [("", false), ("https://warmspace.example.com", true)] {
        let mut config = quiet();
        config.access_url = access_url.into();
        let server = TestServer::start_with(config, 0).await;
        drop(server.client()); // installs the TLS provider reqwest needs
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = http.get(server.url.join("setup").unwrap()).send().await.unwrap();
        let pre = page.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict"), "{pre}");
        assert_eq!(pre.contains("Secure"), secure, "{pre}");
        let token = pre.split(';').next().unwrap().strip_prefix("warmspace_csrf=").unwrap().to_owned();
        // The form carries the token as the page masked it.
        let html = page.text().await.unwrap();
        let field = html.split("name=\"_csrf\" value=\"").nth(1).expect("the form's CSRF field");
        let masked = field.split('"').next().unwrap();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("username", "admin"), ("email", OWNER_EMAIL), ("password", PASSWORD), ("_csrf", masked)])
            .finish();
        let created = http
            .post(server.url.join("setup").unwrap())
            .header("cookie", format!("warmspace_csrf={token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 303);
        assert_eq!(created.headers()["location"], "/workspaces");
        let session = created.headers()["set-cookie"].to_str().unwrap();
        assert!(session.starts_with("warmspace_session="), "{session}");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
        assert_eq!(session.contains("Secure"), secure, "{session}");
    }
}
