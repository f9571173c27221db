//! A real server on a fresh database, for tests: it listens on an ephemeral
//! loopback port and is driven through the same typed client the CLI uses.

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;
use warmspace_sdk::{Client, CreateFirstUserRequest, CreateUserRequest, LoginWithPasswordRequest, Role};
use warmspace_store::Store;
use warmspace_store::pubsub::PubSub;
use warmspace_store::testing::TestDatabase;

use crate::provisioning::Daemons;
use crate::reconciler::Reconciler;
use crate::{AppState, Config};

pub const OWNER_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub store: Store,
    pub pubsub: PubSub,
    pub url: Url,
    pub reconciler: Reconciler,
    stop: Option<oneshot::Sender<()>>,
    /// Dropping them aborts their tasks.
    _daemons: Daemons,
    _stop_reconciler: tokio::sync::watch::Sender<bool>,
    // Last, so the database is dropped after the server has stopped.
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
    pub async fn start_full(config: Config, daemons: usize, run_reconciler: bool) -> TestServer {
        let db = TestDatabase::new().await;
        let store = db.store().await;
        let pubsub = PubSub::start(db.options(), store.pool().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = Config { access_url: url.as_str().trim_end_matches('/').to_owned(), ..config };
        let state = AppState::new(store.clone(), pubsub.clone(), config);
        let binary = std::env::current_exe().expect("the test binary's path");
        let daemons = Daemons::start(state.coordinator.clone(), daemons, binary);
        let (stop_reconciler, reconciler_stopped) = tokio::sync::watch::channel(false);
        if run_reconciler {
            state.reconciler.clone().spawn(reconciler_stopped);
        }
        let reconciler = state.reconciler.clone();
        tokio::spawn(crate::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestServer {
            store,
            pubsub,
            url,
            reconciler,
            stop: Some(stop),
            _daemons: daemons,
            _stop_reconciler: stop_reconciler,
            db,
        }
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
            let _ = stop.send(());
        }
    }
}
