//! `altan-pay serve`: the chat endpoint. A native thread API with SSE events, an
//! OpenAI-compatible API, bearer-token scoping, sessions and idempotency in SQLite or, for
//! several replicas, PostgreSQL (`--database-url`), one turn per thread (docs/server.md).

pub mod auth;
pub mod connect;
pub mod error;
pub mod listen;
mod native;
mod openai;
mod turn;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::agent::{Agent, AgentBuilder, AgentError};
use crate::config::PayOptions;
use crate::engine::Limits;
use crate::model::{OpenAiConfig, OpenAiModel};
use crate::policy::PolicyConfig;
use crate::store::{HistoryLimits, PgOptions, PgStore, ServeStore, SqliteStore};
pub use auth::{Access, Scope, Tokens};
pub use error::ApiError;
pub use listen::{BodyTimeout, ConnectionLimits};

/// The model name the OpenAI-compatible endpoint answers to.
pub const MODEL_NAME: &str = "altan-pay";

/// The settings of `altan-pay serve`.
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on; anything but loopback needs tokens.
    pub addr: String,
    /// The Altan Pay API the agent calls: a URL or the embedded sandbox, its token and limits.
    pub pay: PayOptions,
    /// SQLite file for sessions and idempotency records (created if missing); not used with
    /// --database-url.
    pub db: PathBuf,
    /// PostgreSQL instead of the SQLite files, for several replicas on one database:
    /// `postgres://user:password@host:port/db`, `?sslmode=require` for TLS.
    pub database_url: Option<String>,
    /// PostgreSQL connections for reads and writes.
    pub database_pool_size: usize,
    /// PostgreSQL connections for thread leases: at most this many turns run at once.
    pub database_lease_connections: usize,
    /// Extra root certificates (PEM) for TLS to PostgreSQL (a private CA); turns TLS on.
    pub database_ca_file: Option<PathBuf>,
    /// Seconds a request waits for another turn of its thread (on any replica) to finish
    /// before it is answered 409 with Retry-After.
    pub thread_wait_secs: u64,
    /// Bearer tokens and their accounts, TOML or JSON (see docs/server.md).
    pub tokens: Option<PathBuf>,
    /// Tokens as `token=acct1,acct2;token2=*`, added to those of --tokens.
    pub server_tokens: Option<secrecy::SecretString>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a connection may take to send its request line and headers (and a keep-alive
    /// connection may stay idle) before it is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive whole before it is answered 408.
    pub body_read_timeout_secs: u64,
    /// Connections open at once; more wait to be accepted. Keep it below the process's
    /// descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// Sent as `max_completion_tokens` on every model request; 0 sends none.
    pub max_completion_tokens: u32,
    /// The most answer text kept from one model call, in bytes; longer text is cut and marked.
    pub max_answer_bytes: usize,
    /// Seconds one turn (model and tools) may take before it stops and says so.
    pub turn_timeout_secs: u64,
    /// Messages of history kept per thread.
    pub history_messages: usize,
    /// Latest user turns whose tool results are kept whole; older ones keep only their ids.
    pub keep_tool_turns: usize,
    /// Hold destructive calls (delete, cancel, deactivate) until approved over the API.
    pub approve_destructive: bool,
    /// A prompt directory in Altan's layout instead of the embedded prompt.
    pub prompts: Option<PathBuf>,
    /// Stripe webhook endpoint secret(s) (`whsec_...`, comma-separated during a rotation);
    /// turns on `POST /v1/stripe/events` and `GET /v1/accounts/{id}/pending-syncs`.
    pub stripe_webhook_secret: Vec<String>,
    /// Which Altan account each Connect account belongs to: `acct_1=ws_1,acct_2=ws_2`. Routes
    /// Stripe events, and is each listed account's Connect id for turns (no lookup); other
    /// accounts' ids come from the Altan Pay API. A caller's Connect id that differs is refused.
    pub stripe_account_map: Vec<String>,
    /// The Altan account of events that name no Connect account.
    pub stripe_fixed_account: Option<String>,
    /// SQLite file of received events and pending syncs.
    pub events_db: PathBuf,
    /// The room API (e.g. `https://api.altan.ai`): pending syncs from Stripe events are posted
    /// to the account's thread at once instead of waiting for the next answer. Needs
    /// --stripe-webhook-secret, --room-agent-id and --room-thread.
    pub room_url: Option<String>,
    /// This agent's id in the room API (`agent_id` of the post).
    pub room_agent_id: Option<String>,
    /// The thread each account's handoffs go to: `ws_1=thread_1,ws_2=thread_2`. Accounts
    /// without one get theirs with the next answer.
    pub room_thread: Vec<String>,
    /// Altan's member id in the room, for the one `[@Altan](/member/<id>)` of each post.
    pub room_altan_member_id: Option<String>,
    /// Bearer token for the room API.
    pub room_token: Option<secrecy::SecretString>,
    /// Events arriving within this many milliseconds after the first go in one post.
    pub room_window_ms: u64,
    /// Sign every sync plan with this key (HMAC-SHA256); `altan-pay apply` given the same key
    /// applies only plans this server signed.
    pub plan_signing_key: Option<crate::sync::PlanSigningKey>,
}

