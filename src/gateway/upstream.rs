//! The Stripe upstream backend: each Altan Pay operation becomes one call to Stripe's REST API
//! (or a Stripe-compatible server), and Stripe's status and body come back unchanged.
//!
//! The upstream holds its own binding of each Altan account to the Stripe account it may act
//! on: a Connect account (`Stripe-Account`) or, for accounts bound to it explicitly, the
//! platform account itself. A request for an account with no binding, or naming a Connect id
//! that is not its account's, is refused with 403 and nothing is sent to Stripe: whatever a
//! caller of the gateway says, one account never reaches another's Stripe.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Backend, PayRequest, PayResponse};
use crate::pay::form;

/// Stripe's production API; tests point the backend at a local fake instead.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// Long enough for Stripe's slowest list calls, short enough that a hung upstream does not
/// hold the agent's turn.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the upstream reaches Stripe. `Debug` shows no secret: the key is a [`SecretString`].
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme, host and optional port, without a trailing `/v1`.
    pub base_url: String,
    /// The platform's secret key (`sk_test_...` / `sk_live_...`), sent as a Bearer token.
    pub secret_key: SecretString,
    /// Altan account id → Stripe Connect id: the only Connect account each account may act
    /// on. Answers `account.stripe_connect_id`, and is the connected account used when a
    /// request names none; a request naming another one is refused.
    pub connect_ids: HashMap<String, String>,
    /// Altan accounts that act on the platform's own Stripe account (no `Stripe-Account`);
    /// a request for one of them naming any Connect id is refused. An account in neither
    /// this set nor `connect_ids` is refused whatever it names.
    pub platform_accounts: BTreeSet<String>,
    /// Per-request timeout (connect, send and read the whole answer).
    pub timeout: Duration,
    /// Optional `Stripe-Version` header; without it the account's default version applies.
    pub stripe_version: Option<String>,
}

