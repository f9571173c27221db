//! The test harness: one PostgreSQL cluster per test process — the built-in
//! one, or the server at `WARMSPACE_TEST_POSTGRES_URL` — and a fresh database
//! per test, cloned from a migrated template database so no test migrates.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;
use url::Url;
use uuid::Uuid;

use crate::embedded::{Cluster, ClusterOptions};
use crate::{MIGRATOR, Store};

/// Where the test databases live, shared by all tests of this process.
struct Server {
    /// A URL to the maintenance database, as superuser.
    admin_url: Url,
    template: String,
    /// Kept so the cluster outlives every test; it stops when the process exits.
    _cluster: Option<Cluster>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// The `application_name` of the harness's own connections to a test database.
pub const HARNESS_APPLICATION: &str = "test-harness";

/// A database of its own for one test, dropped when this value is.
pub struct TestDatabase {
    name: String,
    url: Url,
    admin_url: Url,
    pool: OnceCell<sqlx::PgPool>,
}

impl TestDatabase {
    /// Creates a fresh, migrated database. Panics if PostgreSQL is unavailable:
    /// a test without its database cannot say anything useful.
    pub async fn new() -> TestDatabase {
        Self::create(true).await
    }

    /// A database with no schema at all, for testing migrations themselves.
    pub async fn empty() -> TestDatabase {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> TestDatabase {
        let server = SERVER.get_or_init(start_server).await;
        let name = format!("warmspace_test_{}", Uuid::new_v4().simple());
        let template = if migrated { server.template.as_str() } else { "template0" };
        let mut admin = connect(&server.admin_url).await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        admin.close().await.ok();
        TestDatabase {
            url: with_database(&server.admin_url, &name),
            name,
            admin_url: server.admin_url.clone(),
            pool: OnceCell::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL other processes (a server under test) can connect with.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.url.as_str()).expect("a URL we built parses")
    }

    /// The options of the test's own connections ([`TestDatabase::pool`],
    /// [`TestDatabase::store`]), named [`HARNESS_APPLICATION`] so that a
    /// test counting a server's connections can leave them out.
    fn harness_options(&self) -> PgConnectOptions {
        self.options().application_name(HARNESS_APPLICATION)
    }

    /// A raw connection pool, for tests that set up or inspect rows
    /// directly: one per database, made on first use and shared by clones.
    pub async fn pool(&self) -> sqlx::PgPool {
        self.pool
            .get_or_init(|| async {
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(5)
                    .connect_with(self.harness_options())
                    .await
                    .expect("connecting to the test database")
            })
            .await
            .clone()
    }

    pub async fn store(&self) -> Store {
        Store::connect(self.harness_options(), 5).await.expect("connecting to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run outside any runtime (or inside one we must not block),
        // so the DROP DATABASE gets a thread and a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = PgConnectOptions::from_str(admin_url.as_str()).ok()?.connect().await.ok()?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        });
        // A database left behind is dropped with its cluster; nothing to do about it here.
        if dropped.join().is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn connect(url: &Url) -> PgConnection {
    PgConnectOptions::from_str(url.as_str())
        .expect("a valid PostgreSQL URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL at {url}: {e}"))
}

fn with_database(url: &Url, database: &str) -> Url {
    let mut url = url.clone();
    url.set_path(&format!("/{database}"));
    url
}

async fn start_server() -> Server {
    let (admin_url, cluster) = match std::env::var("WARMSPACE_TEST_POSTGRES_URL") {
        Ok(url) => (Url::parse(&url).expect("WARMSPACE_TEST_POSTGRES_URL is not a URL"), None),
        Err(_) => {
            let dir = test_cluster_dir();
            let mut options = ClusterOptions::new(&dir);
            options.durable = false;
            options.settings.push(("max_connections".into(), "500".into()));
            let cluster = Cluster::start(options).await.unwrap_or_else(|e| panic!("starting the test PostgreSQL: {e}"));
            (Url::parse(&cluster.url("postgres")).expect("cluster URL"), Some(cluster))
        }
    };
    let template = ensure_template(&admin_url).await;
    Server { admin_url, template, _cluster: cluster }
}

/// The migrated template, named after the migrations' checksums so that a
/// shared server keeps one template per schema and never a stale one.
async fn ensure_template(admin_url: &Url) -> String {
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATOR.iter() {
        for byte in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
            digest = (digest ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let template = format!("warmspace_template_{digest:016x}");
    let mut admin = connect(admin_url).await;
    // Test processes sharing one server take turns creating it.
    sqlx::query("SELECT pg_advisory_lock(hashtext('warmspace.test_template'))").execute(&mut admin).await.unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {building}"))).execute(&mut admin).await.unwrap();
        let mut conn = connect(&with_database(admin_url, &building)).await;
        MIGRATOR.run(&mut conn).await.expect("migrating the template database");
        conn.close().await.unwrap();
        // Renamed only once complete, so a crash mid-migration leaves no usable-looking template.
        sqlx::query(AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {template}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.ok();
    template
}

/// A directory for this process's cluster under the system temp dir (short,
/// for the socket path, and reachable by the `postgres` user when we are
/// root). Directories left by earlier runs whose process is gone are removed.
fn test_cluster_dir() -> PathBuf {
    let base = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("warmspace-test-pg-").and_then(|p| p.parse::<i32>().ok())
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            {
                // Best effort: another process may be cleaning up the same directory.
                std::fs::remove_dir_all(entry.path()).ok();
            }
        }
    }
    base.join(format!("warmspace-test-pg-{}", std::process::id()))
}

/// A temporary directory the built-in PostgreSQL can use: when tests run as
/// root the cluster runs as `postgres`, which must be able to enter it.
pub fn cluster_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("warmspace-").tempdir().expect("creating a temp dir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("opening the temp dir to postgres");
    dir
}
