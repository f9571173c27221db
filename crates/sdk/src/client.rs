//! A typed client for the warmspace HTTP API.

mod apps;

use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::SESSION_TOKEN_HEADER;
use crate::types::*;
use crate::types::{AGENT_TOKEN_HEADER, PROVISIONER_KEY_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{response}")]
    Api { status: StatusCode, response: Response },
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
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    base: Url,
    /// The credential header and its value.
    auth: Option<(&'static str, String)>,
    http: reqwest::Client,
}

/// Installs the TLS crypto provider every reqwest client in the process
/// needs: reqwest is built without a bundled one so that the whole tree uses
/// ring. [`Client::new`] calls it; so must any other code that builds a
/// reqwest client first. Installing fails only when a provider is installed
/// already, which is as good.
pub fn install_crypto_provider() {
    rustls::crypto::ring::default_provider().install_default().ok();
}

impl Client {
    pub fn new(base: Url) -> Self {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("warmspace/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default settings always builds");
        Client { base, auth: None, http }
    }

    /// Authenticates as a user with a session or API token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some((SESSION_TOKEN_HEADER, token.into()));
        self
    }

    /// Authenticates as a workspace agent.
    pub fn with_agent_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some((AGENT_TOKEN_HEADER, token.into()));
        self
    }

    /// Authenticates as an external provisioner daemon.
    pub fn with_provisioner_key(mut self, key: impl Into<String>) -> Self {
        self.auth = Some((PROVISIONER_KEY_HEADER, key.into()));
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The session token, when authenticating as a user.
    pub fn token(&self) -> Option<&str> {
        self.auth.as_ref().filter(|(header, _)| *header == SESSION_TOKEN_HEADER).map(|(_, token)| token.as_str())
    }

    /// A request to `path` (relative to the server URL) carrying the session token.
    pub fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        let url = self.base.join(path.trim_start_matches('/'))?;
        let mut req = self.http.request(method, url);
        if let Some((header, value)) = &self.auth {
            req = req.header(*header, value);
        }
        Ok(req)
    }

    async fn send<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            let body = if bytes.is_empty() { b"null".as_slice() } else { &bytes };
            return serde_json::from_slice(body).map_err(|e| ClientError::Unexpected {
                status,
                body: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        Err(error_body(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::send(self.request(Method::GET, path)?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        Self::send(self.request(Method::POST, path)?.json(body)).await
    }

    pub async fn build_info(&self) -> Result<BuildInfo, ClientError> {
        self.get("api/v2/buildinfo").await
    }

    pub async fn first_user_exists(&self) -> Result<bool, ClientError> {
        Ok(self.get::<FirstUserStatus>("api/v2/users/first").await?.exists)
    }

    pub async fn create_first_user(
        &self,
        req: &CreateFirstUserRequest,
    ) -> Result<CreateFirstUserResponse, ClientError> {
        self.post("api/v2/users/first", req).await
    }

    pub async fn login(&self, req: &LoginWithPasswordRequest) -> Result<LoginWithPasswordResponse, ClientError> {
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

    /// Uploads a tar archive; the same bytes always get the same id.
    pub async fn upload_tar(&self, data: Vec<u8>) -> Result<UploadResponse, ClientError> {
        Self::send(self.request(Method::POST, "api/v2/files")?.header("content-type", "application/x-tar").body(data))
            .await
    }

    pub async fn download_file(&self, id: Uuid) -> Result<Vec<u8>, ClientError> {
        self.download(&format!("api/v2/files/{id}")).await
    }

    async fn download(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let resp = self.request(Method::GET, path)?.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(error_body(status, &bytes))
    }

    pub async fn create_template_version(
        &self,
        organization: &str,
        req: &CreateTemplateVersionRequest,
    ) -> Result<TemplateVersion, ClientError> {
        self.post(&format!("api/v2/organizations/{organization}/templateversions"), req).await
    }

    pub async fn template_version(&self, id: Uuid) -> Result<TemplateVersion, ClientError> {
        self.get(&format!("api/v2/templateversions/{id}")).await
    }

    pub async fn template_version_parameters(&self, id: Uuid) -> Result<Vec<TemplateVersionParameter>, ClientError> {
        self.get(&format!("api/v2/templateversions/{id}/parameters")).await
    }

    pub async fn template_version_presets(&self, id: Uuid) -> Result<Vec<Preset>, ClientError> {
        self.get(&format!("api/v2/templateversions/{id}/presets")).await
    }

    pub async fn cancel_template_version(&self, id: Uuid) -> Result<Response, ClientError> {
        Self::send(self.request(Method::PATCH, &format!("api/v2/templateversions/{id}/cancel"))?).await
    }

    /// A template version's import log so far.
    pub async fn template_version_logs(&self, id: Uuid) -> Result<Vec<ProvisionerJobLog>, ClientError> {
        self.get(&format!("api/v2/templateversions/{id}/logs")).await
    }

    /// Follows a template version's import log until the import ends.
    pub async fn follow_template_version_logs(
        &self,
        id: Uuid,
    ) -> Result<impl Stream<Item = Result<LogEvent, ClientError>> + use<>, ClientError> {
        self.follow_logs(&format!("api/v2/templateversions/{id}/logs?follow=true")).await
    }

    async fn follow_logs(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<LogEvent, ClientError>> + use<>, ClientError> {
        use eventsource_stream::Eventsource;
        let resp = self.request(Method::GET, path)?.header("accept", "text/event-stream").send().await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(error_body(status, &resp.bytes().await?));
        }
        Ok(resp.bytes_stream().eventsource().filter_map(|event| async move {
            let unexpected = |body: String| ClientError::Unexpected { status: StatusCode::OK, body };
            match event {
                Err(err) => Some(Err(unexpected(format!("the log stream broke: {err}")))),
                Ok(event) => match event.event.as_str() {
                    "log" => Some(
                        serde_json::from_str(&event.data).map(LogEvent::Log).map_err(|e| unexpected(e.to_string())),
                    ),
                    "end" => Some(
                        serde_json::from_str(&event.data).map(LogEvent::End).map_err(|e| unexpected(e.to_string())),
                    ),
                    _ => None,
                },
            }
        }))
    }

    pub async fn create_template(
        &self,
        organization: &str,
        req: &CreateTemplateRequest,
    ) -> Result<Template, ClientError> {
        self.post(&format!("api/v2/organizations/{organization}/templates"), req).await
    }

    pub async fn templates(&self, organization: &str) -> Result<Vec<Template>, ClientError> {
        self.get(&format!("api/v2/organizations/{organization}/templates")).await
    }

    pub async fn template_by_name(&self, organization: &str, name: &str) -> Result<Template, ClientError> {
        self.get(&format!("api/v2/organizations/{organization}/templates/{name}")).await
    }

    pub async fn template(&self, id: Uuid) -> Result<Template, ClientError> {
        self.get(&format!("api/v2/templates/{id}")).await
    }

    pub async fn update_template(&self, id: Uuid, req: &UpdateTemplateRequest) -> Result<Template, ClientError> {
        Self::send(self.request(Method::PATCH, &format!("api/v2/templates/{id}"))?.json(req)).await
    }

    pub async fn delete_template(&self, id: Uuid) -> Result<Response, ClientError> {
        Self::send(self.request(Method::DELETE, &format!("api/v2/templates/{id}"))?).await
    }

    pub async fn template_versions(&self, template_id: Uuid) -> Result<Vec<TemplateVersion>, ClientError> {
        self.get(&format!("api/v2/templates/{template_id}/versions")).await
    }

    pub async fn set_active_version(&self, template_id: Uuid, version_id: Uuid) -> Result<Template, ClientError> {
        let req = UpdateActiveVersionRequest { id: version_id };
        Self::send(self.request(Method::PATCH, &format!("api/v2/templates/{template_id}/versions"))?.json(&req)).await
    }

    pub async fn create_workspace(&self, user: &str, req: &CreateWorkspaceRequest) -> Result<Workspace, ClientError> {
        self.post(&format!("api/v2/users/{user}/workspaces"), req).await
    }

    pub async fn workspaces(&self, query: &WorkspacesQuery) -> Result<WorkspacesResponse, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/workspaces")?.query(query)).await
    }

    pub async fn workspace(&self, id: Uuid) -> Result<Workspace, ClientError> {
        self.get(&format!("api/v2/workspaces/{id}")).await
    }

    /// `user` is a username, a user id, or `me`.
    pub async fn workspace_by_name(&self, user: &str, name: &str) -> Result<Workspace, ClientError> {
        self.get(&format!("api/v2/users/{user}/workspace/{name}")).await
    }

    pub async fn set_workspace_ttl(&self, id: Uuid, ttl_ms: Option<i64>) -> Result<Workspace, ClientError> {
        let req = UpdateWorkspaceTtlRequest { ttl_ms };
        Self::send(self.request(Method::PUT, &format!("api/v2/workspaces/{id}/ttl"))?.json(&req)).await
    }

    pub async fn set_workspace_autostart(&self, id: Uuid, schedule: Option<String>) -> Result<Workspace, ClientError> {
        let req = UpdateWorkspaceAutostartRequest { schedule };
        Self::send(self.request(Method::PUT, &format!("api/v2/workspaces/{id}/autostart"))?.json(&req)).await
    }

    /// Sets the zone `user`'s schedules are read in (`user`: a username, an id, or `me`).
    pub async fn set_user_timezone(&self, user: &str, timezone: &str) -> Result<User, ClientError> {
        let req = UpdateUserTimezoneRequest { timezone: timezone.to_owned() };
        Self::send(self.request(Method::PUT, &format!("api/v2/users/{user}/timezone"))?.json(&req)).await
    }

    /// Suspends a user (owners only): they can no longer sign in or use a session.
    pub async fn suspend_user(&self, user: &str) -> Result<User, ClientError> {
        Self::send(self.request(Method::PUT, &format!("api/v2/users/{user}/status/suspend"))?).await
    }

    /// Reactivates a suspended user (owners only).
    pub async fn activate_user(&self, user: &str) -> Result<User, ClientError> {
        Self::send(self.request(Method::PUT, &format!("api/v2/users/{user}/status/activate"))?).await
    }

    /// Replaces a user's site roles (owners only).
    pub async fn set_user_roles(&self, user: &str, roles: &[Role]) -> Result<User, ClientError> {
        let req = UpdateRolesRequest { roles: roles.to_vec() };
        Self::send(self.request(Method::PUT, &format!("api/v2/users/{user}/roles"))?.json(&req)).await
    }

    /// Moves a running workspace's deadline to `duration_ms` from now.
    pub async fn extend_workspace(&self, id: Uuid, duration_ms: i64) -> Result<Workspace, ClientError> {
        let req = ExtendWorkspaceRequest { duration_ms };
        Self::send(self.request(Method::PUT, &format!("api/v2/workspaces/{id}/extend"))?.json(&req)).await
    }

    /// Marks a workspace dormant, or (`false`) wakes it.
    pub async fn set_workspace_dormant(&self, id: Uuid, dormant: bool) -> Result<Workspace, ClientError> {
        let req = UpdateWorkspaceDormancyRequest { dormant };
        Self::send(self.request(Method::PUT, &format!("api/v2/workspaces/{id}/dormant"))?.json(&req)).await
    }

    pub async fn create_build(
        &self,
        workspace_id: Uuid,
        req: &CreateWorkspaceBuildRequest,
    ) -> Result<WorkspaceBuild, ClientError> {
        self.post(&format!("api/v2/workspaces/{workspace_id}/builds"), req).await
    }

    pub async fn builds(&self, workspace_id: Uuid) -> Result<Vec<WorkspaceBuild>, ClientError> {
        self.get(&format!("api/v2/workspaces/{workspace_id}/builds")).await
    }

    pub async fn build(&self, id: Uuid) -> Result<WorkspaceBuild, ClientError> {
        self.get(&format!("api/v2/workspacebuilds/{id}")).await
    }

    /// How long the build's stages and each resource took.
    pub async fn build_timings(&self, id: Uuid) -> Result<Vec<BuildTiming>, ClientError> {
        self.get(&format!("api/v2/workspacebuilds/{id}/timings")).await
    }

    pub async fn build_logs(&self, id: Uuid) -> Result<Vec<ProvisionerJobLog>, ClientError> {
        self.get(&format!("api/v2/workspacebuilds/{id}/logs")).await
    }

    /// Follows a build's log until the build ends.
    pub async fn follow_build_logs(
        &self,
        id: Uuid,
    ) -> Result<impl Stream<Item = Result<LogEvent, ClientError>> + use<>, ClientError> {
        self.follow_logs(&format!("api/v2/workspacebuilds/{id}/logs?follow=true")).await
    }

    pub async fn cancel_build(&self, id: Uuid) -> Result<Response, ClientError> {
        Self::send(self.request(Method::PATCH, &format!("api/v2/workspacebuilds/{id}/cancel"))?).await
    }

    pub async fn create_provisioner_key(&self, name: &str) -> Result<CreateProvisionerKeyResponse, ClientError> {
        self.post("api/v2/provisionerkeys", &CreateProvisionerKeyRequest { name: name.to_owned() }).await
    }

    pub async fn provisioner_keys(&self) -> Result<Vec<ProvisionerKey>, ClientError> {
        self.get("api/v2/provisionerkeys").await
    }

    pub async fn delete_provisioner_key(&self, name: &str) -> Result<Response, ClientError> {
        Self::send(self.request(Method::DELETE, &format!("api/v2/provisionerkeys/{name}"))?).await
    }

    /// The provisioner daemons, most recently seen first.
    pub async fn provisioner_daemons(&self) -> Result<Vec<ProvisionerDaemon>, ClientError> {
        self.get("api/v2/provisionerdaemons").await
    }

    /// An agent's log, for whoever may read its workspace.
    pub async fn agent_logs(&self, agent_id: Uuid) -> Result<Vec<WorkspaceAgentLog>, ClientError> {
        self.get(&format!("api/v2/workspaceagents/{agent_id}/logs")).await
    }

    pub async fn prebuilds_status(&self) -> Result<PrebuildsStatus, ClientError> {
        self.get("api/v2/prebuilds/status").await
    }

    pub async fn claim_stats(&self, query: &ClaimStatsQuery) -> Result<Vec<ClaimStats>, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/prebuilds/claims")?.query(query)).await
    }

    /// What each pool gave and cost over a window (see [`PrebuildInsightsQuery`]).
    pub async fn prebuild_insights(&self, query: &PrebuildInsightsQuery) -> Result<PrebuildInsights, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/prebuilds/insights")?.query(query)).await
    }

    pub async fn prebuild_settings(&self) -> Result<PrebuildSettings, ClientError> {
        self.get("api/v2/prebuilds/settings").await
    }

    pub async fn set_prebuild_settings(&self, settings: &PrebuildSettings) -> Result<PrebuildSettings, ClientError> {
        Self::send(self.request(Method::PUT, "api/v2/prebuilds/settings")?.json(settings)).await
    }

    pub async fn invalidate_presets(
        &self,
        template_id: Uuid,
        req: &InvalidatePresetsRequest,
    ) -> Result<InvalidatePresetsResponse, ClientError> {
        self.post(&format!("api/v2/templates/{template_id}/prebuilds/invalidate"), req).await
    }

    /// The caller's inbox, newest first, with their unread count.
    pub async fn notifications(&self, query: &NotificationsQuery) -> Result<NotificationsResponse, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/notifications/inbox")?.query(query)).await
    }

    pub async fn mark_notification_read(&self, id: Uuid) -> Result<Response, ClientError> {
        Self::send(self.request(Method::PUT, &format!("api/v2/notifications/inbox/{id}/read"))?).await
    }

    pub async fn mark_all_notifications_read(&self) -> Result<MarkAllNotificationsReadResponse, ClientError> {
        Self::send(self.request(Method::PUT, "api/v2/notifications/inbox/read-all")?).await
    }

    /// The caller's new notifications, as they arrive, until the server ends
    /// the stream (it does when shutting down).
    pub async fn watch_notifications(
        &self,
    ) -> Result<impl Stream<Item = Result<Notification, ClientError>> + use<>, ClientError> {
        use eventsource_stream::Eventsource;
        let resp = self
            .request(Method::GET, "api/v2/notifications/inbox/watch")?
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(error_body(status, &resp.bytes().await?));
        }
        Ok(resp.bytes_stream().eventsource().filter_map(|event| async move {
            let unexpected = |body: String| ClientError::Unexpected { status: StatusCode::OK, body };
            match event {
                Err(err) => Some(Err(unexpected(format!("the inbox stream broke: {err}")))),
                Ok(event) if event.event == "notification" => {
                    Some(serde_json::from_str(&event.data).map_err(|e| unexpected(e.to_string())))
                }
                // Keep-alives and kinds of event this client does not know.
                Ok(_) => None,
            }
        }))
    }

    // The agent protocol (authenticated with an agent token).

    pub async fn agent_manifest(&self) -> Result<AgentManifest, ClientError> {
        self.get("api/v2/workspaceagents/me/manifest").await
    }

    pub async fn agent_lifecycle(&self, state: AgentLifecycle) -> Result<Response, ClientError> {
        self.post("api/v2/workspaceagents/me/lifecycle", &AgentLifecycleRequest { state }).await
    }

    pub async fn agent_heartbeat(&self, serving_owner_id: Option<Uuid>) -> Result<AgentHeartbeatResponse, ClientError> {
        self.agent_heartbeat_with_sessions(serving_owner_id, 0).await
    }

    /// A heartbeat telling of `sessions` open sessions (any is use of the workspace).
    pub async fn agent_heartbeat_with_sessions(
        &self,
        serving_owner_id: Option<Uuid>,
        sessions: u32,
    ) -> Result<AgentHeartbeatResponse, ClientError> {
        self.post("api/v2/workspaceagents/me/heartbeat", &AgentHeartbeatRequest { serving_owner_id, sessions }).await
    }

    pub async fn agent_disconnect(&self) -> Result<Response, ClientError> {
        self.post("api/v2/workspaceagents/me/disconnect", &()).await
    }

    pub async fn append_agent_logs(&self, logs: &[AgentLogLine]) -> Result<Response, ClientError> {
        self.post("api/v2/workspaceagents/me/logs", &logs).await
    }

    /// Opens the re-init stream, telling the server which owner the agent
    /// serves. The response is `text/event-stream` (`reinit` events) on 200;
    /// 409 means a regular workspace (stop asking), 204 nothing left to do.
    pub async fn agent_reinit(&self, serving_owner_id: Uuid) -> Result<reqwest::Response, ClientError> {
        Ok(self
            .request(Method::GET, &format!("api/v2/workspaceagents/me/reinit?owner_id={serving_owner_id}"))?
            .header("accept", "text/event-stream")
            .send()
            .await?)
    }

    /// Opens the agent's tunnel (see [`crate::tunnel`]): an upgraded
    /// connection over which the server opens streams to the agent.
    pub async fn agent_tunnel(&self) -> Result<reqwest::Upgraded, ClientError> {
        self.upgrade(self.request(Method::GET, "api/v2/workspaceagents/me/tunnel")?).await
    }

    // Connections to workspaces (SSH, forwarded ports), through the agent's tunnel.

    /// A byte stream to `port` on the loopback of a workspace's agent
    /// (`port: None` is the agent's SSH server).
    pub async fn connect_workspace(
        &self,
        workspace_id: Uuid,
        query: &ConnectQuery,
    ) -> Result<reqwest::Upgraded, ClientError> {
        self.upgrade(self.request(Method::GET, &format!("api/v2/workspaces/{workspace_id}/connect"))?.query(query))
            .await
    }

    /// The connection log, newest first, with the total count of what the filters match.
    pub async fn connection_log(&self, query: &ConnectionLogQuery) -> Result<ConnectionLogPage, ClientError> {
        Self::send(self.request(Method::GET, "api/v2/connectionlog")?.query(query)).await
    }

    /// Reports how an SSH session on a connection ended (agent token).
    pub async fn agent_connection_exit(&self, connection_id: Uuid, exit_code: i32) -> Result<Response, ClientError> {
        self.post(
            &format!("api/v2/workspaceagents/me/connections/{connection_id}"),
            &AgentConnectionReport { exit_code },
        )
        .await
    }

    /// Between replicas: a stream to an agent whose tunnel the replica at
    /// this client's URL holds, proven by the tunnel's secret.
    pub async fn relay_stream(
        &self,
        agent_id: Uuid,
        secret: &str,
        header: &crate::tunnel::StreamHeader,
    ) -> Result<reqwest::Upgraded, ClientError> {
        let path = format!("api/v2/workspaceagents/{agent_id}/relay");
        self.upgrade(self.request(Method::GET, &path)?.header(crate::tunnel::RELAY_SECRET_HEADER, secret).query(header))
            .await
    }

    /// Asks for an HTTP/1.1 upgrade to the tunnel protocol; the upgraded
    /// byte stream when the server agrees, its error otherwise.
    pub async fn upgrade(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Upgraded, ClientError> {
        let resp = request
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, crate::tunnel::PROTOCOL)
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_body(status, &resp.bytes().await?));
        }
        Ok(resp.upgrade().await?)
    }

    // The daemon protocol, for external provisioner daemons (authenticated with a key).

    /// Takes the next job this daemon may run; `None` when there is none.
    pub async fn acquire_job(&self, worker: &DaemonWorker) -> Result<Option<AcquiredJobResponse>, ClientError> {
        self.post("api/v2/provisionerdaemons/acquire", worker).await
    }

    /// A response streaming an event whenever a job is posted.
    pub async fn job_posted_events(&self) -> Result<reqwest::Response, ClientError> {
        let resp = self.request(Method::GET, "api/v2/provisionerdaemons/events")?.send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(error_body(status, &resp.bytes().await?));
        }
        Ok(resp)
    }

    pub async fn daemon_file(&self, id: Uuid) -> Result<Vec<u8>, ClientError> {
        self.download(&format!("api/v2/provisionerdaemons/files/{id}")).await
    }

    pub async fn heartbeat_job(&self, job_id: Uuid, worker_id: Uuid) -> Result<HeartbeatResponse, ClientError> {
        self.post(&format!("api/v2/provisionerdaemons/jobs/{job_id}/heartbeat"), &HeartbeatRequest { worker_id }).await
    }

    /// Appends lines to the log of a job `worker_id` holds.
    pub async fn append_job_logs(&self, job_id: Uuid, req: &AppendJobLogsRequest) -> Result<Response, ClientError> {
        self.post(&format!("api/v2/provisionerdaemons/jobs/{job_id}/logs"), req).await
    }

    pub async fn complete_job(&self, job_id: Uuid, req: &CompleteJobRequest) -> Result<Response, ClientError> {
        self.post(&format!("api/v2/provisionerdaemons/jobs/{job_id}/complete"), req).await
    }

    pub async fn provisioner_jobs(
        &self,
        organization: &str,
        query: &JobsQuery,
    ) -> Result<Vec<ProvisionerJob>, ClientError> {
        Self::send(
            self.request(Method::GET, &format!("api/v2/organizations/{organization}/provisionerjobs"))?.query(query),
        )
        .await
    }
}

/// The error an unsuccessful response carries.
fn error_body(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<Response>(bytes) {
        Ok(response) => ClientError::Api { status, response },
        Err(_) => ClientError::Unexpected { status, body: String::from_utf8_lossy(bytes).into_owned() },
    }
}

/// An event of a followed job log.
#[derive(Debug, Clone)]
pub enum LogEvent {
    Log(ProvisionerJobLog),
    /// The job has ended; no more lines follow.
    End(Box<ProvisionerJob>),
}
