//! A local Altan Pay API server on the same route table as the client: the embedded sandbox
//! (a stateful Stripe emulator) or a Stripe REST upstream behind it.

pub mod faults;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::pay::RouteTable;

/// One Altan Pay API call, after the gateway matched its route and opened the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct PayRequest {
    /// The route table's operation name, e.g. `products.create`.
    pub operation: String,
    /// The Altan account the call is made for; the sandbox keeps each account's objects apart.
    pub account_id: String,
    /// The Stripe Connect account (`acct_...`) the call acts on, when the envelope names one.
    pub stripe_connect_id: Option<String>,
    /// The object id from the path, for retrieve/update/delete/cancel.
    pub id: Option<String>,
    /// Stripe parameters: the `payload` of a POST, or the decoded query of a GET
    /// (query values arrive as strings; the backend coerces them).
    pub params: Map<String, Value>,
    /// The `Idempotency-Key` header: a repeat with the same key gets the first answer back.
    pub idempotency_key: Option<String>,
}

/// What the backend answers: an HTTP status and a Stripe-shaped JSON body
/// (the object, a list, a deleted object, or `{"error": {...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct PayResponse {
    /// The HTTP status, e.g. 200, 400, 404.
    pub status: u16,
    /// The JSON body sent as is.
    pub body: Value,
}

/// Something that can serve Altan Pay operations: the sandbox or a Stripe upstream.
pub trait Backend: Send + Sync + 'static {
    /// Serves one call; every outcome, refusals included, is a [`PayResponse`].
    fn handle(&self, request: PayRequest)
    -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>>;
}

pub mod error;
pub mod sandbox;
pub mod server;

pub use sandbox::Sandbox;
pub use server::{GatewayHandle, MAX_BODY_BYTES, serve, serve_with_shutdown, spawn, spawn_on};

/// Which backend `altan-pay gateway` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The embedded Stripe emulator.
    Sandbox,
    /// Stripe's REST API (or a Stripe-compatible server).
    Stripe,
}

/// The settings of `altan-pay gateway`.
#[derive(Clone)]
pub struct GatewayOptions {
    /// Address to listen on.
    pub addr: String,
    /// Backend behind the routes.
    pub backend: BackendKind,
    /// SQLite file for the sandbox's state (in memory when absent).
    pub data: Option<PathBuf>,
    /// JSON initial state to load into the sandbox at start (see `sandbox::seed`).
    pub state: Option<PathBuf>,
    /// Route table to serve instead of the embedded one.
    pub routes: Option<PathBuf>,
    /// Stripe's API base URL for `--backend stripe` (a Stripe-compatible server in tests);
    /// the secret key comes from `STRIPE_API_KEY`.
    pub stripe_base_url: Option<String>,
    /// Require `Authorization: Bearer <token>` on every request.
    pub token: Option<secrecy::SecretString>,
    /// Fault injection rules (TOML, or JSON by extension; see `gateway::faults`).
    pub faults: Option<PathBuf>,
    /// With `--backend stripe`: the Connect account each Altan account acts on,
    /// `ws_1=acct_1,ws_2=acct_2`. A request naming another Connect id, or for an account bound
    /// to none, is refused (403) and nothing reaches Stripe.
    pub connect_account: Vec<String>,
    /// With `--backend stripe`: Altan accounts that act on the platform's own Stripe account
    /// (no `Stripe-Account`); a request for one of them naming a Connect id is refused.
    pub platform_account: Vec<String>,
}

