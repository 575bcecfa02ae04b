//! The OpenAI-compatible API: `POST /v1/chat/completions` (model `altan-pay`, streaming or not)
//! and `GET /v1/models`. Tools run server-side; the answer is one assistant message.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::error::{ApiError, JsonBody, check_thread_id};
use super::turn::{self, Authed, Idempotency, Job, Work};
use super::{MODEL_NAME, ServerState};
use crate::room::{AgentContext, MemberKind, RoomMessage};

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

/// `content` as text: a string, or the text parts of an array.
fn content_text(i: usize, content: &Option<Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                _ => Err(invalid(format!(
                    "`messages[{i}].content`: only text parts ({{\"type\":\"text\",\"text\":...}}) are supported"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.concat()),
        Some(_) => Err(invalid(format!(
            "`messages[{i}].content` must be a string or an array of text parts"
        ))),
    }
}

fn meta(metadata: &Option<Map<String, Value>>, key: &str) -> Result<Option<String>, ApiError> {
    match metadata.as_ref().and_then(|m| m.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(invalid(format!("`metadata.{key}` must be a string"))),
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `metadata.thread_id`, else the `user` field, else a hash of the account and the first user
/// message (so a client resending the whole conversation lands in the same thread).
fn thread_id_of(
    request: &ChatCompletionRequest,
    context: &AgentContext,
    first_user: &str,
) -> Result<String, ApiError> {
    if let Some(id) = meta(&request.metadata, "thread_id")? {
        check_thread_id(&id)?;
        return Ok(id);
    }
    if let Some(user) = request
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        return Ok(if check_thread_id(user).is_ok() {
            user.to_string()
        } else {
            format!("user-{}", short_hash(&[user]))
        });
    }
    let account = context.account_id.as_deref().unwrap_or("");
    Ok(format!("chat-{}", short_hash(&[account, first_user])))
}

/// The request's messages as room messages, with the role of each checked.
fn room_messages(
    request: &ChatCompletionRequest,
    context: &AgentContext,
) -> Result<Vec<(usize, RoomMessage)>, ApiError> {
    let mut out = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let text = content_text(i, &m.content)?;
        let message = match m.role.as_str() {
            // The agent has its own prompt and runs its own tools.
            "system" | "developer" | "tool" | "function" => continue,
            "user" => RoomMessage {
                member_id: m
                    .name
                    .as_deref()
                    .map_or_else(|| "user".to_string(), |n| format!("user:{n}")),
                name: m.name.clone().unwrap_or_else(|| "User".into()),
                kind: MemberKind::User,
                text,
            },
            "assistant" => RoomMessage {
                member_id: context
                    .agent_member_id
                    .clone()
                    .unwrap_or_else(|| "altan-pay".into()),
                name: context.agent_name().to_string(),
                kind: MemberKind::Agent,
                text,
            },
            other => {
                return Err(invalid(format!(
                    "`messages[{i}].role` is `{other}`; expected system, developer, user, assistant or tool"
                )));
            }
        };
        out.push((i, message));
    }
    Ok(out)
}

pub async fn chat_completions(
    State(state): State<ServerState>,
    Authed(access): Authed,
    headers: HeaderMap,
    body: JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let request = body.value;
    if request.model != MODEL_NAME {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model `{}` does not exist; use `{MODEL_NAME}`",
                request.model
            ),
        ));
    }
    let context = AgentContext {
        account_id: meta(&request.metadata, "account_id")?,
        stripe_connect_id: meta(&request.metadata, "stripe_connect_id")?,
        agent_member_id: meta(&request.metadata, "member_id")?,
        ..AgentContext::default()
    };
    let context = turn::context_from_headers(context, &headers);
    let all = room_messages(&request, &context)?;
    let Some(first_user) = all.iter().find(|(_, m)| m.kind == MemberKind::User) else {
        return Err(invalid("`messages` has no user message"));
    };
    let thread_id = thread_id_of(&request, &context, &first_user.1.text)?;
    let context = turn::admit(&state, &access, &thread_id, context).await?;
    // A stateless client resends the conversation: only what follows the agent's last
    // answer is new once the thread has answered before.
    let answered = state
        .store
        .load(&thread_id)
        .await?
        .is_some_and(|s| s.answers > 0);
    let new: Vec<RoomMessage> = if answered {
        let last_assistant = all.iter().rposition(|(_, m)| m.kind == MemberKind::Agent);
        all.into_iter()
            .skip(last_assistant.map_or(0, |p| p + 1))
            .map(|(_, m)| m)
            .collect()
    } else {
        all.into_iter().map(|(_, m)| m).collect()
    };
    if !new.iter().any(|m| m.kind == MemberKind::User) {
        return Err(invalid(
            "no new user message after the last assistant message",
        ));
    }
    let context_json = serde_json::to_vec(&context).unwrap_or_default();
    let scope = format!("chat:{thread_id}");
    let idem = turn::idempotency(&state, &headers, &scope, &[&body.raw, &context_json]).await?;
    let stream = request.stream.unwrap_or(false);
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let answer = match idem {
        Idempotency::Replay(answer) => Ok(answer),
        other => {
            let key = match other {
                Idempotency::Fresh(s, k) => Some((s, k)),
                _ => None,
            };
            let job = Job {
                thread_id,
                context,
                work: Work::Messages(new),
                idempotency: key,
            };
            let running = turn::start(&state, job, false).await?;
            if stream {
                return Ok(stream_answer(running.answer, include_usage));
            }
            turn::finish(running.answer).await
        }
    }?;
    if stream {
        let (tx, rx) = unbounded_channel();
        let id = completion_id();
        send_chunks(&tx, &id, Ok(answer), include_usage);
        return Ok(sse(rx));
    }
    Ok(axum::Json(completion(&answer)).into_response())
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `usage` in OpenAI's shape from the native answer, the cached and reasoning tokens of the
/// turn's model calls under OpenAI's own `*_details` names.
fn usage(answer: &Value) -> Value {
    let n = |k: &str| answer["usage"][k].as_u64().unwrap_or(0);
    json!({"prompt_tokens": n("prompt_tokens"), "completion_tokens": n("completion_tokens"),
           "total_tokens": n("total_tokens"),
           "prompt_tokens_details": {"cached_tokens": n("cached_tokens")},
           "completion_tokens_details": {"reasoning_tokens": n("reasoning_tokens")}})
}

