//! The HTTP client for the Altan Pay API: one call = one route of the table, with the
//! envelope, idempotency key, timeout, retries and error mapping in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span, warn};

pub use crate::retry::is_retryable_status;

use super::error::PayError;
use super::routes::{Method, RouteTable, RouteValues};
use crate::stripe::ErrorBody;

/// The header Stripe (and the Altan Pay API) read to deduplicate a retried mutation.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

pub use crate::retry::RetryPolicy;

/// Settings of a [`PayClient`].
#[derive(Clone)]
pub struct PayConfig {
    /// The route table: base URL and one route per operation.
    pub routes: RouteTable,
    /// Sent as `Authorization: Bearer <token>` when set (`ALTAN_PAY_TOKEN`).
    pub token: Option<secrecy::SecretString>,
    /// Per attempt, from connect to the last byte of the body.
    pub timeout: Duration,
    /// How often and how long to retry what is safe to retry.
    pub retry: RetryPolicy,
    /// The largest answer read from the API, in bytes: one tool result. A longer one is
    /// [`PayError::InvalidResponse`] naming the limit, never read whole.
    pub max_response_bytes: usize,
}

/// The default [`PayConfig::max_response_bytes`]: a page of 100 Stripe subscriptions with
/// their items is some 800 KB; more than twice that is not an answer to keep in a session.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

