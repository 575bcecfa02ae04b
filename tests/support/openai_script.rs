//! A scripted OpenAI-compatible model server for tests: real HTTP on 127.0.0.1, answers each
//! `/v1/chat/completions` call (streamed or not) from a queue, and records every request.
//! Also builds `altan-pay serve` in-process over it and the sandbox gateway.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use altan_pay::agent::Agent;
use altan_pay::gateway::{GatewayHandle, Sandbox};
use altan_pay::model::{OpenAiConfig, OpenAiModel, RetryPolicy};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::policy::PolicyConfig;
use altan_pay::server::{ServerConfig, ServerHandle, ServerState, Tokens};
use altan_pay::store::SqliteStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Makes the assistant message (`{"content", "tool_calls"}`) from the request body, or an
/// error `(status, message)`.
pub type Reply = Box<dyn Fn(&Value) -> Result<Value, (u16, String)> + Send + Sync>;

#[derive(Default)]
struct Inner {
    queue: VecDeque<Reply>,
    requests: Vec<Value>,
    /// The bodies as they arrived, byte for byte.
    raw: Vec<Vec<u8>>,
    /// The `usage` of every answer (default: 10 prompt, 5 completion tokens).
    usage: Option<Value>,
}

#[derive(Clone)]
pub struct ScriptServer {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl ScriptServer {
    pub async fn start() -> ScriptServer {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        ScriptServer {
            base_url: format!("http://{addr}/v1"),
            inner,
        }
    }

    pub fn push(&self, reply: Reply) {
        self.inner.lock().unwrap().queue.push_back(reply);
    }

    pub fn text(&self, text: &str) {
        let text = text.to_string();
        self.push(Box::new(move |_| Ok(json!({"content": text}))));
    }

    pub fn tool_call(&self, id: &str, name: &str, args: Value) {
        let call = json!([{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]);
        self.push(Box::new(move |_| {
            Ok(json!({"content": null, "tool_calls": call}))
        }));
    }

    pub fn error(&self, status: u16, message: &str) {
        let message = message.to_string();
        self.push(Box::new(move |_| Err((status, message.clone()))));
    }

    /// Model calls received so far.
    pub fn calls(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The request bodies byte for byte, as the client sent them.
    pub fn raw_requests(&self) -> Vec<Vec<u8>> {
        self.inner.lock().unwrap().raw.clone()
    }

    /// Answers from now on report this `usage` (e.g. with `prompt_tokens_details`).
    pub fn set_usage(&self, usage: Value) {
        self.inner.lock().unwrap().usage = Some(usage);
    }

    pub fn remaining(&self) -> usize {
        self.inner.lock().unwrap().queue.len()
    }
}

async fn complete(State(inner): State<Arc<Mutex<Inner>>>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (reply, usage) = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(request.clone());
        inner.raw.push(body.to_vec());
        (inner.queue.pop_front(), inner.usage.clone())
    };
    let outcome = match reply {
        // A reply may block (a slow model is a `std::thread::sleep`): it runs on the blocking
        // pool, never on an async worker. A worker blocked in a reply can hold the runtime's
        // timer and I/O driver, which stalls every task of the test process until the reply
        // returns: the gateway, and a test polling for the moment to act in the meantime.
        Some(reply) => {
            let request = request.clone();
            tokio::task::spawn_blocking(move || reply(&request))
                .await
                .unwrap_or_else(|e| Err((500, format!("the scripted reply panicked: {e}"))))
        }
        None => Err((400, "the script has no reply left".to_string())),
    };
    let message = match outcome {
        Ok(m) => m,
        Err((status, message)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return (
                status,
                axum::Json(json!({"error": {"message": message, "type": "scripted"}})),
            )
                .into_response();
        }
    };
    let calls = message.get("tool_calls").cloned().unwrap_or(Value::Null);
    // A reply may set its own finish reason (e.g. `length`).
    let finish = match message.get("finish_reason").and_then(Value::as_str) {
        Some(reason) => reason.to_string(),
        None if calls.is_array() => "tool_calls".to_string(),
        None => "stop".to_string(),
    };
    // A reply may set its own usage (e.g. cached tokens), else the server's; 10 in, 5 out otherwise.
    let usage = message.get("usage").cloned().or(usage).unwrap_or_else(
        || json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
    );
    if request["stream"] == json!(true) {
        let mut out = String::new();
        let mut chunk = |delta: Value, finish: Value| {
            let c = json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            out.push_str(&format!("data: {c}\n\n"));
        };
        chunk(json!({"role": "assistant"}), Value::Null);
        if let Some(text) = message["content"].as_str() {
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(5) {
                chunk(
                    json!({"content": piece.iter().collect::<String>()}),
                    Value::Null,
                );
            }
        }
        if let Some(list) = calls.as_array() {
            for (i, call) in list.iter().enumerate() {
                let mut c = call.clone();
                c["index"] = json!(i);
                chunk(json!({"tool_calls": [c]}), Value::Null);
            }
        }
        chunk(json!({}), json!(finish));
        out.push_str(&format!(
            "data: {}\n\n",
            json!({"id": "x", "choices": [], "usage": usage})
        ));
        out.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], out).into_response();
    }
    axum::Json(json!({
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": message["content"], "tool_calls": calls}, "finish_reason": finish}],
        "usage": usage,
    }))
    .into_response()
}

