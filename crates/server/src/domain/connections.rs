//! People's connections to workspaces (SSH, forwarded ports, apps) through
//! the agents' tunnels, and the connection log recording each of them.
//!
//! Who may connect: the workspace's owner; deployment owners too when the
//! server allows it (`--allow-owner-ssh`); nobody to an unclaimed prebuild.
//! The replica a client reaches authorises it and writes the log entry;
//! the stream then goes to the agent's tunnel, held by this replica or by
//! the one `agent_tunnels` names, which this replica dials (a relay).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;
use warmspace_authz::Role;
use warmspace_sdk::tunnel::{Opener, StreamHeader};
use warmspace_sdk::{
    Client, ConnectQuery, ConnectionLogEntry, ConnectionLogPage, ConnectionLogQuery, ConnectionStatus, ConnectionType,
    DevcontainerState, Transition, Workspace, WorkspaceAgent, WorkspaceDevcontainer, WorkspaceStatus,
};
use warmspace_store::connections::{AppSessionKey, ConnectionFilter, ConnectionParties, ConnectionRow, NewConnection};
use warmspace_store::workspaces::PREBUILDS_USER_ID;

pub use super::app_target::{AppAddress, AppTarget};
use super::{Actor, AgentAuth, Domain, Error, Found, Result};
use crate::tunnels::new_secret;

/// A byte stream to an agent: a tunnel stream, or a relay through the replica holding the tunnel.
pub trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentStream for T {}

/// A client's connection, opened to the agent and recorded.
pub struct Connection {
    /// Its connection log entry: close it with [`Domain::connection_closed`].
    pub id: Uuid,
    pub stream: Box<dyn AgentStream>,
}

/// How long after a request to an app the person's next request to it
/// still belongs to the same connection log entry.
pub const APP_SESSION_IDLE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A request's way to a workspace app, opened and recorded.
pub struct AppConnection {
    /// Its connection log entry: end it with [`Domain::app_connection_ended`].
    pub id: Uuid,
    /// To the app's port inside the workspace.
    pub stream: Box<dyn AgentStream>,
    pub target: AppTarget,
}

/// An agent tunnel this replica holds; give it back with [`Domain::release_tunnel`].
pub struct TunnelLease {
    agent_id: Uuid,
    secret: String,
}

impl Domain {
    /// Holds an agent's new tunnel here and records so for the other replicas.
    pub async fn hold_tunnel(&self, auth: &AgentAuth, opener: Opener) -> Result<TunnelLease> {
        let secret = new_secret();
        self.store.hold_tunnel(auth.agent_id, self.replica_id, &self.config.relay_url, &secret).await?;
        self.tunnels.hold(auth.agent_id, opener, secret.clone());
        tracing::info!(agent_id = %auth.agent_id, "an agent's tunnel opened");
        Ok(TunnelLease { agent_id: auth.agent_id, secret })
    }

    /// Lets go of a tunnel that closed (unless the agent has opened a newer one).
    pub async fn release_tunnel(&self, lease: TunnelLease) {
        self.tunnels.release(lease.agent_id, &lease.secret);
        if let Err(err) = self.store.release_tunnel(lease.agent_id, &lease.secret).await {
            // A stale row only makes another replica's relay attempt fail, and the next tunnel replaces it.
            tracing::warn!(error = %err, agent_id = %lease.agent_id, "cannot forget a closed tunnel");
        }
        tracing::info!(agent_id = %lease.agent_id, "an agent's tunnel closed");
    }

    /// Opens a connection to a workspace for `actor`, from `client_address`:
    /// checks who may, records it, and opens the stream to the agent.
    pub async fn connect(
        &self,
        actor: &Actor,
        workspace_id: Uuid,
        query: ConnectQuery,
        client_address: String,
    ) -> Result<Connection> {
        let port = match (query.kind, query.port) {
            (ConnectionType::Ssh, None) => None,
            (ConnectionType::Ssh, Some(_)) => return Err(Error::field("port", "is only for type port_forward")),
            (ConnectionType::PortForward, Some(0) | None) => {
                return Err(Error::field("port", "is needed for type port_forward: a TCP port from 1 to 65535"));
            }
            (ConnectionType::PortForward, port) => port,
            (ConnectionType::App, _) => {
                return Err(Error::field(
                    "type",
                    "apps are opened at their path on the server (see proxy_url of an app)",
                ));
            }
        };
        let workspace = self.workspace(actor, workspace_id).await?;
        let (agent, full_name) = self.reachable_agent(actor, &workspace, query.agent.as_deref())?;
        if let Some(name) = &query.devcontainer {
            if query.kind != ConnectionType::Ssh {
                return Err(Error::field("devcontainer", "is only for type ssh"));
            }
            running_devcontainer(&self.devcontainers(workspace.id).await?, agent, name, &full_name)?;
        }
        let connection = NewConnection {
            id: Uuid::new_v4(),
            kind: query.kind,
            parties: parties(actor, &workspace, agent),
            client_address,
            port,
            replica_id: self.replica_id,
            app: None,
        };
        // Recorded before the agent is reached, so failed attempts are in the log too.
        self.store.open_connection(&connection).await?;
        let header =
            StreamHeader { kind: query.kind, connection_id: connection.id, port, devcontainer: query.devcontainer };
        match self.open_stream(agent.id, &header).await {
            Ok(stream) => Ok(Connection { id: connection.id, stream }),
            Err(why) => {
                self.connection_closed(connection.id, &why).await;
                Err(not_connected(agent, &full_name, &why))
            }
        }
    }