/// The token is redacted: configs end up in logs and panic messages.
impl std::fmt::Debug for PayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayConfig")
            .field("base_url", &self.routes.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl PayConfig {
    /// Settings with the given routes, no token, a 30 s timeout, the default retry policy and
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(routes: RouteTable) -> PayConfig {
        PayConfig {
            routes,
            token: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One operation to run against the Altan Pay API.
#[derive(Debug, Clone)]
pub struct PayCall<'a> {
    /// The route table's operation name, e.g. `products.create`.
    pub operation: &'a str,
    /// The Altan account the call acts for.
    pub account_id: &'a str,
    /// The account's Stripe Connect id (`acct_...`), needed by routes whose path has
    /// `{stripe_connect_id}` ([`PayClient::stripe_connect_id`] finds it); `None` otherwise.
    pub stripe_connect_id: Option<&'a str>,
    /// The object id, for routes that address one object.
    pub id: Option<&'a str>,
    /// Stripe parameters (a JSON object).
    pub params: Value,
    /// Required for mutations: the same key on a retry means the same Stripe object.
    pub idempotency_key: Option<String>,
}

/// A cheap-to-clone client; clones share the connection pool and the Connect id cache.
#[derive(Clone)]
pub struct PayClient {
    http: reqwest::Client,
    config: Arc<PayConfig>,
    connect_ids: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient")
            .field("base_url", &self.config.routes.base_url)
            .field("token", &self.config.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PayClient {
    /// A client for `config`; fails only if the HTTP client cannot be built (TLS setup).
    pub fn new(config: PayConfig) -> Result<PayClient, PayError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("altan-pay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PayError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(PayClient {
            http,
            config: Arc::new(config),
            connect_ids: Arc::default(),
        })
    }

    /// The route table this client calls.
    pub fn routes(&self) -> &RouteTable {
        &self.config.routes
    }

    /// The Stripe Connect id of an account, asked once and then remembered.
    pub async fn stripe_connect_id(&self, account_id: &str) -> Result<String, PayError> {
        if let Some(id) = self.cached_connect_id(account_id) {
            return Ok(id);
        }
        let body = self
            .call(PayCall {
                operation: "account.stripe_connect_id",
                account_id,
                stripe_connect_id: None,
                id: None,
                params: json!({}),
                idempotency_key: None,
            })
            .await?;
        let id = body
            .get("stripe_connect_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::InvalidResponse {
                status: 200,
                detail: "the answer has no `stripe_connect_id` string".into(),
                excerpt: excerpt(&body.to_string()),
            })?
            .to_string();
        self.remember_connect_id(account_id, &id);
        Ok(id)
    }

    pub(crate) fn cached_connect_id(&self, account_id: &str) -> Option<String> {
        self.connect_ids
            .lock()
            .ok()
            .and_then(|m| m.get(account_id).cloned())
    }

    pub(crate) fn remember_connect_id(&self, account_id: &str, connect_id: &str) {
        if let Ok(mut m) = self.connect_ids.lock() {
            m.insert(account_id.to_string(), connect_id.to_string());
        }
    }

    /// Runs one operation, retrying what is safe to retry, and returns Stripe's JSON.
    pub async fn call(&self, call: PayCall<'_>) -> Result<Value, PayError> {
        let route = self
            .config
            .routes
            .get(call.operation)
            .ok_or_else(|| PayError::Config(format!("no route for `{}`", call.operation)))?;
        if !call.params.is_object() {
            return Err(PayError::Config(format!(
                "parameters for `{}` must be a JSON object",
                call.operation
            )));
        }
        if route.kind.is_mutation() && call.idempotency_key.is_none() {
            return Err(PayError::Config(format!(
                "`{}` changes Stripe and needs an idempotency key",
                call.operation
            )));
        }
        let path = route.expand(&RouteValues {
            account_id: Some(call.account_id),
            id: call.id,
            stripe_connect_id: call.stripe_connect_id,
        })?;
        let url = self.url_with_params(&path, route.method, &call.params);
        let body = match route.method {
            Method::Post => Some(json!({ "payload": call.params }).to_string()),
            Method::Get | Method::Delete => None,
        };
        let headers = self.headers(call.idempotency_key.as_deref(), body.is_some())?;

        let mut attempt = 0;
        // Once an attempt may have reached Stripe, the call's outcome stays unknown.
        let mut uncertain = false;
        loop {
            attempt += 1;
            // One span per attempt; the path template, never the URL (ids, e-mails in the query).
            let method = route.method.as_str();
            let span = info_span!(
                "pay_request",
                otel.name = %format_args!("{method} {}", call.operation),
                otel.kind = "client",
                http.request.method = method,
                url.template = %route.path,
                altan_pay.operation = call.operation,
                http.request.resend_count = i64::from(attempt - 1),
                http.response.status_code = tracing::field::Empty,
            );
            let outcome = self
                .send_once(route.method, &url, &headers, body.clone())
                .instrument(span)
                .await;
            let wait = match &outcome {
                Ok(_) => None,
                Err(failure) => self.retry_wait(failure, attempt),
            };
            match (outcome, wait) {
                (Ok(value), _) => return Ok(value),
                (Err(failure), Some(wait)) => {
                    uncertain |= failure.error.outcome_unknown();
                    warn!(operation = call.operation, attempt, ?wait, error = %failure.error, "retrying Altan Pay call");
                    tokio::time::sleep(wait).await;
                }
                (Err(failure), None) => {
                    return Err(failure
                        .error
                        .with_attempts(attempt)
                        .after_uncertain(uncertain && route.kind.is_mutation()));
                }
            }
        }
    }

    /// How long to wait before the next attempt, or `None` to give up.
    /// Every call that reaches here is safe to resend: reads are, and `call` refuses a
    /// mutation without an idempotency key.
    fn retry_wait(&self, failure: &Failure, attempt: u32) -> Option<Duration> {
        self.config
            .retry
            .wait(attempt, failure.error.is_retryable(), failure.retry_after)
    }

    fn url_with_params(&self, path: &str, method: Method, params: &Value) -> String {
        let mut url = format!("{}{}", self.config.routes.base_url, path);
        if method == Method::Get {
            let query = super::form::encode(params);
            if !query.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&query);
            }
        }
        url
    }

    fn headers(
        &self,
        idempotency_key: Option<&str>,
        json_body: bool,
    ) -> Result<HeaderMap, PayError> {
        let mut headers = HeaderMap::new();
        if json_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(token) = &self.config.token {
            let mut value = HeaderValue::from_str(&format!(
                "Bearer {}",
                secrecy::ExposeSecret::expose_secret(token)
            ))
            .map_err(|_| {
                PayError::Config(
                    "ALTAN_PAY_TOKEN contains characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key).map_err(|_| {
                PayError::Config("the idempotency key is not a valid header value".into())
            })?;
            headers.insert(IDEMPOTENCY_HEADER, value);
        }
        Ok(headers)
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Option<String>,
    ) -> Result<Value, Failure> {
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = self.http.request(method, url).headers(headers.clone());
        if let Some(body) = body {
            request = request.body(body);
        }
        let mut response = request.send().await.map_err(Failure::transport)?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", i64::from(status.as_u16()));
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = self.config.max_response_bytes;
        let Some(bytes) = read_capped(&mut response, limit)
            .await
            .map_err(Failure::transport)?
        else {
            return Err(Failure::plain(PayError::InvalidResponse {
                status: status.as_u16(),
                detail: format!(
                    "the answer is longer than {limit} bytes, more than one tool result may hold (ask for fewer objects, e.g. a smaller `limit`)"
                ),
                excerpt: "(not read)".into(),
            }));
        };
        debug!(%status, bytes = bytes.len(), "Altan Pay answered");
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if status.is_success() {
            return match parsed {
                Ok(value) if value.is_object() => Ok(value),
                Ok(_) => Err(Failure::plain(PayError::InvalidResponse {
                    status: status.as_u16(),
                    detail: "the answer is JSON but not an object".into(),
                    excerpt: excerpt_bytes(&bytes),
                })),
                Err(e) => Err(Failure::plain(PayError::InvalidResponse {
                    status: status.as_u16(),
                    detail: format!("the answer is not valid JSON ({e})"),
                    excerpt: excerpt_bytes(&bytes),
                })),
            };
        }
        let error = match parsed
            .ok()
            .and_then(|v| serde_json::from_value::<ErrorBody>(v).ok())
        {
            Some(body) => PayError::Stripe {
                status: status.as_u16(),
                error: Box::new(body.error),
                request_id,
                attempts: 1,
            },
            None => PayError::Http {
                status: status.as_u16(),
                excerpt: excerpt_bytes(&bytes),
                attempts: 1,
            },
        };
        Err(Failure { error, retry_after })
    }
}

/// One failed attempt and what the server asked about waiting.
struct Failure {
    error: PayError,
    retry_after: Option<Duration>,
}

impl Failure {
    fn plain(error: PayError) -> Failure {
        Failure {
            error,
            retry_after: None,
        }
    }

    fn transport(e: reqwest::Error) -> Failure {
        let e = super::error::without_query(e);
        let error = if e.is_timeout() {
            PayError::Timeout { attempts: 1 }
        } else if e.is_connect() {
            PayError::Connect {
                detail: root_cause(&e),
                attempts: 1,
            }
        } else if e.is_body() || e.is_decode() || e.is_request() {
            // The connection broke while the answer was on its way: same as a lost answer.
            PayError::Connect {
                detail: root_cause(&e),
                attempts: 1,
            }
        } else {
            PayError::Config(format!("the request could not be sent: {}", root_cause(&e)))
        };
        Failure::plain(error)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

pub use crate::retry::parse_retry_after;

/// Reads a response body of at most `limit` bytes; `Ok(None)` when it is longer (the rest is
/// left unread and the connection dropped).
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

const EXCERPT_LEN: usize = 200;

fn excerpt(s: &str) -> String {
    let mut end = s.len().min(EXCERPT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// A JSON value cut to an excerpt, for errors and logs.
pub(crate) fn excerpt_value(value: &Value) -> String {
    excerpt(&value.to_string())
}

/// An upstream body cut to an excerpt, without query strings (it goes into errors and logs).
fn excerpt_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty body)".into();
    }
    excerpt(&super::error::scrub_queries(&String::from_utf8_lossy(
        &bytes[..bytes.len().min(4 * EXCERPT_LEN)],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= EXCERPT_LEN + '…'.len_utf8());
    }
}
