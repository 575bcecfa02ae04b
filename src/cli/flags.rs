//! The flags of the commands whose settings live in the library, each turned into the
//! library's settings type (`From`); the help text of every flag is here.

use std::path::PathBuf;

use altan_pay::config::PayOptions;
use altan_pay::events::reconcile::ReconcileOptions;
use altan_pay::gateway::GatewayOptions;
use altan_pay::mirror::{ApplyOptions, SchemaOptions};
use altan_pay::server::ServeOptions;

/// Which backend `altan-pay gateway` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The embedded Stripe emulator.
    Sandbox,
    /// Stripe's REST API (or a Stripe-compatible server).
    Stripe,
}

impl From<BackendKind> for altan_pay::gateway::BackendKind {
    fn from(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Sandbox => altan_pay::gateway::BackendKind::Sandbox,
            BackendKind::Stripe => altan_pay::gateway::BackendKind::Stripe,
        }
    }
}

/// Where the Altan Pay API is and how to reach it.
#[derive(Clone, clap::Args)]
pub struct PayArgs {
    /// Base URL of the Altan Pay API (or of a gateway).
    #[arg(long, env = "ALTAN_PAY_BASE_URL")]
    pub pay_base_url: Option<String>,
    /// Run against an embedded sandbox gateway instead of a remote API.
    #[arg(long, conflicts_with = "pay_base_url")]
    pub sandbox: bool,
    /// A route table replacing the embedded tools/routes.toml.
    #[arg(long, value_name = "FILE")]
    pub routes: Option<PathBuf>,
    /// Bearer token for the Altan Pay API.
    #[arg(long, env = "ALTAN_PAY_TOKEN", hide_env_values = true)]
    pub token: Option<secrecy::SecretString>,
    /// Seconds before one request attempt is abandoned.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// The largest Altan Pay API answer read, in bytes (one tool result); a longer one is an
    /// error that names the limit.
    #[arg(
        long,
        env = "ALTAN_PAY_MAX_TOOL_RESULT_BYTES",
        default_value_t = altan_pay::pay::client::DEFAULT_MAX_RESPONSE_BYTES,
        value_name = "BYTES"
    )]
    pub max_tool_result_bytes: usize,
}

impl From<PayArgs> for PayOptions {
    fn from(a: PayArgs) -> Self {
        PayOptions {
            pay_base_url: a.pay_base_url,
            sandbox: a.sandbox,
            routes: a.routes,
            token: a.token,
            timeout_secs: a.timeout_secs,
            max_tool_result_bytes: a.max_tool_result_bytes,
        }
    }
}

/// Flags of `altan-pay gateway`.
#[derive(Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Backend behind the routes.
    #[arg(long, value_enum, default_value_t = BackendKind::Sandbox)]
    pub backend: BackendKind,
    /// SQLite file for the sandbox's state (in memory when absent).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// JSON initial state to load into the sandbox at start (see `sandbox::seed`).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Route table to serve instead of the embedded one.
    #[arg(long)]
    pub routes: Option<PathBuf>,
    /// Stripe's API base URL for `--backend stripe` (a Stripe-compatible server in tests);
    /// the secret key comes from `STRIPE_API_KEY`.
    #[arg(long, env = "STRIPE_BASE_URL")]
    pub stripe_base_url: Option<String>,
    /// Require `Authorization: Bearer <token>` on every request.
    #[arg(long, env = "ALTAN_PAY_TOKEN", hide_env_values = true)]
    pub token: Option<secrecy::SecretString>,
    /// Fault injection rules (TOML, or JSON by extension; see `gateway::faults`).
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// With `--backend stripe`: the Connect account each Altan account acts on,
    /// `ws_1=acct_1,ws_2=acct_2`. A request naming another Connect id, or for an account bound
    /// to none, is refused (403) and nothing reaches Stripe.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT=ACCT")]
    pub connect_account: Vec<String>,
    /// With `--backend stripe`: Altan accounts that act on the platform's own Stripe account
    /// (no `Stripe-Account`); a request for one of them naming a Connect id is refused.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT")]
    pub platform_account: Vec<String>,
}

