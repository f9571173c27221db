//! `warmspace bench reconcile`: a no-op cycle over many presets against
//! reading its snapshot alone, and the connections a busy cycle uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Database, median, ms};
use warmspace_server::Config;
use warmspace_server::domain::Domain;
use warmspace_server::reconciler::Reconciler;
use warmspace_store::pubsub::PubSub;
use warmspace_store::{PgConnectOptions, Store};

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// Presets whose pools are already full (the no-op cycle).
    #[arg(long, default_value_t = 10_000)]
    presets: u32,
    /// Presets that all need a prebuild (the busy cycle).
    #[arg(long, default_value_t = 1_000)]
    busy_presets: u32,
    /// Measurements of each kind; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Connections in the pool; the reconciler may use half of them.
    #[arg(long, default_value_t = 20)]
    pool_size: u32,
    /// An empty database to use instead of a throwaway built-in one.
    #[arg(long)]
    postgres_url: Option<String>,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, database.options.clone()).await;
    database.close().await?;
    result
}

async fn measure(args: &ReconcileArgs, options: PgConnectOptions) -> anyhow::Result<()> {
    let store = Store::connect(options.clone(), args.pool_size).await?;
    store.migrate().await?;
    let pubsub = PubSub::start(options.clone(), &store);
    // As in the server: the reconciler works on its own pool (a third of the connections).
    let reconciler_connections = (args.pool_size / 3).max(2);
    let reconciler_store = Store::connect(options.clone(), reconciler_connections).await?;
    let domain = Domain::new(reconciler_store.clone(), pubsub.clone(), Arc::new(Config::default()));
    let reconciler = Reconciler::new(domain, reconciler_connections as usize);
    let version = store.server_version().await?;
    println!("warmspace bench reconcile — PostgreSQL {version}, pool of {} connections", args.pool_size);

    let seeded = Instant::now();
    store.seed_pools(args.presets, true).await?;
    println!(
        "  seeded {} presets, each with a full pool of 1, in {:.1} s",
        args.presets,
        seeded.elapsed().as_secs_f64()
    );

    let mut snapshots = Vec::new();
    let mut cycles = Vec::new();
    let mut last = None;
    for _ in 0..args.runs {
        let started = Instant::now();
        reconciler.snapshot().await?;
        snapshots.push(started.elapsed());
        let started = Instant::now();
        let stats = reconciler.run_cycle().await?.context("the reconciliation lock is held elsewhere")?;
        cycles.push(started.elapsed());
        anyhow::ensure!(stats.actions == 0, "the cycle was meant to be a no-op: {stats:?}");
        last = Some(stats);
    }
    let (snapshot, cycle) = (median(&mut snapshots), median(&mut cycles));
    let last = last.context("--runs must be at least 1")?;
    println!(
        "  no-op cycle over {} presets ({} reconciled): median {:>8.1} ms over {} runs",
        last.presets_total,
        last.presets_reconciled,
        ms(cycle),
        args.runs
    );
    println!("  baseline, reading its snapshot alone:       median {:>8.1} ms", ms(snapshot));
    println!("  ratio {:.2}× (target: at most 2×)", cycle.as_secs_f64() / snapshot.as_secs_f64());

    // Every busy preset needs a prebuild: a cycle that works on all of them.
    store.seed_pools(args.busy_presets, false).await?;
    let peak = Arc::new(AtomicU32::new(0));
    let opened_before = reconciler_store.open_connections();
    let sampling = {
        let (store, peak) = (reconciler_store.clone(), Arc::clone(&peak));
        tokio::spawn(async move {
            loop {
                // Connections open, checked out or not: what the database sees.
                peak.fetch_max(store.open_connections(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let started = Instant::now();
    let stats = reconciler.run_cycle().await?.context("the reconciliation lock is held elsewhere")?;
    let elapsed = started.elapsed();
    sampling.abort();
    println!(
        "  cycle over {} presets, {} of them needing a prebuild: {} prebuilds queued in {:.2} s",
        stats.presets_total,
        args.busy_presets,
        stats.created,
        elapsed.as_secs_f64()
    );
    println!(
        "  peak database connections the reconciler held during it: {} (open before: {}; its pool: {}, of \
         {} in all)",
        peak.load(Ordering::Relaxed),
        opened_before,
        reconciler_connections,
        args.pool_size
    );
    pubsub.close().await;
    reconciler_store.close().await;
    store.close().await;
    Ok(())
}
