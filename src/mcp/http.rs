//! `/mcp` for `serve`: rmcp's Streamable HTTP service (stateless, JSON answers) behind an
//! authorisation step the server provides ([`McpAuth`]: its bearer tokens and account scopes),
//! which runs before rmcp reads any MCP message.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use serde_json::{Value, json};

use super::handler::{McpAccount, McpServer};
use crate::agent::Agent;

/// The path the MCP endpoint is served on.
pub const MCP_PATH: &str = "/mcp";

/// Who may call `/mcp`, and for which account.
pub trait McpAuth: Clone + Send + Sync + 'static {
    /// The account a request acts for, or the response refusing it (401, 403, 400).
    fn account(&self, headers: &HeaderMap) -> Result<String, Box<Response>>;
}

/// How `/mcp` is served.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests are authenticated: any `Host` is accepted. Without it, only loopback hosts
    /// are (a DNS-rebinding page cannot reach an unauthenticated local server).
    pub authenticated: bool,
}

/// The `/mcp` route, with `auth` checked first; with `pending` (Stripe events configured), each
/// call's changes are queued as the account's pending syncs too.
pub fn router<A: McpAuth>(
    agent: Agent,
    auth: A,
    options: HttpOptions,
    pending: Option<Arc<crate::events::EventsState>>,
) -> Router {
    let server = McpServer::http(agent, pending);
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(options.max_body_bytes);
    if options.authenticated {
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .route_layer(middleware::from_fn_with_state(
            options.max_body_bytes,
            check_json_rpc,
        ))
        .route_layer(middleware::from_fn_with_state(auth, authorize::<A>))
}

/// Answers what rmcp would answer without a JSON-RPC error (a body that is not JSON, a
/// `tools/call` whose `name` or `arguments` have the wrong type) with the named JSON-RPC error;
/// the rest goes on to rmcp unchanged.
async fn check_json_rpc(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                INVALID_REQUEST,
                format!("the request body is over {max_body} bytes"),
            );
        }
    };
    let message: Value = match serde_json::from_slice(&bytes) {
        Ok(message) => message,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                format!("parse error: the body is not JSON ({e})"),
            );
        }
    };
    if let Some(problem) = tools_call_problem(&message) {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return rpc_error(StatusCode::BAD_REQUEST, id, INVALID_PARAMS, problem);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// What is wrong with a `tools/call`'s params, when rmcp could not read them as one.
fn tools_call_problem(message: &Value) -> Option<String> {
    if message.get("method").and_then(Value::as_str) != Some("tools/call") {
        return None;
    }
    let Some(params) = message.get("params").and_then(Value::as_object) else {
        return Some("tools/call needs params: an object with the tool's `name`".into());
    };
    if !params.get("name").is_some_and(Value::is_string) {
        return Some("tools/call params.name must be the tool's name, a string".into());
    }
    match params.get("arguments") {
        None | Some(Value::Null) | Some(Value::Object(_)) => None,
        Some(_) => Some("tools/call params.arguments must be an object".into()),
    }
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Puts the request's account on it, or answers the refusal.
async fn authorize<A: McpAuth>(
    State(auth): State<A>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.account(request.headers()) {
        Ok(account) => {
            request.extensions_mut().insert(McpAccount(account));
            next.run(request).await
        }
        Err(refused) => *refused,
    }
}
