//! A typed client for the warmspace HTTP API.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::SESSION_TOKEN_HEADER;
use crate::types::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{response}")]
    Api {
        status: StatusCode,
        response: Response,
    },
    /// The server answered something that is not the API's JSON.
    #[error("unexpected {status} response from the server: {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("could not reach the server")]
    Transport(#[from] reqwest::Error),
    #[error("invalid server URL")]
    Url(#[from] url::ParseError),
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: Url) -> Self {
        // reqwest is built without a bundled crypto provider so that the whole
        // tree uses ring; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("warmspace/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default settings always builds");
        Client {
            base,
            token: None,
            http,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A request to `path` (relative to the server URL) carrying the session token.
    pub fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let url = self.base.join(path.trim_start_matches('/'))?;
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.header(SESSION_TOKEN_HEADER, token);
        }
        Ok(req)
    }

    async fn send<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            let body = if bytes.is_empty() {
                b"null".as_slice()
            } else {
                &bytes
            };
            return serde_json::from_slice(body).map_err(|e| ClientError::Unexpected {
                status,
                body: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        match serde_json::from_slice::<Response>(&bytes) {
            Ok(response) => Err(ClientError::Api { status, response }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::send(self.request(Method::GET, path)?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::send(self.request(Method::POST, path)?.json(body)).await
    }

    pub async fn build_info(&self) -> Result<BuildInfo, ClientError> {
        self.get("api/v2/buildinfo").await
    }

    pub async fn first_user_exists(&self) -> Result<bool, ClientError> {
        Ok(self
            .get::<FirstUserStatus>("api/v2/users/first")
            .await?
            .exists)
    }

    pub async fn create_first_user(
        &self,
        req: &CreateFirstUserRequest,
    ) -> Result<CreateFirstUserResponse, ClientError> {
        self.post("api/v2/users/first", req).await
    }

    pub async fn login(
        &self,
        req: &LoginWithPasswordRequest,
    ) -> Result<LoginWithPasswordResponse, ClientError> {
        self.post("api/v2/users/login", req).await
    }

    pub async fn logout(&self) -> Result<Response, ClientError> {
        self.post("api/v2/users/logout", &()).await
    }

    /// `user` is a username, a user id, or `me`.
    pub async fn user(&self, user: &str) -> Result<User, ClientError> {
        self.get(&format!("api/v2/users/{user}")).await
    }

    pub async fn create_user(&self, req: &CreateUserRequest) -> Result<User, ClientError> {
        self.post("api/v2/users", req).await
    }

    pub async fn users(&self, query: &UsersQuery) -> Result<GetUsersResponse, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/users")?.query(query)).await
    }
}
