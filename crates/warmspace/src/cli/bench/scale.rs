//! `warmspace bench scale`: a `warmspace server` child process with 10 000
//! workspaces — its resident memory, its reconciliation cycle time, and the
//! database connections it holds — beside the same server idle on an empty
//! database and the cycle's snapshot read alone.
//!
//! The server runs as a child so its memory is its own. Its cycle time is
//! what it logs for each cycle (`reconciliation cycle`, `elapsed_ms`), read
//! from its JSON log: the server's own timer runs the cycles, nothing new is
//! exposed for the benchmark. Seeded workspaces have no agents, so the
//! figures exclude echo's simulated agents (which run inside the server).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{Database, median, ms};
use warmspace_server::Config;
use warmspace_server::domain::Domain;
use warmspace_server::reconciler::Reconciler;
use warmspace_store::pubsub::PubSub;
use warmspace_store::{PgConnectOptions, Store};

/// What the benchmark's own connections are called, so the server's can be told apart.
const BENCH_APPLICATION: &str = "warmspace-bench";
/// How long the child may take to start and to log each cycle.
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Workspaces (running prebuilds) in each shape.
    #[arg(long, default_value_t = 10_000)]
    workspaces: u32,
    /// Which shape: `presets` (as many templates, each with a preset keeping a
    /// pool of 1), `pool` (one template whose one preset keeps them all), or
    /// `both` (each on a database of its own; needs the built-in cluster).
    #[arg(long, value_enum, default_value_t = Shape::Both)]
    shape: Shape,
    /// Cycles timed per shape (after a first one, which is not counted); the median is printed.
    #[arg(long, default_value_t = 5)]
    cycles: usize,
    /// The server's --postgres-max-connections.
    #[arg(long, default_value_t = 20)]
    postgres_max_connections: u32,
    /// An empty database to use instead of a throwaway built-in cluster.
    #[arg(long)]
    postgres_url: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Presets,
    Pool,
    Both,
}

pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    if args.postgres_url.is_some() && args.shape == Shape::Both {
        bail!("with --postgres-url, choose one --shape (presets or pool): each needs an empty database");
    }
    anyhow::ensure!(args.cycles >= 1, "--cycles must be at least 1");
    let database = Database::open(args.postgres_url.as_deref()).await?;
    let result = measure(&args, &database).await;
    database.close().await?;
    result
}

/// One database for one run of the child: a URL for it, a store of the bench's own.
struct Target {
    url: String,
    store: Store,
    options: PgConnectOptions,
}

async fn target(args: &ScaleArgs, database: &Database, name: &str) -> anyhow::Result<Target> {
    let (url, options) = match (&database.cluster, &args.postgres_url) {
        (Some(cluster), _) => {
            cluster.ensure_database(name).await.with_context(|| format!("creating database {name}"))?;
            (cluster.url(name), cluster.connect_options(name))
        }
        (None, Some(url)) => (url.clone(), database.options.clone()),
        (None, None) => unreachable!("Database::open gives a cluster or the URL's database"),
    };
    let options = options.application_name(BENCH_APPLICATION);
    let store = Store::connect(options.clone(), 2).await?;
    store.migrate().await?;
    Ok(Target { url, store, options })
}

async fn measure(args: &ScaleArgs, database: &Database) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("finding this executable")?;
    let idle = target(args, database, "scale_idle").await?;
    let version = idle.store.server_version().await?;
    println!(
        "warmspace bench scale — PostgreSQL {version}, server as a child process with --postgres-max-connections {}",
        args.postgres_max_connections
    );
    // With --postgres-url, the one database serves the idle baseline first, then the shape.
    let empty = run_server(&binary, args, &idle).await?;
    let snapshot_empty = snapshot_read(&idle, args.cycles).await?;
    print_run("empty database (baseline)", &empty, snapshot_empty, args);

    let shapes = match args.shape {
        Shape::Both => vec![Shape::Presets, Shape::Pool],
        one => vec![one],
    };
    for shape in shapes {
        let target = if args.postgres_url.is_some() {
            Target { url: idle.url.clone(), store: idle.store.clone(), options: idle.options.clone() }
        } else {
            target(args, database, &format!("scale_{shape:?}").to_lowercase()).await?
        };
        let seeded = Instant::now();
        let label = match shape {
            Shape::Presets => {
                target.store.seed_pools(args.workspaces, true).await?;
                format!("{} templates × a preset with a pool of 1", args.workspaces)
            }
            _ => {
                target.store.seed_pool(args.workspaces, args.workspaces).await?;
                format!("1 template, 1 preset with a pool of {}", args.workspaces)
            }
        };
        println!("  seeded {label} in {:.1} s", seeded.elapsed().as_secs_f64());
        let run = run_server(&binary, args, &target).await?;
        let snapshot = snapshot_read(&target, args.cycles).await?;
        print_run(&label, &run, snapshot, args);
        println!(
            "    RSS ratio to the empty server: {:.2}× (VmHWM {:.2}×); per workspace: {:.2} KiB",
            run.rss_kib as f64 / empty.rss_kib as f64,
            run.hwm_kib as f64 / empty.hwm_kib as f64,
            run.rss_kib.saturating_sub(empty.rss_kib) as f64 / f64::from(args.workspaces)
        );
        target.store.close().await;
    }
    println!("  (seeded workspaces have no agents: the memory figures exclude echo's simulated agents)");
    idle.store.close().await;
    Ok(())
}