impl From<GatewayArgs> for GatewayOptions {
    fn from(a: GatewayArgs) -> Self {
        GatewayOptions {
            addr: a.addr,
            backend: a.backend.into(),
            data: a.data,
            state: a.state,
            routes: a.routes,
            stripe_base_url: a.stripe_base_url,
            token: a.token,
            faults: a.faults,
            connect_account: a.connect_account,
            platform_account: a.platform_account,
        }
    }
}

/// Flags of `altan-pay serve`.
#[derive(Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback needs tokens.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub addr: String,
    #[command(flatten)]
    pub pay: PayArgs,
    /// SQLite file for sessions and idempotency records (created if missing); not used with
    /// --database-url.
    #[arg(long, default_value = "altan-pay.db", value_name = "FILE")]
    pub db: PathBuf,
    /// PostgreSQL instead of the SQLite files, for several replicas on one database:
    /// `postgres://user:password@host:port/db`, `?sslmode=require` for TLS.
    #[arg(
        long,
        env = "ALTAN_PAY_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// PostgreSQL connections for reads and writes.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub database_pool_size: usize,
    /// PostgreSQL connections for thread leases: at most this many turns run at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub database_lease_connections: usize,
    /// Extra root certificates (PEM) for TLS to PostgreSQL (a private CA); turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Seconds a request waits for another turn of its thread (on any replica) to finish
    /// before it is answered 409 with Retry-After.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub thread_wait_secs: u64,
    /// Bearer tokens and their accounts, TOML or JSON (see docs/server.md).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Tokens as `token=acct1,acct2;token2=*`, added to those of --tokens.
    #[arg(long, env = "ALTAN_PAY_SERVER_TOKENS", hide_env_values = true)]
    pub server_tokens: Option<secrecy::SecretString>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a connection may take to send its request line and headers (and a keep-alive
    /// connection may stay idle) before it is closed.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive whole before it is answered 408.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub body_read_timeout_secs: u64,
    /// Connections open at once; more wait to be accepted. Keep it below the process's
    /// descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Sent as `max_completion_tokens` on every model request; 0 sends none.
    #[arg(
        long,
        env = "ALTAN_PAY_MAX_COMPLETION_TOKENS",
        default_value_t = altan_pay::model::openai::DEFAULT_MAX_COMPLETION_TOKENS,
        value_name = "TOKENS"
    )]
    pub max_completion_tokens: u32,
    /// The most answer text kept from one model call, in bytes; longer text is cut and marked.
    #[arg(
        long,
        env = "ALTAN_PAY_MAX_ANSWER_BYTES",
        default_value_t = altan_pay::model::openai::DEFAULT_MAX_ANSWER_BYTES,
        value_name = "BYTES"
    )]
    pub max_answer_bytes: usize,
    /// Seconds one turn (model and tools) may take before it stops and says so.
    #[arg(long, default_value_t = 180)]
    pub turn_timeout_secs: u64,
    /// Messages of history kept per thread.
    #[arg(long, default_value_t = 200)]
    pub history_messages: usize,
    /// Latest user turns whose tool results are kept whole; older ones keep only their ids.
    #[arg(long, default_value_t = 4)]
    pub keep_tool_turns: usize,
    /// Hold destructive calls (delete, cancel, deactivate) until approved over the API.
    #[arg(long)]
    pub approve_destructive: bool,
    /// A prompt directory in Altan's layout instead of the embedded prompt.
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// Stripe webhook endpoint secret(s) (`whsec_...`, comma-separated during a rotation);
    /// turns on `POST /v1/stripe/events` and `GET /v1/accounts/{id}/pending-syncs`.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub stripe_webhook_secret: Vec<String>,
    /// Which Altan account each Connect account belongs to: `acct_1=ws_1,acct_2=ws_2`. Routes
    /// Stripe events, and is each listed account's Connect id for turns (no lookup); other
    /// accounts' ids come from the Altan Pay API. A caller's Connect id that differs is refused.
    #[arg(long, value_delimiter = ',', value_name = "ACCT=ACCOUNT")]
    pub stripe_account_map: Vec<String>,
    /// The Altan account of events that name no Connect account.
    #[arg(long, value_name = "ACCOUNT")]
    pub stripe_fixed_account: Option<String>,
    /// SQLite file of received events and pending syncs.
    #[arg(long, default_value = "altan-pay-events.db", value_name = "FILE")]
    pub events_db: PathBuf,
    /// The room API (e.g. `https://api.altan.ai`): pending syncs from Stripe events are posted
    /// to the account's thread at once instead of waiting for the next answer. Needs
    /// --stripe-webhook-secret, --room-agent-id and --room-thread.
    #[arg(long, env = "ALTAN_ROOM_URL", value_name = "URL")]
    pub room_url: Option<String>,
    /// This agent's id in the room API (`agent_id` of the post).
    #[arg(long, value_name = "ID")]
    pub room_agent_id: Option<String>,
    /// The thread each account's handoffs go to: `ws_1=thread_1,ws_2=thread_2`. Accounts
    /// without one get theirs with the next answer.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT=THREAD")]
    pub room_thread: Vec<String>,
    /// Altan's member id in the room, for the one `[@Altan](/member/<id>)` of each post.
    #[arg(long, value_name = "ID")]
    pub room_altan_member_id: Option<String>,
    /// Bearer token for the room API.
    #[arg(long, env = "ALTAN_ROOM_TOKEN", hide_env_values = true)]
    pub room_token: Option<secrecy::SecretString>,
    /// Events arriving within this many milliseconds after the first go in one post.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub room_window_ms: u64,
    /// Sign every sync plan with this key (HMAC-SHA256); `altan-pay apply` given the same key
    /// applies only plans this server signed.
    #[arg(
        long,
        value_name = "KEY",
        env = "ALTAN_PAY_PLAN_SIGNING_KEY",
        hide_env_values = true,
        value_parser = altan_pay::sync::PlanSigningKey::parse_arg
    )]
    pub plan_signing_key: Option<altan_pay::sync::PlanSigningKey>,
}

