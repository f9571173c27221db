//! The agent tunnels this replica holds (see [`warmspace_sdk::tunnel`]).
//!
//! A tunnel is a live connection, so it lives in the memory of the replica
//! the agent reached; PostgreSQL records which replica that is
//! (`agent_tunnels`), so that any replica can relay a client's connection
//! to it. This registry is the only per-replica state, and nothing is lost
//! when a replica goes: its agents reconnect (to any replica) and record
//! the new holder.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;
use uuid::Uuid;
use warmspace_sdk::tunnel::Opener;

#[derive(Clone, Default)]
pub struct Tunnels(Arc<Mutex<HashMap<Uuid, Held>>>);

struct Held {
    opener: Opener,
    /// Proves a relaying replica read the holder from the database.
    secret: String,
}

impl Tunnels {
    /// Holds an agent's new tunnel; its previous one, if any, closes.
    pub fn hold(&self, agent_id: Uuid, opener: Opener, secret: String) {
        self.lock().insert(agent_id, Held { opener, secret });
    }

    /// Lets go of a tunnel that closed, unless a newer one replaced it.
    pub fn release(&self, agent_id: Uuid, secret: &str) {
        let mut held = self.lock();
        if held.get(&agent_id).is_some_and(|h| h.secret == secret) {
            held.remove(&agent_id);
        }
    }

    /// The agent's tunnel, when this replica holds an open one.
    pub fn get(&self, agent_id: Uuid) -> Option<Opener> {
        self.lock().get(&agent_id).filter(|h| !h.opener.is_closed()).map(|h| h.opener.clone())
    }

    /// The agent's tunnel, when this replica holds it and `secret` is its secret.
    pub fn get_with_secret(&self, agent_id: Uuid, secret: &str) -> Option<Opener> {
        let held = self.lock();
        let h = held.get(&agent_id)?;
        bool::from(h.secret.as_bytes().ct_eq(secret.as_bytes())).then(|| h.opener.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Held>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A new tunnel's secret: 64 hex digits from the OS's randomness.
pub fn new_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// `http://` and the address the server listens on, with the host's name in
/// place of an unspecified address (`0.0.0.0`, `::`), which nobody can dial.
pub fn default_relay_url(address: SocketAddr) -> String {
    if address.ip().is_unspecified() {
        let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
        format!("http://{host}:{}", address.port())
    } else {
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_are_dialable() {
        assert_eq!(default_relay_url("127.0.0.1:3000".parse().unwrap()), "http://127.0.0.1:3000");
        assert_eq!(default_relay_url("[::1]:80".parse().unwrap()), "http://[::1]:80");
        let any = default_relay_url("0.0.0.0:3000".parse().unwrap());
        assert!(!any.contains("0.0.0.0") && any.ends_with(":3000"), "{any}");
    }

    #[test]
    fn secrets_are_long_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