/// Secrets (server tokens, webhook secrets, the room token) never appear in `Debug`.
impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<redacted>" } else { "<none>" };
        f.debug_struct("ServeOptions")
            .field("addr", &self.addr)
            .field("pay", &self.pay)
            .field("db", &self.db)
            .field("database_url", &hidden(self.database_url.is_some()))
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "database_lease_connections",
                &self.database_lease_connections,
            )
            .field("database_ca_file", &self.database_ca_file)
            .field("thread_wait_secs", &self.thread_wait_secs)
            .field("tokens", &self.tokens)
            .field("server_tokens", &hidden(self.server_tokens.is_some()))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("body_read_timeout_secs", &self.body_read_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("max_completion_tokens", &self.max_completion_tokens)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("turn_timeout_secs", &self.turn_timeout_secs)
            .field("history_messages", &self.history_messages)
            .field("keep_tool_turns", &self.keep_tool_turns)
            .field("approve_destructive", &self.approve_destructive)
            .field("prompts", &self.prompts)
            .field(
                "stripe_webhook_secret",
                &hidden(!self.stripe_webhook_secret.is_empty()),
            )
            .field("stripe_account_map", &self.stripe_account_map)
            .field("stripe_fixed_account", &self.stripe_fixed_account)
            .field("events_db", &self.events_db)
            .field("room_url", &self.room_url)
            .field("room_agent_id", &self.room_agent_id)
            .field("room_thread", &self.room_thread)
            .field("room_altan_member_id", &self.room_altan_member_id)
            .field("room_token", &hidden(self.room_token.is_some()))
            .field("room_window_ms", &self.room_window_ms)
            .finish()
    }
}

/// Settings the handlers read.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes; a larger one is refused with 413 before it is
    /// parsed.
    pub max_body_bytes: usize,
    /// How long a request waits for the thread's running turn before a 409.
    pub thread_wait: Duration,
    /// Connection cap, header- and body-read timeouts.
    pub connections: ConnectionLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            thread_wait: Duration::from_secs(30),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    pub(crate) agent: Agent,
    pub(crate) store: Arc<dyn ServeStore>,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) config: Arc<ServerConfig>,
    /// Turns run as tasks here, so a client hanging up never cuts one short and shutdown
    /// can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Stripe events in, when a webhook secret is configured.
    pub(crate) events: Option<Arc<crate::events::EventsState>>,
    /// Each account's Stripe Connect id, the server's (never the caller's).
    pub(crate) connect: connect::ConnectIds,
}

impl ServerState {
    /// Builds the agent on `store`, so sessions and idempotency records share one database.
    pub fn new(
        builder: AgentBuilder,
        store: Arc<dyn ServeStore>,
        tokens: Tokens,
        config: ServerConfig,
    ) -> Result<ServerState, AgentError> {
        let agent = builder.store(store.clone()).build()?;
        Ok(ServerState {
            agent,
            store,
            tokens: Arc::new(tokens),
            config: Arc::new(config),
            tracker: TaskTracker::new(),
            events: None,
            connect: connect::ConnectIds::default(),
        })
    }

    /// Resolves each account's Connect id through `pay` (the agent's client, so the tools
    /// share what it remembers), `bindings` (account → Connect id) first. Without this, a
    /// request naming a Connect id is refused and the tools look it up themselves.
    pub fn resolve_connect_ids(
        mut self,
        pay: crate::pay::PayClient,
        bindings: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.connect = connect::ConnectIds::new(pay, bindings);
        self
    }

    /// Serves Stripe events too; the agent should take their pending syncs
    /// (`AgentBuilder::pending_source`) so the next answer hands them over.
    pub fn with_events(mut self, events: Arc<crate::events::EventsState>) -> Self {
        self.events = Some(events);
        self
    }

