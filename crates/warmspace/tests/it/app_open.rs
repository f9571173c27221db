//! Opening a workspace app through the server, with the exec example's real
//! agent: `/@OWNER/WORKSPACE.AGENT/apps/APP/` reverse-proxied over the
//! agent's tunnel to an HTTP server inside the workspace (this machine's
//! loopback), who may open it, the connection log's `app` entries, and
//! where people find the address (`warmspace open`, the API, the dashboard).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warmspace_sdk::{ConnectionLogPage, ConnectionType, CreateUserRequest, LoginWithPasswordRequest};
use warmspace_store::testing::TestDatabase;

use crate::apps::exec_template;
use crate::common::*;

/// An app: answers a GET with a page naming the path and cookies it got,
/// a POST with its body (201), and an upgrade to `echo` by echoing bytes.
const APP: &str = r#"
import http.server, sys

class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Upgrade") == "echo":
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "echo")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        page = "<h1>the app</h1><p>path=%s host=%s cookie=%s prefix=%s</p>" % (
            self.path, self.headers.get("Host"), self.headers.get("Cookie"), self.headers.get("X-Forwarded-Prefix"))
        self.answer(200, page.encode(), "text/html")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(201, body, "application/octet-stream")

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App)
if len(sys.argv) > 2:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The app's process, stopped when dropped.
struct AppServer(Child);

impl Drop for AppServer {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The app on a free port: over https with a self-signed certificate for `localhost` when `tls`.
async fn start_app(dir: &std::path::Path, tls: bool) -> (u16, AppServer) {
    let port: u16 = free_address().rsplit_once(':').unwrap().1.parse().unwrap();
    let script = dir.join("app.py");
    std::fs::write(&script, APP).unwrap();
    let mut app = Command::new("python3");
    app.arg(&script).arg(port.to_string()).stdin(Stdio::null());
    if tls {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()));
        app.arg(cert).arg(key);
    }
    let child = app.spawn().unwrap();
    let server = AppServer(child);
    eventually(Duration::from_secs(20), "the app to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    (port, server)
}

