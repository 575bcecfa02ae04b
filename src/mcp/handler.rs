//! The MCP server handler: `tools/list` from the declarations, `tools/call` through
//! [`Agent::call_tool`], confirmation of destructive effects, conversation handles.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InputRequest, InputRequests, InputRequiredResult, ListToolsResult, MetaObject,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use sha2::Sha256;
use tracing::{Instrument, info_span};

use super::catalog::{self, CONVERSATION_FIELD, ERROR_FIELD, PLAN_FIELD, RESULT_FIELD};
use crate::agent::{Agent, DirectCall, DirectOutcome};
use crate::policy::Hold;
use crate::room::AgentContext;
use crate::tools::model_content;

/// The request and result `_meta` key of the conversation handle.
pub const CONVERSATION_META: &str = "ai.altan.pay/conversation";

/// The key of the one input request a destructive call asks for.
pub const CONFIRM_INPUT: &str = "confirm";

/// The label the confirmation key is derived under from the plan signing key.
const CONFIRM_KEY_LABEL: &str = "altan-pay mcp confirmation state v1";

/// How long a confirmation request may be answered.
const CONFIRM_TTL: Duration = Duration::from_secs(15 * 60);

/// The account an MCP request acts for, set by the transport: the stdio configuration, or the
/// HTTP request's token scope (see [`super::http`]).
#[derive(Debug, Clone)]
pub struct McpAccount(pub String);

/// Where a handler takes the account from.
#[derive(Clone)]
enum AccountSource {
    /// `altan-pay mcp`: the configured account.
    Fixed(String),
    /// `/mcp`: the [`McpAccount`] the HTTP layer put on the request.
    PerRequest,
}

/// The Altan Pay MCP server: one per stdio connection, one per HTTP request (stateless).
#[derive(Clone)]
pub struct McpServer {
    agent: Agent,
    tools: Arc<Vec<Tool>>,
    account: AccountSource,
    /// The conversation of calls that send no handle: one per stdio connection; none over
    /// HTTP (each such call gets a fresh one).
    default_conversation: Option<String>,
    /// Keys the confirmation states this server hands out: derived from the plan signing key
    /// when there is one, so every replica holding that key accepts the others' confirmations;
    /// else random, and a confirmation is answered on the process that asked for it.
    confirm_key: Arc<[u8; 32]>,
    /// `serve` with Stripe events: each call's changes are also queued as the account's
    /// pending syncs, so the next chat answer (and the pending-syncs listing) carries them even
    /// when the MCP client drops the result.
    pending: Option<Arc<crate::events::EventsState>>,
}

impl McpServer {
    /// The server of one stdio connection, acting for `account`.
    pub fn stdio(agent: Agent, account: String) -> McpServer {
        let mut server = McpServer::new(agent, AccountSource::Fixed(account));
        server.default_conversation = Some(new_handle());
        server
    }

    /// The server behind `/mcp`: the account comes with each request; with `pending`, each
    /// call's Stripe changes are queued as the account's pending syncs too.
    pub fn http(agent: Agent, pending: Option<Arc<crate::events::EventsState>>) -> McpServer {
        let mut server = McpServer::new(agent, AccountSource::PerRequest);
        server.pending = pending;
        server
    }

    fn new(agent: Agent, account: AccountSource) -> McpServer {
        let tools = Arc::new(catalog::list(agent.tool_set()));
        let confirm_key = agent
            .plan_signing_key()
            .map_or_else(rand::random, |key| key.derive(CONFIRM_KEY_LABEL));
        McpServer {
            agent,
            tools,
            account,
            default_conversation: None,
            confirm_key: Arc::new(confirm_key),
            pending: None,
        }
    }