impl UpstreamConfig {
    /// A config for Stripe itself with the given secret key.
    pub fn new(secret_key: impl Into<String>) -> Self {
        UpstreamConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            secret_key: SecretString::from(secret_key.into()),
            connect_ids: HashMap::new(),
            platform_accounts: BTreeSet::new(),
            timeout: DEFAULT_TIMEOUT,
            stripe_version: None,
        }
    }

    /// Reads `STRIPE_API_KEY` (required) and `STRIPE_BASE_URL` (optional).
    pub fn from_env() -> Result<Self, UpstreamError> {
        let key = std::env::var("STRIPE_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or(UpstreamError::MissingKey)?;
        let mut config = UpstreamConfig::new(key);
        if let Ok(url) = std::env::var("STRIPE_BASE_URL")
            && !url.trim().is_empty()
        {
            config.base_url = url;
        }
        Ok(config)
    }

    /// Points the upstream at another Stripe-compatible server (a local fake in tests).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Binds an account to its Connect account: the only one its requests may act on.
    pub fn with_connect_id(
        mut self,
        account_id: impl Into<String>,
        stripe_connect_id: impl Into<String>,
    ) -> Self {
        self.connect_ids
            .insert(account_id.into(), stripe_connect_id.into());
        self
    }

    /// Binds an account to the platform's own Stripe account (requests without
    /// `Stripe-Account`).
    pub fn with_platform_account(mut self, account_id: impl Into<String>) -> Self {
        self.platform_accounts.insert(account_id.into());
        self
    }

    /// Whether any account is bound: an upstream without bindings refuses every request.
    pub(crate) fn has_bindings(&self) -> bool {
        !self.connect_ids.is_empty() || !self.platform_accounts.is_empty()
    }

    /// Replaces the per-request timeout ([`DEFAULT_TIMEOUT`] by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why an upstream could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `STRIPE_API_KEY` is unset or blank.
    #[error("STRIPE_API_KEY is not set; the stripe backend needs a secret key")]
    MissingKey,
    /// The base URL does not parse or is not http(s).
    #[error("invalid Stripe base URL `{url}`: {reason}")]
    BadBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The secret key has characters an HTTP header cannot carry.
    #[error("the secret key can't be sent as an HTTP header (it has control characters)")]
    BadKey,
    #[error(
        "account `{account_id}` is bound both to Connect account `{connect_id}` and to the platform account"
    )]
    /// An account is in both `connect_ids` and `platform_accounts`.
    DoubleBinding {
        /// The Altan account bound twice.
        account_id: String,
        /// The Connect account it is also bound to.
        connect_id: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// A [`Backend`] that forwards every operation to Stripe's REST API.
#[derive(Debug, Clone)]
pub struct StripeUpstream {
    base_url: String,
    connect_ids: HashMap<String, String>,
    platform_accounts: BTreeSet<String>,
    client: reqwest::Client,
}

/// The Stripe account one request may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StripeAccount<'a> {
    /// A connected account: sent as `Stripe-Account`.
    Connect(&'a str),
    /// The platform's own account: no `Stripe-Account`.
    Platform,
}

impl StripeUpstream {
    /// Checks the base URL and key once, so a bad config fails at startup, not per call.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let base = config.base_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|e| UpstreamError::BadBaseUrl {
            url: config.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UpstreamError::BadBaseUrl {
                url: config.base_url.clone(),
                reason: "the scheme must be http or https".into(),
            });
        }
        let mut headers = HeaderMap::new();
        if let Some((account_id, connect_id)) = config
            .connect_ids
            .iter()
            .find(|(account, _)| config.platform_accounts.contains(*account))
        {
            return Err(UpstreamError::DoubleBinding {
                account_id: account_id.clone(),
                connect_id: connect_id.clone(),
            });
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.secret_key.expose_secret()))
                .map_err(|_| UpstreamError::BadKey)?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        if let Some(version) = &config.stripe_version {
            let value = HeaderValue::from_str(version).map_err(|_| UpstreamError::BadKey)?;
            headers.insert(HeaderName::from_static("stripe-version"), value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .user_agent(concat!("altan-pay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Client(e.to_string()))?;
        Ok(StripeUpstream {
            base_url: base,
            connect_ids: config.connect_ids,
            platform_accounts: config.platform_accounts,
            client,
        })
    }

    /// The Stripe account `request` may act on: its account's binding, when the Connect id it
    /// names (if any) is that binding; else the 403 that says why, and nothing is sent.
    fn stripe_account<'a>(
        &'a self,
        request: &PayRequest,
    ) -> Result<StripeAccount<'a>, PayResponse> {
        let account = request.account_id.as_str();
        let named = request
            .stripe_connect_id
            .as_deref()
            .filter(|id| !id.is_empty());
        let bound = match self.connect_ids.get(account) {
            Some(connect_id) => StripeAccount::Connect(connect_id),
            None if self.platform_accounts.contains(account) => StripeAccount::Platform,
            None => {
                return Err(forbidden(format!(
                    "Account '{account}' has no Stripe account binding on this gateway; it acts on no Stripe account."
                )));
            }
        };
        match (named, bound) {
            (None, bound) => Ok(bound),
            (Some(named), StripeAccount::Connect(own)) if named == own => Ok(bound),
            (Some(named), StripeAccount::Connect(_)) => Err(forbidden(format!(
                "The Stripe Connect id '{named}' is not the Connect account of account '{account}'."
            ))),
            (Some(named), StripeAccount::Platform) => Err(forbidden(format!(
                "Account '{account}' acts on the platform account; the Stripe Connect id '{named}' is not its own."
            ))),
        }
    }

    /// The base URL requests go to (without `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn call(&self, request: PayRequest) -> PayResponse {
        if request.operation == "account.stripe_connect_id" {
            return self.connect_id_answer(&request.account_id);
        }
        let plan = match plan(&request) {
            Ok(plan) => plan,
            Err(response) => return response,
        };
        let connect_id = match self.stripe_account(&request) {
            Ok(StripeAccount::Connect(id)) => Some(id),
            Ok(StripeAccount::Platform) => None,
            Err(refused) => return refused,
        };
        let mut url = format!("{}{}", self.base_url, plan.path);
        let params = Value::Object(request.params.clone());
        let encoded = form::encode(&params);
        let mut builder = match plan.method {
            StripeMethod::Get | StripeMethod::Delete => {
                if !encoded.is_empty() {
                    url.push('?');
                    url.push_str(&encoded);
                }
                if plan.method == StripeMethod::Get {
                    self.client.get(&url)
                } else {
                    self.client.delete(&url)
                }
            }
            StripeMethod::Post => self
                .client
                .post(&url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encoded),
        };
        if let Some(connect_id) = connect_id {
            match HeaderValue::from_str(connect_id) {
                Ok(v) => builder = builder.header("Stripe-Account", v),
                Err(_) => {
                    return invalid_request(
                        400,
                        "stripe_connect_id",
                        "stripe_connect_id can't be sent as a header (control characters)",
                    );
                }
            }
        }
        if let Some(key) = request.idempotency_key.as_deref() {
            match HeaderValue::from_str(key) {
                Ok(v) => builder = builder.header("Idempotency-Key", v),
                Err(_) => {
                    return invalid_request(
                        400,
                        "Idempotency-Key",
                        "the Idempotency-Key can't be sent as a header (control characters)",
                    );
                }
            }
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return transport_error(&plan, e),
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return transport_error(&plan, e),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(body) => PayResponse { status, body },
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let snippet: String = text.chars().take(200).collect();
                api_error(format!(
                    "Stripe upstream answered {} {} with HTTP {status} and a body that is not JSON: {snippet:?}",
                    plan.method.as_str(),
                    plan.path
                ))
            }
        }
    }

    fn connect_id_answer(&self, account_id: &str) -> PayResponse {
        match self.connect_ids.get(account_id) {
            Some(connect_id) => PayResponse {
                status: 200,
                // The sandbox's shape, so clients see one answer whichever backend runs.
                body: json!({
                    "object": "stripe_connect_id",
                    "account_id": account_id,
                    "stripe_connect_id": connect_id,
                }),
            },
            None => PayResponse {
                status: 404,
                body: json!({"error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "account_id",
                    "message": format!(
                        "No Stripe Connect account is configured for account_id '{account_id}' on this gateway's Stripe upstream."
                    ),
                }}),
            },
        }
    }
}

