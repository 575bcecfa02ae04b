//! What both APIs share: trusted context from headers, thread ownership, idempotency keys,
//! the thread's lease (one turn per thread, across replicas), and running a turn as a tracked
//! task that stores its answer even if the client hangs up.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ServerState;
use super::auth::Access;
use super::error::ApiError;
use crate::agent::{AgentEvent, Answer, AnswerEnd, TurnOptions};
use crate::room::{AgentContext, RoomMessage};
use crate::store::{LeaseError, Reservation};

/// The request's [`Access`], left by the auth middleware.
pub struct Authed(pub Access);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .map(Authed)
            .ok_or_else(|| ApiError::internal("the request was not authenticated"))
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Fills context gaps from `X-Altan-Account-Id`, `X-Altan-Stripe-Connect-Id` and
/// `X-Altan-Member-Id`; values in the body win. A Connect id read here is only a claim:
/// [`admit`] refuses it unless it is the server's own for the account.
pub fn context_from_headers(mut context: AgentContext, headers: &HeaderMap) -> AgentContext {
    if context.account_id.is_none() {
        context.account_id = header(headers, "x-altan-account-id");
    }
    if context.stripe_connect_id.is_none() {
        context.stripe_connect_id = header(headers, "x-altan-stripe-connect-id");
    }
    if context.agent_member_id.is_none() {
        context.agent_member_id = header(headers, "x-altan-member-id");
    }
    context
}

/// Checks the token may act for the request's account and that the thread is its own; a
/// request naming no account on an owned thread acts for the owner. A thread's owner is fixed
/// by its first request, "no account" included. Another account's thread answers exactly what
/// a missing one does ([`thread_not_found`]), so a token learns nothing of threads it may not
/// see. Then the context's Connect id becomes the server's for the account (a caller's that
/// differs is refused) and the context is recorded. Nothing has run when this fails.
pub async fn admit(
    state: &ServerState,
    access: &Access,
    thread_id: &str,
    mut context: AgentContext,
) -> Result<AgentContext, ApiError> {
    // What the request names is checked first, the same whether the thread exists or not.
    if context.account_id.is_some() {
        access.check(context.account_id.as_deref())?;
    }
    let known = state.store.thread_info(thread_id).await?;
    if let Some(info) = &known {
        match (&info.account_id, &context.account_id) {
            (Some(owner), None) if access.allows(Some(owner)) => {
                context.account_id = Some(owner.clone());
            }
            // As for a new thread: a scoped token must name an account (403 below).
            (Some(_), None) | (None, None) => {}
            (owner, mine) if owner != mine => return Err(thread_not_found()),
            _ => {}
        }
    }
    access.check(context.account_id.as_deref())?;
    state.connect.resolve(&mut context).await?;
    // Most turns repeat the thread's context: no write (and no fsync) for those. Otherwise
    // the claim is one step of the commit thread: of two first requests, the second finds
    // the first's owner and is refused here unless it is the same (no account included).
    if known.is_none_or(|info| info.context != context) {
        let owner = state.store.claim_thread(thread_id, &context).await?;
        if owner != context.account_id {
            return Err(thread_not_found());
        }
    }
    Ok(context)
}

/// The one answer for a thread a token may not see, whether it exists or not: the same
/// status and body, naming no thread.
pub fn thread_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "thread_not_found",
        "no thread with this id",
    )
}

/// An `Idempotency-Key` and what it means for this request.
pub enum Idempotency {
    None,
    /// Reserved for this request: (scope, key).
    Fresh(String, String),
    /// The stored answer of an earlier identical request.
    Replay(Value),
}

/// Reserves the request's `Idempotency-Key` (scope: endpoint and thread), or finds the stored
/// answer. `fingerprint` is everything that makes two requests the same (body, context).
pub async fn idempotency(
    state: &ServerState,
    headers: &HeaderMap,
    scope: &str,
    fingerprint: &[&[u8]],
) -> Result<Idempotency, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(Idempotency::None);
    };
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    let mut hasher = Sha256::new();
    for part in fingerprint {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match state.store.reserve(scope, key, &hash).await? {
        Reservation::Reserved => Ok(Idempotency::Fresh(scope.to_string(), key.to_string())),
        Reservation::Done(answer) => Ok(Idempotency::Replay(answer)),
        Reservation::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            format!("a request with Idempotency-Key `{key}` is still running; retry later"),
        )),
        Reservation::Conflict => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("Idempotency-Key `{key}` was already used with a different request body"),
        )),
    }
}

/// What a turn does.
pub enum Work {
    Messages(Vec<RoomMessage>),
    Approval { approval_id: String, approve: bool },
}

/// One turn to run.
pub struct Job {
    pub thread_id: String,
    pub context: AgentContext,
    pub work: Work,
    pub idempotency: Option<(String, String)>,
}

/// A running turn: its events (when asked for) and its answer as the native JSON.
pub struct Running {
    pub events: Option<UnboundedReceiver<AgentEvent>>,
    pub answer: JoinHandle<Result<Value, ApiError>>,
}