/// The token never appears in debug output.
impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("addr", &self.addr)
            .field("backend", &self.backend)
            .field("data", &self.data)
            .field("state", &self.state)
            .field("routes", &self.routes)
            .field("stripe_base_url", &self.stripe_base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("faults", &self.faults)
            .field("connect_account", &self.connect_account)
            .field("platform_account", &self.platform_account)
            .finish()
    }
}

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The `--routes` table could not be read.
    #[error(transparent)]
    Routes(#[from] crate::pay::RouteError),
    /// The sandbox's file could not be opened or its initial state not loaded.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The `--state` document could not be read or is not JSON.
    #[error("cannot read the initial state {path}: {reason}")]
    State {
        /// The `--state` path as given.
        path: String,
        /// What went wrong reading or parsing it.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The `--addr` as given.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server stopped on an I/O error while serving.
    #[error("gateway server: {0}")]
    Serve(std::io::Error),
    /// The Stripe upstream is misconfigured: no key, a bad base URL or bad account bindings.
    #[error("Stripe upstream: {0}")]
    Upstream(String),
    /// The `--faults` file could not be read or is not a valid rule set.
    #[error(transparent)]
    Faults(#[from] faults::FaultConfigError),
}

/// Runs `altan-pay gateway` until Ctrl-C.
pub async fn run(args: GatewayOptions) -> Result<(), GatewayError> {
    let routes = match &args.routes {
        Some(path) => RouteTable::from_file(path)?,
        None => RouteTable::embedded(),
    };
    let backend: Arc<dyn Backend> = match args.backend {
        BackendKind::Sandbox => {
            if !args.connect_account.is_empty() || !args.platform_account.is_empty() {
                return Err(GatewayError::Upstream(
                    "--connect-account and --platform-account need --backend stripe (the sandbox binds an account's Connect id on first use)".into(),
                ));
            }
            Arc::new(open_sandbox(&args)?)
        }
        BackendKind::Stripe => {
            let mut config = upstream::UpstreamConfig::from_env()
                .map_err(|e| GatewayError::Upstream(e.to_string()))?;
            if let Some(url) = &args.stripe_base_url {
                config = config.with_base_url(url.clone());
            }
            let config = bind_accounts(config, &args)?;
            Arc::new(
                upstream::StripeUpstream::new(config)
                    .map_err(|e| GatewayError::Upstream(e.to_string()))?,
            )
        }
    };
    let backend = faults::FaultyBackend::wrap_from_file(backend, args.faults.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: args.addr.clone(),
            source,
        })?;
    let shown = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.addr.clone());
    tracing::info!("altan-pay gateway listening on http://{shown}");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_with_shutdown(listener, routes, backend, args.token, stop)
        .await
        .map_err(GatewayError::Serve)
}

/// The account bindings of `--connect-account` and `--platform-account`; at least one is
/// needed, since an upstream without bindings would refuse every request.
fn bind_accounts(
    mut config: upstream::UpstreamConfig,
    args: &GatewayOptions,
) -> Result<upstream::UpstreamConfig, GatewayError> {
    let bad = |m: String| GatewayError::Upstream(m);
    for pair in &args.connect_account {
        let (account, connect) = pair
            .split_once('=')
            .map(|(a, c)| (a.trim(), c.trim()))
            .filter(|(a, c)| !a.is_empty() && !c.is_empty())
            .ok_or_else(|| bad(format!("--connect-account: `{pair}` is not ACCOUNT=ACCT")))?;
        if let Some(earlier) = config.connect_ids.get(account).filter(|c| *c != connect) {
            return Err(bad(format!(
                "--connect-account: account `{account}` is bound to both `{earlier}` and `{connect}`"
            )));
        }
        config = config.with_connect_id(account, connect);
    }
    for account in args.platform_account.iter().map(|a| a.trim()) {
        if account.is_empty() {
            return Err(bad("--platform-account: an empty account id".into()));
        }
        config = config.with_platform_account(account);
    }
    if !config.has_bindings() {
        return Err(bad(
            "--backend stripe needs each account's Stripe account: --connect-account ACCOUNT=acct_... (or --platform-account ACCOUNT); requests for an account without one are refused".into(),
        ));
    }
    Ok(config)
}

/// Starts the embedded sandbox, in memory, on an ephemeral loopback port.
pub(crate) async fn spawn_sandbox(routes: RouteTable) -> std::io::Result<GatewayHandle> {
    spawn(routes, Arc::new(Sandbox::in_memory()), None).await
}

/// The sandbox `args` ask for: in memory or on file, seeded when `--state` is given.
pub fn open_sandbox(args: &GatewayOptions) -> Result<Sandbox, GatewayError> {
    let sandbox = match &args.data {
        Some(path) => Sandbox::open(path)?,
        None => Sandbox::in_memory(),
    };
    if let Some(path) = &args.state {
        let failed = |reason: String| GatewayError::State {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| failed(e.to_string()))?;
        sandbox
            .seed(&doc)
            .map_err(|e| GatewayError::Sandbox(e.into()))?;
    }
    Ok(sandbox)
}
