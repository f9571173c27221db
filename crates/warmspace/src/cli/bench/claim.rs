//! `warmspace bench claim`: claiming a warm prebuild through the HTTP API
//! against the bare statement a claim is built around.
//!
//! The claims: a server started in-process, a `claim = "reinit"` template
//! whose preset's pool holds `--pool` eligible prebuilds, and 1, 10 and 50
//! claimers, each a user of its own on a keep-alive HTTP connection of its
//! own, claiming until `--claims` claims are done. The baseline, in the same
//! run on the same PostgreSQL: as many connections of their own, each with
//! the prepared statement `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
//! LOCKED LIMIT 1) RETURNING id` (one statement, its own transaction) on a
//! scratch table of as many rows, until as many rows are taken.
//!
//! Nothing refills the pool while claims are measured: the server runs no
//! reconciliation loop (each claim still publishes its reconcile trigger;
//! nobody acts on it), and its one provisioner daemon, there for the
//! template's import, has nothing to run (a reinit claim's build is done
//! when it commits). Before each level the bench tops the pool up to
//! `--pool` itself and vacuums, as it starts the scratch table over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::dynamic_filter_fn;
use uuid::Uuid;
use warmspace_sdk::{
    BuildReason, Client, CreateTemplateRequest, CreateTemplateVersionRequest, CreateWorkspaceRequest, JobStatus,
    LogEvent, LoginType, UserStatus,
};
use warmspace_server::auth::tokens::Token;
use warmspace_store::bench::{BareClaimer, BareClaims};
use warmspace_store::{NewSession, NewUser, PgConnectOptions, Store};

use super::{Database, QuietServer, first_owner, ms};

#[derive(clap::Args, Debug)]
pub struct ClaimArgs {
    /// Concurrent claimers of each level (and connections of the baseline).
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    concurrency: Vec<usize>,
    /// Claims measured at each level.
    #[arg(long, default_value_t = 400)]
    claims: usize,
    /// Eligible prebuilds in the pool (and rows in the baseline's table) as each level starts.
    #[arg(long, default_value_t = 1_000)]
    pool: u32,
    /// The server's connections to PostgreSQL, all its pools together.
    #[arg(long, default_value_t = 20)]
    max_connections: u32,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

/// Unmeasured claims (and baseline statements) before each level, per
/// claimer and at least in all: connections opened, statements prepared,
/// and PostgreSQL settled on their plans (it plans each of a connection's
/// prepared statements five times before it considers keeping a plan).
const WARMUP: (usize, usize) = (5, 100);

/// The warm-up of a level of `n`.
fn warmup(n: usize) -> usize {
    (WARMUP.0 * n).max(WARMUP.1)
}
/// Claim requests whose statements are counted, one after the other.
const COUNTED: usize = 10;
const TARGET_RATIO: f64 = 3.0;

/// Two parameters, one of them mutable, and a pooled preset setting both.
fn manifest(pool: u32) -> String {
    format!(
        "provisioner = \"echo\"\nclaim = \"reinit\"\n\
         parameter \"region\" {{\n  type = \"string\"\n  default = \"us\"\n}}\n\
         parameter \"cpus\" {{\n  type = \"number\"\n  default = 2\n  mutable = true\n}}\n\
         preset \"warm\" {{\n  parameters = {{ region = \"us\", cpus = \"2\" }}\n  prebuilds {{\n    instances = {pool}\n  }}\n}}\n\
         echo {{\n  duration_ms = 0\n}}\n"
    )
}

/// Counts the statements sqlx sends (one `sqlx::query` event each) while
/// switched on; switched off, sqlx does not even build the events.
#[derive(Clone, Default)]
pub struct Statements {
    on: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
}

struct Counter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Counter {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Statements {
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let on = Arc::clone(&self.on);
        let statement = |meta: &tracing::Metadata<'_>| meta.target() == "sqlx::query";
        // The callsite filter spares every other callsite the check; events
        // forwarded from the `log` crate share callsites, so each is checked too.
        let filter = dynamic_filter_fn(move |meta, _| statement(meta) && on.load(Ordering::Relaxed))
            .with_callsite_filter(move |meta| if statement(meta) { Interest::sometimes() } else { Interest::never() });
        Counter(Arc::clone(&self.count)).with_filter(filter)
    }

    /// Statements sent while `work` runs.
    async fn during<T>(&self, work: impl Future<Output = T>) -> (usize, T) {
        self.on.store(true, Ordering::SeqCst);
        let before = self.count.load(Ordering::SeqCst);
        let out = work.await;
        let sent = self.count.load(Ordering::SeqCst) - before;
        self.on.store(false, Ordering::SeqCst);
        (sent, out)
    }
}

pub async fn run(args: ClaimArgs, statements: Statements) -> anyhow::Result<()> {
    ensure!(args.claims > 0, "--claims must be at least 1");
    ensure!(!args.concurrency.is_empty() && !args.concurrency.contains(&0), "--concurrency: levels of at least 1");
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, database.options.clone(), &statements).await;
    database.close().await?;
    result
}

