//! The replay model server: an OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 that
//! serves the recorded responses in order and notes where the engine's requests diverge.
//! It also answers `POST /v1/responses` (the Responses wire): the request's `instructions`
//! and `input` items are turned back into chat messages and compared as on the chat path, and
//! the recorded chat response is served as a Responses object (streamed as events or whole).

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
    /// Queues every recorded model call of `transcript`, in order.
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
    pub(crate) fn begin_turn(&self, turn: usize) {
        let mut q = self.lock();
        q.turn = turn;
        q.made = 0;
    }

    /// The turn is over: any of its recorded responses not served is a finding.
    pub(crate) fn end_turn(&self, turn: usize) {
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
    /// The loopback address the server listens on.
    pub addr: SocketAddr,
    /// The queue of recorded calls, shared with the run that marks turn boundaries.
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
    /// Serves `transcript`'s recorded model calls on an ephemeral loopback port.
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
    if request.uri().path().ends_with("/responses") {
        return handle_responses(&state, request).await;
    }
    if !request.uri().path().ends_with("/chat/completions") {
        return error(
            StatusCode::NOT_FOUND,
            "only /v1/chat/completions and /v1/responses are served",
        );
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

/// `POST /v1/responses`: the request compared as a chat request, the recorded chat answer
/// served as a Responses object, as events when the request streams.
async fn handle_responses(state: &ReplayState, request: Request) -> Response {
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), 16 << 20).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request too large");
    };
    let Ok(got) = serde_json::from_slice::<Value>(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "the request body is not JSON");
    };
    let call = match state.serve(&chat_request_of(&got)) {
        Ok(call) => call,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let whole = match (&call.response, &call.chunks) {
        (Some(whole), _) => whole.clone(),
        (None, Some(chunks)) => match assemble(chunks) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        },
        (None, None) => json!({"choices": []}),
    };
    let answer = responses_of(&whole);
    let (body, kind) = if got.get("stream") == Some(&Value::Bool(true)) {
        (events_of(&answer), "text/event-stream")
    } else {
        (answer.to_string(), "application/json")
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

/// A Responses request as the chat request it stands for: `instructions` as the first system
/// message; `message` items as messages (a user's `name: ` prefix stays in the text, as the
/// recordings keep the speaker in the text); `function_call` items as the tool calls of the
/// assistant message before them (a new one when the item before is not the assistant's);
/// `function_call_output` items as tool results; reasoning items left out; flat tools back in
/// the chat shape.
pub(crate) fn chat_request_of(body: &Value) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    // Whether the last message pushed is an assistant message that later calls may join.
    let mut open_assistant = false;
    let items = body.get("input").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        let text = |key: &str| match item.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        };
        match item.get("type").and_then(Value::as_str) {
            Some("message") | None => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                messages.push(json!({"role": role, "content": text("content")}));
                open_assistant = role == "assistant";
            }
            Some("function_call") => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": item.get("arguments").cloned().unwrap_or(Value::Null),
                    },
                });
                if !open_assistant {
                    messages.push(json!({"role": "assistant", "tool_calls": []}));
                    open_assistant = true;
                }
                if let Some(last) = messages.last_mut() {
                    if last.get("tool_calls").is_none() {
                        last["tool_calls"] = json!([]);
                    }
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
            }
            Some("function_call_output") => {
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "content": text("output"),
                }));
                open_assistant = false;
            }
            Some(_) => {}
        }
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|tool| {
            let mut function = tool.clone();
            if let Some(f) = function.as_object_mut() {
                f.remove("type");
            }
            json!({"type": "function", "function": function})
        })
        .collect();
    json!({"model": body.get("model"), "messages": messages, "tools": tools})
}

/// A recorded `chat.completion` as a Responses object: the text as a `message` item with one
/// `output_text` part, each tool call as a `function_call` item (same `call_id`, name and
/// arguments string), the usage in the Responses names, and `finish_reason: "length"` as
/// `status: "incomplete"` for `max_output_tokens`.
pub fn responses_of(whole: &Value) -> Value {
    let message = whole
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut output = Vec::new();
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    let calls = message.get("tool_calls").and_then(Value::as_array);
    if !text.is_empty() || calls.is_none_or(Vec::is_empty) {
        output.push(json!({
            "type": "message",
            "id": "msg_replay",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        output.push(json!({
            "type": "function_call",
            "id": format!("fc_replay_{i}"),
            "status": "completed",
            "call_id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "arguments": arguments,
        }));
    }
    let usage = whole.get("usage").filter(|u| !u.is_null());
    let count = |path: &str| {
        usage
            .and_then(|u| u.pointer(path))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let length = whole
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
        == Some("length");
    let mut answer = json!({
        "id": "resp_replay",
        "object": "response",
        "created_at": 0,
        "status": if length { "incomplete" } else { "completed" },
        "incomplete_details": if length { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "model": whole.get("model").cloned().unwrap_or(Value::Null),
        "output": output,
    });
    if usage.is_some() {
        answer["usage"] = json!({
            "input_tokens": count("/prompt_tokens"),
            "input_tokens_details": {"cached_tokens": count("/prompt_tokens_details/cached_tokens")},
            "output_tokens": count("/completion_tokens"),
            "output_tokens_details": {"reasoning_tokens": count("/completion_tokens_details/reasoning_tokens")},
            "total_tokens": count("/total_tokens"),
        });
    }
    answer
}

/// A Responses object as the events of a stream: `response.created`; per output item
/// `response.output_item.added`, its text (`response.output_text.delta`) or arguments
/// (`response.function_call_arguments.delta`, then `.done`) and `response.output_item.done`;
/// then `response.completed` or `response.incomplete` carrying the whole object.
pub(crate) fn events_of(answer: &Value) -> String {
    let mut events = Vec::new();
    let mut created = answer.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    events.push(json!({"type": "response.created", "response": created}));
    let items = answer.get("output").and_then(Value::as_array);
    for (i, item) in items.into_iter().flatten().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut added = item.clone();
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                added["content"] = json!([]);
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                let parts = item.get("content").and_then(Value::as_array);
                for (c, part) in parts.into_iter().flatten().enumerate() {
                    let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": i, "content_index": c, "delta": text}));
                    }
                    events.push(json!({"type": "response.output_text.done", "item_id": id, "output_index": i, "content_index": c, "text": text}));
                }
            }
            Some("function_call") => {
                added["arguments"] = json!("");
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                let arguments = item.get("arguments").cloned().unwrap_or(json!(""));
                if arguments.as_str().is_some_and(|a| !a.is_empty()) {
                    events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": i, "delta": arguments}));
                }
                events.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": i, "arguments": arguments}));
            }
            _ => events.push(
                json!({"type": "response.output_item.added", "output_index": i, "item": added}),
            ),
        }
        events.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    let end = match answer.get("status").and_then(Value::as_str) {
        Some("incomplete") => "response.incomplete",
        _ => "response.completed",
    };
    events.push(json!({"type": end, "response": answer}));
    events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            event["sequence_number"] = json!(n);
            let kind = event["type"].as_str().unwrap_or("").to_string();
            format!("event: {kind}\ndata: {event}\n\n")
        })
        .collect()
}
