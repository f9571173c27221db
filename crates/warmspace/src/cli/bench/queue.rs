//! `warmspace bench queue`: how many zero-work jobs the real daemons get
//! through, against a bare SKIP LOCKED acquire + complete loop.
//!
//! The jobs are `start` builds of an `echo` template with `duration_ms = 0`
//! and no agents, queued up front at user priority: the backend does
//! nothing, so what is measured is the daemon loop, the in-process
//! coordinator (the domain) and the store's statements — acquire, the
//! build's payload, its files, its log, its completion and the
//! announcements that follow. The baseline runs the same number of workers
//! over a scratch table of as many rows, one transaction to take a row and
//! one to finish it, on the same PostgreSQL in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use warmspace_sdk::JobPriority;
use warmspace_server::Config;
use warmspace_server::domain::Domain;
use warmspace_server::provisioning::Daemons;
use warmspace_store::bench::BareQueue;
use warmspace_store::pubsub::PubSub;
use warmspace_store::{PgConnectOptions, Store};

use super::Database;

#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    /// Jobs queued before the daemons start, for each daemon count.
    #[arg(long, default_value_t = 2_000)]
    jobs: u32,
    /// Daemon counts to measure, each with its own batch of jobs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
    daemons: Vec<usize>,
    /// Connections in the server's pool.
    #[arg(long, default_value_t = 20)]
    pool_size: u32,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, database.options.clone()).await;
    database.close().await?;
    result
}

/// How long backends may take to report what they did (see [`committed`]).
const STATS_SETTLE: Duration = Duration::from_millis(11_500);

/// How a run went: jobs done per second and transactions per job.
struct Figure {
    jobs_per_second: f64,
    transactions_per_job: f64,
}

impl Figure {
    fn new(jobs: u32, elapsed: Duration, transactions: i64) -> Figure {
        Figure {
            jobs_per_second: f64::from(jobs) / elapsed.as_secs_f64(),
            transactions_per_job: transactions as f64 / f64::from(jobs),
        }
    }
}

async fn measure(args: &QueueArgs, options: PgConnectOptions) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs > 0, "--jobs must be at least 1");
    let store = Store::connect(options.clone(), args.pool_size).await?;
    store.migrate().await?;
    let pubsub = PubSub::start(options.clone(), &store);
    let version = store.server_version().await?;
    println!(
        "warmspace bench queue — PostgreSQL {version}, {} zero-work jobs per run (echo start builds, duration_ms = 0, \
         no agents, user priority), pool of {} connections",
        args.jobs, args.pool_size
    );
    let preset = *store.seed_pools(1, false).await?.first().context("seeding made no preset")?;
    let binary = std::env::current_exe()?;
    for &daemons in &args.daemons {
        anyhow::ensure!(daemons > 0, "--daemons must be at least 1");
        store.seed_queued_builds(preset, args.jobs, JobPriority::User).await?;
        let domain = Domain::new(store.clone(), pubsub.clone(), Arc::new(Config::default()));
        let before = committed(&store).await?;
        let started = Instant::now();
        let running = Daemons::start(domain, daemons, binary.clone());
        let mut polls = 0;
        while store.any_unfinished_job().await? {
            polls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        running.stop().await;
        // The bench's own polls are no work of the queue's.
        let spent = committed(&store).await? - before - polls - 1;
        let queue = Figure::new(args.jobs, elapsed, spent);

        let baseline = bare_loop(&store, &options, args.jobs, daemons).await?;
        println!(
            "  {daemons:>2} daemons: {:>7.0} jobs/s, {:>5.1} transactions/job | bare loop {:>7.0} jobs/s, {:>4.1} \
             transactions/job | ratio {:.2} (target: at least 0.5)",
            queue.jobs_per_second,
            queue.transactions_per_job,
            baseline.jobs_per_second,
            baseline.transactions_per_job,
            queue.jobs_per_second / baseline.jobs_per_second,
        );
    }
    pubsub.close().await;
    store.close().await;
    Ok(())
}

/// `jobs` rows taken and finished by `workers` loops, each on its own
/// connection (the store's [`BareQueue`]), and the transactions they took.
async fn bare_loop(store: &Store, options: &PgConnectOptions, jobs: u32, workers: usize) -> anyhow::Result<Figure> {
    let queue = BareQueue::create(options, jobs).await?;
    let mut loops = Vec::new();
    for _ in 0..workers {
        loops.push(queue.worker().await?);
    }
    let before = committed(store).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut worker in loops {
        tasks.spawn(async move {
            while worker.take_and_finish().await? {}
            Ok::<_, warmspace_store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    let spent = committed(store).await? - before - 1;
    queue.drop_table().await?;
    Ok(Figure::new(jobs, elapsed, spent))
}

/// Transactions committed in the database so far. A backend reports its
/// counts at most once a second, and one that goes idle within a second of
/// its last report waits ten more (PostgreSQL's idle stats interval): wait
/// that long first, so the count includes everything that ran before.
async fn committed(store: &Store) -> anyhow::Result<i64> {
    tokio::time::sleep(STATS_SETTLE).await;
    Ok(store.committed_transactions().await?)
}
