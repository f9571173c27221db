//! A real headless Chromium, driven through its chromedriver over
//! WebDriver: each [`Browser`] starts its own driver on a free port, with a
//! fresh profile, and kills it when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use url::Url;

/// How long a page gets to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    base: Url,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

impl Browser {
    /// A browser 1280 px wide, pointed at `base` (the server's URL).
    pub async fn start(base: &Url) -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (apt-get install -y chromium chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let browser = Browser { client: connect(port, &profile).await, base: base.clone(), driver, _profile: profile };
        browser.client.set_window_size(1280, 900).await.unwrap();
        browser
    }

    pub fn url(&self, path: &str) -> String {
        self.base.join(path).unwrap().to_string()
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&self.url(path)).await.unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on {}: {e}", self.base))
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn script(&self, js: &str) -> serde_json::Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// Waits until `js` (an expression) is true on the page.
    pub async fn until(&self, what: &str, js: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.script(&format!("return Boolean({js});")).await == json!(true) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the page never showed {what} ({js})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in through the sign-in page.
    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("#submit").await;
        self.until("the workspaces page", "location.pathname === '/workspaces'").await;
    }

    /// Saves a screenshot of the whole page to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let height = self.script("return document.documentElement.scrollHeight;").await.as_u64().unwrap_or(900);
        let (width, _) = self.client.get_window_size().await.unwrap();
        self.client.set_window_size(width as u32, height.clamp(300, 8000) as u32).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        self.client.set_window_size(width as u32, 900).await.unwrap();
    }
}

async fn connect(port: u16, profile: &tempfile::TempDir) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    // The driver takes a moment to listen: retried until it answers.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match ClientBuilder::new(HttpConnector::new()).capabilities(capabilities.clone()).connect(&webdriver).await {
            Ok(client) => return client,
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %err, "chromedriver not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot start a Chromium session through chromedriver: {err}"),
        }
    }
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

impl Browser {
    /// Ends the session (Chromium quits) before the driver is killed.
    pub async fn finish(self) {
        self.client.clone().close().await.ok();
    }
}

/// The processes whose parent is `pid` (the Chromium a driver started).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                // The fields after the command's closing parenthesis: state, then the parent's pid.
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A session not ended (a test that failed) leaves its Chromium
        // running under the driver: killed first, by its id.
        for child in children(self.driver.id()) {
            Command::new("kill").arg("-KILL").arg(child.to_string()).status().ok();
        }
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}
