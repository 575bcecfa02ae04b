//! When and how long to wait before calling the model server again.
//! One policy for every try; the HTTP layer below it never retries on its own.

use std::time::Duration;

use rand::Rng;

use super::ModelError;

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
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
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

    /// How long to wait after failed attempt number `attempt` (1-based), or `None` when the
    /// error is final: not retryable, attempts used up, or a `Retry-After` beyond the cap.
    pub fn delay_after(&self, attempt: u32, error: &ModelError) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        let retry_after = match error {
            ModelError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked),
            None => Some(self.backoff(attempt.saturating_sub(1))),
        }
    }

    /// Full jitter: a random wait in `[0, min(max_delay, base_delay * 2^retry)]`, so clients
    /// that failed together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    crate::pay::client::parse_retry_after(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> ModelError {
        ModelError::Status {
            status,
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn only_429_5xx_and_transport_are_retried() {
        let policy = RetryPolicy::default();
        assert!(policy.delay_after(1, &status(429, None)).is_some());
        assert!(policy.delay_after(1, &status(503, None)).is_some());
        assert!(
            policy
                .delay_after(1, &ModelError::Transport("reset".into()))
                .is_some()
        );
        assert!(policy.delay_after(1, &status(400, None)).is_none());
        assert!(policy.delay_after(1, &status(401, None)).is_none());
        assert!(
            policy
                .delay_after(1, &ModelError::BadResponse("x".into()))
                .is_none()
        );
    }

    #[test]
    fn attempts_are_capped() {
        let policy = RetryPolicy::default();
        assert!(policy.delay_after(3, &status(500, None)).is_some());
        assert!(policy.delay_after(4, &status(500, None)).is_none());
        assert!(
            RetryPolicy::none()
                .delay_after(1, &status(500, None))
                .is_none()
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let asked = Some(Duration::from_secs(7));
        assert_eq!(
            policy.delay_after(1, &status(429, asked)),
            Some(Duration::from_secs(7))
        );
        let too_long = Some(Duration::from_secs(3600));
        assert_eq!(policy.delay_after(1, &status(429, too_long)), None);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let policy = RetryPolicy::default();
        for retry in 0..40 {
            assert!(policy.backoff(retry) <= policy.max_delay);
        }
    }

    #[test]
    fn retry_after_formats() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("later"), None);
    }
}
