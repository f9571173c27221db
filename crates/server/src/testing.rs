//! A real server on a fresh database, for tests: built by the same
//! [`Server::start`] as `warmspace server`, listening on an ephemeral
//! loopback port, and driven through the same typed client the CLI uses.

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;
use warmspace_sdk::{Client, CreateFirstUserRequest, CreateUserRequest, LoginWithPasswordRequest, Role};
use warmspace_store::testing::TestDatabase;
use warmspace_store::{Clock, Store};

use crate::domain::Domain;
use crate::lifecycle::LifecycleExecutor;
use crate::reconciler::Reconciler;
use crate::{Config, Database, Server};

pub const OWNER_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub url: Url,
    /// Where `/metrics` is served: `url`, unless the configuration gives it
    /// a listener of its own.
    pub metrics_url: Url,
    /// The server's own domain layer, for tests that act on it directly.
    pub domain: Domain,
    pub reconciler: Reconciler,
    /// The lifecycle executor: tick it with `server.lifecycle.tick()` (its
    /// background loop is off unless the config turns it on).
    pub lifecycle: LifecycleExecutor,
    /// The server's clock: advance it to see what happens later.
    pub clock: Clock,
    /// A store of the test's own on the same database, for setting up and checking rows.
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    // Last, so the database is dropped after the server has been told to stop.
    pub db: TestDatabase,
}

impl TestServer {
    /// A server with two in-process provisioner daemons.
    pub async fn start() -> TestServer {
        Self::start_with(Config::default(), 2).await
    }

    pub async fn start_with(config: Config, daemons: usize) -> TestServer {
        Self::start_full(config, daemons, true).await
    }

    /// `run_reconciler: false` leaves cycles to the test (`server.reconciler.run_cycle()`).
    pub async fn start_full(mut config: Config, daemons: usize, run_reconciler: bool) -> TestServer {
        // Tests also reach the server with plain reqwest clients, which need
        // the provider an SDK client would otherwise have installed first.
        warmspace_sdk::install_crypto_provider();
        let db = TestDatabase::new().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        config.database = Database::External(Box::new(db.options()));
        config.provisioner_daemons = daemons;
        config.reconciler.background = run_reconciler;
        // Scripts that start an agent get the test binary; tests that need a
        // real agent run the real `warmspace` binary instead.
        config.binary = std::env::current_exe().expect("the test binary's path");
        let clock = config.clock.clone();
        let server = Server::start(config, Some(listener)).await.expect("starting the server");
        let metrics_url = Url::parse(&format!("http://{}/", server.metrics_addr().unwrap())).unwrap();
        let (domain, reconciler) = (server.domain().clone(), server.reconciler().clone());
        let lifecycle = server.lifecycle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                // Dropped or sent: either way the test is done with the server.
                stopped.await.ok();
            };
            if let Err(err) = server.serve(shutdown).await {
                tracing::warn!(error = %err, "test server stopped with an error");
            }
        });
        let store = db.store().await.with_clock(clock.clone());
        TestServer { url, metrics_url, domain, reconciler, lifecycle, clock, store, stop: Some(stop), db }
    }

    /// A client with no session.
    pub fn client(&self) -> Client {
        Client::new(self.url.clone())
    }

    /// Creates the first user (an owner, `admin`) and returns a client logged in as them.
    pub async fn owner(&self) -> Client {
        let anonymous = self.client();
        anonymous
            .create_first_user(&CreateFirstUserRequest {
                username: "admin".into(),
                email: OWNER_EMAIL.into(),
                password: PASSWORD.into(),
                name: "Admin".into(),
            })
            .await
            .expect("creating the first user");
        self.login(OWNER_EMAIL).await
    }

    pub async fn login(&self, email: &str) -> Client {
        let session = self
            .client()
            .login(&LoginWithPasswordRequest { email: email.into(), password: PASSWORD.into() })
            .await
            .expect("logging in");
        self.client().with_token(session.session_token)
    }

    /// Creates a user with `roles` through `owner` and returns a client logged in as them.
    pub async fn user(&self, owner: &Client, username: &str, roles: &[Role]) -> Client {
        let email = format!("{username}@example.com");
        owner
            .create_user(&CreateUserRequest {
                username: username.into(),
                email: email.clone(),
                name: String::new(),
                password: Some(PASSWORD.into()),
                login_type: Default::default(),
                roles: roles.to_vec(),
                status: Default::default(),
            })
            .await
            .expect("creating a user");
        self.login(&email).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may have stopped already; nothing more to tell it.
            stop.send(()).ok();
        }
    }
}
