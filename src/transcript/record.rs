//! Recording: a `ChatModel` wrapper that writes each call as OpenAI wire JSON, and a loopback
//! HTTP proxy in front of the Altan Pay API that records every exchange (and injects faults).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;

use super::format::{ModelCall, PayExchange, RecordedFault};
use super::redact;
use crate::model::wire::{deltas_of, request_body};
use crate::model::{
    ChatModel, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError, ModelFuture,
};

/// Wraps any model and records each call: the request as the OpenAI-compatible client sends
/// it, and the response as wire JSON (a chunk list when the caller streamed). Failed calls
/// are not recorded; the run reports them.
pub struct RecordingModel {
    inner: Arc<dyn ChatModel>,
    temperature: Option<f32>,
    calls: Mutex<Vec<ModelCall>>,
    started: Arc<AtomicUsize>,
}

impl RecordingModel {
    /// `temperature` is what the inner model sends, so the recorded request matches it.
    pub fn new(inner: Arc<dyn ChatModel>, temperature: Option<f32>) -> RecordingModel {
        RecordingModel {
            inner,
            temperature,
            calls: Mutex::default(),
            started: Arc::default(),
        }
    }

    /// Counts calls as they start; the Pay recorder tags each exchange with it.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.started.clone()
    }

    /// The calls recorded since the last `take`.
    pub fn take(&self) -> Vec<ModelCall> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *calls)
    }

    async fn run(
        &self,
        request: &ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> Result<ChatResponse, ModelError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let name = self.inner.name().to_string();
        let mut sent = request_body(&name, request, self.temperature, deltas.is_some());
        redact::json(&mut sent);
        let (result, pieces) = match deltas {
            Some(outer) => {
                // Pass every piece on as it comes, and keep a copy for the chunk list.
                let (tx, mut rx) = unbounded_channel::<ModelDelta>();
                let forward = tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while let Some(delta) = rx.recv().await {
                        seen.push(delta.clone());
                        let _ = outer.send(delta);
                    }
                    seen
                });
                let result = self.inner.complete(request, Some(tx)).await;
                (result, Some(forward.await.unwrap_or_default()))
            }
            None => (self.inner.complete(request, None).await, None),
        };
        if let Ok(response) = &result {
            let call = match pieces {
                Some(mut pieces) => {
                    if pieces.is_empty() {
                        pieces = deltas_of(response);
                    }
                    let mut chunks = chunks_json(&name, &pieces, response);
                    chunks.iter_mut().for_each(redact::json);
                    ModelCall {
                        request: sent,
                        response: None,
                        chunks: Some(chunks),
                    }
                }
                None => {
                    let mut body = response_json(&name, response);
                    redact::json(&mut body);
                    ModelCall {
                        request: sent,
                        response: Some(body),
                        chunks: None,
                    }
                }
            };
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(call);
        }
        result
    }
}

impl ChatModel for RecordingModel {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(self.run(request, deltas))
    }
}

fn finish_text(reason: &Option<FinishReason>) -> Value {
    match reason {
        None => Value::Null,
        Some(FinishReason::Stop) => json!("stop"),
        Some(FinishReason::ToolCalls) => json!("tool_calls"),
        Some(FinishReason::Length) => json!("length"),
        Some(FinishReason::ContentFilter) => json!("content_filter"),
        Some(FinishReason::Other(s)) => json!(s),
    }
}

fn usage_json(response: &ChatResponse) -> Value {
    json!({
        "prompt_tokens": response.usage.prompt_tokens,
        "completion_tokens": response.usage.completion_tokens,
        "total_tokens": response.usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": response.usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": response.usage.reasoning_tokens},
    })
}

/// A whole `chat.completion` carrying `response`.
pub(crate) fn response_json(model: &str, response: &ChatResponse) -> Value {
    let mut message = json!({"role": "assistant", "content": response.message.content});
    if !response.message.tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(
            response
                .message
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect(),
        );
    }
    json!({
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_text(&response.finish_reason)}],
        "usage": usage_json(response),
    })
}

