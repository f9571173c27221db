//! When and how long to wait before asking the server again.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use warmspace_sdk::{ClientError, StatusCode};

use crate::AgentError;

/// The first wait after a failure (before jitter).
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const MAX: Duration = Duration::from_secs(10);

/// Exponential backoff: 100 ms, 200 ms, 400 ms … doubling up to 10 s, each
/// wait jittered into its upper half so that many agents that lost the same
/// server do not come back in lockstep. After a success, start a fresh one.
pub fn backoff() -> impl Iterator<Item = Duration> {
    // backon's jitter adds up to the current delay (a delay `d` becomes one in
    // `[d, 2d)`), so it gets half of each bound: the waits then land in
    // `[wait / 2, wait)` for wait = 100 ms, 200 ms … 10 s, never above MAX.
    ExponentialBuilder::new()
        .with_min_delay(FIRST / 2)
        .with_max_delay(MAX / 2)
        .with_factor(2.0)
        .with_jitter()
        // The agent keeps asking until the server answers or refuses.
        .without_max_times()
        .build()
}

/// Sleeps for the backoff's next wait.
pub async fn sleep(backoff: &mut impl Iterator<Item = Duration>) {
    // Built without a limit on attempts, the backoff never runs out; MAX only satisfies the type.
    tokio::time::sleep(backoff.next().unwrap_or(MAX)).await;
}

/// What a failed request means for whoever made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 401: the token is invalid or revoked; the agent must exit.
    Unauthorized,
    /// The server is unreachable, overloaded or broken for now: try again.
    Transient,
    /// The server refused the request itself: asking again will not help.
    Refused,
}

pub fn classify(err: &ClientError) -> Failure {
    match err {
        ClientError::Transport(_) => Failure::Transient,
        ClientError::Url(_) => Failure::Refused,
        ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => classify_status(*status),
    }
}

pub fn classify_status(status: StatusCode) -> Failure {
    match status {
        StatusCode::UNAUTHORIZED => Failure::Unauthorized,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Failure::Transient,
        status if status.is_server_error() => Failure::Transient,
        _ => Failure::Refused,
    }
}

/// Runs `request` until it succeeds, backing off while failures are
/// [`Failure::Transient`]. `what` names the request in logs and errors.
pub async fn retry<T, F, Fut>(what: &'static str, mut request: F) -> Result<T, AgentError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = backoff();
    let mut attempt = 1u32;
    loop {
        let err = match request().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        match classify(&err) {
            Failure::Unauthorized => return Err(AgentError::Unauthorized),
            Failure::Refused => return Err(AgentError::Refused { what, source: err }),
            Failure::Transient => {
                // The first failures are routine (a server restarting); a run of them is worth a warning.
                if attempt == 3 {
                    tracing::warn!(error = %err, "{what} keeps failing; retrying");
                } else {
                    tracing::debug!(error = %err, attempt, "{what} failed; retrying");
                }
                attempt = attempt.saturating_add(1);
                sleep(&mut backoff).await;
            }
        }
    }
}

/// Sends a report whose content the server keeps: retried like [`retry`];
/// one the server refuses is logged and dropped (asking again would not
/// help, and it is not worth stopping for), so only a revoked token is an error.
pub async fn report<T, F, Fut>(what: &'static str, request: F) -> Result<(), AgentError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    match retry(what, request).await {
        Ok(_) => Ok(()),
        Err(AgentError::Refused { source, .. }) => {
            tracing::warn!(error = %source, "the server refused {what}");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits before each attempt, before jitter: 100 ms doubling to 10 s.
    fn nominal_waits() -> impl Iterator<Item = Duration> {
        (0..12).map(|attempt| FIRST.saturating_mul(1 << attempt).min(MAX))
    }

    #[test]
    fn backoff_doubles_from_100ms_up_to_10s_jittered_into_the_upper_half() {
        // backon's doubling runs in f32: allow for its nanosecond rounding.
        let slack = Duration::from_micros(1);
        for _ in 0..1000 {
            for (wait, nominal) in backoff().zip(nominal_waits()) {
                assert!(wait + slack >= nominal / 2 && wait <= nominal + slack, "{wait:?} for {nominal:?}");
                assert!(wait <= MAX, "{wait:?}");
            }
        }
    }

    /// Also fails if backon lost its "std" feature, whose absence gives every
    /// backoff the same fixed seed.
    #[test]
    fn the_jitter_spreads_agents_apart() {
        let firsts: std::collections::HashSet<Duration> = (0..100).map(|_| backoff().next().unwrap()).collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }

    #[test]
    fn a_fresh_backoff_starts_over() {
        let mut waits = backoff();
        waits.by_ref().take(10).for_each(drop);
        assert!(waits.next().unwrap() >= MAX / 2);
        // What `reinit::follow` does after a healthy stream.
        waits = backoff();
        assert!(waits.next().unwrap() < FIRST);
    }

    #[test]
    fn the_backoff_never_runs_out() {
        assert_eq!(backoff().take(10_000).count(), 10_000);
    }

    #[test]
    fn failures_are_classified_by_status() {
        let unexpected =
            |code: u16| ClientError::Unexpected { status: StatusCode::from_u16(code).unwrap(), body: String::new() };
        assert_eq!(classify(&unexpected(401)), Failure::Unauthorized);
        for code in [500, 502, 503, 504, 408, 429] {
            assert_eq!(classify(&unexpected(code)), Failure::Transient, "{code}");
        }
        for code in [400, 403, 404, 409, 200] {
            assert_eq!(classify(&unexpected(code)), Failure::Refused, "{code}");
        }
        let bad_url = ClientError::Url(url::ParseError::EmptyHost);
        assert_eq!(classify(&bad_url), Failure::Refused);
    }

    /// On paused time, so the backoff between attempts takes no real time.
    #[tokio::test(start_paused = true)]
    async fn retry_retries_transient_failures_and_stops_on_401() {
        let mut calls = 0;
        let value = retry("the test request", || {
            calls += 1;
            let result = if calls < 3 {
                Err(ClientError::Unexpected { status: StatusCode::BAD_GATEWAY, body: String::new() })
            } else {
                Ok(calls)
            };
            async move { result }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);

        let mut calls = 0;
        let err = retry("the test request", || {
            calls += 1;
            async { Err::<(), _>(ClientError::Unexpected { status: StatusCode::UNAUTHORIZED, body: String::new() }) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, AgentError::Unauthorized), "{err:?}");
        assert_eq!(calls, 1);

        let err = retry("the test request", || async {
            Err::<(), _>(ClientError::Unexpected { status: StatusCode::NOT_FOUND, body: String::new() })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, AgentError::Refused { what: "the test request", .. }), "{err:?}");
    }
}
