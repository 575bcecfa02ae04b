//! `/mcp` for `serve`: rmcp's Streamable HTTP service (stateless, JSON answers) behind an
//! authorisation step the server provides ([`McpAuth`]: its bearer tokens and account scopes),
//! which runs before rmcp reads any MCP message.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::handler::{McpAccount, McpServer};
use crate::agent::Agent;

/// The path the MCP endpoint is served on.
pub const MCP_PATH: &str = "/mcp";

/// Who may call `/mcp`, and for which account.
pub trait McpAuth: Clone + Send + Sync + 'static {
    /// The account a request acts for, or the response refusing it (401, 403, 400).
    fn account(&self, headers: &HeaderMap) -> Result<String, Response>;
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

/// The `/mcp` route, with `auth` checked first.
pub fn router<A: McpAuth>(agent: Agent, auth: A, options: HttpOptions) -> Router {
    let server = McpServer::http(agent);
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
        .route_layer(middleware::from_fn_with_state(auth, authorize::<A>))
}

/// Puts the request's account on it, or answers the refusal.
async fn authorize<A: McpAuth>(State(auth): State<A>, mut request: Request, next: Next) -> Response {
    match auth.account(request.headers()) {
        Ok(account) => {
            request.extensions_mut().insert(McpAccount(account));
            next.run(request).await
        }
        Err(refused) => refused,
    }
}
