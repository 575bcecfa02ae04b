//! When and how long to wait before calling the model server again.
//! One policy for every try; the HTTP layer below it never retries on its own.

use std::time::Duration;

use super::ModelError;

pub use crate::retry::{RetryPolicy, parse_retry_after};

impl RetryPolicy {
    /// The model server's: longer waits than the Altan Pay API's, since a model call is
    /// slow anyway and rate limits there are common.
    pub(crate) fn model_default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// How long to wait after failed attempt number `attempt` (1-based), or `None` when the
    /// error is final.
    pub(crate) fn delay_after(&self, attempt: u32, error: &ModelError) -> Option<Duration> {
        let retry_after = match error {
            ModelError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        self.wait(attempt, error.is_retryable(), retry_after)
    }
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
        let policy = RetryPolicy::model_default();
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
        let policy = RetryPolicy::model_default();
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
        let policy = RetryPolicy::model_default();
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
        let policy = RetryPolicy::model_default();
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