impl Backend for StripeUpstream {
    fn handle(
        &self,
        request: PayRequest,
    ) -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>> {
        Box::pin(self.call(request))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StripeMethod {
    Get,
    Post,
    Delete,
}

impl StripeMethod {
    fn as_str(self) -> &'static str {
        match self {
            StripeMethod::Get => "GET",
            StripeMethod::Post => "POST",
            StripeMethod::Delete => "DELETE",
        }
    }
}

/// The Stripe call an operation maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    method: StripeMethod,
    path: String,
}

/// Resources Stripe serves and the actions each one allows here (prices and promotion codes
/// can't be deleted in Stripe; only checkout sessions are create-only).
const RESOURCES: &[(&str, &str, &[&str])] = &[
    (
        "products",
        "/v1/products",
        &["create", "list", "retrieve", "update", "delete"],
    ),
    (
        "prices",
        "/v1/prices",
        &["create", "list", "retrieve", "update"],
    ),
    (
        "customers",
        "/v1/customers",
        &["create", "list", "retrieve", "update", "delete"],
    ),
    (
        "subscriptions",
        "/v1/subscriptions",
        &["create", "list", "retrieve", "update", "cancel"],
    ),
    (
        "coupons",
        "/v1/coupons",
        &["create", "list", "retrieve", "update", "delete"],
    ),
    (
        "promotion_codes",
        "/v1/promotion_codes",
        &["create", "list", "retrieve", "update"],
    ),
    ("checkout_sessions", "/v1/checkout/sessions", &["create"]),
];

