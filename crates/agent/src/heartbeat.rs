//! Heartbeats: they keep the agent "connected" in the server's eyes, tell it
//! which owner the agent serves and how many connections are open (use of
//! the workspace, which moves its deadline), and carry back the order to stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;
use warmspace_sdk::{AgentHeartbeatResponse, Client, ClientError};

use crate::retry::{Failure, classify};
use crate::tunnel::Sessions;
use crate::{AgentError, Exit};

/// The shortest interval honoured, so a zero in the options cannot spin.
const MIN_EVERY: Duration = Duration::from_millis(10);
/// A heartbeat unanswered for this long counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a heartbeat's answer calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Continue,
    /// The workspace was stopped or deleted.
    Stop,
    /// The token no longer works.
    Unauthorized,
}

pub fn on_answer(answer: &Result<AgentHeartbeatResponse, ClientError>) -> Beat {
    match answer {
        Ok(AgentHeartbeatResponse { stop: true }) => Beat::Stop,
        Ok(_) => Beat::Continue,
        Err(err) if classify(err) == Failure::Unauthorized => Beat::Unauthorized,
        // Whatever else went wrong, the next beat is the retry.
        Err(_) => Beat::Continue,
    }
}

/// Beats every `every`, the first at once, until the server says stop or the
/// token stops working.
pub async fn beat(
    client: &Client,
    every: Duration,
    serving: watch::Receiver<Uuid>,
    sessions: &Sessions,
) -> Result<Exit, AgentError> {
    let mut tick = tokio::time::interval(every.max(MIN_EVERY));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let owner = *serving.borrow();
        let answer =
            match tokio::time::timeout(TIMEOUT, client.agent_heartbeat_with_sessions(Some(owner), sessions.count()))
                .await
            {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::debug!("a heartbeat went unanswered");
                    continue;
                }
            };
        match on_answer(&answer) {
            Beat::Stop => {
                tracing::info!("the workspace was stopped; exiting");
                return Ok(Exit::Stopped);
            }
            Beat::Unauthorized => return Err(AgentError::Unauthorized),
            Beat::Continue => match answer {
                Ok(_) if failing => {
                    tracing::info!("heartbeats reach the server again");
                    failing = false;
                }
                Ok(_) => {}
                // One warning per outage, not one per beat.
                Err(err) if !failing => {
                    tracing::warn!(error = %err, "a heartbeat failed; retrying");
                    failing = true;
                }
                Err(err) => tracing::debug!(error = %err, "a heartbeat failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use warmspace_sdk::StatusCode;

    use super::*;

    fn status(code: StatusCode) -> Result<AgentHeartbeatResponse, ClientError> {
        Err(ClientError::Unexpected { status: code, body: String::new() })
    }

    #[test]
    fn the_answer_decides() {
        assert_eq!(on_answer(&Ok(AgentHeartbeatResponse { stop: true })), Beat::Stop);
        assert_eq!(on_answer(&Ok(AgentHeartbeatResponse { stop: false })), Beat::Continue);
        assert_eq!(on_answer(&status(StatusCode::UNAUTHORIZED)), Beat::Unauthorized);
        assert_eq!(on_answer(&status(StatusCode::SERVICE_UNAVAILABLE)), Beat::Continue);
        assert_eq!(on_answer(&status(StatusCode::NOT_FOUND)), Beat::Continue);
    }
}