/// The server under test, and what the claims need.
struct Bench {
    store: Store,
    template_id: Uuid,
    preset_id: Uuid,
    claimers: Vec<Client>,
    pool: u32,
}

async fn measure(args: &ClaimArgs, options: PgConnectOptions, statements: &Statements) -> anyhow::Result<()> {
    // One daemon, for the template's import; claims give it nothing to run.
    let server = QuietServer::start(&options, 1, args.max_connections).await?;
    let result = async {
        let bench = Bench::set_up(args, &options, server.url.clone()).await?;
        bench.run(args, &options, statements).await
    }
    .await;
    server.stop().await?;
    result
}

impl Bench {
    async fn set_up(args: &ClaimArgs, options: &PgConnectOptions, url: url::Url) -> anyhow::Result<Bench> {
        let store = Store::connect(options.clone(), 4).await?;
        let owner = first_owner(&url, "bench", "bench@bench.invalid", "bench password, not a secret").await?;

        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("warmspace.hcl"), manifest(args.pool))?;
        let file = owner.upload_tar(warmspace_sdk::archive::tar_directory(dir.path())?).await?;
        let version = owner
            .create_template_version(
                "default",
                &CreateTemplateVersionRequest {
                    file_id: file.id,
                    template_id: None,
                    name: None,
                    message: String::new(),
                    provisioner_tags: Default::default(),
                    skip_if_unchanged: false,
                },
            )
            .await?;
        let mut log = Box::pin(owner.follow_template_version_logs(version.id).await?);
        let job = loop {
            match log.next().await.context("the import log ended early")?? {
                LogEvent::Log(_) => {}
                LogEvent::End(job) => break job,
            }
        };
        ensure!(job.status == JobStatus::Succeeded, "the template's import {}: {:?}", job.status, job.error);
        let template = owner
            .create_template(
                "default",
                &CreateTemplateRequest {
                    name: "bench".into(),
                    template_version_id: version.id,
                    display_name: String::new(),
                    description: String::new(),
                    icon: String::new(),
                    settings: Default::default(),
                },
            )
            .await?;
        let preset_id = owner
            .template_version_presets(version.id)
            .await?
            .into_iter()
            .find(|p| p.name == "warm")
            .context("the template's preset")?
            .id;