/// Maps an operation to Stripe's method and path, or answers the Stripe-shaped error the
/// caller should see.
fn plan(request: &PayRequest) -> Result<Plan, PayResponse> {
    let unknown = || {
        invalid_request(
            404,
            "operation",
            &format!(
                "Unrecognized Altan Pay operation `{}`: the Stripe upstream has no route for it.",
                request.operation
            ),
        )
    };
    let (resource, action) = request.operation.split_once('.').ok_or_else(unknown)?;
    let (_, base, actions) = RESOURCES
        .iter()
        .find(|(name, _, _)| *name == resource)
        .ok_or_else(unknown)?;
    if !actions.contains(&action) {
        return Err(unknown());
    }
    let with_id = || -> Result<String, PayResponse> {
        match request.id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => Ok(format!("{base}/{}", encode_segment(id))),
            None => Err(invalid_request(
                400,
                "id",
                &format!("`{}` needs the object id in the path.", request.operation),
            )),
        }
    };
    let (method, path) = match action {
        "create" => (StripeMethod::Post, base.to_string()),
        "list" => (StripeMethod::Get, base.to_string()),
        "retrieve" => (StripeMethod::Get, with_id()?),
        "update" => (StripeMethod::Post, with_id()?),
        "delete" | "cancel" => (StripeMethod::Delete, with_id()?),
        _ => return Err(unknown()),
    };
    Ok(Plan { method, path })
}

/// Percent-encodes an object id for one path segment, so an id can't add path segments.
fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn invalid_request(status: u16, param: &str, message: &str) -> PayResponse {
    PayResponse {
        status,
        body: json!({"error": {
            "type": "invalid_request_error",
            "param": param,
            "message": message,
        }}),
    }
}

/// 403 in Stripe's shape for a Connect account the request may not act on.
fn forbidden(message: String) -> PayResponse {
    PayResponse {
        status: 403,
        body: json!({"error": {
            "type": "invalid_request_error",
            "code": "account_invalid",
            "param": "stripe_connect_id",
            "message": message,
        }}),
    }
}

fn api_error(message: String) -> PayResponse {
    PayResponse {
        status: 502,
        body: json!({"error": {"type": "api_error", "message": message}}),
    }
}

