//! When and how long to wait before asking the server again.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use warmspace_sdk::{ClientError, StatusCode};

use crate::AgentError;

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const MAX: Duration = Duration::from_secs(10);

/// Exponential backoff: 100 ms, 200 ms, 400 ms … doubling up to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(MAX);
        wait
    }

    /// After a success: the next failure waits [`FIRST`] again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Sleeps for the next wait, jittered so that many agents that lost the
    /// same server do not come back in lockstep.
    pub async fn sleep(&mut self) {
        tokio::time::sleep(jitter(self.next_wait(), random_fraction())).await;
    }
}

/// `wait` shortened by up to half: `fraction` (in `[0, 1]`) picks where in
/// `[wait / 2, wait]` it lands.
pub fn jitter(wait: Duration, fraction: f64) -> Duration {
    let half = wait / 2;
    half + half.mul_f64(fraction.clamp(0.0, 1.0))
}

/// A number in `[0, 1)` that differs from call to call. Not for secrets: the
/// standard library's per-hasher random keys are plenty to spread retries.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
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
    let mut backoff = Backoff::default();
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
                backoff.sleep().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn backoff_doubles_from_100ms_up_to_10s() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next_wait()).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(6400), ms(10_000), ms(10_000), ms(10_000)]
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_wait();
        }
        backoff.reset();
        assert_eq!(backoff.next_wait(), ms(100));
        assert_eq!(backoff.next_wait(), ms(200));
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        assert_eq!(jitter(ms(1000), 0.0), ms(500));
        assert_eq!(jitter(ms(1000), 1.0), ms(1000));
        assert_eq!(jitter(ms(1000), 0.5), ms(750));
        // Out-of-range fractions cannot stretch or shrink the window.
        assert_eq!(jitter(ms(1000), 7.0), ms(1000));
        assert_eq!(jitter(ms(1000), -1.0), ms(500));
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
        }
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

    #[tokio::test]
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
