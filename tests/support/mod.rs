//! A scripted Altan Pay API for tests: a real HTTP server on 127.0.0.1 that records every
//! request exactly as it arrived and answers from a queue of scripted responses.

#![allow(dead_code)]

pub mod wait;
pub mod world;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altan_pay::pay::{PayClient, PayConfig, RetryPolicy, RouteTable};
use altan_pay::tools::{ToolContext, ToolEnv};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use serde_json::Value;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// Path and query, as written in the route table.
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to trigger client timeouts).
    pub delay: Option<Duration>,
}

impl Scripted {
    pub fn json(status: u16, body: Value) -> Scripted {
        Scripted {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: None,
        }
    }

    pub fn raw(status: u16, body: &str) -> Scripted {
        Scripted {
            status,
            headers: vec![],
            body: body.to_string(),
            delay: None,
        }
    }

    pub fn stripe_error(
        status: u16,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
    ) -> Scripted {
        let mut error = serde_json::json!({"type": kind, "code": code, "message": message});
        if let Some(p) = param {
            error["param"] = Value::String(p.into());
        }
        Scripted::json(status, serde_json::json!({ "error": error }))
    }

    pub fn header(mut self, name: &str, value: &str) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Scripted {
        self.delay = Some(d);
        self
    }
}

#[derive(Default)]
struct Script {
    requests: Mutex<Vec<Recorded>>,
    responses: Mutex<VecDeque<Scripted>>,
}

/// The running server.
pub struct MockPay {
    pub base_url: String,
    script: Arc<Script>,
    _server: tokio::task::JoinHandle<()>,
}

impl MockPay {
    pub async fn start() -> MockPay {
        let script = Arc::new(Script::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockPay {
            base_url,
            script,
            _server: server,
        }
    }

    pub fn push(&self, response: Scripted) {
        self.script.responses.lock().unwrap().push_back(response);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.script.requests.lock().unwrap().clone()
    }

    pub fn unused_responses(&self) -> usize {
        self.script.responses.lock().unwrap().len()
    }

    /// A client for this server with fast retries.
    pub fn client(&self, timeout: Duration) -> PayClient {
        let mut config = PayConfig::new(RouteTable::embedded().with_base_url(&self.base_url));
        config.timeout = timeout;
        config.retry = fast_retries();
        PayClient::new(config).unwrap()
    }

    pub fn env(&self) -> ToolEnv {
        ToolEnv {
            pay: self.client(Duration::from_secs(5)),
        }
    }
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

pub fn ctx(call_id: &str) -> ToolContext {
    ToolContext {
        conversation_id: "thread-1".into(),
        tool_call_id: call_id.into(),
        account_id: Some("acc_1".into()),
        stripe_connect_id: Some("acct_9".into()),
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    script.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    });
    let next = script.responses.lock().unwrap().pop_front();
    let next = next.unwrap_or_else(|| Scripted::raw(599, "no scripted response left"));
    if let Some(d) = next.delay {
        tokio::time::sleep(d).await;
    }
    let mut response = Response::builder().status(next.status);
    for (k, v) in &next.headers {
        response = response.header(k, v);
    }
    response.body(Body::from(next.body)).unwrap()
}

/// Every tool call is answered exactly once, right after its assistant message, and every
/// tool message answers a call: what OpenAI requires of the history.
pub fn assert_history_valid(messages: &[altan_pay::model::ChatMessage]) {
    let mut open: Vec<String> = Vec::new();
    for m in messages {
        match m.role {
            altan_pay::model::Role::Tool => {
                let id = m.tool_call_id.clone().expect("tool message has a call id");
                let pos = open
                    .iter()
                    .position(|o| *o == id)
                    .unwrap_or_else(|| panic!("tool message for unknown call {id}"));
                open.remove(pos);
            }
            _ => {
                assert!(open.is_empty(), "calls left unanswered: {open:?}");
                open.extend(m.tool_calls.iter().map(|c| c.id.clone()));
            }
        }
    }
    assert!(
        open.is_empty(),
        "calls left unanswered at the end: {open:?}"
    );
}