fn transport_error(plan: &Plan, error: reqwest::Error) -> PayResponse {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The source chain names the real cause (DNS, refused, TLS). The URL is not part of it:
    // its query can hold Stripe parameters (a customer's e-mail in a list filter), and this
    // text reaches the client and its logs; the method and path name the call.
    let error = error.without_url();
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    api_error(format!(
        "Stripe upstream {what} on {} {}: {cause}",
        plan.method.as_str(),
        plan.path
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn req(operation: &str, id: Option<&str>) -> PayRequest {
        PayRequest {
            operation: operation.into(),
            account_id: "acc_1".into(),
            stripe_connect_id: None,
            id: id.map(String::from),
            params: Map::new(),
            idempotency_key: None,
        }
    }

    #[test]
    fn operations_map_to_stripe_paths() {
        let cases = [
            ("products.create", None, StripeMethod::Post, "/v1/products"),
            ("products.list", None, StripeMethod::Get, "/v1/products"),
            (
                "prices.retrieve",
                Some("price_1"),
                StripeMethod::Get,
                "/v1/prices/price_1",
            ),
            (
                "coupons.delete",
                Some("SAVE 10/x"),
                StripeMethod::Delete,
                "/v1/coupons/SAVE%2010%2Fx",
            ),
            (
                "subscriptions.cancel",
                Some("sub_1"),
                StripeMethod::Delete,
                "/v1/subscriptions/sub_1",
            ),
            (
                "promotion_codes.update",
                Some("promo_1"),
                StripeMethod::Post,
                "/v1/promotion_codes/promo_1",
            ),
            (
                "checkout_sessions.create",
                None,
                StripeMethod::Post,
                "/v1/checkout/sessions",
            ),
        ];
        for (op, id, method, path) in cases {
            let plan = plan(&req(op, id)).unwrap();
            assert_eq!((plan.method, plan.path.as_str()), (method, path), "{op}");
        }
    }

    #[test]
    fn impossible_operations_are_stripe_shaped_errors() {
        for (op, id, status) in [
            ("prices.delete", Some("price_1"), 404),
            ("promotion_codes.delete", Some("promo_1"), 404),
            ("nonsense", None, 404),
            ("products.retrieve", None, 400),
        ] {
            let err = plan(&req(op, id)).unwrap_err();
            assert_eq!(err.status, status, "{op}");
            assert_eq!(err.body["error"]["type"], "invalid_request_error", "{op}");
        }
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(matches!(
            StripeUpstream::new(UpstreamConfig::new("sk_test_x").with_base_url("ftp://x")),
            Err(UpstreamError::BadBaseUrl { .. })
        ));
        assert!(matches!(
            StripeUpstream::new(UpstreamConfig::new("sk_test\n")),
            Err(UpstreamError::BadKey)
        ));
    }

    #[tokio::test]
    async fn connect_id_comes_from_the_map() {
        let up = StripeUpstream::new(
            UpstreamConfig::new("sk_test_x").with_connect_id("acc_1", "acct_123"),
        )
        .unwrap();
        let ok = up.handle(req("account.stripe_connect_id", None)).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body["stripe_connect_id"], "acct_123");
        let mut other = req("account.stripe_connect_id", None);
        other.account_id = "acc_2".into();
        let missing = up.handle(other).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body["error"]["param"], "account_id");
    }

    #[tokio::test]
    async fn unreachable_upstream_is_a_502_api_error() {
        // Port 9 on loopback (discard) is closed on a test machine: connection refused.
        let up = StripeUpstream::new(
            UpstreamConfig::new("sk_test_x")
                .with_base_url("http://127.0.0.1:9")
                .with_timeout(Duration::from_secs(5))
                .with_platform_account("acc_1"),
        )
        .unwrap();
        let mut request = req("products.list", None);
        request
            .params
            .insert("email".into(), json!("ada@example.com"));
        let res = up.handle(request).await;
        assert_eq!(res.status, 502);
        assert_eq!(res.body["error"]["type"], "api_error");
        let message = res.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("GET /v1/products"), "{message}");
        assert!(
            !message.contains("ada@example.com") && !message.contains('?'),
            "the query string stays out of the error text: {message}"
        );
    }

    #[tokio::test]
    async fn a_hung_upstream_times_out_as_a_502() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never answers.
        let hold = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let up = StripeUpstream::new(
            UpstreamConfig::new("sk_test_x")
                .with_base_url(format!("http://{addr}"))
                .with_timeout(Duration::from_millis(300))
                .with_platform_account("acc_1"),
        )
        .unwrap();
        let res = up.handle(req("customers.retrieve", Some("cus_1"))).await;
        hold.abort();
        assert_eq!(res.status, 502);
        let message = res.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("timed out"), "{message}");
    }

    #[test]
    fn debug_of_the_config_shows_no_secret_key() {
        let config = UpstreamConfig::new("sk_live_very_secret_key");
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk_live_very_secret_key"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[tokio::test]
    async fn a_connect_id_that_is_not_the_accounts_binding_is_refused_before_stripe() {
        // Port 9 is closed: a request that went out would be a 502, not a 403.
        let up = StripeUpstream::new(
            UpstreamConfig::new("sk_test_x")
                .with_base_url("http://127.0.0.1:9")
                .with_connect_id("acc_1", "acct_1")
                .with_platform_account("acc_platform"),
        )
        .unwrap();
        let refused = |account: &str, connect: Option<&str>| {
            let mut request = req("products.list", None);
            request.account_id = account.into();
            request.stripe_connect_id = connect.map(String::from);
            request
        };
        for (account, connect) in [
            ("acc_1", Some("acct_2")),
            ("acc_platform", Some("acct_2")),
            ("acc_unbound", None),
            ("acc_unbound", Some("acct_2")),
        ] {
            let res = up.handle(refused(account, connect)).await;
            assert_eq!(res.status, 403, "{account} {connect:?}: {}", res.body);
            assert_eq!(res.body["error"]["param"], "stripe_connect_id");
        }
        for (account, connect) in [("acc_1", Some("acct_1")), ("acc_1", None)] {
            let res = up.handle(refused(account, connect)).await;
            assert_eq!(
                res.status, 502,
                "{account} {connect:?} went out: {}",
                res.body
            );
        }
    }

    #[test]
    fn an_account_bound_twice_is_refused_at_startup() {
        let config = UpstreamConfig::new("sk_test_x")
            .with_connect_id("acc_1", "acct_1")
            .with_platform_account("acc_1");
        assert!(matches!(
            StripeUpstream::new(config),
            Err(UpstreamError::DoubleBinding { .. })
        ));
    }
}
