//! Altan Pay over the Model Context Protocol (docs/mcp.md): the same tools, guarantees and
//! sync plans for any MCP client. `altan-pay mcp` serves one account over stdio (desktop
//! clients); `serve` mounts `/mcp` (Streamable HTTP) behind its bearer tokens and account
//! scopes. Both answer 2026-07-28 clients (stateless, `_meta` per request, `input_required`)
//! and 2025-11-25 clients (the `initialize` handshake), on `rmcp`.
//!
//! Every `tools/call` runs through [`crate::agent::Agent::call_tool`]: the account from the
//! token's scope (or the stdio configuration), the Connect id resolved by the server, ids only
//! from Stripe results or verified reads of the same conversation, idempotency keys per call,
//! the write-ahead, and the sync plan in `structuredContent`.

pub mod catalog;
pub mod handler;
pub mod http;

use std::sync::Arc;

use rmcp::ServiceExt;

use crate::agent::{Agent, SessionStore};
use crate::config::PayOptions;
use crate::model::{ChatModel, ChatRequest, ChatResponse, ModelDelta, ModelError, ModelFuture};

pub use handler::{CONVERSATION_META, McpAccount, McpServer};

/// The settings of `altan-pay mcp` (stdio).
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// The Altan Pay API, or `--sandbox`.
    pub pay: PayOptions,
    /// The Altan account the tools act for.
    pub account_id: String,
    /// The account's Stripe Connect id; looked up through the Altan Pay API when absent.
    pub stripe_connect_id: Option<String>,
    /// SQLite file for sessions (conversations, writes of unknown outcome); in memory when
    /// absent.
    pub db: Option<std::path::PathBuf>,
    /// Sign every sync plan with this key, as `serve --plan-signing-key` does.
    pub plan_signing_key: Option<crate::sync::PlanSigningKey>,
}

/// Runs `altan-pay mcp`: one MCP connection on stdin/stdout until the client closes it.
pub async fn run_stdio(options: StdioOptions) -> Result<(), String> {
    let account = options.account_id.trim().to_string();
    if account.is_empty() {
        return Err("--account-id must name the Altan account the tools act for".into());
    }
    let pay = crate::config::pay_setup(&options.pay)
        .await
        .map_err(|e| e.to_string())?;
    let mut builder = Agent::builder()
        .model(Arc::new(NoModel))
        .pay(pay.client.clone());
    if let Some(path) = &options.db {
        let store = crate::store::SqliteStore::open(path)
            .map_err(|e| format!("--db {}: {e}", path.display()))?;
        builder = builder.store(Arc::new(store) as Arc<dyn SessionStore>);
    }
    if let Some(key) = &options.plan_signing_key {
        builder = builder.plan_signing_key(key.clone());
    }
    let agent = builder.build().map_err(|e| e.to_string())?;
    if let Some(connect) = &options.stripe_connect_id {
        pay.client.remember_connect_id(&account, connect);
    }
    let server = McpServer::stdio(agent, account);
    let running = server
        .serve(rmcp::transport::io::stdio())
        .await
        .map_err(|e| format!("MCP over stdio: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP over stdio: {e}"))?;
    drop(pay);
    Ok(())
}

/// The model of an agent that only runs tools (MCP): it is never asked.
struct NoModel;

impl ChatModel for NoModel {
    fn name(&self) -> &str {
        "none"
    }

    fn complete<'a>(
        &'a self,
        _request: &'a ChatRequest,
        _deltas: Option<tokio::sync::mpsc::UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(std::future::ready(Err(ModelError::Config(
            "the MCP server runs tools for its client's model and has no model of its own".into(),
        ))))
    }
}