impl From<ServeArgs> for ServeOptions {
    fn from(a: ServeArgs) -> Self {
        ServeOptions {
            addr: a.addr,
            pay: a.pay.into(),
            db: a.db,
            database_url: a.database_url,
            database_pool_size: a.database_pool_size,
            database_lease_connections: a.database_lease_connections,
            database_ca_file: a.database_ca_file,
            thread_wait_secs: a.thread_wait_secs,
            tokens: a.tokens,
            server_tokens: a.server_tokens,
            max_body_bytes: a.max_body_bytes,
            header_read_timeout_secs: a.header_read_timeout_secs,
            body_read_timeout_secs: a.body_read_timeout_secs,
            max_connections: a.max_connections,
            max_completion_tokens: a.max_completion_tokens,
            max_answer_bytes: a.max_answer_bytes,
            turn_timeout_secs: a.turn_timeout_secs,
            history_messages: a.history_messages,
            keep_tool_turns: a.keep_tool_turns,
            approve_destructive: a.approve_destructive,
            prompts: a.prompts,
            stripe_webhook_secret: a.stripe_webhook_secret,
            stripe_account_map: a.stripe_account_map,
            stripe_fixed_account: a.stripe_fixed_account,
            events_db: a.events_db,
            room_url: a.room_url,
            room_agent_id: a.room_agent_id,
            room_thread: a.room_thread,
            room_altan_member_id: a.room_altan_member_id,
            room_token: a.room_token,
            room_window_ms: a.room_window_ms,
            plan_signing_key: a.plan_signing_key,
        }
    }
}

/// Flags of `altan-pay reconcile`.
#[derive(Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The database mirror as JSON: `{"products": [rows], "prices": [...], ...}`.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "database_url",
        required_unless_present = "database_url"
    )]
    pub snapshot: Option<PathBuf>,
    /// PostgreSQL URL of the database mirror (`postgres://user@host:port/db`).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The PostgreSQL schema holding the tables.
    #[arg(long, default_value = "public")]
    pub schema: String,
    /// The Altan account (workspace) id.
    #[arg(long)]
    pub account_id: String,
    /// The Stripe Connect id; asked from the Altan Pay API when absent.
    #[arg(long)]
    pub stripe_connect_id: Option<String>,
    /// Push the database-wins differences to Stripe.
    #[arg(long)]
    pub apply: bool,
    /// Allow pushes that deactivate or cancel (with --apply).
    #[arg(long, requires = "apply")]
    pub approve_destructive: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Columns the database wins (`name` for every table, `products.name` for one).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "name,description,metadata"
    )]
    pub db_wins: Vec<String>,
    /// A sync mapping file replacing tools/sync_mapping.toml's tables.
    #[arg(long, value_name = "FILE")]
    pub sync_mapping: Option<PathBuf>,
    /// The key `serve` signs plans with: the repair plan is signed with it, so an `apply`
    /// that checks signatures takes it.
    #[arg(
        long,
        value_name = "KEY",
        env = "ALTAN_PAY_PLAN_SIGNING_KEY",
        hide_env_values = true,
        value_parser = altan_pay::sync::PlanSigningKey::parse_arg
    )]
    pub plan_signing_key: Option<altan_pay::sync::PlanSigningKey>,
    #[command(flatten)]
    pub pay: PayArgs,
    /// With --sandbox: an initial state for the embedded sandbox (demos, benchmarks).
    #[arg(long, value_name = "FILE", requires = "sandbox")]
    pub sandbox_state: Option<PathBuf>,
}