        // Users with API tokens of their own, written directly (no password to hash).
        let mut claimers = Vec::new();
        for i in 0..args.concurrency.iter().copied().max().unwrap_or(1) {
            let user = store
                .create_user(NewUser {
                    username: format!("claimer{i}"),
                    email: format!("claimer{i}@bench.invalid"),
                    name: String::new(),
                    login_type: LoginType::None,
                    hashed_password: None,
                    status: UserStatus::Active,
                    roles: Vec::new(),
                })
                .await?;
            let token = Token::generate();
            store
                .create_session(&NewSession {
                    id: token.id.clone(),
                    hashed_secret: token.hashed_secret(),
                    user_id: user.id,
                    login_type: "token",
                    expires_at: chrono::Utc::now() + chrono::Duration::days(1),
                })
                .await?;
            // A client of its own: its own connection, kept alive.
            claimers.push(Client::new(url.clone()).with_token(token.to_header_value()));
        }
        Ok(Bench { store, template_id: template.id, preset_id, claimers, pool: args.pool })
    }

    async fn run(&self, args: &ClaimArgs, options: &PgConnectOptions, statements: &Statements) -> anyhow::Result<()> {
        let version = self.store.server_version().await?;
        println!(
            "warmspace bench claim — PostgreSQL {version}; server pool of {} connections; {} claims per level \
             from a pool of {} (reinit)",
            args.max_connections, args.claims, self.pool
        );

        // The statements of one claim request, on a warm server.
        self.refill().await?;
        self.claims(&self.claimers[..1], warmup(1), "count-warmup").await?;
        self.top_up().await?;
        let mut counts = Vec::new();
        for i in 0..COUNTED {
            let claimer = &self.claimers[..1];
            let (sent, claimed) = statements.during(self.claims(claimer, 1, &format!("count-{i}"))).await;
            claimed?;
            counts.push(sent);
        }
        let (fewest, most) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
        if fewest == most {
            println!("  SQL statements one claim request runs: {fewest} (each of {COUNTED} requests)");
        } else {
            println!("  SQL statements one claim request runs: {fewest} to {most} (over {COUNTED} requests)");
        }

        let mut bare = Bare::set_up(options).await?;
        println!(
            "  {:>8}  {:>10} {:>10} {:>9}  {:>10} {:>10} {:>9}  {:>15}",
            "claimers", "claim p50", "claim p99", "claims/s", "bare p50", "bare p99", "tx/s", "p99 ratio"
        );
        for &n in &args.concurrency {
            let baseline = bare.level(n, args.claims, self.pool).await?;
            let claimers = &self.claimers[..n];
            self.refill().await?;
            self.claims(claimers, warmup(n), &format!("warmup-{n}")).await?;
            self.top_up().await?;
            let started = Instant::now();
            let mut latencies = self.claims(claimers, args.claims, &format!("level-{n}")).await?;
            let claims = Phase::of(&mut latencies, started.elapsed());
            let ratio = claims.p99.as_secs_f64() / baseline.p99.as_secs_f64();
            println!(
                "  {n:>8}  {:>7.2} ms {:>7.2} ms {:>9.0}  {:>7.2} ms {:>7.2} ms {:>9.0}  {ratio:>5.2}× ({})",
                ms(claims.p50),
                ms(claims.p99),
                claims.per_second,
                ms(baseline.p50),
                ms(baseline.p99),
                baseline.per_second,
                if ratio <= TARGET_RATIO { "≤ 3× target" } else { "over 3× target" },
            );
        }
        bare.table.drop_table().await?;
        self.store.close().await;
        Ok(())
    }

    /// Tops the pool up, and vacuums what earlier claims left behind (as
    /// the baseline starts its table over).
    async fn refill(&self) -> anyhow::Result<()> {
        self.top_up().await?;
        Ok(self.store.vacuum_pools().await?)
    }

    /// Tops the pool up to its size with fresh eligible prebuilds.
    async fn top_up(&self) -> anyhow::Result<()> {
        let eligible = self.store.eligible_prebuilds(self.preset_id).await?.len() as u32;
        if eligible < self.pool {
            self.store.seed_prebuilds(self.preset_id, self.pool - eligible).await?;
        }
        Ok(())
    }

    /// `total` claims by `claimers` at once, each claiming until all are
    /// done; the latency of each.
    async fn claims(&self, claimers: &[Client], total: usize, names: &str) -> anyhow::Result<Vec<Duration>> {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = claimers
            .iter()
            .map(|client| {
                let (client, next, names) = (client.clone(), Arc::clone(&next), names.to_owned());
                let (template_id, preset_id) = (self.template_id, self.preset_id);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return anyhow::Ok(latencies);
                        }
                        let request = CreateWorkspaceRequest {
                            template_id,
                            template_version_id: None,
                            name: format!("{names}-{i}"),
                            rich_parameter_values: Vec::new(),
                            template_version_preset_id: Some(preset_id),
                            ttl_ms: None,
                            autostart_schedule: None,
                        };
                        let started = Instant::now();
                        let workspace = client.create_workspace("me", &request).await?;
                        latencies.push(started.elapsed());
                        if workspace.latest_build.reason != BuildReason::Claim {
                            bail!("claim {names}-{i} found no eligible prebuild: the pool ran dry");
                        }
                    }
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(total);
        for task in tasks {
            latencies.extend(task.await??);
        }
        Ok(latencies)
    }
}

/// The baseline: the store's bare claims table, and a claimer per connection.
struct Bare {
    table: BareClaims,
    claimers: Vec<BareClaimer>,
}

impl Bare {
    async fn set_up(options: &PgConnectOptions) -> anyhow::Result<Bare> {
        Ok(Bare { table: BareClaims::create(options).await?, claimers: Vec::new() })
    }

    /// `total` rows taken by `n` connections at once, after a warm-up, from a table of `rows`.
    async fn level(&mut self, n: usize, total: usize, rows: u32) -> anyhow::Result<Phase> {
        while self.claimers.len() < n {
            self.claimers.push(self.table.claimer().await?);
        }
        self.table.reset(rows).await?;
        self.takes(n, warmup(n)).await?;
        let started = Instant::now();
        let mut latencies = self.takes(n, total).await?;
        Ok(Phase::of(&mut latencies, started.elapsed()))
    }

    /// `total` takes by the first `n` claimers at once, each taking until all are done.
    async fn takes(&mut self, n: usize, total: usize) -> anyhow::Result<Vec<Duration>> {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = self
            .claimers
            .drain(..n)
            .map(|mut claimer| {
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        let started = Instant::now();
                        let taken = claimer.claim().await?;
                        latencies.push(started.elapsed());
                        ensure!(taken, "the baseline's table ran dry");
                    }
                    anyhow::Ok((claimer, latencies))
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(total);
        let mut returned = Vec::new();
        for task in tasks {
            let (claimer, taken) = task.await??;
            returned.push(claimer);
            latencies.extend(taken);
        }
        returned.append(&mut self.claimers);
        self.claimers = returned;
        Ok(latencies)
    }
}

/// A measured phase: its latencies' median and 99th percentile, and its rate.
struct Phase {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

impl Phase {
    fn of(latencies: &mut [Duration], elapsed: Duration) -> Phase {
        latencies.sort();
        // The smallest sample at least p of all samples are not above.
        let at = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1];
        Phase { p50: at(0.50), p99: at(0.99), per_second: latencies.len() as f64 / elapsed.as_secs_f64() }
    }
}
