//! Re-initialisation (DESIGN §5.3): a prebuild's agent keeps a `reinit`
//! stream open, telling the server which owner it serves; when the workspace
//! is claimed, one event arrives and the agent re-runs its startup script for
//! the new owner.
//!
//! Every decision is taken against the owner the agent serves *now*, so a
//! repeated event, a reconnect or a server restart never re-initialises twice.

use std::fmt::Display;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;
use warmspace_sdk::StatusCode;

use crate::retry::{self, Failure};
use crate::{Agent, AgentError};

/// The name of the events that matter on the stream.
pub const EVENT: &str = "reinit";
/// With no byte for this long (the server sends keep-alives every 15 s) the
/// connection is taken for dead and opened again.
const IDLE: Duration = Duration::from_secs(60);
/// What an event with no reason says.
const UNSPECIFIED: &str = "unspecified";

/// A `reinit` event as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reinit {
    /// The new owner; `None` when the server did not say (older servers send
    /// a bare reason).
    pub owner: Option<Uuid>,
    pub reason: String,
}

/// Reads an event's data: the JSON `ReinitEvent`, or the bare reason string
/// older servers send (as plain text or as a JSON string). Never fails: an
/// event that cannot be read still means "look again", and the fresh
/// manifest decides.
pub fn parse(data: &str) -> Reinit {
    let data = data.trim();
    let reason = |reason: &str| if reason.is_empty() { UNSPECIFIED.to_owned() } else { reason.to_owned() };
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(event)) => Reinit {
            owner: event.get("owner_id").and_then(|owner| owner.as_str()).and_then(|owner| owner.parse().ok()),
            reason: reason(event.get("reason").and_then(|r| r.as_str()).unwrap_or_default()),
        },
        Ok(serde_json::Value::String(bare)) => Reinit { owner: None, reason: reason(&bare) },
        _ => Reinit { owner: None, reason: reason(data) },
    }
}

/// What an event calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEvent {
    /// The event names the owner already served: a duplicate.
    Ignore,
    /// Ask the server who the owner is now.
    FetchManifest,
}

pub fn on_event(event: &Reinit, serving: Uuid) -> OnEvent {
    match event.owner {
        Some(owner) if owner == serving => OnEvent::Ignore,
        _ => OnEvent::FetchManifest,
    }
}

/// What the fresh manifest calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnManifest {
    /// The agent already serves the manifest's owner.
    Ignore,
    /// Serve the manifest's owner: re-run the startup script.
    Personalise(Uuid),
}

pub fn on_manifest(owner: Uuid, serving: Uuid) -> OnManifest {
    if owner == serving { OnManifest::Ignore } else { OnManifest::Personalise(owner) }
}

/// What the server's answer to opening the stream means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// 200: read the events.
    Events,
    /// 409: a workspace that was never a prebuild; stop asking for good.
    Regular,
    /// 204: the agent already serves the owner; stop asking for good.
    NothingToDo,
    /// 401: the token no longer works; the agent must exit.
    Unauthorized,
    /// Anything else: ask again after a while.
    Retry,
}

pub fn opened(status: StatusCode) -> Opened {
    match status {
        StatusCode::OK => Opened::Events,
        StatusCode::CONFLICT => Opened::Regular,
        StatusCode::NO_CONTENT => Opened::NothingToDo,
        status if retry::classify_status(status) == Failure::Unauthorized => Opened::Unauthorized,
        _ => Opened::Retry,
    }
}

/// Whether a stream that has ended was healthy enough that the next
/// reconnect need not wait long: it delivered a re-init, or it stayed open
/// longer than the longest backoff (a proxy closing idle streams, say).
pub fn was_healthy(open_for: Duration, reinitialised: bool) -> bool {
    reinitialised || open_for >= retry::MAX
}

/// The events of an SSE body, ending with an error when the body breaks or
/// stays silent for `idle`.
pub fn events<S, B, E>(body: S, idle: Duration) -> impl Stream<Item = Result<Event, String>> + Send
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send,
    E: Display,
{
    let body = futures::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(err))) => Some((Err(err.to_string()), None)),
            Ok(None) => None,
            Err(_) => Some((Err(format!("nothing received for {}s", idle.as_secs())), None)),
        }
    });
    body.eventsource().map(|event| event.map_err(|err| err.to_string()))
}

