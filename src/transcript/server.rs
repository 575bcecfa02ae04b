//! The replay model server: an OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 that
//! serves the recorded responses in order and notes where the engine's requests diverge.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::check::{Finding, Stage, compare_request};
use super::format::{ModelCall, Transcript};
use super::record::response_json;
use crate::model::wire::StreamAssembler;

/// The recorded calls and what happened to them.
#[derive(Default)]
struct Queue {
    /// (turn index, call index within the turn, the call).
    calls: Vec<(usize, usize, ModelCall)>,
    next: usize,
    turn: usize,
    /// Model calls the engine made in the current turn.
    made: usize,
    findings: Vec<Finding>,
}

/// Shared between the HTTP handler and the run that marks turn boundaries.
#[derive(Default)]
pub struct ReplayState {
    queue: Mutex<Queue>,
}

impl ReplayState {
    pub fn new(transcript: &Transcript) -> ReplayState {
        let mut queue = Queue::default();
        for (t, turn) in transcript.turns.iter().enumerate() {
            for (k, call) in turn.model_calls.iter().enumerate() {
                queue.calls.push((t, k, call.clone()));
            }
        }
        ReplayState {
            queue: Mutex::new(queue),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine starts turn `turn` (0-based).
    pub fn begin_turn(&self, turn: usize) {
        let mut q = self.lock();
        q.turn = turn;
        q.made = 0;
    }

    /// The turn is over: any of its recorded responses not served is a finding.
    pub fn end_turn(&self, turn: usize) {
        let mut q = self.lock();
        let total = q.calls.iter().filter(|(t, _, _)| *t == turn).count();
        while q.next < q.calls.len() && q.calls[q.next].0 <= turn {
            let k = q.calls[q.next].1;
            let made = q.made;
            q.findings.push(Finding::message(
                turn,
                Stage::Model(k + 1),
                format!(
                    "recorded response {} of {total} was left unused: the engine stopped calling the model after {} call(s)",
                    k + 1,
                    made
                ),
            ));
            q.next += 1;
        }
    }

    /// Everything noticed so far.
    pub fn findings(&self) -> Vec<Finding> {
        self.lock().findings.clone()
    }

    /// The recorded call to answer this request with, after comparing the two.
    fn serve(&self, got: &Value) -> Result<ModelCall, String> {
        let mut q = self.lock();
        q.made += 1;
        let (turn, made) = (q.turn, q.made);
        let next = q.next;
        match q.calls.get(next).cloned() {
            Some((t, k, call)) if t == turn => {
                q.next += 1;
                for (field, expected, got) in
                    compare_request(&call.request, got, &call.called_tools())
                {
                    q.findings.push(Finding::diff(
                        turn,
                        Stage::Model(k + 1),
                        field,
                        expected,
                        got,
                    ));
                }
                Ok(call)
            }
            _ => {
                let recorded = q.calls.iter().filter(|(t, _, _)| *t == turn).count();
                let message = format!(
                    "the engine made model call {made} but the recording has {recorded} for this turn"
                );
                q.findings
                    .push(Finding::message(turn, Stage::Model(made), message.clone()));
                Err(message)
            }
        }
    }
}

/// A running replay server; dropping it stops it.
pub struct ReplayServer {
    /// Ends in `/v1`, as `OPENAI_BASE_URL` would.
    pub base_url: String,
    pub addr: SocketAddr,
    pub state: Arc<ReplayState>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl ReplayServer {
    pub async fn spawn(transcript: &Transcript) -> std::io::Result<ReplayServer> {
        let state = Arc::new(ReplayState::new(transcript));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(ReplayServer {
            base_url: format!("http://{addr}/v1"),
            addr,
            state,
            stop: Some(stop),
        })
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "replay_divergence"}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(State(state): State<Arc<ReplayState>>, request: Request) -> Response {
    if !request.uri().path().ends_with("/chat/completions") {
        return error(StatusCode::NOT_FOUND, "only /v1/chat/completions is served");
    }
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), 16 << 20).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request too large");
    };
    let Ok(got) = serde_json::from_slice::<Value>(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "the request body is not JSON");
    };
    let call = match state.serve(&got) {
        Ok(call) => call,
        // 400: not retried by the client, so the turn ends and the replay reports it.
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let streamed = got.get("stream") == Some(&Value::Bool(true));
    let chunks = match (&call.chunks, &call.response) {
        (Some(chunks), _) => chunks.clone(),
        (None, Some(whole)) => chunks_of_whole(whole),
        (None, None) => Vec::new(),
    };
    if streamed {
        let mut body = String::new();
        for chunk in &chunks {
            body.push_str("data: ");
            body.push_str(&chunk.to_string());
            body.push_str("\n\n");
        }
        body.push_str("data: [DONE]\n\n");
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        return response;
    }
    let whole = match &call.response {
        Some(whole) => whole.clone(),
        None => match assemble(&chunks) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        },
    };
    let mut response = Response::new(Body::from(whole.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A whole completion served to a streaming client: one chunk with the whole message.
fn chunks_of_whole(whole: &Value) -> Vec<Value> {
    let mut delta = whole
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for (i, call) in calls.iter_mut().enumerate() {
            call["index"] = json!(i);
        }
    }
    let finish = whole
        .pointer("/choices/0/finish_reason")
        .cloned()
        .unwrap_or(Value::Null);
    vec![
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        json!({"object": "chat.completion.chunk", "choices": [], "usage": whole.get("usage").cloned().unwrap_or(Value::Null)}),
    ]
}

/// A streamed recording served to a client that did not ask for a stream.
fn assemble(chunks: &[Value]) -> Result<Value, String> {
    let mut assembler = StreamAssembler::new();
    for chunk in chunks {
        assembler.push(chunk).map_err(|e| e.to_string())?;
    }
    let response = assembler.finish().map_err(|e| e.to_string())?;
    Ok(response_json("replay", &response))
}