    /// The tools as `tools/list` shows them.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    fn account(&self, context: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
        match &self.account {
            AccountSource::Fixed(account) => Ok(account.clone()),
            AccountSource::PerRequest => context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<McpAccount>())
                .map(|a| a.0.clone())
                .ok_or_else(|| {
                    ErrorData::invalid_request(
                        "no account for this request: name it with X-Altan-Account-Id",
                        None,
                    )
                }),
        }
    }

    async fn run_call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        if !self.tools.iter().any(|t| t.name == name) {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{name}`; tools/list names them"),
                None,
            ));
        }
        let account = self.account(&context)?;
        let handle = match conversation_of(&request, &context) {
            Ok(Some(handle)) => handle,
            Ok(None) => self.default_conversation.clone().unwrap_or_else(new_handle),
            Err(message) => return Err(ErrorData::invalid_params(message, None)),
        };
        // `/` keeps MCP conversations out of the chat API's threads: a thread id there is
        // letters, digits and `- _ . :` (`server::error::check_thread_id`), so no token of any
        // account can post to, claim or read an MCP conversation as a chat thread.
        let thread_id = format!("mcp/{account}/{handle}");
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        let confirmed = match (&request.request_state, &request.input_responses) {
            (Some(state), responses) => {
                self.check_confirmation(state, responses.as_ref(), &thread_id, &name, &arguments)?
            }
            (None, _) => false,
        };
        // The Connect id is the server's: the tools look it up from the account (the Pay
        // client remembers it, or the deployment's binding); a client never names one.
        let agent_context = AgentContext {
            account_id: Some(account),
            ..AgentContext::default()
        };
        let outcome = self
            .agent
            .call_tool(DirectCall {
                thread_id: &thread_id,
                context: &agent_context,
                name: &name,
                arguments: &arguments,
                confirmed,
            })
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        match outcome {
            DirectOutcome::Done {
                output,
                sync_plan,
                changes,
            } => {
                let output = *output;
                if let (Some(plan), Some(events)) = (&sync_plan, &self.pending) {
                    queue_pending(events, &agent_context, plan.sync_id(), changes).await;
                }
                let content = model_content(&output);
                let plan = sync_plan.map_or(Value::Null, |p| p.to_json());
                let mut structured = json!({
                    CONVERSATION_FIELD: handle,
                    PLAN_FIELD: plan,
                });
                let failed = output.is_err();
                let text = match &output {
                    Ok(_) => content.to_string(),
                    Err(e) => e.model_message.clone(),
                };
                if failed {
                    structured[ERROR_FIELD] = content.get("error").cloned().unwrap_or(content);
                } else {
                    structured[RESULT_FIELD] = content;
                }
                let mut result = if failed {
                    CallToolResult::error(vec![ContentBlock::text(text)])
                } else {
                    CallToolResult::success(vec![ContentBlock::text(text)])
                };
                result.structured_content = Some(structured);
                result.meta = Some(handle_meta(&handle));
                Ok(CallToolResponse::Complete(result))
            }
            DirectOutcome::NeedsConfirmation { hold } => {
                let what = describe(&name, &arguments, &hold);
                if supports_input_required(&context) {
                    let state = self.confirmation_state(&thread_id, &name, &arguments);
                    Ok(CallToolResponse::InputRequired(confirmation_request(
                        &what, state, &handle,
                    )?))
                } else {
                    Ok(CallToolResponse::Complete(tool_error(
                        &format!(
                            "Not run: {what} needs a person's confirmation. This client speaks an MCP version without input requests (2026-07-28 adds them), so nothing was changed; confirm it from a 2026-07-28 client, or ask the user to make this change in Altan."
                        ),
                        &handle,
                    )))
                }
            }
        }
    }

    /// The signed state a confirmation round trip echoes back: it names this very call.
    fn confirmation_state(&self, thread_id: &str, name: &str, arguments: &Value) -> String {
        let expires = unix_now() + CONFIRM_TTL.as_secs();
        let mac = self.confirmation_mac(thread_id, name, arguments, expires);
        format!("{expires}.{mac}")
    }

    fn confirmation_mac(
        &self,
        thread_id: &str,
        name: &str,
        arguments: &Value,
        expires: u64,
    ) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.confirm_key.as_slice()) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        for part in [
            thread_id,
            name,
            &crate::sync::canonical_json(arguments),
            &expires.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether a retried call carries a person's confirmation of this very call.
    fn check_confirmation(
        &self,
        state: &str,
        responses: Option<&rmcp::model::InputResponses>,
        thread_id: &str,
        name: &str,
        arguments: &Value,
    ) -> Result<bool, ErrorData> {
        let invalid = |m: &str| ErrorData::invalid_params(m.to_string(), None);
        let (expires, mac) = state
            .split_once('.')
            .and_then(|(e, m)| Some((e.parse::<u64>().ok()?, m)))
            .ok_or_else(|| invalid("requestState is not one this server handed out"))?;
        let expected = self.confirmation_mac(thread_id, name, arguments, expires);
        if expected.is_empty() || !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return Err(invalid(
                "requestState does not match this call: a confirmation covers only the call (tool, arguments, conversation) it was asked for",
            ));
        }
        if unix_now() > expires {
            return Err(invalid(
                "the confirmation request has expired; call the tool again to be asked anew",
            ));
        }
        let answer = responses.and_then(|r| r.get(CONFIRM_INPUT));
        let accepted = answer.is_some_and(|a| {
            a.get("action").and_then(Value::as_str) == Some("accept")
                && a.pointer("/content/confirm").and_then(Value::as_bool) == Some(true)
        });
        Ok(accepted)
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let mut implementation = Implementation::new("altan-pay", env!("CARGO_PKG_VERSION"));
        implementation.title = Some("Altan Pay".into());
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(implementation)
            .with_instructions(
                "Stripe tools of Altan Pay. Object ids come only from Stripe results or reads in the same conversation: send the `ai.altan.pay/conversation` handle of a result back in the request _meta. Every change's result carries its sync_plan for the database.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = info_span!(
            "mcp_tool_call",
            otel.name = %format_args!("tools/call {}", request.name),
            rpc.system = "jsonrpc",
            mcp.method.name = "tools/call",
            gen_ai.tool.name = %request.name,
            altan_pay.mcp.outcome = tracing::field::Empty,
        );
        let result = self
            .run_call(request, context)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => "tool_error",
            Ok(CallToolResponse::Complete(_)) => "ok",
            Ok(CallToolResponse::InputRequired(_)) => "input_required",
            Ok(_) => "other",
            Err(_) => "protocol_error",
        };
        span.record("altan_pay.mcp.outcome", outcome);
        result
    }
}

/// Queues a call's Stripe changes as the account's pending syncs (one record per plan, so a
/// repeat is a duplicate), for the room poster (when `serve` posts to rooms), the chat path's
/// next answer and the pending-syncs listing. A failing store is logged: the result still
/// carries the plan.
async fn queue_pending(
    events: &crate::events::EventsState,
    context: &AgentContext,
    sync_id: &str,
    changes: Vec<crate::sync::Mutation>,
) {
    let Some(account) = context.account_id.clone() else {
        return;
    };
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let record = crate::events::EventRecord {
        // One record per call: the plan's `sync_id` hashes only its operations, which name no
        // account, so two accounts' identical changes (or one account's change repeated) would
        // otherwise be taken for a redelivery and dropped. A queued upsert twice is harmless.
        id: format!("mcp_{sync_id}_{}", uuid::Uuid::new_v4().simple()),
        event_type: "mcp.tools_call".into(),
        account_id: account,
        created: now,
    };
    let versioned: Vec<crate::events::Versioned> = changes
        .into_iter()
        .map(|mutation| {
            let version = match &mutation.outcome {
                crate::sync::Outcome::Exists { object } => object
                    .get("updated")
                    .or_else(|| object.get("created"))
                    .and_then(Value::as_i64)
                    .unwrap_or(now),
                crate::sync::Outcome::Deleted => now,
            };
            crate::events::Versioned { mutation, version }
        })
        .collect();
    if let Err(e) = events.queue_changes(&record, &versioned).await {
        tracing::warn!(sync_id, "MCP changes not queued as pending syncs: {e}");
    }
}

/// The conversation handle a request names in its `_meta`, checked. rmcp moves the request's
/// `_meta` into the context; either may hold it.
fn conversation_of(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<Option<String>, String> {
    let value = context.meta.0.get(CONVERSATION_META).or_else(|| {
        request
            .meta
            .as_ref()
            .and_then(|m| m.0.get(CONVERSATION_META))
    });
    let Some(value) = value else {
        return Ok(None);
    };
    let handle = value
        .as_str()
        .ok_or_else(|| format!("_meta `{CONVERSATION_META}` must be a string"))?;
    let well_formed = handle.len() == 37
        && handle.starts_with("conv_")
        && handle[5..].bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(format!(
            "_meta `{CONVERSATION_META}` `{handle}` is not a handle this server handed out (conv_ and 32 hex digits); leave it out to start a new conversation"
        ));
    }
    Ok(Some(handle.to_ascii_lowercase()))
}

/// A fresh conversation handle.
fn new_handle() -> String {
    format!("conv_{}", uuid::Uuid::new_v4().simple())
}

fn handle_meta(handle: &str) -> MetaObject {
    let mut meta = MetaObject::new();
    meta.0.insert(CONVERSATION_META.into(), json!(handle));
    meta
}

fn tool_error(message: &str, handle: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.to_string())]);
    result.structured_content = Some(json!({
        ERROR_FIELD: {"message": message},
        PLAN_FIELD: Value::Null,
        CONVERSATION_FIELD: handle,
    }));
    result.meta = Some(handle_meta(handle));
    result
}

/// Whether the request's protocol version has input requests (2026-07-28 and later).
fn supports_input_required(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.to_string().as_str() >= "2026-07-28")
}

/// What a held call would do, in words for the person asked.
fn describe(name: &str, arguments: &Value, hold: &Hold) -> String {
    let effect = match hold {
        Hold::Gated(effect) | Hold::NotRequested(effect) => *effect,
    };
    let target = arguments
        .get("id")
        .or_else(|| arguments.get("subscription"))
        .and_then(Value::as_str)
        .map(|id| format!(" `{id}`"))
        .unwrap_or_default();
    format!("{name}{target} (it would {effect} data)")
}

/// The `input_required` result asking a person to confirm `what`.
fn confirmation_request(
    what: &str,
    state: String,
    handle: &str,
) -> Result<InputRequiredResult, ErrorData> {
    let request: InputRequest = serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": format!("Confirm {what}? Nothing has run yet."),
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "confirm": {
                        "type": "boolean",
                        "title": "Confirm",
                        "description": format!("Yes: run {what}."),
                    }
                },
                "required": ["confirm"]
            }
        }
    }))
    .map_err(|e| ErrorData::internal_error(format!("confirmation request: {e}"), None))?;
    let mut requests = InputRequests::new();
    requests.insert(CONFIRM_INPUT.to_string(), request);
    Ok(InputRequiredResult::new(Some(requests), Some(state)).with_meta(handle_meta(handle)))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