    /// The agent the handlers answer with.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

/// All routes: `/healthz`, the native thread API and the OpenAI-compatible API.
pub fn router(state: ServerState) -> Router {
    let v1 = Router::new()
        .route("/threads/{thread_id}/messages", post(native::post_messages))
        .route("/threads/{thread_id}", get(native::get_thread))
        .route(
            "/threads/{thread_id}/approvals/{approval_id}",
            post(native::post_approval),
        )
        .route("/chat/completions", post(openai::chat_completions))
        .route("/models", get(openai::list_models))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .method_not_allowed_fallback(error::method_not_allowed);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), authenticate)),
        )
        .nest("/v1", v1)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state.clone());
    // `/mcp`: the tools over the Model Context Protocol, behind the same tokens and scopes.
    #[cfg(feature = "mcp")]
    let app = app.merge(crate::mcp::http::router(
        state.agent.clone(),
        McpTokens(state.tokens.clone()),
        crate::mcp::http::HttpOptions {
            max_body_bytes: state.config.max_body_bytes,
            authenticated: !state.tokens.is_empty(),
        },
        state.events.clone(),
    ));
    let app = match &state.events {
        // The events POST is authenticated by Stripe's signature; the pending-syncs listing
        // shows customer data, so it takes a bearer token scoped to the account.
        Some(events) => app.merge(crate::events::router(events.clone()).route_layer(
            middleware::from_fn_with_state(state.clone(), authenticate_reads),
        )),
        None => app,
    };
    app.layer(middleware::from_fn_with_state(
        state.config.connections.body_read_timeout,
        listen::limit_body_time,
    ))
    .layer(middleware::from_fn(observe))
}

/// `GET /metrics`: every metric of the process in the Prometheus text format. Behind a token
/// when tokens are configured (any token: the figures carry no account).
async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
        .into_response()
}

/// One span (the HTTP server span, parent of the turn's) and one count per request, by route
/// template: the path's ids and the query never reach a label or an attribute.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    crate::metrics::global().http_request(&route, status, started.elapsed());
    response
}

/// Token and account checks for every route of the events part but the signed events POST
/// (HEAD included: axum answers it with the GET handler).
async fn authenticate_reads(
    State(state): State<ServerState>,
    params: Result<axum::extract::RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() != axum::http::Method::POST {
        let access = state.tokens.authenticate(request.headers())?;
        // The route's `{account_id}` (/v1/accounts/{account_id}/pending-syncs), decoded.
        let account = params.ok().and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "account_id")
                .map(|(_, value)| value.to_string())
        });
        access.check(account.as_deref())?;
    }
    Ok(next.run(request).await)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Checks the bearer token before anything else and leaves the request's [`Access`].
async fn authenticate(
    State(state): State<ServerState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let access = state.tokens.authenticate(request.headers())?;
    request.extensions_mut().insert(access);
    Ok(next.run(request).await)
}

/// `/mcp` takes the server's tokens: the account `X-Altan-Account-Id` names, or the token's
/// only one, and a token is refused for an account outside its scope.
#[cfg(feature = "mcp")]
#[derive(Clone)]
struct McpTokens(Arc<Tokens>);

#[cfg(feature = "mcp")]
impl crate::mcp::http::McpAuth for McpTokens {
    fn account(&self, headers: &axum::http::HeaderMap) -> Result<String, Box<Response>> {
        let refuse = |e: ApiError| Box::new(e.into_response());
        let access = self.0.authenticate(headers).map_err(refuse)?;
        let named = headers
            .get("x-altan-account-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|a| !a.is_empty());
        let only = match &access {
            Access::Token(Scope::Accounts(set)) if set.len() == 1 => set.iter().next(),
            _ => None,
        };
        let Some(account) = named.or(only.map(String::as_str)) else {
            return Err(refuse(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "name the account the MCP tools act for with the X-Altan-Account-Id header",
            )));
        };
        access.check(Some(account)).map_err(refuse)?;
        Ok(account.to_string())
    }
}

