//! What can go wrong on a call to the Altan Pay API, typed so callers can tell a refusal
//! by Stripe from a transient outage from a configuration mistake.

use crate::stripe::StripeError;

use super::routes::RouteError;
use crate::retry::is_retryable_status;

/// Why a call to the Altan Pay API failed. [`PayError::is_retryable`] says whether another
/// attempt may pass, [`PayError::outcome_unknown`] whether a mutation may nevertheless have
/// been applied.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// Stripe (through the Altan Pay API) answered with its error body.
    #[error("{} (HTTP {status}{})", describe_stripe(error), attempts_note(*attempts))]
    Stripe {
        /// The HTTP status of the answer (4xx or 5xx).
        status: u16,
        /// Stripe's error, as it sent it.
        error: Box<StripeError>,
        /// Stripe's `Request-Id`, for the operator.
        request_id: Option<String>,
        /// How many requests were sent, retries included.
        attempts: u32,
    },
    /// An error status without Stripe's error body (a proxy page, an empty 502...).
    #[error("the Altan Pay API answered HTTP {status} without a Stripe error body: {excerpt}{}", attempts_note(*attempts))]
    Http {
        /// The HTTP status of the answer.
        status: u16,
        /// The start of the body, query strings removed, for the operator.
        excerpt: String,
        /// How many requests were sent, retries included.
        attempts: u32,
    },
    /// No answer within the per-request timeout.
    #[error("the Altan Pay API did not answer in time{}", attempts_note(*attempts))]
    Timeout {
        /// How many requests were sent, retries included.
        attempts: u32,
    },
    /// The connection could not be made or broke before the whole answer arrived.
    #[error("could not reach the Altan Pay API: {detail}{}", attempts_note(*attempts))]
    Connect {
        /// The transport error, query strings removed.
        detail: String,
        /// How many requests were sent, retries included.
        attempts: u32,
    },
    /// A body that cannot be used: not a JSON object, or longer than the client reads
    /// (`PayConfig::max_response_bytes`).
    #[error(
        "the Altan Pay API answered HTTP {status} with a body that cannot be used: {detail}; body: {excerpt}"
    )]
    InvalidResponse {
        /// The HTTP status of the answer.
        status: u16,
        /// What is wrong with the body.
        detail: String,
        /// The start of the body, query strings removed, for the operator.
        excerpt: String,
    },
    /// The last attempt failed plainly, but an earlier one may have reached Stripe (a lost
    /// answer, a timeout): the change may exist although the final error says otherwise.
    #[error("{error} (an earlier attempt may already have been applied)")]
    AfterUncertainAttempt {
        /// The error of the last attempt.
        error: Box<PayError>,
    },
    /// The call does not fit the route table (unknown operation, missing path value...);
    /// nothing was sent.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A mistake in how the client was set up or called.
    #[error("{0}")]
    Config(String),
}

fn describe_stripe(error: &StripeError) -> String {
    let mut text = error
        .message
        .as_deref()
        .map_or_else(|| "Stripe refused the request".to_string(), scrub_queries);
    if let Some(code) = &error.code {
        text.push_str(&format!(" [code: {code}]"));
    }
    if let Some(param) = &error.param {
        text.push_str(&format!(" [param: {param}]"));
    }
    text
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl PayError {
    /// Whether another attempt of the same request may succeed: 429, 5xx, lost connections,
    /// and 409 (another request with the same idempotency key is still running; Stripe's own
    /// SDKs retry it). Other 4xx never are: the request itself is wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            PayError::Stripe { status, .. } | PayError::Http { status, .. } => {
                is_retryable_status(*status) || *status == 409
            }
            PayError::Timeout { .. } | PayError::Connect { .. } => true,
            PayError::InvalidResponse { .. }
            | PayError::AfterUncertainAttempt { .. }
            | PayError::Route(_)
            | PayError::Config(_) => false,
        }
    }

    /// Whether Stripe may have applied a mutation even though no success came back.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PayError::Timeout { .. } | PayError::Connect { .. } => true,
            // A 409 means a request with this key is in flight: it may yet apply.
            PayError::Stripe { status, .. } | PayError::Http { status, .. } => {
                *status >= 500 || *status == 409
            }
            PayError::InvalidResponse { .. } | PayError::AfterUncertainAttempt { .. } => true,
            PayError::Route(_) | PayError::Config(_) => false,
        }
    }

    /// Whether Stripe answered that the object does not exist (404 with its error body; a 404
    /// without one is a wrong route, not a missing object).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PayError::Stripe { status: 404, .. })
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            PayError::Stripe { status, .. }
            | PayError::Http { status, .. }
            | PayError::InvalidResponse { status, .. } => Some(*status),
            PayError::AfterUncertainAttempt { error } => error.status(),
            _ => None,
        }
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> PayError {
        match &mut self {
            PayError::Stripe { attempts, .. }
            | PayError::Http { attempts, .. }
            | PayError::Timeout { attempts }
            | PayError::Connect { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }

    /// Keeps "may have been applied" when an earlier attempt was uncertain.
    pub(crate) fn after_uncertain(self, earlier_uncertain: bool) -> PayError {
        if earlier_uncertain && !self.outcome_unknown() {
            PayError::AfterUncertainAttempt {
                error: Box::new(self),
            }
        } else {
            self
        }
    }
}

/// A transport error without the query string of the URL it names: a GET carries its Stripe
/// parameters there (a customer's e-mail), and the error text ends up in logs.
pub(crate) fn without_query(mut error: reqwest::Error) -> reqwest::Error {
    if let Some(url) = error.url_mut() {
        url.set_query(None);
    }
    error
}

/// Upstream error text with the query string of every URL or path in it replaced by
/// `?[query removed]`, for text the runtime did not write (error bodies, error chains).
pub(crate) fn scrub_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('?') {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        // A query follows a path: the text since the last blank holds a `/`.
        let word = out.rsplit(char::is_whitespace).next().unwrap_or("");
        let end = after[1..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ']' | '}' | ',')
            })
            .map_or(after.len(), |i| i + 1);
        if word.contains('/') && end > 1 {
            out.push_str("?[query removed]");
            rest = &after[end..];
        } else {
            out.push('?');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::scrub_queries;

    #[test]
    fn query_strings_are_cut_from_error_text_and_questions_are_kept() {
        assert_eq!(
            scrub_queries(
                "error sending request for url (http://h/v2/customers/ws_1/list?stripe_connect_id=acct_1&email=jane%40example.com): closed"
            ),
            "error sending request for url (http://h/v2/customers/ws_1/list?[query removed]): closed"
        );
        assert_eq!(
            scrub_queries("GET /v1/customers?email=a@b.c failed; why? \"/x?y=1\""),
            "GET /v1/customers?[query removed] failed; why? \"/x?[query removed]\""
        );
        assert_eq!(scrub_queries("no such customer?"), "no such customer?");
    }
}
