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

    /// Like [`Self::authorize`], naming a refusal by what the person tried
    /// (`read prebuild status`) where the resource checked would not tell them.
    pub fn authorize_to(&self, attempt: &str, action: Action, object: Object) -> Result<()> {
        Ok(warmspace_authz::authorize(&self.subject, action, object).map_err(|denied| denied.attempting(attempt))?)
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
        Err(Error::Forbidden { message: "An agent token reaches only its own agent.".into(), detail: String::new() })
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
        let missing = format!("Send the agent's token in the {AGENT_TOKEN_HEADER} header.");
        let find = async |id: String| self.store.agent_credential(&id).await;
        let credential = verify(raw, missing, "Invalid agent token.", find, |c| &c.hashed_secret).await?;
        Ok(AgentAuth { agent_id: credential.agent_id, workspace_id: credential.workspace_id })
    }

    pub async fn authenticate_daemon(&self, raw: Option<&str>) -> Result<DaemonAuth> {
        let missing = format!("Send a provisioner key in the {PROVISIONER_KEY_HEADER} header.");
        let find = async |id: String| self.store.provisioner_key(&id).await;
        let key = verify(raw, missing, "Invalid provisioner key.", find, |k| &k.hashed_secret).await?;
        Ok(DaemonAuth { key_id: key.id })
    }
}

/// A `<id>-<secret>` credential (an agent token, a provisioner key): parsed,
/// its row found by id, its secret compared in constant time with the stored
/// hash. Every way of being wrong reads the same to the caller.
async fn verify<T>(
    raw: Option<&str>,
    missing: String,
    invalid: &str,
    find: impl AsyncFnOnce(String) -> std::result::Result<T, StoreError>,
    hashed_secret: impl Fn(&T) -> &[u8],
) -> Result<T> {
    let raw = raw.ok_or_else(|| Error::unauthenticated(missing))?;
    let token = Token::parse(raw).ok_or_else(|| Error::unauthenticated(invalid))?;
    let found = match find(token.id.clone()).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Err(Error::unauthenticated(invalid)),
        Err(err) => return Err(err.into()),
    };
    if !token.matches(hashed_secret(&found)) {
        return Err(Error::unauthenticated(invalid));
    }
    Ok(found)
}