/// The `chat.completion.chunk` list of a streamed answer, one chunk per piece received.
pub(crate) fn chunks_json(
    model: &str,
    pieces: &[ModelDelta],
    response: &ChatResponse,
) -> Vec<Value> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-recorded",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut out = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    for piece in pieces {
        let delta = match piece {
            ModelDelta::Text(text) => json!({"content": text}),
            ModelDelta::ToolCallStarted { index, id, name } => json!({"tool_calls": [{
                "index": index, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            ModelDelta::ToolCallArguments { index, fragment } => {
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            }
        };
        out.push(chunk(delta, Value::Null));
    }
    out.push(chunk(json!({}), finish_text(&response.finish_reason)));
    out.push(json!({
        "id": "chatcmpl-recorded",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": usage_json(response),
    }));
    out
}

/// Largest Pay request the recorder reads.
const MAX_BODY: usize = 1 << 20;

/// The recording proxy's shared state.
pub struct PayRecorder {
    upstream: String,
    http: reqwest::Client,
    counter: Arc<AtomicUsize>,
    faults: Mutex<Vec<RecordedFault>>,
    /// (model calls started when the request arrived, exchange).
    exchanges: Mutex<Vec<(usize, PayExchange)>>,
}

impl PayRecorder {
    /// The exchanges since the last call, tagged with the model call count at their time.
    pub fn take(&self) -> Vec<(usize, PayExchange)> {
        let mut ex = self.exchanges.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *ex)
    }

    /// Whether an injected fault swallows this answer (each fault fires `times` times).
    fn lose(&self, method: &str, path: &str) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        for fault in faults.iter_mut() {
            let RecordedFault::LoseResponse {
                method: m,
                path_contains,
                times,
            } = fault;
            if *times > 0 && m.eq_ignore_ascii_case(method) && path.contains(path_contains.as_str())
            {
                *times -= 1;
                return true;
            }
        }
        false
    }
}

/// A running recorder on 127.0.0.1; dropping it stops the server.
pub struct PayRecorderHandle {
    /// `http://127.0.0.1:PORT`, where the agent's Pay client is pointed.
    pub base_url: String,
    /// The loopback address the recorder listens on.
    pub addr: SocketAddr,
    /// The recorder's state, for taking the exchanges.
    pub recorder: Arc<PayRecorder>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for PayRecorderHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a recording proxy that forwards to `upstream` (a gateway's base URL).
pub async fn spawn_pay_recorder(
    upstream: &str,
    faults: Vec<RecordedFault>,
    counter: Arc<AtomicUsize>,
) -> std::io::Result<PayRecorderHandle> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(std::io::Error::other)?;
    let recorder = Arc::new(PayRecorder {
        upstream: upstream.trim_end_matches('/').to_string(),
        http,
        counter,
        faults: Mutex::new(faults),
        exchanges: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Router::new().fallback(proxy).with_state(recorder.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(PayRecorderHandle {
        base_url: format!("http://{addr}"),
        addr,
        recorder,
        stop: Some(stop),
    })
}

fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response
}

async fn proxy(State(rec): State<Arc<PayRecorder>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let model_call = rec.counter.load(Ordering::SeqCst);
    let mut forward = rec
        .http
        .request(parts.method.clone(), format!("{}{path}", rec.upstream));
    let mut headers = std::collections::BTreeMap::new();
    for (name, value) in &parts.headers {
        if name == header::HOST || name == header::CONTENT_LENGTH {
            continue;
        }
        forward = forward.header(name, value);
        let text = value.to_str().unwrap_or("<binary>");
        headers.insert(
            name.as_str().to_string(),
            redact::header_value(name.as_str(), text),
        );
    }
    let answer = match forward.body(bytes.to_vec()).send().await {
        Ok(answer) => answer,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("recorder: {e}")),
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let answer_bytes = answer.bytes().await.unwrap_or_default();
    let mut body = (!bytes.is_empty()).then(|| json_or_text(&bytes));
    if let Some(b) = &mut body {
        redact::json(b);
    }
    let mut response_body = json_or_text(&answer_bytes);
    redact::json(&mut response_body);
    let method = parts.method.as_str().to_string();
    let lost = rec.lose(&method, &path);
    rec.exchanges
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((
            model_call,
            PayExchange {
                model_call,
                method,
                path,
                headers,
                body,
                status: status.as_u16(),
                response: response_body,
                lost,
            },
        ));
    if lost {
        return plain(
            StatusCode::BAD_GATEWAY,
            "the connection was lost after the request was sent (injected fault)",
        );
    }
    let mut response = Response::new(Body::from(answer_bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    } else {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}
