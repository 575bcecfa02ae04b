//! The native thread API: new room messages in, the answer out as JSON or as SSE events in the
//! room's vocabulary (`response.started`, `message_part.*`, `response.completed`/`failed`).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::ServerState;
use super::error::{ApiError, ApprovalPath, JsonBody, ThreadId};
use super::turn::{self, Authed, Idempotency, Job, Running, Work};
use crate::agent::AgentEvent;
use crate::room::{AgentContext, MemberKind, RoomMessage};
use crate::sync::SyncStatus;

/// One new room message.
#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub member_id: String,
    pub name: String,
    /// `user` or `agent`.
    #[serde(alias = "member_type")]
    pub kind: MemberKind,
    pub text: String,
}

/// `POST /v1/threads/{thread_id}/messages`.
#[derive(Debug, Deserialize)]
pub struct PostMessages {
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub context: AgentContext,
}

/// `POST /v1/threads/{thread_id}/approvals/{approval_id}`.
#[derive(Debug, Deserialize)]
pub struct PostApproval {
    pub approve: bool,
    /// Defaults to the context of the thread's latest request.
    #[serde(default)]
    pub context: Option<AgentContext>,
}

pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

pub async fn post_messages(
    State(state): State<ServerState>,
    Authed(access): Authed,
    ThreadId(thread_id): ThreadId,
    headers: HeaderMap,
    body: JsonBody<PostMessages>,
) -> Result<Response, ApiError> {
    let request = body.value;
    if request.messages.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`messages` is empty; send at least one new room message",
        ));
    }
    let context = turn::context_from_headers(request.context, &headers);
    let context = turn::admit(&state, &access, &thread_id, context).await?;
    let context_json = serde_json::to_vec(&context).unwrap_or_default();
    let scope = format!("messages:{thread_id}");
    let idem = turn::idempotency(&state, &headers, &scope, &[&body.raw, &context_json]).await?;
    let messages = request
        .messages
        .into_iter()
        .map(|m| RoomMessage {
            member_id: m.member_id,
            name: m.name,
            kind: m.kind,
            text: m.text,
        })
        .collect();
    run(
        state,
        headers,
        thread_id,
        context,
        Work::Messages(messages),
        idem,
    )
    .await
}

pub async fn post_approval(
    State(state): State<ServerState>,
    Authed(access): Authed,
    path: ApprovalPath,
    headers: HeaderMap,
    body: JsonBody<PostApproval>,
) -> Result<Response, ApiError> {
    let ApprovalPath {
        thread_id,
        approval_id,
    } = path;
    // A thread the token may not act for answers as a missing one, whatever the body says.
    let info = state
        .store
        .thread_info(&thread_id)
        .await?
        .filter(|info| access.allows(info.account_id.as_deref()))
        .ok_or_else(turn::thread_not_found)?;
    let context = match body.value.context {
        Some(c) => turn::context_from_headers(c, &headers),
        None => info.context,
    };
    let context = turn::admit(&state, &access, &thread_id, context).await?;
    let scope = format!("approvals:{thread_id}:{approval_id}");
    let idem = turn::idempotency(&state, &headers, &scope, &[&body.raw]).await?;
    let work = Work::Approval {
        approval_id,
        approve: body.value.approve,
    };
    run(state, headers, thread_id, context, work, idem).await
}

/// Replays or runs the turn, answering JSON or SSE.
async fn run(
    state: ServerState,
    headers: HeaderMap,
    thread_id: String,
    context: AgentContext,
    work: Work,
    idem: Idempotency,
) -> Result<Response, ApiError> {
    let sse = wants_sse(&headers);
    let key = match idem {
        Idempotency::Replay(answer) => return Ok(replay(answer, sse)),
        Idempotency::Fresh(scope, key) => Some((scope, key)),
        Idempotency::None => None,
    };
    let job = Job {
        thread_id: thread_id.clone(),
        context,
        work,
        idempotency: key,
    };
    let running = turn::start(&state, job, sse).await?;
    if sse {
        return Ok(stream(thread_id, running));
    }
    let answer = turn::finish(running.answer).await?;
    Ok(axum::Json(answer).into_response())
}

fn replay(answer: Value, sse: bool) -> Response {
    let mut response = if sse {
        let (tx, rx) = unbounded_channel();
        let thread_id = answer["thread_id"].as_str().unwrap_or("").to_string();
        send(
            &tx,
            "response.started",
            json!({"thread_id": thread_id, "replayed": true}),
        );
        send_final(&tx, Ok(answer));
        drop(tx);
        sse_response(rx)
    } else {
        axum::Json(answer).into_response()
    };
    response.headers_mut().insert(
        "idempotent-replayed",
        header::HeaderValue::from_static("true"),
    );
    response
}