/// Serves until `shutdown` resolves, then finishes the connections and turns in flight.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = state.tracker.clone();
    let limits = state.config.connections;
    listen::serve_connections(listener, router(state), limits, shutdown).await?;
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// A server running in this process (tests, benchmarks).
pub struct ServerHandle {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The address the listener is bound to (the real port when it was bound to port 0).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    /// Stops accepting and waits for running turns to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the server on a bound listener.
pub fn spawn(listener: TcpListener, state: ServerState) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Ok(ServerHandle {
        base_url: format!("http://{addr}"),
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// The tokens of `--tokens FILE` and `ALTAN_PAY_SERVER_TOKENS` together.
fn load_tokens(args: &ServeOptions) -> Result<Tokens, String> {
    let mut tokens = match &args.tokens {
        Some(path) => Tokens::load(path).map_err(|e| e.to_string())?,
        None => Tokens::default(),
    };
    if let Some(text) = args
        .server_tokens
        .as_ref()
        .map(secrecy::ExposeSecret::expose_secret)
        .filter(|t| !t.trim().is_empty())
    {
        tokens.extend(Tokens::parse_env(text).map_err(|e| e.to_string())?);
    }
    Ok(tokens)
}

/// Without tokens, every address the name resolves to must be loopback.
async fn check_bind(addr: &str, tokens: &Tokens) -> Result<(), String> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("--addr `{addr}`: {e}"))?
        .collect();
    if tokens.is_empty() && resolved.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to listen on {addr} without tokens: configure --tokens FILE or ALTAN_PAY_SERVER_TOKENS, or listen on 127.0.0.1"
        ));
    }
    Ok(())
}

/// Runs `altan-pay serve` until Ctrl-C or SIGTERM, then finishes running turns.
pub async fn run(args: ServeOptions) -> Result<(), String> {
    let tokens = load_tokens(&args)?;
    check_bind(&args.addr, &tokens).await?;
    let model = OpenAiModel::new(OpenAiConfig {
        max_completion_tokens: (args.max_completion_tokens > 0)
            .then_some(args.max_completion_tokens),
        max_answer_bytes: args.max_answer_bytes.max(1),
        ..OpenAiConfig::from_env()
    })
    .map_err(|e| e.to_string())?;
    let pay = crate::config::pay_setup(&args.pay)
        .await
        .map_err(|e| e.to_string())?;
    let (store, shown_store) = open_store(&args).await?;
    let mut builder = Agent::builder()
        .model(Arc::new(model))
        .pay(pay.client.clone())
        .plans(crate::tools::plan::PlanStore::Shared(store.clone()))
        .limits(Limits {
            deadline: Duration::from_secs(args.turn_timeout_secs.max(1)),
            ..Limits::default()
        });
    if args.approve_destructive {
        builder = builder.policy(PolicyConfig::gate_destructive());
    }
    if let Some(key) = &args.plan_signing_key {
        builder = builder.plan_signing_key(key.clone());
    }
    if let Some(dir) = &args.prompts {
        builder = builder.system_prompt(
            crate::config::render_prompt(Some(dir), crate::prompt::DEFAULT_TEMPLATE)
                .map_err(|e| e.to_string())?,
        );
    }
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes.max(1024),
        thread_wait: Duration::from_secs(args.thread_wait_secs.max(1)),
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs.max(1)),
            max_connections: args.max_connections.max(1),
        },
    };
    let bindings = connect::bindings(&connect::parse_account_map(&args.stripe_account_map)?)?;
    let events = events_state(&args, &pay.client, store.clone())?;
    if let Some(events) = &events {
        builder = builder.pending_source(events.clone());
    }
    let mut state = ServerState::new(builder, store, tokens.clone(), config)
        .map_err(|e| e.to_string())?
        .resolve_connect_ids(pay.client.clone(), &bindings);
    if let Some(events) = events {
        state = state.with_events(events);
    }
    let listener = TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let shown = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.addr.clone());
    if tokens.is_empty() {
        warn!(
            "no tokens configured (--tokens or ALTAN_PAY_SERVER_TOKENS): requests are not authenticated, so the server listens on loopback only"
        );
        eprintln!(
            "altan-pay serve: no tokens configured; loopback only, requests are not authenticated"
        );
    } else {
        info!(tokens = ?tokens, "bearer tokens configured");
    }
    eprintln!("altan-pay serve listening on http://{shown} (sessions in {shown_store})");
    serve(listener, state, shutdown_signal())
        .await
        .map_err(|e| format!("server: {e}"))?;
    drop(pay);
    Ok(())
}