    /// Records that this replica is alive, and cleans up after the replicas
    /// whose heartbeats stopped more than `dead_after` ago: their tunnels
    /// go, and the connections they recorded close.
    pub async fn replica_heartbeat(&self, dead_after: Duration) -> Result<()> {
        self.store.replica_heartbeat(self.replica_id, &self.config.relay_url).await?;
        let dead_before =
            self.store.clock().now() - chrono::TimeDelta::from_std(dead_after).unwrap_or(chrono::TimeDelta::MAX);
        let (gone, closed) = self.store.remove_replicas(Some(dead_before), None).await?;
        if !gone.is_empty() {
            tracing::warn!(replicas = ?gone, closed, "replicas stopped without cleaning up; closed their connections");
        }
        Ok(())
    }

    /// On a clean stop: forgets this replica, its tunnels, and closes the
    /// connections it still carries.
    pub async fn replica_stopping(&self) {
        match self.store.remove_replicas(None, Some(self.replica_id)).await {
            Ok((_, closed)) => tracing::info!(closed, "this replica's connections closed"),
            Err(err) => tracing::warn!(error = %err, "cannot close this replica's connections; the others will"),
        }
    }

    /// Opens the way to a workspace app for one request of `actor`'s (or
    /// one WebSocket), from `client_address`: checks who may, as for SSH,
    /// and that the app is one the server can reach; records it; and opens
    /// a stream to the app's port through the agent.
    ///
    /// The log entry of a plain request is the one of the person's latest
    /// request to the app from the same address if that ended less than
    /// [`APP_SESSION_IDLE`] ago, else a new one: a page load's dozens of
    /// requests are one entry. A WebSocket is an entry of its own, open
    /// while it is.
    pub async fn open_app(
        &self,
        actor: &Actor,
        address: &AppAddress<'_>,
        client_address: String,
        websocket: bool,
    ) -> Result<AppConnection> {
        let workspace = self.workspace_by_name(actor, address.owner, address.workspace).await?;
        let (agent, full_name) = self.reachable_agent(actor, &workspace, address.agent)?;
        let manifest = self.store.agent_manifest(agent.id).await.found("Agent")?;
        let app = manifest
            .apps
            .and_then(|apps| apps.0.into_iter().find(|app| app.name == address.app))
            .ok_or_else(|| Error::not_found(format!("App \"{}\" of workspace {full_name}", address.app)))?;
        let target = AppTarget::parse(&app.url).map_err(|why| {
            Error::conflict(format!(
                "App \"{}\" of workspace {full_name} cannot be opened through the server.",
                app.name
            ))
            .detail(why)
        })?;
        let key = AppSessionKey {
            user_id: actor.user.id,
            agent_id: agent.id,
            app: &app.name,
            client_address: &client_address,
        };
        let continued = match websocket {
            true => None,
            false => self.store.app_session(&key, self.now() - APP_SESSION_IDLE).await?,
        };
        let id = match continued {
            Some(id) => id,
            None => {
                let connection = NewConnection {
                    id: Uuid::new_v4(),
                    kind: ConnectionType::App,
                    parties: parties(actor, &workspace, agent),
                    client_address: client_address.clone(),
                    port: None,
                    replica_id: self.replica_id,
                    app: Some(app.name.clone()),
                };
                self.store.open_connection(&connection).await?;
                connection.id
            }
        };
        let header =
            StreamHeader { kind: ConnectionType::App, connection_id: id, port: Some(target.port), devcontainer: None };
        match self.open_stream(agent.id, &header).await {
            Ok(stream) => Ok(AppConnection { id, stream, target }),
            Err(why) => {
                self.app_connection_ended(id, &why, None).await;
                Err(not_connected(agent, &full_name, &why))
            }
        }
    }

    /// Ends an app connection's entry with how its latest request went: the
    /// app's HTTP status, or why there was none.
    pub async fn app_connection_ended(&self, id: Uuid, reason: &str, http_status: Option<u16>) {
        if let Err(err) = self.store.end_app_connection(id, reason, http_status).await {
            tracing::warn!(error = %err, connection_id = %id, "cannot end an app connection's log entry");
        }
    }

