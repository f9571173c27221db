//! The built-in PostgreSQL: a private cluster run from the machine's
//! installed server binaries, inside a directory of ours, reachable only over
//! a Unix socket in that directory.
//!
//! The server uses it when no `--postgres-url` is given, and the test harness
//! uses the same code. The postmaster is our child process, started from a
//! thread that lives as long as the process, with a parent-death signal: if
//! this process dies without stopping it (SIGKILL, panic), the kernel tells
//! the postmaster to shut down, so no cluster is ever left running.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

mod lock;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use self::lock::DirLock;

/// The socket file is `.s.PGSQL.<port>`; with a private socket directory and
/// no TCP listener the port number only names that file.
const PORT: u16 = 5432;
const SUPERUSER: &str = "postgres";
/// `sun_path` holds 108 bytes, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin, \
         /usr/pgsql-*/bin and /usr/local/pgsql/bin). Install them (on Debian or Ubuntu: \
         `apt-get install postgresql`), point WARMSPACE_POSTGRES_BIN_DIR at them, or pass --postgres-url \
         to use an existing database"
    )]
    NotInstalled,
    #[error(
        "running as root, the built-in PostgreSQL runs as the `postgres` system user, which does not exist; \
         install the PostgreSQL server package (it creates that user) or pass --postgres-url"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot reach {0}: every parent directory must be searchable by it \
         (choose a --data-dir such as /var/lib/warmspace)"
    )]
    Unreachable(PathBuf),
    #[error("the socket path {0} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --data-dir")]
    SocketPathTooLong(PathBuf),
    #[error("{path} holds a cluster of PostgreSQL {found}, but the binaries in {bin_dir} are version {wanted}")]
    VersionMismatch { path: PathBuf, found: String, wanted: String, bin_dir: PathBuf },
    #[error("the data directory {} is in use by warmspace (pid {pid})", dir.display())]
    InUse { dir: PathBuf, pid: String },
    #[error("initdb failed:\n{0}")]
    InitDb(String),
    #[error("PostgreSQL did not start (log {log}):\n{tail}")]
    Start { log: PathBuf, tail: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// How to run a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Holds `data/` (the cluster), `run/` (its socket) and `postgres.log`.
    pub dir: PathBuf,
    /// Durable clusters fsync; throwaway ones (tests) trade safety for speed.
    pub durable: bool,
    /// Extra `postgresql.conf` settings, passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
}

impl ClusterOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ClusterOptions { dir: dir.into(), durable: true, settings: Vec::new() }
    }
}

/// A running cluster. Stop it with [`Cluster::stop`]; dropping it leaves it
/// running until this process exits.
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    bin_dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// Keeps a second process off the directory until the cluster is stopped.
    lock: Mutex<Option<DirLock>>,
}

impl Cluster {
    pub fn data_dir(&self) -> PathBuf {
        self.options.dir.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.options.dir.join("run")
    }

    pub fn log_file(&self) -> PathBuf {
        self.options.dir.join("postgres.log")
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Options reaching `database` as the cluster's superuser.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(self.socket_dir()).port(PORT).username(SUPERUSER).database(database)
    }

    /// A `postgres://` URL for `database`, for other processes (a second
    /// replica, psql) on this machine.
    pub fn url(&self, database: &str) -> String {
        format!("postgres:///{database}?host={}&port={PORT}&user={SUPERUSER}", self.socket_dir().display())
    }

    /// Creates `database` unless it exists.
    pub async fn ensure_database(&self, database: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.connect_options("postgres").application_name("warmspace-setup").connect().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            let quoted = format!("\"{}\"", database.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"))).execute(&mut conn).await?;
        }
        conn.close().await
    }

