//! Stripe's error body (`{"error": {...}}`), as returned with a 4xx/5xx status.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ErrorType, Extra};

/// The whole body of a failed Stripe call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: StripeError,
    /// Fields beside `error`, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One Stripe error. Every field but `type` is optional because Stripe omits them freely;
/// omitted fields stay omitted when serialized again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeError {
    /// The kind of error; decides whether a retry can help.
    pub r#type: ErrorType,
    /// Machine-readable reason (`resource_missing`, `parameter_unknown`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A human-readable explanation, fit to show a developer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The request parameter the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// For card errors, the issuer's reason for the decline (`insufficient_funds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// A page of Stripe's documentation about `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    /// The dashboard page of the failed request's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_log_url: Option<String>,
    /// Fields this struct does not name (`payment_intent`, `charge`...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.r#type)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(param) = &self.param {
            write!(f, " [param: {param}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for StripeError {}