/// The gateway with a deterministic sandbox.
pub async fn gateway() -> (GatewayHandle, Sandbox) {
    let sandbox = Sandbox::in_memory().deterministic(7);
    let handle = altan_pay::gateway::spawn(RouteTable::embedded(), Arc::new(sandbox.clone()), None)
        .await
        .unwrap();
    (handle, sandbox)
}

/// How to start a server.
pub struct Options<'a> {
    pub tokens: Option<&'a str>,
    pub policy: PolicyConfig,
    pub max_body_bytes: usize,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            tokens: None,
            policy: PolicyConfig::default(),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `altan-pay serve` in-process: the real OpenAI client against the script, the real Pay
/// client against the gateway, sessions in `db`.
pub async fn serve(
    script: &ScriptServer,
    gateway: &GatewayHandle,
    db: &Path,
    options: Options<'_>,
) -> ServerHandle {
    let model = OpenAiModel::new(OpenAiConfig {
        base_url: script.base_url.clone(),
        api_key: None,
        model: "scripted".into(),
        retry: RetryPolicy::none(),
        ..OpenAiConfig::default()
    })
    .unwrap();
    let pay = PayClient::new(PayConfig::new(
        RouteTable::embedded().with_base_url(&gateway.base_url),
    ))
    .unwrap();
    let builder = Agent::builder()
        .model(Arc::new(model))
        .pay(pay)
        .policy(options.policy);
    let tokens = match options.tokens {
        Some(t) => Tokens::parse_env(t).unwrap(),
        None => Tokens::default(),
    };
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let state = ServerState::new(
        builder,
        store,
        tokens,
        ServerConfig {
            max_body_bytes: options.max_body_bytes,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    altan_pay::server::spawn(listener, state).unwrap()
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub data: Value,
}

/// Parses an SSE body into events (comments skipped; `[DONE]` kept as a string).
pub fn parse_sse(body: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            continue;
        }
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        out.push(Sse { event, data });
    }
    out
}

/// The native request body: one message from Ada, the trusted context of account `ws_1`.
pub fn native_body(text: &str) -> Value {
    json!({
        "messages": [{"member_id": "u-1", "name": "Ada", "member_type": "user", "text": text}],
        "context": {
            "account_id": "ws_1",
            "agent_member_id": "pay-1",
            "members": [
                {"member_id": "u-1", "name": "Ada", "kind": "user"},
                {"member_id": "altan-1", "name": "Altan", "kind": "agent"},
                {"member_id": "pay-1", "name": "Altan Pay", "kind": "agent"}
            ]
        }
    })
}

/// The Python of scripts/install-test-python.sh: the official `openai` SDK and
/// `prometheus-client`.
pub fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci-cache/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-python.sh (scripts/test.sh does) to install the openai SDK and prometheus-client these tests use",
        python.display()
    );
    python
}