    /// Initialises the cluster on first use, then starts it and waits until it
    /// accepts connections.
    pub async fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = find_binaries()?;
        let run_as = run_as()?;
        let socket = options.dir.join("run").join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ClusterError::SocketPathTooLong(socket));
        }
        let prepared = {
            // initdb takes seconds: keep it off the async threads.
            let unstarted = Cluster {
                options: options.clone(),
                bin_dir: bin_dir.clone(),
                child: Mutex::new(None),
                lock: Mutex::new(None),
            };
            let run_as = run_as.clone();
            tokio::task::spawn_blocking(move || unstarted.prepare(run_as.as_ref()))
        };
        let lock = prepared.await.map_err(|e| io_err("preparing the cluster")(io::Error::other(e)))??;
        let cluster = Cluster { options, bin_dir, child: Mutex::new(None), lock: Mutex::new(Some(lock)) };
        let child = cluster.spawn_postmaster(run_as.as_ref())?;
        *cluster.child.lock().unwrap() = Some(child);
        cluster.wait_until_ready().await?;
        tracing::info!(dir = %cluster.options.dir.display(), bin_dir = %cluster.bin_dir.display(), "built-in PostgreSQL started");
        Ok(cluster)
    }

    /// Creates the directories, locks them for this process and, the first
    /// time, creates the cluster itself.
    fn prepare(&self, run_as: Option<&User>) -> Result<DirLock, ClusterError> {
        let dir = &self.options.dir;
        // Parents get the usual permissions, so the postgres user can pass
        // through them; the cluster's own directories are private.
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        }
        for sub in [dir.clone(), self.socket_dir(), self.data_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)
                .map_err(io_err(format!("creating {}", sub.display())))?;
        }
        if let Some(user) = run_as {
            for path in [dir.clone(), self.socket_dir(), self.data_dir()] {
                chown(&path, Some(user.uid), Some(user.gid))
                    .map_err(|e| io_err(format!("handing {} to postgres", path.display()))(e.into()))?;
            }
            if !reachable_by(user, dir) {
                return Err(ClusterError::Unreachable(dir.clone()));
            }
        }
        // Before anything else touches the cluster: another server using it
        // would otherwise have us connect to its PostgreSQL as if to ours.
        let lock = DirLock::acquire(dir)?;

        let wanted = self.binary_version()?;
        let version_file = self.data_dir().join("PG_VERSION");
        match fs::read_to_string(&version_file) {
            Ok(found) if found.trim() == wanted => return Ok(lock),
            Ok(found) => {
                return Err(ClusterError::VersionMismatch {
                    path: self.data_dir(),
                    found: found.trim().to_owned(),
                    wanted,
                    bin_dir: self.bin_dir.clone(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("reading {}", version_file.display()))(e)),
        }

        let mut initdb = self.command("initdb", run_as);
        initdb.arg("--pgdata").arg(self.data_dir()).args([
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ]);
        if !self.options.durable {
            initdb.arg("--no-sync");
        }
        let output = initdb.output().map_err(io_err("running initdb"))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(ClusterError::InitDb(text));
        }
        Ok(lock)
    }

    fn command(&self, program: &str, run_as: Option<&User>) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The postgres user may not be able to enter our working directory.
        cmd.current_dir(&self.options.dir).env_remove("PGDATA");
        if let Some(user) = run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw()).env("HOME", &user.dir);
        }
        cmd
    }

    fn binary_version(&self) -> Result<String, ClusterError> {
        let output = Command::new(self.bin_dir.join("postgres"))
            .arg("--version")
            .output()
            .map_err(io_err("running postgres --version"))?;
        // "postgres (PostgreSQL) 15.18 (Debian ...)" → "15"
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.split_whitespace().nth(2).and_then(|v| v.split('.').next()).unwrap_or_default().to_owned();
        Ok(version)
    }

    fn spawn_postmaster(&self, run_as: Option<&User>) -> Result<Child, ClusterError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .map_err(io_err(format!("opening {}", self.log_file().display())))?;
        let mut cmd = self.command("postgres", run_as);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.socket_dir().display()))
            .args(["-c", "unix_socket_permissions=0700"])
            .args(["-c", &format!("port={PORT}")]);
        if !self.options.durable {
            for setting in ["fsync=off", "synchronous_commit=off", "full_page_writes=off"] {
                cmd.args(["-c", setting]);
            }
        }
        for (name, value) in &self.options.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        let err_log = log.try_clone().map_err(io_err("duplicating the log file"))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err_log);
        // Its own process group: a Ctrl-C in the terminal reaches only us, and
        // we stop PostgreSQL after the server has finished with it.
        cmd.process_group(0);
        let parent = nix::unistd::getpid();
        // SAFETY: only async-signal-safe system calls run between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT)?;
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::other("parent exited before PostgreSQL started"));
                }
                Ok(())
            });
        }
        spawn_from_lasting_thread(cmd).map_err(io_err("starting postgres"))
    }

    async fn wait_until_ready(&self) -> Result<(), ClusterError> {
        let options = self.connect_options("postgres");
        let started = Instant::now();
        loop {
            if let Ok(conn) = options.connect().await {
                // It answered: that was the point; how the probe connection closes does not matter.
                conn.close().await.ok();
                return Ok(());
            }
            let exited = self.child.lock().unwrap().as_mut().map(|c| c.try_wait());
            let failed = matches!(exited, Some(Ok(Some(_))) | Some(Err(_)));
            if failed || started.elapsed() > START_TIMEOUT {
                if !failed {
                    self.kill(Signal::SIGQUIT);
                }
                return Err(ClusterError::Start { log: self.log_file(), tail: tail(&self.log_file()) });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            // ESRCH: it has exited already, which is what the signal was for.
            kill(Pid::from_raw(pid as i32), signal).ok();
        }
    }

    /// Stops the cluster: a fast shutdown (sessions are ended, everything
    /// committed is kept), escalating to immediate if it takes too long.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32);
        for (signal, patience) in [
            (Signal::SIGINT, STOP_TIMEOUT),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            // ESRCH: it has exited already; the wait below sees so.
            kill(pid, signal).ok();
            let deadline = Instant::now() + patience;
            while Instant::now() < deadline {
                if child.try_wait().map_err(io_err("waiting for postgres"))?.is_some() {
                    // The directory is free again, for another process or a restart in this one.
                    self.lock.lock().unwrap().take();
                    tracing::info!(dir = %self.options.dir.display(), "built-in PostgreSQL stopped");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::warn!(?signal, "PostgreSQL did not stop in time; escalating");
        }
        Err(ClusterError::Io { context: "stopping postgres".into(), source: io::Error::other("it would not exit") })
    }
}

/// The directory holding `postgres` and `initdb`: `$WARMSPACE_POSTGRES_BIN_DIR`,
/// else `pg_config --bindir`, else the newest of the usual install locations.
pub fn find_binaries() -> Result<PathBuf, ClusterError> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("WARMSPACE_POSTGRES_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) { Ok(dir) } else { Err(ClusterError::NotInstalled) };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    for (parent, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix).and_then(|v| v.split('.').next()?.parse().ok()) else {
                continue;
            };
            let dir = entry.path().join("bin");
            if has_server(&dir) {
                candidates.push((version, dir));
            }
        }
    }
    let local = PathBuf::from("/usr/local/pgsql/bin");
    if has_server(&local) {
        candidates.push((0, local));
    }
    candidates.into_iter().max().map(|(_, dir)| dir).ok_or(ClusterError::NotInstalled)
}