    /// The agent of `workspace` that `actor` may connect to now, and the
    /// workspace's full name: the connection rule, a running workspace, and
    /// the agent named (or its only one).
    fn reachable_agent<'a>(
        &self,
        actor: &Actor,
        workspace: &'a Workspace,
        agent: Option<&str>,
    ) -> Result<(&'a WorkspaceAgent, String)> {
        let full_name = format!("{}/{}", workspace.owner_name, workspace.name);
        may_connect(actor, workspace.owner_id, self.config.allow_owner_connections, &full_name)?;
        if workspace.status != WorkspaceStatus::Running || workspace.latest_build.transition != Transition::Start {
            return Err(Error::conflict(format!(
                "Workspace {full_name} is not running (it is {}); start it first (warmspace start {}).",
                workspace.status, workspace.name
            )));
        }
        let agent = pick_agent(&workspace.agents, agent, &full_name)?;
        Ok((agent, full_name))
    }

    /// Closes a connection's log entry.
    pub async fn connection_closed(&self, id: Uuid, reason: &str) {
        if let Err(err) = self.store.close_connection(id, reason).await {
            tracing::warn!(error = %err, connection_id = %id, "cannot close a connection's log entry");
        }
    }

    /// For another replica relaying a connection: a stream on the tunnel
    /// this replica holds, if `secret` is that tunnel's.
    pub async fn relayed_stream(
        &self,
        agent_id: Uuid,
        secret: &str,
        header: &StreamHeader,
    ) -> Result<Box<dyn AgentStream>> {
        let opener = self.tunnels.get_with_secret(agent_id, secret).ok_or_else(|| {
            Error::not_found("Agent tunnel").detail("This replica does not hold that tunnel (any more).")
        })?;
        open_on(&opener, header).await.map_err(Error::conflict)
    }

    /// Records how an SSH session on one of the agent's connections ended.
    pub async fn agent_connection_exit(&self, auth: &AgentAuth, id: Uuid, exit_code: i32) -> Result<()> {
        if !self.store.set_connection_exit(auth.agent_id, id, exit_code).await? {
            return Err(Error::not_found("Connection"));
        }
        Ok(())
    }

    /// The connection log: everyone's for deployment owners, one's own
    /// connections for everyone else.
    pub async fn connection_log(&self, actor: &Actor, query: ConnectionLogQuery) -> Result<ConnectionLogPage> {
        let (limit, offset) = super::page(query.limit.or(Some(100)), query.offset)?;
        if let (Some(after), Some(before)) = (query.started_after, query.started_before)
            && after >= before
        {
            return Err(Error::field("started_before", "must be later than started_after"));
        }
        let user_id = |name: Option<String>| async move {
            match name {
                Some(name) => self.find_user(actor, &name).await.map(|user| Some(user.id)),
                None => Ok(None),
            }
        };
        let filter = ConnectionFilter {
            visible_to: (!actor.subject.roles.contains(&Role::Owner)).then_some(actor.user.id),
            workspace_id: query.workspace_id,
            owner_id: user_id(query.owner).await?,
            user_id: user_id(query.user).await?,
            kind: query.kind,
            status: query.status,
            started_after: query.started_after,
            started_before: query.started_before,
        };
        let (rows, count) = self.store.connections(&filter, limit, offset).await?;
        Ok(ConnectionLogPage { entries: rows.into_iter().map(entry).collect(), count })
    }

    /// A stream to the agent, started with `header`: on the tunnel if this
    /// replica holds it, else relayed through the replica that does.
    async fn open_stream(&self, agent_id: Uuid, header: &StreamHeader) -> Result<Box<dyn AgentStream>, String> {
        if let Some(opener) = self.tunnels.get(agent_id) {
            return open_on(&opener, header).await;
        }
        let holder = self.store.tunnel(agent_id).await.map_err(|e| format!("cannot look its tunnel up: {e}"))?;
        let holder = holder.ok_or("it holds no tunnel to the server")?;
        if holder.relay_url == self.config.relay_url {
            return Err("its tunnel to this replica has closed".into());
        }
        let url =
            holder.relay_url.parse().map_err(|e| format!("the relay URL {} is not a URL: {e}", holder.relay_url))?;
        let stream = Client::new(url)
            .relay_stream(agent_id, &holder.secret, header)
            .await
            .map_err(|e| format!("the replica holding its tunnel ({}) refused the relay: {e}", holder.relay_url))?;
        Ok(Box::new(stream))
    }
}