impl From<ReconcileArgs> for ReconcileOptions {
    fn from(a: ReconcileArgs) -> Self {
        ReconcileOptions {
            snapshot: a.snapshot,
            database_url: a.database_url,
            schema: a.schema,
            account_id: a.account_id,
            stripe_connect_id: a.stripe_connect_id,
            apply: a.apply,
            approve_destructive: a.approve_destructive,
            json: a.json,
            db_wins: a.db_wins,
            sync_mapping: a.sync_mapping,
            plan_signing_key: a.plan_signing_key,
            pay: a.pay.into(),
            sandbox_state: a.sandbox_state,
        }
    }
}

/// Flags of `altan-pay schema`.
#[derive(Clone, clap::Args)]
pub struct SchemaArgs {
    /// The PostgreSQL schema to create the tables in.
    #[arg(long, default_value = "public")]
    pub schema: String,
    /// A sync mapping file replacing tools/sync_mapping.toml's tables.
    #[arg(long, value_name = "FILE")]
    pub sync_mapping: Option<PathBuf>,
}

impl From<SchemaArgs> for SchemaOptions {
    fn from(a: SchemaArgs) -> Self {
        SchemaOptions {
            schema: a.schema,
            sync_mapping: a.sync_mapping,
        }
    }
}

/// Flags of `altan-pay apply`.
#[derive(Clone, clap::Args)]
pub struct ApplyArgs {
    /// PostgreSQL URL of the database mirror (`postgres://user@host:port/db`).
    #[arg(long, value_name = "URL", env = "ALTAN_PAY_DATABASE_URL")]
    pub database_url: String,
    /// The PostgreSQL schema holding the tables.
    #[arg(long, default_value = "public")]
    pub schema: String,
    /// A sync mapping file replacing tools/sync_mapping.toml's tables.
    #[arg(long, value_name = "FILE")]
    pub sync_mapping: Option<PathBuf>,
    /// The key the runtime signs plans with (`serve --plan-signing-key`): with it, a plan
    /// without the runtime's signature, or with a wrong one, is refused and nothing is written.
    #[arg(
        long,
        value_name = "KEY",
        env = "ALTAN_PAY_PLAN_SIGNING_KEY",
        hide_env_values = true,
        value_parser = altan_pay::sync::PlanSigningKey::parse_arg
    )]
    pub plan_signing_key: Option<altan_pay::sync::PlanSigningKey>,
    /// The plan: its JSON, or an answer holding the runtime's plan block; `-` reads stdin.
    #[arg(default_value = "-")]
    pub file: String,
}

impl From<ApplyArgs> for ApplyOptions {
    fn from(a: ApplyArgs) -> Self {
        ApplyOptions {
            database_url: a.database_url,
            schema: a.schema,
            sync_mapping: a.sync_mapping,
            plan_signing_key: a.plan_signing_key,
            file: a.file,
        }
    }
}

/// Secrets never appear in `Debug`: a command's flags print as the library settings they
/// become, whose `Debug` redacts them.
macro_rules! debug_as_settings {
    ($($args:ty => $settings:ty),* $(,)?) => {$(
        impl std::fmt::Debug for $args {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                <$settings>::from(self.clone()).fmt(f)
            }
        }
    )*};
}

debug_as_settings!(
    PayArgs => PayOptions,
    GatewayArgs => GatewayOptions,
    ServeArgs => ServeOptions,
    ReconcileArgs => ReconcileOptions,
    SchemaArgs => SchemaOptions,
    ApplyArgs => ApplyOptions,
);