/// Takes the thread's lease (waiting at most `ServerConfig::thread_wait` for the turn that
/// holds it, here or on another replica), then starts the turn as a tracked task that holds
/// the lease until it ends. A thread still busy after the wait is a 409 with `Retry-After`,
/// and the request's idempotency key is freed for the retry.
pub async fn start(state: &ServerState, job: Job, with_events: bool) -> Result<Running, ApiError> {
    let lease = match state
        .store
        .lease(&job.thread_id, state.config.thread_wait)
        .await
    {
        Ok(lease) => lease,
        Err(e) => {
            if let Some((scope, key)) = &job.idempotency {
                let _ = state.store.release(scope, key).await;
            }
            return Err(match e {
                LeaseError::Busy { thread_id, waited } => ApiError::new(
                    StatusCode::CONFLICT,
                    "thread_busy",
                    format!(
                        "another turn of thread `{thread_id}` is still running (waited {}s); retry later",
                        waited.as_secs()
                    ),
                )
                .with_retry_after(RETRY_AFTER_SECS),
                LeaseError::Store(e) => e.into(),
            });
        }
    };
    let (tx, rx) = if with_events {
        let (tx, rx) = unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let agent = state.agent.clone();
    let store = state.store.clone();
    // Inside the request's span, so the turn's span is its child.
    let span = tracing::Span::current();
    let answer = state.tracker.spawn(tracing::Instrument::instrument(
        async move {
            // Held until the turn's answer (and its idempotency record) is stored.
            let _lease = lease;
            let options = TurnOptions {
                events: tx,
                cancel: None,
            };
            let result = match &job.work {
                Work::Messages(messages) => {
                    agent
                        .respond_with(&job.thread_id, &job.context, messages, options)
                        .await
                }
                Work::Approval {
                    approval_id,
                    approve,
                } => {
                    agent
                        .decide_approval(
                            &job.thread_id,
                            &job.context,
                            approval_id,
                            *approve,
                            options,
                        )
                        .await
                }
            };
            match result {
                Ok(answer) => {
                    let body = answer_json(&job.thread_id, &answer);
                    info!(
                        thread = %job.thread_id,
                        account = job.context.account_id.as_deref().unwrap_or("-"),
                        status = body["status"].as_str().unwrap_or(""),
                        tool_calls = answer.tool_calls.len(),
                        "turn finished"
                    );
                    if let Some((scope, key)) = &job.idempotency
                        && let Err(e) = store.complete(scope, key, &body).await
                    {
                        warn!(error = %e, "could not store the idempotent answer");
                    }
                    Ok(body)
                }
                Err(e) => {
                    if let Some((scope, key)) = &job.idempotency {
                        let _ = store.release(scope, key).await;
                    }
                    Err(ApiError::from(e))
                }
            }
        },
        span,
    ));
    Ok(Running { events: rx, answer })
}

/// What a 409 for a busy thread tells the client to wait before trying again.
const RETRY_AFTER_SECS: u64 = 2;

/// Waits for a turn's answer; a task that died is a 500.
pub async fn finish(answer: JoinHandle<Result<Value, ApiError>>) -> Result<Value, ApiError> {
    answer
        .await
        .map_err(|e| ApiError::internal(format!("the turn stopped unexpectedly: {e}")))?
}

/// The native answer: final text, handoff, sync plan, tool calls, approvals, usage, and an
/// `error` when the turn did not complete (the sync plan is there either way).
pub fn answer_json(thread_id: &str, answer: &Answer) -> Value {
    let reason = answer.end.reason();
    let (status, error) = match answer.end {
        AnswerEnd::Completed => ("completed", Value::Null),
        AnswerEnd::Cut => ("cut", json!({"type": "answer_cut", "message": reason})),
        AnswerEnd::Stopped(_) => (
            "stopped",
            json!({"type": "turn_stopped", "message": reason}),
        ),
        AnswerEnd::ModelFailed { .. } => {
            ("failed", json!({"type": "model_failed", "message": reason}))
        }
    };
    let handoff = answer.mention.as_ref().map(|m| {
        let task = match &answer.sync_plan {
            Some(plan) => format!(
                "apply sync {}: {}",
                plan.sync_id(),
                plan.operations()
                    .iter()
                    .map(|o| o.summary())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            None => answer.text.replace(&m.markup(), "").trim().to_string(),
        };
        json!({"who": m.name, "member_id": m.member_id, "task": task})
    });
    let approvals: Vec<Value> = answer
        .approvals
        .iter()
        .map(|a| {
            json!({"approval_id": a.approval_id, "tool": a.call.name, "arguments": a.call.arguments})
        })
        .collect();
    json!({
        "object": "altan_pay.response",
        "thread_id": thread_id,
        "status": status,
        "text": answer.text,
        "handoff": handoff,
        "sync_plan": answer.sync_plan,
        "tool_calls": answer.tool_calls,
        "approvals": approvals,
        "usage": answer.total_usage(),
        "error": error,
    })
}