/// Who connects to which workspace's agent, names as they are now.
fn parties(actor: &Actor, workspace: &Workspace, agent: &WorkspaceAgent) -> ConnectionParties {
    ConnectionParties {
        user_id: actor.user.id,
        username: actor.user.username.clone(),
        workspace_id: workspace.id,
        workspace_name: workspace.name.clone(),
        workspace_owner_id: workspace.owner_id,
        workspace_owner_name: workspace.owner_name.clone(),
        agent_id: agent.id,
        agent_name: agent.name.clone(),
    }
}

fn not_connected(agent: &WorkspaceAgent, workspace: &str, why: &str) -> Error {
    Error::conflict(format!("The agent {} of workspace {workspace} is not connected.", agent.name))
        .detail(format!("Cause: {why}. Is the workspace's agent running? It reconnects by itself."))
}

/// A stream on a tunnel, its header written.
async fn open_on(opener: &Opener, header: &StreamHeader) -> Result<Box<dyn AgentStream>, String> {
    let mut stream = opener.open().await.map_err(|e| format!("its tunnel failed: {e}"))?;
    header.write(&mut stream).await.map_err(|e| format!("its tunnel failed: {e}"))?;
    Ok(Box::new(stream))
}

/// The connection rule (see the module's documentation).
fn may_connect(actor: &Actor, owner: Uuid, owners_allowed: bool, workspace: &str) -> Result<()> {
    if owner == PREBUILDS_USER_ID {
        return Err(Error::Forbidden {
            message: format!("Workspace {workspace} is an unclaimed prebuild: nobody may connect to it."),
            detail: "A prebuild can be reached once it is claimed, by its new owner.".into(),
        });
    }
    let deployment_owner = actor.subject.roles.contains(&Role::Owner);
    if owner == actor.user.id || (owners_allowed && deployment_owner) {
        return Ok(());
    }
    Err(Error::Forbidden {
        message: format!("Only the owner of workspace {workspace} may connect to it."),
        detail: if deployment_owner {
            "Deployment owners may too when the server runs with --allow-owner-ssh.".into()
        } else {
            String::new()
        },
    })
}

/// The agent named, or the workspace's only one.
fn pick_agent<'a>(agents: &'a [WorkspaceAgent], name: Option<&str>, workspace: &str) -> Result<&'a WorkspaceAgent> {
    let names = || agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    match (name, agents) {
        (Some(name), _) => agents
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::not_found(format!("Agent \"{name}\" of workspace {workspace}"))),
        (None, [only]) => Ok(only),
        (None, []) => Err(Error::conflict(format!("Workspace {workspace} has no agent to connect to."))),
        (None, _) => {
            Err(Error::field("agent", format!("workspace {workspace} has several agents: name one of {}", names())))
        }
    }
}

/// Checks that the agent declares the dev container `name` and that it runs.
fn running_devcontainer(
    devcontainers: &[WorkspaceDevcontainer],
    agent: &WorkspaceAgent,
    name: &str,
    workspace: &str,
) -> Result<()> {
    let agents: Vec<_> = devcontainers.iter().filter(|d| d.agent_id == agent.id).collect();
    let Some(devcontainer) = agents.iter().find(|d| d.name == name) else {
        let names: Vec<_> = agents.iter().map(|d| d.name.as_str()).collect();
        let has = match names.as_slice() {
            [] => "it has none".to_owned(),
            names => format!("it has {}", names.join(", ")),
        };
        return Err(Error::field(
            "devcontainer",
            format!("the agent {} of workspace {workspace} has no dev container \"{name}\": {has}", agent.name),
        ));
    };
    match devcontainer.state {
        Some(DevcontainerState::Running) => Ok(()),
        state => {
            let state = state.map_or_else(|| "not reported yet".to_owned(), |s| s.to_string());
            Err(Error::conflict(format!(
                "Dev container {name} of workspace {workspace} is not running (it is {state})."
            ))
            .detail(devcontainer.error.clone().unwrap_or_default()))
        }
    }
}

fn entry(row: ConnectionRow) -> ConnectionLogEntry {
    let who = row.parties;
    ConnectionLogEntry {
        id: row.id,
        kind: row.kind,
        status: if row.ended_at.is_some() { ConnectionStatus::Completed } else { ConnectionStatus::Ongoing },
        user_id: who.user_id,
        username: who.username,
        workspace_id: who.workspace_id,
        workspace_name: who.workspace_name,
        workspace_owner_id: who.workspace_owner_id,
        workspace_owner_name: who.workspace_owner_name,
        agent_id: who.agent_id,
        agent_name: who.agent_name,
        client_address: row.client_address,
        // The schema keeps ports within 1..=65535.
        port: row.port.and_then(|p| u16::try_from(p).ok()),
        started_at: row.started_at,
        ended_at: row.ended_at,
        exit_code: row.exit_code,
        close_reason: row.close_reason,
        app: row.app,
        // The schema keeps statuses within 100..=599.
        http_status: row.http_status.and_then(|s| u16::try_from(s).ok()),
    }
}
