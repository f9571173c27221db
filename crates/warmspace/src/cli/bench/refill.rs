//! `warmspace bench refill`: how soon after a claim commits its preset's
//! replacement prebuild is queued, for one claim a second and for bursts,
//! beside a preset with a long history and (optionally) thousands of other
//! presets. The server runs in-process with its reconciler and no
//! provisioner daemons, so replacements stay queued where they can be seen.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;
use uuid::Uuid;
use warmspace_sdk::{Client, CreateFirstUserRequest, CreateWorkspaceRequest, LoginWithPasswordRequest};
use warmspace_server::{Config, Database as ServerDatabase, Server};
use warmspace_store::Store;

use super::{Database, median, ms};

/// What the issue asks of a refill's median.
const TARGET_MS: f64 = 100.0;
/// How long replacements may take before the run gives up on them.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct RefillArgs {
    /// Other presets, each with a full pool of 1; one run per value, in
    /// ascending order on the same database.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 10_000])]
    other_presets: Vec<u32>,
    /// Finished prebuild creations in the claimed preset's history, spread
    /// over the past week (so most lie outside the look-back window).
    #[arg(long, default_value_t = 100_000)]
    history: u32,
    /// Claims of the steady scenario, one a second.
    #[arg(long, default_value_t = 20)]
    steady_claims: u32,
    /// Bursts of concurrent claims, a second apart.
    #[arg(long, default_value_t = 3)]
    bursts: u32,
    /// Claims in each burst, sent at once.
    #[arg(long, default_value_t = 50)]
    burst_size: u32,
    /// The server's `--postgres-max-connections`.
    #[arg(long, default_value_t = 20)]
    max_connections: u32,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

pub async fn run(args: RefillArgs) -> anyhow::Result<()> {
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, &database).await;
    database.close().await?;
    result
}

async fn measure(args: &RefillArgs, database: &Database) -> anyhow::Result<()> {
    let store = Store::connect(database.options.clone(), 4).await?;
    store.migrate().await?;
    let version = store.server_version().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = Url::parse(&format!("http://{}/", listener.local_addr()?))?;
    let config = Config {
        database: ServerDatabase::External(Box::new(database.options.clone())),
        max_connections: args.max_connections,
        // Nothing takes the replacements: they stay queued, where they are counted.
        provisioner_daemons: 0,
        ..Config::default()
    };
    let server = Server::start(config, Some(listener)).await.context("starting the server")?;
    let reconciler = server.reconciler().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        stopped.await.ok();
    }));
    println!(
        "warmspace bench refill — PostgreSQL {version}, server in-process with its reconciler, no provisioner daemons, \
         {} connections",
        args.max_connections
    );
    let owner = owner(&url).await?;

    let mut others = args.other_presets.clone();
    others.sort_unstable();
    let mut seeded_others = 0;
    for (run, other_presets) in others.into_iter().enumerate() {
        if other_presets > seeded_others {
            store.seed_pools(other_presets - seeded_others, true).await?;
            seeded_others = other_presets;
        }
        let pool = args.steady_claims + args.bursts * args.burst_size + 10;
        let (template, preset) = store.seed_pool(pool, pool).await?;
        store.seed_prebuild_history(preset, args.history, Duration::from_secs(7 * 86_400)).await?;
        // A cycle over the new state, so the runs start from a settled picture
        // (first `eligible` events recorded) rather than from seeding's wake.
        while reconciler.run_cycle().await?.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut snapshots = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            reconciler.snapshot().await?;
            snapshots.push(started.elapsed());
        }
        println!(
            "  {} other presets with full pools, claimed preset: pool of {pool}, {} finished creations of history; \
             full snapshot read: median {:.1} ms",
            other_presets,
            args.history,
            ms(median(&mut snapshots))
        );
        let claimer = Claimer { client: owner.clone(), template, preset, run };

        let since = chrono::Utc::now();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        for i in 0..args.steady_claims {
            ticks.tick().await;
            claimer.claim(&format!("steady-{i}")).await?;
        }
        let steady = delays(&store, preset, since).await?;
        report(&format!("steady, 1 claim/s × {}", args.steady_claims), &steady);

        let mut bursts = Vec::new();
        for b in 0..args.bursts {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let since = chrono::Utc::now();
            let claims = (0..args.burst_size).map(|i| claimer.claim_owned(format!("burst-{b}-{i}")));
            for claimed in futures::future::join_all(claims).await {
                claimed?;
            }
            bursts.extend(delays(&store, preset, since).await?);
        }
        report(&format!("bursts of {} claims × {}", args.burst_size, args.bursts), &bursts);
    }
    stop.send(()).ok();
    serving.await??;
    store.close().await;
    Ok(())
}

/// The first user, logged in.
async fn owner(url: &Url) -> anyhow::Result<Client> {
    const EMAIL: &str = "bench@example.com";
    const PASSWORD: &str = "bench refill password";
    Client::new(url.clone())
        .create_first_user(&CreateFirstUserRequest {
            username: "bench".into(),
            email: EMAIL.into(),
            password: PASSWORD.into(),
            name: "Bench".into(),
        })
        .await?;
    let session = Client::new(url.clone())
        .login(&LoginWithPasswordRequest { email: EMAIL.into(), password: PASSWORD.into() })
        .await?;
    Ok(Client::new(url.clone()).with_token(session.session_token))
}

#[derive(Clone)]
struct Claimer {
    client: Client,
    template: Uuid,
    preset: Uuid,
    run: usize,
}

impl Claimer {
    /// Creates a workspace from the preset over HTTP; it must be a claim.
    async fn claim(&self, name: &str) -> anyhow::Result<()> {
        let workspace = self
            .client
            .create_workspace(
                "me",
                &CreateWorkspaceRequest {
                    template_id: self.template,
                    template_version_id: None,
                    name: format!("r{}-{name}", self.run),
                    rich_parameter_values: Vec::new(),
                    template_version_preset_id: Some(self.preset),
                    ttl_ms: None,
                    autostart_schedule: None,
                },
            )
            .await?;
        anyhow::ensure!(workspace.claim_hand_over_ms.is_some(), "{name} was built, not claimed: the pool ran dry");
        Ok(())
    }

    async fn claim_owned(&self, name: String) -> anyhow::Result<()> {
        self.claim(&name).await
    }
}

/// Each claim's refill delay, once every claim since `since` has its replacement.
async fn delays(store: &Store, preset: Uuid, since: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Vec<f64>> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let delays = store.refill_delays(preset, since).await?;
        if let Some(all) = delays.iter().copied().collect::<Option<Vec<f64>>>() {
            return Ok(all);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} of {} claims still without a replacement after {PATIENCE:?}",
            delays.iter().filter(|d| d.is_none()).count(),
            delays.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(scenario: &str, delays: &[f64]) {
    let mut sorted = delays.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)];
    let p50 = at(0.5);
    println!(
        "    {scenario:<28} refill p50 {p50:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} claims; target p50 ≤ {TARGET_MS} \
         ms: {})",
        at(0.99),
        sorted[sorted.len() - 1],
        sorted.len(),
        if p50 <= TARGET_MS { "met" } else { "not met" }
    );
}