/// PostgreSQL refuses to run as root; as root we run it as `postgres`.
fn run_as() -> Result<Option<User>, ClusterError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name(SUPERUSER) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(ClusterError::NoPostgresUser),
    }
}

/// Whether `user` can enter `dir` (every ancestor searchable), asked of the
/// kernel by running `test` as that user rather than by re-implementing
/// permission rules.
fn reachable_by(user: &User, dir: &Path) -> bool {
    let Ok(test) = which_test() else { return true };
    Command::new(test)
        .arg("-x")
        .arg(dir)
        .current_dir("/")
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .status()
        .map(|s| s.success())
        .unwrap_or(true)
}

fn which_test() -> Result<&'static str, ()> {
    ["/usr/bin/test", "/bin/test"].into_iter().find(|p| Path::new(p).exists()).ok_or(())
}

/// Spawns `cmd` from a thread that never exits. The parent-death signal fires
/// when the *thread* that forked the child ends, so spawning from a
/// short-lived thread (a test's, or a blocking-pool thread) would kill
/// PostgreSQL as soon as that thread finished.
fn spawn_from_lasting_thread(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // The caller may have stopped waiting; the child is reaped with it then.
                    reply.send(cmd.spawn()).ok();
                }
            })
            .expect("spawning a thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap().send((cmd, reply)).map_err(|_| io::Error::other("spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// The last few KiB of a log file, for error messages.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // The tail of a log for an error message: whatever of it can be read.
        if file.seek(SeekFrom::Start(len.saturating_sub(4096))).is_ok() {
            file.read_to_string(&mut text).ok();
        }
    }
    text
}