/// One `chat.completion`; the native answer rides along under `altan_pay`.
fn completion(answer: &Value) -> Value {
    json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": created(),
        "model": MODEL_NAME,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer["text"], "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(answer),
        }],
        "usage": usage(answer),
        "altan_pay": answer,
    })
}

/// `length` when the model's answer was cut at its output limit (the native `status` is
/// `cut`), as OpenAI's own API says it; `stop` otherwise.
fn finish_reason(answer: &Value) -> &'static str {
    match answer["status"].as_str() {
        Some("cut") => "length",
        _ => "stop",
    }
}

fn chunk(id: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created(),
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

fn data(tx: &UnboundedSender<Event>, value: &Value) {
    let _ = tx.send(Event::default().data(value.to_string()));
}

/// The answer's chunks after the role chunk: its text in pieces, the finish chunk (with the
/// native answer), the usage chunk when asked, and `[DONE]`.
fn send_chunks(
    tx: &UnboundedSender<Event>,
    id: &str,
    answer: Result<Value, ApiError>,
    include_usage: bool,
) {
    match answer {
        Ok(answer) => {
            let text = answer["text"].as_str().unwrap_or("");
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(64) {
                let piece: String = piece.iter().collect();
                data(tx, &chunk(id, json!({"content": piece}), None));
            }
            let mut last = chunk(id, json!({}), Some(finish_reason(&answer)));
            last["altan_pay"] = answer.clone();
            data(tx, &last);
            if include_usage {
                let mut u = chunk(id, json!({}), None);
                u["choices"] = json!([]);
                u["usage"] = usage(&answer);
                data(tx, &u);
            }
        }
        Err(e) => data(tx, &e.body()),
    }
    let _ = tx.send(Event::default().data("[DONE]"));
}

fn sse(rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> Response {
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|e| e.map(Ok::<_, std::convert::Infallible>))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Streams a running turn: the role chunk at once (keep-alive comments while tools run), the
/// composed answer when the turn ends.
fn stream_answer(
    answer: tokio::task::JoinHandle<Result<Value, ApiError>>,
    include_usage: bool,
) -> Response {
    let (tx, rx) = unbounded_channel();
    let id = completion_id();
    data(
        &tx,
        &chunk(&id, json!({"role": "assistant", "content": ""}), None),
    );
    tokio::spawn(async move {
        let answer = turn::finish(answer).await;
        send_chunks(&tx, &id, answer, include_usage);
    });
    sse(rx)
}

pub async fn list_models(Authed(_): Authed) -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "altan"}],
    }))
}