/// The exec example with an agent declaring apps: `web` (the test's app,
/// under `/base`), `secure` (the same over https), `down` (nothing listens
/// there) and `remote` (not in the workspace).
fn manifest(port: u16, secure: u16, down: u16) -> String {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/exec/warmspace.hcl")).unwrap();
    let agent = format!(
        r#"agent "main" {{
  startup_script = "echo workspace ready"
  app "web" {{
    display_name = "Web"
    url          = "http://localhost:{port}/base"
  }}
  app "secure" {{
    url = "https://localhost:{secure}"
  }}
  app "down" {{
    url = "http://127.0.0.1:{down}"
  }}
  app "remote" {{
    url = "http://example.com:{port}"
  }}
}}"#
    );
    let replaced = example.replace("agent \"main\" {\n  startup_script = \"echo workspace ready\"\n}", &agent);
    assert_ne!(replaced, example, "the example's agent block moved");
    replaced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_opens_through_the_server_for_its_owner_only_and_is_logged() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start(db.url()).await;
    let tmp = temp_dir();
    let (port, _app) = start_app(tmp.path(), false).await;
    let (secure, _secure_app) = start_app(tmp.path(), true).await;
    let down: u16 = free_address().rsplit_once(':').unwrap().1.parse().unwrap();
    let template = exec_template(&manifest(port, secure, down));
    run(example.cli().args(["templates", "push", "apps", "-d", template.path().to_str().unwrap()]));

    let admin = admin_client(&server.url).await;
    let admin_login =
        LoginWithPasswordRequest { email: "admin@example.com".into(), password: "a long password".into() };
    let admin_token = admin.login(&admin_login).await.unwrap().session_token;
    let request = CreateUserRequest {
        username: "bob".into(),
        email: "bob@example.com".into(),
        name: String::new(),
        password: Some("a long password".into()),
        login_type: Default::default(),
        roles: vec![],
        status: Default::default(),
    };
    admin.create_user(&request).await.unwrap();
    let login = LoginWithPasswordRequest { email: "bob@example.com".into(), password: "a long password".into() };
    let bob_token = admin.login(&login).await.unwrap().session_token;
    let as_bob = || {
        let mut cmd = example.cli();
        cmd.env("WARMSPACE_SESSION_TOKEN", &bob_token);
        cmd
    };
    let bob = warmspace_sdk::Client::new(server.url.parse().unwrap()).with_token(bob_token.clone());
    run(as_bob().args(["create", "bobs", "--template", "apps"]));
    let ws = bob.workspace_by_name("me", "bobs").await.unwrap();
    wait_ready(&bob, ws.id, ws.owner_id).await;

    let http = reqwest::Client::new();
    let app_url = |path: &str| format!("{}/@bob/bobs.main/apps/{path}", server.url);
    let get = |url: String, token: &str| http.get(url).header(warmspace_sdk::SESSION_TOKEN_HEADER, token).send();
    let get_as = |token: &str, path: &str| get(app_url(path), token);
    // The tunnel opens beside the agent's first reports.
    eventually(Duration::from_secs(30), "the app to answer through the server", || async {
        get_as(&bob_token, "web/").await.unwrap().status() == StatusCode::OK
    })
    .await;

    // A page, its path below the app's root mapped under the app's URL; the Host the app expects.
    let page = get_as(&bob_token, "web/docs/page.html?x=1&y=%2F").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("path=/base/docs/page.html?x=1&y=%2F "), "{page}");
    assert!(page.contains(&format!("host=localhost:{port} ")), "{page}");
    assert!(page.contains("prefix=/@bob/bobs.main/apps/web"), "{page}");
    // A browser, by its session cookie: the app gets the person's other cookies, never the session.
    let browser = http
        .get(app_url("web/"))
        .header(COOKIE, format!("theme=dark; warmspace_session={bob_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::OK);
    let page = browser.text().await.unwrap();
    assert!(page.contains("cookie=theme=dark prefix="), "{page}");
    // The agent may be left out of the path for a workspace with one; the root without its slash redirects.
    let short =
        http.get(format!("{}/@bob/bobs/apps/web", server.url)).header(COOKIE, format!("warmspace_session={bob_token}"));
    let short = short.send().await.unwrap();
    assert_eq!(short.status(), StatusCode::OK);
    assert!(short.text().await.unwrap().contains("path=/base/ "));

    // A POST's body arrives whole, and the app's answer comes back whole.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let posted = http
        .post(app_url("web/upload"))
        .header(warmspace_sdk::SESSION_TOKEN_HEADER, &bob_token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::CREATED);
    assert_eq!(posted.bytes().await.unwrap().as_ref(), &body[..]);

    // The connection log: bob's requests from one address, close together, are one `app` entry.
    let listed = run(example.cli().args(["connections", "list", "--type", "app", "-o", "json"]));
    let log: ConnectionLogPage = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(log.count, 1, "{log:#?}");
    let entry = &log.entries[0];
    assert_eq!(
        (entry.kind, entry.username.as_str(), entry.workspace_name.as_str(), entry.agent_name.as_str()),
        (ConnectionType::App, "bob", "bobs", "main")
    );
    assert_eq!((entry.app.as_deref(), entry.client_address.as_str()), (Some("web"), "127.0.0.1"));
    assert_eq!((entry.http_status, entry.close_reason.as_deref()), (Some(201), Some("HTTP 201 Created")));
    assert!(entry.ended_at.is_some_and(|end| end >= entry.started_at), "{entry:?}");
    let table = String::from_utf8(run(example.cli().args(["connections", "list", "--type", "app"])).stdout).unwrap();
    assert!(table.contains(" web ") && table.contains(" 201 "), "{table}");
    assert_eq!(connections_of(&example, &["--type", "ssh"]).count, 0);

    // An upgrade (as a WebSocket's) is spliced once the app agrees, and is an entry of its own while open.
    let mut upgraded = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    let ask = format!(
        "GET /@bob/bobs.main/apps/web/echo HTTP/1.1\r\nHost: x\r\nWarmspace-Session-Token: {bob_token}\r\n\
         Connection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    upgraded.write_all(ask.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(upgraded.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    upgraded.write_all(b"ping through the app").await.unwrap();
    let mut back = [0u8; 20];
    upgraded.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping through the app");
    let open = connections_of(&example, &["--type", "app", "--status", "ongoing"]);
    assert_eq!((open.count, open.entries[0].app.as_deref()), (1, Some("web")), "{open:#?}");
    let socket = open.entries[0].id;
    drop(upgraded);
    eventually(Duration::from_secs(30), "the upgraded connection's entry to close", || async {
        let log = connections_of(&example, &["--type", "app", "--status", "completed"]);
        log.entries
            .iter()
            .any(|e| e.id == socket && e.http_status == Some(101) && e.close_reason.as_deref() == Some("closed"))
    })
    .await;

    // Through a second replica on the same database: it relays to the replica holding the agent's tunnel.
    let mut replica = ServerProcess::start(&tmp.path().join("replica"), &["--postgres-url", db.url()]);
    replica.wait_healthy().await;
    let relayed = get(format!("{}/@bob/bobs.main/apps/web/relayed", replica.url), &bob_token).await.unwrap();
    assert_eq!(relayed.status(), StatusCode::OK);
    assert!(relayed.text().await.unwrap().contains("path=/base/relayed "));

    // An app served over https, with a certificate of its own making.
    let page = get_as(&bob_token, "secure/tls?z=1").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains(&format!("path=/tls?z=1 host=localhost:{secure} ")));

    // Apps the server cannot reach say why: nothing listening, an address outside the workspace.
    let down = get_as(&bob_token, "down/").await.unwrap();
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    assert!(down.text().await.unwrap().contains("App \\\"down\\\" did not answer"));
    let remote = get_as(&bob_token, "remote/").await.unwrap();
    assert_eq!(remote.status(), StatusCode::CONFLICT);
    assert!(remote.text().await.unwrap().contains("not on the workspace's loopback"));
    let missing = get_as(&bob_token, "nope/").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Another person: the deployment owner sees the workspace but may not open its apps
    // (a JSON error for the API, a page for a browser); nobody opens an unclaimed prebuild's.
    let refused = get_as(&admin_token, "web/").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let error: warmspace_sdk::Response = refused.json().await.unwrap();
    assert!(error.message.contains("Only the owner of workspace bob/bobs"), "{error:?}");
    assert!(error.detail.contains("--allow-owner-ssh"), "{error:?}");
    let refused_page =
        http.get(app_url("web/")).header(COOKIE, format!("warmspace_session={}", &admin_token)).send().await.unwrap();
    assert_eq!(refused_page.status(), StatusCode::FORBIDDEN);
    assert!(refused_page.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(refused_page.text().await.unwrap().contains("Only the owner of workspace bob/bobs"));
    let prebuild = a_prebuild(&admin).await;
    let unclaimed = get(format!("{}/@prebuilds/{}/apps/web/", server.url, prebuild.name), &admin_token).await.unwrap();
    assert_eq!(unclaimed.status(), StatusCode::FORBIDDEN);
    assert!(unclaimed.text().await.unwrap().contains("unclaimed prebuild"));
    // Without credentials: an API client gets a 401; a browser is sent to sign in, and back to the app.
    let anonymous = http.get(app_url("web/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = browser.get(app_url("web/x?y=1")).header(ACCEPT, "text/html").send().await.unwrap();
    let location = |r: &reqwest::Response| r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location(&sign_in), "/login?then=%2F%40bob%2Fbobs.main%2Fapps%2Fweb%2Fx%3Fy%3D1");
    let form = browser.get(format!("{}{}", server.url, location(&sign_in))).send().await.unwrap();
    let pre_session = form.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let form = form.text().await.unwrap();
    assert!(form.contains(r#"name="then" value="/@bob/bobs.main/apps/web/x?y=1""#), "{form}");
    let csrf = form.split(r#"name="_csrf" value=""#).nth(1).unwrap().split('"').next().unwrap();
    let signed_in = browser
        .post(format!("{}/login", server.url))
        .header(COOKIE, pre_session)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("_csrf", csrf)
                .append_pair("email", "bob@example.com")
                .append_pair("password", "a long password")
                .append_pair("then", "/@bob/bobs.main/apps/web/x?y=1")
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(location(&signed_in), "/@bob/bobs.main/apps/web/x?y=1");
    // Never on to another site.
    let elsewhere =
        browser.get(format!("{}/login?then=//example.com/", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(!elsewhere.contains("example.com"), "{elsewhere}");
    // Refusals are not connections.
    assert_eq!(connections_of(&example, &["--type", "app", "--user", "admin"]).count, 0);

    // Where people find it: `warmspace open`, the API, and the dashboard's "Open" link.
    let printed = String::from_utf8(run(as_bob().args(["open", "bobs", "web"])).stdout).unwrap();
    let expected = format!("{}/@bob/bobs.main/apps/web/", server.url);
    assert_eq!(printed.trim(), expected);
    let opened = tmp.path().join("opened");
    let fake_browser = tmp.path().join("browser.sh");
    std::fs::write(&fake_browser, format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display())).unwrap();
    std::fs::set_permissions(&fake_browser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    run(as_bob().args(["open", "bobs", "web", "--browser"]).env("BROWSER", &fake_browser));
    assert_eq!(std::fs::read_to_string(&opened).unwrap().trim(), expected);
    let unknown = run_failing(as_bob().args(["open", "bobs", "nope"]));
    assert!(unknown.contains("no app \"nope\"") && unknown.contains("web, secure, down, remote"), "{unknown}");
    let apps = bob.workspace_apps(ws.id).await.unwrap().apps;
    assert_eq!(apps[0].proxy_url, expected);
    let dashboard = http
        .get(format!("{}/workspaces/{}", server.url, ws.id))
        .header(COOKIE, format!("warmspace_session={bob_token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dashboard.contains(&format!("href=\"{expected}\"")), "{dashboard}");
}

fn connections_of(example: &Example, filters: &[&str]) -> ConnectionLogPage {
    let listed = run(example.cli().args(["connections", "list", "-o", "json"]).args(filters));
    serde_json::from_slice(&listed.stdout).unwrap()
}
