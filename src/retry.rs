//! When to try an HTTP call again and how long to wait: one policy for the Altan Pay client
//! and the model client, with exponential backoff, full jitter and `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Whether an HTTP status is worth retrying: rate limited (429) or a server error (5xx).
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Capped attempts with exponential backoff and full jitter; a `Retry-After` the server
/// sends is honoured when it is not longer than `max_retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter); doubles each retry.
    pub base_delay: Duration,
    /// Backoff never exceeds this.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails with the status,
    /// so a caller with a deadline can decide.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// The Altan Pay API's: short waits, a payment call should not hang.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry: for callers that run their own loop.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// `max_attempts`, waits doubling from `base_delay` up to `max_delay`, no `Retry-After`.
    pub fn doubling(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay,
            max_delay,
            max_retry_after: Duration::ZERO,
        }
    }

    /// Full jitter: a random wait in `[0, min(max_delay, base_delay * 2^retry)]`, so clients
    /// that failed together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let millis = u64::try_from(self.ceiling(retry).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// The backoff before retry number `retry` (0-based) without jitter:
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay)
    }

    /// Runs `attempt` (given its 0-based number) until it is [`Attempt::Done`] or
    /// `max_attempts` (at least one) are used, waiting [`RetryPolicy::ceiling`] before each
    /// retry; `None` when every attempt asked for another. For a single background sender
    /// (webhook deliveries, room posts), whose retries need no jitter to spread out.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Option<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        for n in 0..self.max_attempts.max(1) {
            if n > 0 {
                tokio::time::sleep(self.ceiling(n - 1)).await;
            }
            if let Attempt::Done(value) = attempt(n).await {
                return Some(value);
            }
        }
        None
    }

    /// How long to wait after failed attempt number `attempt` (1-based), or `None` when the
    /// failure is final: not retryable, attempts used up, or a `Retry-After` beyond the cap.
    pub fn wait(
        &self,
        attempt: u32,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !retryable {
            return None;
        }
        let backoff = self.backoff(attempt.saturating_sub(1));
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// What one attempt of [`RetryPolicy::run`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Finished, well or for good (a refusal not worth repeating): the loop returns it.
    Done(T),
    /// Failed in a way worth trying again (429, 5xx, no connection).
    Again,
}

/// `Retry-After` is either delay-seconds or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let policy = RetryPolicy::default();
        for retry in 0..40 {
            let cap = policy
                .base_delay
                .saturating_mul(2u32.saturating_pow(retry))
                .min(policy.max_delay);
            for _ in 0..20 {
                assert!(policy.backoff(retry) <= cap);
            }
        }
    }

    #[test]
    fn waits_are_capped_and_honour_retry_after() {
        let p = RetryPolicy::default();
        assert!(p.wait(1, true, None).is_some());
        assert_eq!(p.wait(1, false, None), None);
        assert_eq!(p.wait(4, true, None), None);
        assert_eq!(
            p.wait(1, true, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(p.wait(1, true, Some(Duration::from_secs(3600))), None);
        assert_eq!(RetryPolicy::none().wait(1, true, None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_retries_with_doubling_waits_until_done_and_gives_up_after_its_attempts() {
        let policy =
            RetryPolicy::doubling(4, Duration::from_millis(100), Duration::from_millis(250));
        let start = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let done = policy
            .run(|n| {
                seen.push((n, start.elapsed().as_millis()));
                async move {
                    if n == 2 {
                        Attempt::Done(n)
                    } else {
                        Attempt::Again
                    }
                }
            })
            .await;
        assert_eq!(done, Some(2));
        assert_eq!(seen, vec![(0, 0), (1, 100), (2, 300)]);
        let mut tries = 0;
        let gave_up: Option<()> = policy
            .run(|_| {
                tries += 1;
                async { Attempt::Again }
            })
            .await;
        assert_eq!((gave_up, tries), (None, 4));
        assert_eq!(start.elapsed().as_millis(), 300 + 100 + 200 + 250);
    }
}