fn sse_response(rx: UnboundedReceiver<Event>) -> Response {
    let mut rx = rx;
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn send(tx: &UnboundedSender<Event>, name: &str, data: Value) {
    let _ = tx.send(Event::default().event(name).data(data.to_string()));
}

/// `response.completed` with the answer, or `response.failed` with the reason (and the
/// answer, whose sync plan holds whatever Stripe already did).
fn send_final(tx: &UnboundedSender<Event>, answer: Result<Value, ApiError>) {
    match answer {
        Ok(answer) if answer["status"] == "completed" => send(tx, "response.completed", answer),
        Ok(answer) => {
            let reason = answer["error"]["message"]
                .as_str()
                .unwrap_or("the turn did not complete")
                .to_string();
            send(
                tx,
                "response.failed",
                json!({"reason": reason, "response": answer}),
            );
        }
        Err(e) => send(
            tx,
            "response.failed",
            json!({"reason": e.message, "error": e.body()["error"]}),
        ),
    }
}

/// Streams the turn's events as room events while it runs.
fn stream(thread_id: String, running: Running) -> Response {
    let (tx, rx) = unbounded_channel();
    let Running { events, answer } = running;
    tokio::spawn(async move {
        send(&tx, "response.started", json!({"thread_id": thread_id}));
        if let Some(mut events) = events {
            let mut parts = Parts::default();
            while let Some(event) = events.recv().await {
                parts.on(&tx, event);
            }
            parts.close_text(&tx);
        }
        send_final(&tx, turn::finish(answer).await);
    });
    sse_response(rx)
}

/// Turns agent events into message parts: a text part per run of text, a tool part per call.
#[derive(Default)]
struct Parts {
    next: usize,
    text: Option<(String, String)>,
}

impl Parts {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("part_{}", self.next)
    }

    fn on(&mut self, tx: &UnboundedSender<Event>, event: AgentEvent) {
        match event {
            AgentEvent::TextDelta { text } => {
                if self.text.is_none() {
                    let id = self.id();
                    send(
                        tx,
                        "message_part.added",
                        json!({"part_id": id, "type": "text"}),
                    );
                    self.text = Some((id, String::new()));
                }
                if let Some((id, all)) = &mut self.text {
                    all.push_str(&text);
                    send(
                        tx,
                        "message_part.updated",
                        json!({"part_id": id, "type": "text", "delta": text}),
                    );
                }
            }
            AgentEvent::ToolCallStarted {
                id,
                name,
                arguments,
            } => {
                self.close_text(tx);
                send(
                    tx,
                    "message_part.added",
                    json!({"part_id": format!("tool_{id}"), "type": "tool", "tool_call_id": id,
                           "name": name, "arguments": arguments, "status": "running"}),
                );
            }
            AgentEvent::ToolCallFinished {
                id,
                name,
                result,
                error,
            } => {
                let part = json!({"part_id": format!("tool_{id}"), "type": "tool", "tool_call_id": id,
                                  "name": name, "result": result, "error": error,
                                  "status": if error.is_some() { "failed" } else { "done" }});
                send(tx, "message_part.updated", part.clone());
                send(tx, "message_part.completed", part);
            }
            AgentEvent::Started { .. } | AgentEvent::Completed { .. } => {}
        }
    }

    fn close_text(&mut self, tx: &UnboundedSender<Event>) {
        if let Some((id, text)) = self.text.take() {
            send(
                tx,
                "message_part.completed",
                json!({"part_id": id, "type": "text", "text": text}),
            );
        }
    }
}

/// `GET /v1/threads/{thread_id}`: the session and the syncs Altan has not confirmed.
pub async fn get_thread(
    State(state): State<ServerState>,
    Authed(access): Authed,
    ThreadId(thread_id): ThreadId,
) -> Result<Response, ApiError> {
    // Another account's thread answers exactly as a missing one.
    let info = state.store.thread_info(&thread_id).await?;
    let Some(info) = info.filter(|info| access.allows(info.account_id.as_deref())) else {
        return Err(turn::thread_not_found());
    };
    let Some(session) = state.store.load(&thread_id).await? else {
        return Err(turn::thread_not_found());
    };
    let pending: Vec<&crate::sync::SentSync> = session
        .syncs
        .all()
        .iter()
        .filter(|s| s.status != SyncStatus::Applied)
        .collect();
    Ok(axum::Json(json!({
        "object": "altan_pay.thread",
        "thread_id": thread_id,
        "account_id": info.account_id,
        "answers": session.answers,
        "history": session.history,
        "trail": session.trail,
        "approvals": session.approvals,
        "pending_syncs": pending,
        "unsynced": session.unsynced,
    }))
    .into_response())
}