/// The store of `--database-url` (PostgreSQL, migrated) or of `--db` and `--events-db`
/// (SQLite), and how to name it in the start-up line.
async fn open_store(args: &ServeOptions) -> Result<(Arc<dyn ServeStore>, String), String> {
    let limits = HistoryLimits {
        max_messages: args.history_messages.max(2),
        keep_tool_turns: args.keep_tool_turns,
        ..HistoryLimits::default()
    };
    let url = args
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        if args.database_ca_file.is_some() {
            return Err("--database-ca-file needs --database-url".into());
        }
        let mut store = SqliteStore::open(&args.db)
            .map_err(|e| e.to_string())?
            .with_limits(limits);
        // Events keep their own file, as before, and only when the events endpoint is on.
        if args
            .stripe_webhook_secret
            .iter()
            .any(|s| !s.trim().is_empty())
        {
            let pending = crate::events::SqlitePendingStore::open(&args.events_db)
                .map_err(|e| format!("--events-db {}: {e}", args.events_db.display()))?;
            store = store.with_pending(pending);
        }
        return Ok((Arc::new(store), args.db.display().to_string()));
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "--database-url / ALTAN_PAY_DATABASE_URL must be a postgres:// or postgresql:// URL"
                .into(),
        );
    }
    if args.database_pool_size == 0 || args.database_lease_connections == 0 {
        return Err(
            "--database-pool-size and --database-lease-connections must be at least 1".into(),
        );
    }
    let options = PgOptions {
        url: url.to_string(),
        pool_size: args.database_pool_size,
        lease_connections: args.database_lease_connections,
        ca_file: args.database_ca_file.clone(),
    };
    let store = PgStore::connect(&options)
        .await
        .map_err(|e| e.to_string())?
        .with_limits(limits);
    let shown = format!(
        "PostgreSQL{}",
        if store.uses_tls() { " over TLS" } else { "" }
    );
    Ok((Arc::new(store), shown))
}

/// The events part, when a webhook secret is configured.
fn events_state(
    args: &ServeOptions,
    pay: &crate::pay::PayClient,
    store: Arc<dyn crate::events::PendingStore>,
) -> Result<Option<Arc<crate::events::EventsState>>, String> {
    let secrets: Vec<secrecy::SecretString> = args
        .stripe_webhook_secret
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(secrecy::SecretString::from)
        .collect();
    if secrets.is_empty() {
        if args.room_url.is_some() {
            return Err("--room-url needs --stripe-webhook-secret: room posts carry the syncs of Stripe events".into());
        }
        return Ok(None);
    }
    let mut accounts = crate::events::AccountMap {
        fixed: args.stripe_fixed_account.clone(),
        ..Default::default()
    };
    accounts
        .connect
        .extend(connect::parse_account_map(&args.stripe_account_map)?);
    let mut config = crate::events::EventsConfig::new(secrets, accounts);
    config.plan_key = args.plan_signing_key.clone();
    let mut state = crate::events::EventsState::new(config, store.clone()).with_pay(pay.clone());
    if let Some(room) = room_config(args)? {
        info!(
            room = %room.base_url,
            threads = room.threads.len(),
            "pending syncs from Stripe events are posted to the room"
        );
        state = state.with_room(crate::events::RoomPoster::spawn(
            room,
            store,
            crate::sync::SyncMapping::default(),
        ));
    }
    Ok(Some(Arc::new(state)))
}

/// The room post, when `--room-url` is given; every flag it needs is checked here.
fn room_config(args: &ServeOptions) -> Result<Option<crate::events::RoomConfig>, String> {
    let Some(url) = args
        .room_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        if !args.room_thread.is_empty() || args.room_agent_id.is_some() {
            return Err("--room-thread and --room-agent-id need --room-url".into());
        }
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("--room-url `{url}` is not an http(s) URL"));
    }
    let agent_id = args
        .room_agent_id
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or("--room-url needs --room-agent-id (this agent's id in the room API)")?;
    let mut room = crate::events::RoomConfig::new(url, agent_id);
    for pair in &args.room_thread {
        let (account, thread) = pair
            .split_once('=')
            .map(|(a, t)| (a.trim(), t.trim()))
            .filter(|(a, t)| !a.is_empty() && !t.is_empty())
            .ok_or_else(|| format!("--room-thread: `{pair}` is not ACCOUNT=THREAD"))?;
        room.threads.insert(account.to_string(), thread.to_string());
    }
    if room.threads.is_empty() {
        return Err("--room-url needs at least one --room-thread ACCOUNT=THREAD".into());
    }
    room.altan_member_id = args.room_altan_member_id.clone();
    room.token = args.room_token.clone();
    room.plan_key = args.plan_signing_key.clone();
    room.window = std::time::Duration::from_millis(args.room_window_ms);
    Ok(Some(room))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down: finishing running turns");
}