fn print_run(label: &str, run: &ServerRun, snapshot: Duration, args: &ScaleArgs) {
    println!("  {label}:");
    println!(
        "    server RSS {:.1} MiB (peak VmHWM {:.1} MiB) after {} cycles over {} presets",
        run.rss_kib as f64 / 1024.0,
        run.hwm_kib as f64 / 1024.0,
        run.cycles.len() + 1,
        run.presets
    );
    let mut cycles = run.cycles.clone();
    let cycle = median(&mut cycles);
    println!(
        "    no-op cycle (server's log): median {:>8.1} ms over {} cycles; its snapshot read alone: median {:>8.1} ms; \
         ratio {:.2}× (target: at most 2×)",
        ms(cycle),
        run.cycles.len(),
        ms(snapshot),
        cycle.as_secs_f64() / snapshot.as_secs_f64().max(1e-9)
    );
    println!(
        "    database connections the server held: peak {} of --postgres-max-connections {} ({})",
        run.peak_connections,
        args.postgres_max_connections,
        if run.peak_connections <= args.postgres_max_connections as usize { "within" } else { "ABOVE THE FLAG" }
    );
}

/// What one run of the child server showed.
struct ServerRun {
    /// The timed cycles (the first one left out).
    cycles: Vec<Duration>,
    presets: u64,
    rss_kib: u64,
    hwm_kib: u64,
    peak_connections: usize,
}

/// Starts `warmspace server` on `target`, lets it run `args.cycles + 1`
/// cycles on a 1 s timer, reads its memory, and stops it.
async fn run_server(binary: &std::path::Path, args: &ScaleArgs, target: &Target) -> anyhow::Result<ServerRun> {
    let mut child = Command::new(binary)
        .args(["server", "--http-address", "127.0.0.1:0", "--postgres-url", &target.url])
        .args(["--postgres-max-connections", &args.postgres_max_connections.to_string()])
        .args(["--prebuilds-reconciliation-interval", "1s", "--log-format", "json"])
        .env("RUST_LOG", "warn,warmspace_server::reconciler=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `warmspace server`")?;
    let pid = child.id().context("the server exited at once")?;
    let (cycles_tx, mut cycles_rx) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().context("the server's stderr")?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match cycle_of(&line) {
                Some(cycle) => {
                    // The receiver stops listening once it has its cycles.
                    cycles_tx.send(cycle).ok();
                }
                // Anything else the server says is worth seeing (warnings only, by RUST_LOG).
                None => eprintln!("    server: {line}"),
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_connections(target.store.clone(), Arc::clone(&stop)));

    let result = async {
        let mut cycles = Vec::new();
        let mut presets = 0;
        for _ in 0..=args.cycles {
            let (elapsed, total) = tokio::time::timeout(PATIENCE, cycles_rx.recv())
                .await
                .context("the server logged no reconciliation cycle in time")?
                .context("the server stopped")?;
            cycles.push(elapsed);
            presets = total;
        }
        // The first cycle warms caches and records what became eligible: not counted.
        cycles.remove(0);
        let (rss_kib, hwm_kib) = memory(pid)?;
        anyhow::Ok((cycles, presets, rss_kib, hwm_kib))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let peak_connections = sampler.await.context("the connection sampler")??;
    stop_server(&mut child, pid).await?;
    let (cycles, presets, rss_kib, hwm_kib) = result?;
    Ok(ServerRun { cycles, presets, rss_kib, hwm_kib, peak_connections })
}

/// A cycle's elapsed time and preset count, from one line of the server's JSON log.
fn cycle_of(line: &str) -> Option<(Duration, u64)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = entry.get("fields")?;
    if fields.get("message")?.as_str()? != "reconciliation cycle" {
        return None;
    }
    let elapsed = fields.get("elapsed_ms")?.as_u64()?;
    Some((Duration::from_millis(elapsed), fields.get("presets")?.as_u64()?))
}

/// The most connections anyone but the bench held to the database while the
/// server ran (it is alone there with the bench).
async fn sample_connections(store: Store, stop: Arc<AtomicBool>) -> anyhow::Result<usize> {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        peak = peak.max(store.other_connections().await?.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(peak)
}

/// The child's resident set now and at its peak (VmRSS, VmHWM), in KiB.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's memory")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// SIGTERM, as an operator would stop it, and wait.
async fn stop_server(child: &mut Child, pid: u32) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM).context("stopping the server")?;
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => child.kill().await?,
    }
    Ok(())
}

/// The median time to read the reconciliation snapshot alone, measured by
/// the bench on its own connections once the server has stopped.
async fn snapshot_read(target: &Target, runs: usize) -> anyhow::Result<Duration> {
    let pubsub = PubSub::start(target.options.clone(), &target.store);
    let domain = Domain::new(target.store.clone(), pubsub.clone(), Arc::new(Config::default()));
    let reconciler = Reconciler::new(domain, 1);
    let mut samples = Vec::new();
    // One read first, as the server's first cycle, to warm the same caches.
    reconciler.snapshot().await?;
    for _ in 0..runs {
        let started = Instant::now();
        reconciler.snapshot().await?;
        samples.push(started.elapsed());
    }
    pubsub.close().await;
    Ok(median(&mut samples))
}