/// Follows the re-init stream until the server says there is nothing more to
/// wait for (`Ok`), re-personalising the workspace whenever it is claimed.
/// Errs only when the agent must exit.
pub async fn follow(agent: &Agent, serving: &watch::Sender<Uuid>) -> Result<(), AgentError> {
    let mut backoff = retry::backoff();
    loop {
        let current = *serving.borrow();
        let response = match tokio::time::timeout(IDLE, agent.client.agent_reinit(current)).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot open the re-init stream; retrying");
                retry::sleep(&mut backoff).await;
                continue;
            }
            Err(_) => {
                tracing::debug!("the server did not answer the re-init request; retrying");
                retry::sleep(&mut backoff).await;
                continue;
            }
        };
        match opened(response.status()) {
            Opened::Events => {}
            Opened::Regular => {
                tracing::info!("regular workspace; not waiting for a claim");
                return Ok(());
            }
            Opened::NothingToDo => {
                tracing::info!(owner_id = %current, "serving the workspace's owner; not waiting for a claim");
                return Ok(());
            }
            Opened::Unauthorized => return Err(AgentError::Unauthorized),
            Opened::Retry => {
                tracing::debug!(status = %response.status(), "the re-init stream was refused; retrying");
                retry::sleep(&mut backoff).await;
                continue;
            }
        }
        let since = Instant::now();
        let mut reinitialised = false;
        let mut events = std::pin::pin!(events(response.bytes_stream(), IDLE));
        let ended = loop {
            match events.next().await {
                None => break "the server closed it".to_owned(),
                Some(Err(err)) => break err,
                Some(Ok(event)) if event.event == EVENT => {
                    reinitialised |= on_reinit(agent, serving, parse(&event.data)).await?;
                }
                Some(Ok(event)) => {
                    tracing::debug!(event = %event.event, "ignored an unknown event on the re-init stream")
                }
            }
        };
        tracing::debug!(reason = %ended, "the re-init stream ended; reconnecting");
        if was_healthy(since.elapsed(), reinitialised) {
            // Start over from the shortest wait.
            backoff = retry::backoff();
        }
        retry::sleep(&mut backoff).await;
    }
}

