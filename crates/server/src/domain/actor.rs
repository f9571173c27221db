//! Who is acting: a person with a session, a workspace agent with its
//! token, or a provisioner daemon with its key; and how each is recognised.

use uuid::Uuid;
use warmspace_authz::{Action, Object, Role, Subject};
use warmspace_sdk::{AGENT_TOKEN_HEADER, PROVISIONER_KEY_HEADER, SESSION_TOKEN_HEADER, UserStatus};
use warmspace_store::{Session, StoreError, UserRow};

use super::{Domain, Error, Result};
use crate::auth::tokens::Token;

/// An authenticated person.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: UserRow,
    pub subject: Subject,
    pub session_id: String,
}

impl Actor {
    /// May this person do `action` on `object`?
    pub fn authorize(&self, action: Action, object: Object) -> Result<()> {
        Ok(warmspace_authz::authorize(&self.subject, action, object)?)
    }
}

/// The roles a user acts with: those granted, plus `member` for every human.
pub fn subject_of(user: &UserRow) -> Subject {
    let mut roles = user.roles.0.clone();
    if !user.is_system && !roles.contains(&Role::Member) {
        roles.push(Role::Member);
    }
    roles.sort();
    Subject { user_id: user.id, roles }
}

/// A workspace agent, authenticated by its token; it reaches only its own agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentAuth {
    pub agent_id: Uuid,
    pub workspace_id: Uuid,
}

impl AgentAuth {
    /// An agent token reaches its own agent only (`me`, or its own id).
    pub fn check(&self, agent: &str) -> Result<()> {
        if agent == "me" || agent.parse::<Uuid>().is_ok_and(|id| id == self.agent_id) {
            return Ok(());
        }
        Err(Error::Forbidden("An agent token reaches only its own agent.".into()))
    }
}

/// An external provisioner daemon, authenticated by its provisioner key.
#[derive(Debug, Clone)]
pub struct DaemonAuth {
    pub key_id: String,
}

impl Domain {
    /// The person a session token belongs to, if the session is valid and
    /// unexpired and the person active. Slides the session's expiry forward.
    pub async fn authenticate(&self, raw: Option<&str>) -> Result<Actor> {
        let Some(raw) = raw else {
            return Err(Error::unauthenticated("You must be logged in.")
                .detail(format!("Send a session token in the {SESSION_TOKEN_HEADER} header.")));
        };
        let invalid = || Error::unauthenticated("Invalid session token.");
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let Session { user, key_hashed_secret, key_expires_at, key_last_used_at } =
            self.store.session(&token.id).await?.ok_or_else(invalid)?;
        if !token.matches(&key_hashed_secret) {
            return Err(invalid());
        }
        let now = self.now();
        if key_expires_at <= now {
            return Err(Error::unauthenticated("Your session has expired.").detail("Log in again."));
        }
        if user.status != UserStatus::Active {
            return Err(Error::unauthenticated("Your account is suspended."));
        }
        // Sliding expiry, written at most once a minute per session.
        if now - key_last_used_at > chrono::Duration::minutes(1) {
            self.store.refresh_session(&token.id, now + self.config.session_duration).await?;
        }
        let subject = subject_of(&user);
        Ok(Actor { user, subject, session_id: token.id })
    }

    pub async fn authenticate_agent(&self, raw: Option<&str>) -> Result<AgentAuth> {
        let raw = raw.ok_or_else(|| {
            Error::unauthenticated(format!("Send the agent's token in the {AGENT_TOKEN_HEADER} header."))
        })?;
        let invalid = || Error::unauthenticated("Invalid agent token.");
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let credential = match self.store.agent_credential(&token.id).await {
            Ok(credential) => credential,
            Err(StoreError::NotFound) => return Err(invalid()),
            Err(err) => return Err(err.into()),
        };
        if !token.matches(&credential.hashed_secret) {
            return Err(invalid());
        }
        Ok(AgentAuth { agent_id: credential.agent_id, workspace_id: credential.workspace_id })
    }

    pub async fn authenticate_daemon(&self, raw: Option<&str>) -> Result<DaemonAuth> {
        let raw = raw.ok_or_else(|| {
            Error::unauthenticated(format!("Send a provisioner key in the {PROVISIONER_KEY_HEADER} header."))
        })?;
        let invalid = || Error::unauthenticated("Invalid provisioner key.");
        let token = Token::parse(raw).ok_or_else(invalid)?;
        let key = match self.store.provisioner_key(&token.id).await {
            Ok(key) => key,
            Err(StoreError::NotFound) => return Err(invalid()),
            Err(err) => return Err(err.into()),
        };
        if !token.matches(&key.hashed_secret) {
            return Err(invalid());
        }
        Ok(DaemonAuth { key_id: key.id })
    }
}
