//! `warmspace bench dashboard`: the weight of the dashboard's workspaces
//! page for one person with many workspaces — how long a request for it
//! takes and how many bytes it sends — beside the JSON API's listing of the
//! same workspaces (`GET /api/v2/workspaces?q=owner:me`), measured in the
//! same run on the same server.
//!
//! The server runs in this process with nothing on a timer and no daemons,
//! so only the requests measured touch the database.
//! The person's workspaces are seeded by the store (what a thousand create
//! requests would leave behind: each running, with a ready agent and the
//! record of its request, half of them claims); the person then signs in
//! through the sign-in form, as a browser would, and the page is fetched
//! one request at a time over a kept-alive loopback connection. A request's
//! time is from sending it to having read the whole body: on loopback, the
//! server's own time to answer it (its queries and the rendering) plus a
//! negligible transfer. The server sends no compression: the size is what
//! crosses the wire.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use reqwest::Method;
use warmspace_sdk::{Client, CreateUserRequest};
use warmspace_store::{PgConnectOptions, Store};

use super::{Database, QuietServer, first_owner, ms};

#[derive(clap::Args, Debug)]
pub struct DashboardArgs {
    /// Workspaces the person owns.
    #[arg(long, default_value_t = 1_000)]
    workspaces: u32,
    /// Requests measured for the page and for the baseline each (after a few unmeasured ones).
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

/// Unmeasured requests first: connections opened, statements prepared, caches warm.
const WARMUP: usize = 5;
/// The targets for the page with 1 000 workspaces.
const TARGET_MS: f64 = 100.0;
const TARGET_KB: f64 = 300.0;

pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    ensure!(args.requests >= 1, "--requests must be at least 1");
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, database.options.clone()).await;
    database.close().await?;
    result
}

async fn measure(args: &DashboardArgs, options: PgConnectOptions) -> anyhow::Result<()> {
    let server = QuietServer::start(&options, 0, warmspace_server::Config::default().max_connections).await?;
    let result = run_requests(args, &options, &server.url).await;
    server.stop().await?;
    result
}

const EMAIL: &str = "dev@bench.invalid";
const PASSWORD: &str = "bench password, not a secret";

async fn run_requests(args: &DashboardArgs, options: &PgConnectOptions, url: &url::Url) -> anyhow::Result<()> {
    let store = Store::connect(options.clone(), 2).await?;
    let version = store.server_version().await?;
    let owner = first_owner(url, "owner", "owner@bench.invalid", PASSWORD).await?;
    let person = owner
        .create_user(&CreateUserRequest {
            username: "dev".into(),
            email: EMAIL.into(),
            name: "Dev Eloper".into(),
            password: Some(PASSWORD.into()),
            login_type: Default::default(),
            roles: Vec::new(),
            status: Default::default(),
        })
        .await?;
    let preset = store.seed_pools(1, false).await?.remove(0);
    let seeded = Instant::now();
    store.seed_workspaces(person.id, preset, args.workspaces).await?;
    println!(
        "warmspace bench dashboard — PostgreSQL {version}; one member with {} workspaces (seeded in {:.1} s); \
         {} requests each, one at a time",
        args.workspaces,
        seeded.elapsed().as_secs_f64(),
        args.requests
    );

    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let session = sign_in(&browser, url).await?;
    let page = url.join("workspaces")?;
    // As a browser asks for it: compressed (the body is then counted as sent).
    let fetch_page = || {
        browser
            .get(page.clone())
            .header("cookie", format!("warmspace_session={session}"))
            .header("accept-encoding", "gzip")
            .send()
    };
    let api = Client::new(url.clone()).with_token(session.clone());
    let fetch_api = || async {
        let request = api.request(Method::GET, "api/v2/workspaces")?;
        Ok::<_, anyhow::Error>(request.query(&[("q", "owner:me"), ("limit", "1000")]).send().await?)
    };

    let page = Fetched::measure(args.requests, async || Ok(fetch_page().await?)).await?;
    let baseline = Fetched::measure(args.requests, fetch_api).await?;
    println!("  {:<44} {:>10} {:>10} {:>12}", "", "p50", "p99", "size");
    page.print("workspaces page (HTML, as the browser gets it)");
    baseline.print("baseline: GET /api/v2/workspaces (JSON)");
    println!("  the page lists {} workspaces; the API listed {}", page.rows, baseline.rows);
    println!(
        "  page / baseline: {:.2}× the time (p50), {:.2}× the bytes",
        page.p50.as_secs_f64() / baseline.p50.as_secs_f64().max(1e-9),
        page.bytes as f64 / baseline.bytes.max(1) as f64
    );
    println!(
        "  targets for {} workspaces: render < {TARGET_MS:.0} ms ({}), transfer < {TARGET_KB:.0} KB ({})",
        args.workspaces,
        if ms(page.p50) < TARGET_MS { "p50 met" } else { "p50 MISSED" },
        if kb(page.bytes) < TARGET_KB { "met" } else { "MISSED" },
    );
    store.close().await;
    Ok(())
}

fn kb(bytes: usize) -> f64 {
    bytes as f64 / 1000.0
}

/// Signs in through the dashboard's form (its CSRF cookie first) and returns the session cookie's value.
async fn sign_in(browser: &reqwest::Client, url: &url::Url) -> anyhow::Result<String> {
    let login = url.join("login")?;
    let form = browser.get(login.clone()).send().await?;
    let csrf = cookie(&form, "warmspace_csrf").context("the sign-in page set no CSRF cookie")?;
    // The form carries the token as the page masked it.
    let page = form.text().await?;
    let masked = page
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the sign-in page has no CSRF field")?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("email", EMAIL), ("password", PASSWORD), ("_csrf", masked)])
        .finish();
    let signed_in = browser
        .post(login)
        .header("cookie", format!("warmspace_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    ensure!(signed_in.status().is_redirection(), "signing in answered {}", signed_in.status());
    cookie(&signed_in, "warmspace_session").context("signing in set no session cookie")
}

/// The value of the cookie `name` a response sets.
fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// One kind of request, measured.
struct Fetched {
    p50: Duration,
    p99: Duration,
    /// The body's size (the same every time), and the workspaces in it.
    bytes: usize,
    rows: usize,
}

impl Fetched {
    async fn measure(
        requests: usize,
        fetch: impl AsyncFn() -> anyhow::Result<reqwest::Response>,
    ) -> anyhow::Result<Fetched> {
        let mut times = Vec::with_capacity(requests);
        let (mut bytes, mut rows) = (0, 0);
        for i in 0..WARMUP + requests {
            let started = Instant::now();
            let response = fetch().await?;
            let status = response.status();
            let gzipped = response.headers().get("content-encoding").is_some_and(|e| e == "gzip");
            let body = response.bytes().await?;
            let took = started.elapsed();
            ensure!(status.is_success(), "answered {status}: {}", String::from_utf8_lossy(&body));
            if i >= WARMUP {
                times.push(took);
            }
            bytes = body.len();
            let mut text = String::new();
            if gzipped {
                flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text)?;
            } else {
                text = String::from_utf8_lossy(&body).into_owned();
            }
            // A workspace is a row in the HTML, an object with a `latest_build` in the JSON.
            rows = text.matches("<tr data-ws=").count().max(text.matches("\"latest_build\"").count());
        }
        times.sort();
        let at = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
        Ok(Fetched { p50: at(0.50), p99: at(0.99), bytes, rows })
    }

    fn print(&self, label: &str) {
        println!("  {label:<44} {:>7.1} ms {:>7.1} ms {:>9.1} KB", ms(self.p50), ms(self.p99), kb(self.bytes));
    }
}