/// Handles one `reinit` event; true when the agent re-personalised.
async fn on_reinit(agent: &Agent, serving: &watch::Sender<Uuid>, event: Reinit) -> Result<bool, AgentError> {
    let current = *serving.borrow();
    if on_event(&event, current) == OnEvent::Ignore {
        tracing::debug!(reason = %event.reason, "ignored a re-init for the owner already served");
        return Ok(false);
    }
    let manifest = agent.manifest().await?;
    let OnManifest::Personalise(owner) = on_manifest(manifest.owner_id, current) else {
        tracing::info!(reason = %event.reason, "ignored a re-init: the workspace's owner is the one already served");
        return Ok(false);
    };
    serving.send_replace(owner);
    tracing::info!(
        owner = %manifest.owner_name,
        owner_id = %owner,
        previous_owner_id = %current,
        reason = %event.reason,
        "re-initialising for the workspace's new owner"
    );
    agent.personalise(&manifest).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREBUILDS: Uuid = warmspace_sdk::PREBUILDS_USER_ID;
    const ALICE: Uuid = Uuid::from_u128(0xa11ce);
    const BOB: Uuid = Uuid::from_u128(0xb0b);

    #[test]
    fn parses_the_json_event() {
        let event =
            warmspace_sdk::ReinitEvent { workspace_id: Uuid::from_u128(7), owner_id: ALICE, reason: "claimed".into() };
        let data = serde_json::to_string(&event).unwrap();
        assert_eq!(parse(&data), Reinit { owner: Some(ALICE), reason: "claimed".into() });
    }

    #[test]
    fn understands_the_legacy_bare_reason() {
        assert_eq!(parse("claimed"), Reinit { owner: None, reason: "claimed".into() });
        assert_eq!(parse("  prebuild claimed\n"), Reinit { owner: None, reason: "prebuild claimed".into() });
        assert_eq!(parse("\"claimed\""), Reinit { owner: None, reason: "claimed".into() });
        assert_eq!(parse(""), Reinit { owner: None, reason: "unspecified".into() });
    }

    #[test]
    fn a_payload_it_cannot_fully_read_still_asks_for_a_manifest() {
        assert_eq!(parse(r#"{"owner_id":"not-a-uuid","reason":"claimed"}"#).owner, None);
        assert_eq!(parse(r#"{"owner_id":7}"#), Reinit { owner: None, reason: "unspecified".into() });
        assert_eq!(parse("42"), Reinit { owner: None, reason: "42".into() });
        assert_eq!(on_event(&parse("{}"), ALICE), OnEvent::FetchManifest);
    }

    #[test]
    fn an_event_for_the_owner_already_served_is_a_duplicate() {
        let for_alice = Reinit { owner: Some(ALICE), reason: "claimed".into() };
        assert_eq!(on_event(&for_alice, ALICE), OnEvent::Ignore);
        assert_eq!(on_event(&for_alice, PREBUILDS), OnEvent::FetchManifest);
        assert_eq!(on_event(&for_alice, BOB), OnEvent::FetchManifest);
        // Owner unknown (legacy payload): only the manifest can tell.
        let legacy = Reinit { owner: None, reason: "claimed".into() };
        assert_eq!(on_event(&legacy, ALICE), OnEvent::FetchManifest);
    }

    #[test]
    fn the_fresh_manifest_decides() {
        assert_eq!(on_manifest(ALICE, PREBUILDS), OnManifest::Personalise(ALICE));
        assert_eq!(on_manifest(BOB, ALICE), OnManifest::Personalise(BOB));
        assert_eq!(on_manifest(ALICE, ALICE), OnManifest::Ignore);
    }

    #[test]
    fn the_answer_to_opening_the_stream() {
        assert_eq!(opened(StatusCode::OK), Opened::Events);
        assert_eq!(opened(StatusCode::CONFLICT), Opened::Regular);
        assert_eq!(opened(StatusCode::NO_CONTENT), Opened::NothingToDo);
        assert_eq!(opened(StatusCode::UNAUTHORIZED), Opened::Unauthorized);
        for status in [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE, StatusCode::NOT_FOUND] {
            assert_eq!(opened(status), Opened::Retry, "{status}");
        }
    }

    #[test]
    fn reconnect_quickly_only_after_a_healthy_stream() {
        assert!(was_healthy(Duration::ZERO, true));
        assert!(was_healthy(Duration::from_secs(30), false));
        assert!(!was_healthy(Duration::from_millis(5), false));
    }

    #[tokio::test]
    async fn reads_events_split_across_chunks() {
        let data = format!(r#"{{"workspace_id":"{}","owner_id":"{ALICE}","reason":"claimed"}}"#, Uuid::from_u128(7));
        // A keep-alive comment, then an event cut in the middle of its name.
        let chunks = [": keep-alive\n\nevent: rein".to_owned(), format!("it\ndata: {data}\n\n")];
        let body = futures::stream::iter(chunks.map(Ok::<_, String>));
        let events: Vec<_> = events(body, IDLE).collect().await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = events[0].as_ref().unwrap();
        assert_eq!(event.event, EVENT);
        assert_eq!(parse(&event.data), Reinit { owner: Some(ALICE), reason: "claimed".into() });
    }

    /// On paused time, so the real idle limit takes no real time.
    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_ends_in_an_error() {
        let silent = futures::stream::pending::<Result<&'static [u8], String>>();
        let events: Vec<_> = events(silent, IDLE).collect().await;
        assert_eq!(events.len(), 1);
        assert!(events[0].as_ref().unwrap_err().contains("nothing received for 60s"), "{events:?}");
    }

    #[tokio::test]
    async fn a_broken_stream_ends_in_an_error() {
        let broken = futures::stream::iter([Ok("event: reinit\n".as_bytes()), Err("connection reset".to_owned())]);
        let events: Vec<_> = events(broken, IDLE).collect().await;
        assert_eq!(events.len(), 1);
        assert!(events[0].as_ref().unwrap_err().contains("connection reset"), "{events:?}");
    }
}
