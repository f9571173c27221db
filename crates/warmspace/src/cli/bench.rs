//! `warmspace bench …`: measurements, each printed beside a baseline
//! measured in the same run on the same database.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use uuid::Uuid;
use warmspace_server::reconciler::{Reconciler, ReconcilerConfig};
use warmspace_store::embedded::{Cluster, ClusterOptions};
use warmspace_store::pubsub::PubSub;
use warmspace_store::workspaces::PREBUILDS_USER_ID;
use warmspace_store::{PgConnectOptions, Store};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Reconciliation: a no-op cycle over many presets against reading its
    /// snapshot alone, and the database connections a cycle with work uses.
    Reconcile(ReconcileArgs),
}

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

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Reconcile(args) => reconcile(args).await,
    }
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("warmspace-bench-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (options, cluster) = match &args.postgres_url {
        Some(url) => (PgConnectOptions::from_str(url)?, None),
        None => {
            let cluster =
                Cluster::start(ClusterOptions { durable: false, ..ClusterOptions::new(dir.path().join("pg")) })
                    .await
                    .context("starting a throwaway PostgreSQL")?;
            (cluster.connect_options("postgres"), Some(cluster))
        }
    };
    let result = measure(&args, options).await;
    if let Some(cluster) = cluster {
        cluster.stop().await?;
    }
    result
}

async fn measure(args: &ReconcileArgs, options: PgConnectOptions) -> anyhow::Result<()> {
    let store = Store::connect(options.clone(), args.pool_size).await?;
    warmspace_store::migrate(store.pool()).await?;
    let pubsub = PubSub::start(options.clone(), store.pool().clone());
    // As in the server: the reconciler works on half the pool's worth of
    // presets at once, on a pool of its own of that size plus its lock's
    // connection, so it can never hold more.
    let concurrency = (args.pool_size as usize / 2).max(1);
    let reconciler_store = Store::connect(options.clone(), concurrency as u32 + 1).await?;
    let reconciler = Reconciler::new(
        reconciler_store.clone(),
        pubsub.clone(),
        ReconcilerConfig { concurrency, ..ReconcilerConfig::default() },
    );
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(store.pool()).await?;
    println!("warmspace bench reconcile — PostgreSQL {version}, pool of {} connections", args.pool_size);

    let seeded = Instant::now();
    seed(&store, args.presets, true).await?;
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
    seed(&store, args.busy_presets, false).await?;
    let peak = Arc::new(AtomicU32::new(0));
    let opened_before = reconciler_store.pool().size();
    let sampling = {
        let (pool, peak) = (reconciler_store.pool().clone(), Arc::clone(&peak));
        tokio::spawn(async move {
            loop {
                // Connections open, checked out or not: what the database sees.
                peak.fetch_max(pool.size(), Ordering::Relaxed);
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
        "  peak database connections the reconciler held during it: {} (open before: {}; its share: {} for \
         presets + 1 for its lock, of a server pool of {})",
        peak.load(Ordering::Relaxed),
        opened_before,
        concurrency,
        args.pool_size
    );
    pubsub.close().await;
    store.pool().close().await;
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Inserts `count` templates, each with an imported version whose one preset
/// keeps a pool of 1 — already full (a running prebuild) or empty.
async fn seed(store: &Store, count: u32, with_prebuilds: bool) -> anyhow::Result<()> {
    let mut tx = store.pool().begin().await?;
    let batch = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (org, file): (Uuid, Uuid) = sqlx::query_as(
        "SELECT (SELECT id FROM organizations WHERE is_default), \
                coalesce((SELECT id FROM files WHERE hash = repeat('0', 64)), gen_random_uuid())",
    )
    .fetch_one(&mut *tx)
    .await?;
    let owner: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, login_type) VALUES ('bench-' || $1, 'bench-' || $1 || '@example.com', \
         'none') RETURNING id",
    )
    .bind(&batch)
    .fetch_one(&mut *tx)
    .await?;
    let statements = [
        "INSERT INTO files (id, hash, mimetype, size, data) VALUES ($3, repeat('0', 64), 'application/x-tar', 0, '') \
         ON CONFLICT (hash) DO NOTHING",
        "CREATE TEMP TABLE seed ON COMMIT DROP AS SELECT g, gen_random_uuid() AS version, gen_random_uuid() AS import, \
             gen_random_uuid() AS template, gen_random_uuid() AS preset, gen_random_uuid() AS workspace, \
             gen_random_uuid() AS build, gen_random_uuid() AS job FROM generate_series(1, $1) g",
        "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, input, file_id, worker_id, \
             worker_name, started_at, completed_at) \
         SELECT import, $2, 'template_version_import', 'succeeded', $4, '{}', $3, gen_random_uuid(), 'bench', now(), now() \
         FROM seed",
        "INSERT INTO template_versions (id, organization_id, name, file_id, job_id, created_by, provisioner, claim_mode, \
             provisioner_config) \
         SELECT version, $2, 'v1', $3, import, $4, 'echo', 'rebuild', \
             '{\"backend\": \"echo\", \"duration_ms\": 0, \"fail_on\": [], \"replace_on_claim\": []}' FROM seed",
        "INSERT INTO templates (id, organization_id, name, active_version_id, created_by) \
         SELECT template, $2, 'bench-' || $5 || '-' || g, version, $4 FROM seed",
        "UPDATE template_versions v SET template_id = s.template FROM seed s WHERE v.id = s.version",
        "INSERT INTO template_version_presets (id, template_version_id, name, ordinal, desired_instances) \
         SELECT preset, version, 'pool', 0, 1 FROM seed",
    ];
    let prebuilds = [
        "INSERT INTO provisioner_jobs (id, organization_id, type, status, initiator_id, priority, input, file_id, \
             worker_id, worker_name, started_at, completed_at) \
         SELECT job, $2, 'workspace_build', 'succeeded', $6, 1, '{}', $3, gen_random_uuid(), 'bench', now(), now() \
         FROM seed",
        "INSERT INTO workspaces (id, organization_id, owner_id, template_id, name, preset_id) \
         SELECT workspace, $2, $6, template, 'prebuild-' || $5 || '-' || g, preset FROM seed",
        "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, reason, \
             template_version_id, template_version_preset_id, job_id, provisioner_state) \
         SELECT build, workspace, 1, 'start', $6, 'prebuild', version, preset, job, '' FROM seed",
    ];
    let chosen = statements.iter().chain(if with_prebuilds { prebuilds.iter() } else { [].iter() });
    // Every value is one we generated (numbers, UUIDs, hex): inlined, so each
    // statement takes exactly the parameters it uses.
    let values = [
        ("$1", count.to_string()),
        ("$2", format!("'{org}'")),
        ("$3", format!("'{file}'")),
        ("$4", format!("'{owner}'")),
        ("$5", format!("'{batch}'")),
        ("$6", format!("'{PREBUILDS_USER_ID}'")),
    ];
    for statement in chosen {
        let sql = values.iter().fold(statement.to_string(), |sql, (name, value)| sql.replace(name, value));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("seeding: {statement}"))?;
    }
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    Ok(())
}
