//! The turn driver: takes the new room messages into the session, runs the engine's state
//! machine against the model and the tools within the deadline, and saves the answer.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, field, info_span, warn};

use crate::engine::{Step, StopReason, Turn, TurnEnd};
use crate::model::{ChatMessage, ModelDelta, ModelError, Role, ToolDefs};
use crate::policy::Requested;
use crate::prompt::PromptContext;
use crate::room::{AgentContext, MemberKind, RoomMessage};
use crate::sync::{AckStatus, parse_acknowledgements};
use crate::tools::ErrorCode;

use super::{Agent, AgentError, Answer, AnswerEnd, Session};

/// Thread locks kept before the idle ones are dropped.
pub(super) const LOCKS_BEFORE_PRUNING: usize = 1024;

/// How many of the latest room messages are kept for spotting agents going back and forth.
pub(super) const TRAIL_LEN: usize = 20;

/// What happens during a turn, as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The turn began.
    Started {
        /// The thread being answered.
        thread_id: String,
    },
    /// Text of the model's answer as it streams (before the handoff is added).
    TextDelta {
        /// The next piece of text.
        text: String,
    },
    /// The model made a tool call; the policy has not judged it yet.
    ToolCallStarted {
        /// The model's id of the call.
        id: String,
        /// The tool.
        name: String,
        /// The arguments as the model sent them (JSON text).
        arguments: String,
    },
    /// A tool call has its result: it ran, failed or was refused (a call held for approval
    /// has none yet).
    ToolCallFinished {
        /// The model's id of the call.
        id: String,
        /// The tool.
        name: String,
        /// What the model reads back.
        result: Value,
        /// Why it failed, when it did.
        error: Option<ErrorCode>,
    },
    /// The turn is over; the answer is the same one `respond` returns.
    Completed {
        /// The whole answer.
        answer: Box<Answer>,
    },
}

/// Per-turn options.
#[derive(Default, Clone)]
pub struct TurnOptions {
    /// Where the turn's [`AgentEvent`]s go as they happen (none: not reported).
    pub events: Option<UnboundedSender<AgentEvent>>,
    /// Cancelling it stops the turn at its next step, with [`StopReason::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl Agent {
    /// Takes the new room messages into the thread's session and answers them.
    pub(super) async fn answer_new_messages(
        &self,
        thread_id: &str,
        context: &AgentContext,
        new_messages: &[RoomMessage],
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        let span = turn_span(thread_id);
        async {
            let lock = self.thread_lock(thread_id);
            let _guard = lock.lock().await;
            let mut session = self.load(thread_id).await?;
            session.syncs.answer_started();
            for message in new_messages {
                self.take_in(&mut session, context, message);
            }
            // The tools these messages need go with the first model call (no `open_tools`
            // round trip); which ones is `ToolExposure::select`'s.
            let texts: Vec<&str> = new_messages
                .iter()
                .filter(|m| !context.is_self(m))
                .map(|m| m.text.as_str())
                .collect();
            self.inner.exposure.select(
                &mut session.opened_tools,
                &texts,
                &session.history,
                context.account_id.is_some(),
            );
            // What a user asked for in these messages, and nothing older, lets a destructive
            // call run (see `policy::Requested`).
            let requested = Requested::of(context, new_messages);
            // Durable before the answer (the final save waits for it), not before the model call.
            self.inner.store.save_queued(&session);
            self.run(&mut session, context, &options, requested).await
        }
        .instrument(span)
        .await
    }

    pub(super) fn thread_lock(&self, thread_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut threads = match self.inner.threads.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Forget the locks nobody holds or waits for, so the map does not grow with every
        // thread ever seen.
        if threads.len() >= LOCKS_BEFORE_PRUNING {
            threads.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        threads.entry(thread_id.to_string()).or_default().clone()
    }

    pub(super) async fn load(&self, thread_id: &str) -> Result<Session, AgentError> {
        Ok(self
            .inner
            .store
            .load(thread_id)
            .instrument(info_span!("session_load"))
            .await?
            .unwrap_or_else(|| Session::new(thread_id)))
    }

    /// Adds one room message to the session: evidence for the id rules, Altan's
    /// acknowledgements of earlier syncs, and the model's history.
    pub(super) fn take_in(
        &self,
        session: &mut Session,
        context: &AgentContext,
        message: &RoomMessage,
    ) {
        session.provenance.observe_room_text(&message.text);
        let from_altan = context
            .altan()
            .is_some_and(|a| a.member_id == message.member_id)
            || (message.kind == MemberKind::Agent && message.name.eq_ignore_ascii_case("Altan"));
        if from_altan {
            let acks = parse_acknowledgements(&message.text);
            if !acks.is_empty() {
                let report = session.syncs.apply(&acks);
                for ack in acks.iter().filter(|a| report.updated.contains(&a.sync_id)) {
                    crate::metrics::global().sync_plan(match ack.status {
                        AckStatus::Applied => "acknowledged",
                        AckStatus::Failed { .. } => "failed",
                    });
                }
            }
        }
        session.trail.push(message.clone());
        if session.trail.len() > TRAIL_LEN {
            let extra = session.trail.len() - TRAIL_LEN;
            session.trail.drain(..extra);
        }
        if context.is_self(message) {
            // The platform echoes our own answers; the history already has them.
            return;
        }
        let kind = match message.kind {
            MemberKind::User => "user",
            MemberKind::Agent => "agent",
        };
        session.history.push(ChatMessage::user(format!(
            "{} ({kind}, member {}): {}",
            message.name, message.member_id, message.text
        )));
    }

    pub(super) async fn run(
        &self,
        session: &mut Session,
        context: &AgentContext,
        options: &TurnOptions,
        requested: Requested,
    ) -> Result<Answer, AgentError> {
        let inner = &self.inner;
        if let Some(events) = &options.events {
            let _ = events.send(AgentEvent::Started {
                thread_id: session.thread_id.clone(),
            });
        }
        let mut messages = vec![
            ChatMessage::system(inner.prompt.clone()),
            ChatMessage::system(crate::prompt::context_message(&prompt_context(context))),
        ];
        let preamble = messages.len();
        messages.extend(session.history.iter().cloned());
        let tools = self.tool_defs(session, context);
        let mut turn =
            Turn::new(messages, tools, inner.limits).with_history(inner.exposure.clone());
        let deadline = tokio::time::Instant::now() + inner.limits.deadline;
        let cancel = options.cancel.clone().unwrap_or_default();
        let mut records = Vec::new();
        let mut approvals = Vec::new();
        let mut model_error: Option<ModelError> = None;

        let mut step = turn.start();
        let end = loop {
            match step {
                Step::CallModel(request) => {
                    let (deltas, forwarder) = forward_deltas(options.events.clone());
                    let span = model_span(inner.model.name(), request.messages.len());
                    let started = std::time::Instant::now();
                    let call = inner
                        .model
                        .complete(&request, deltas)
                        .instrument(span.clone());
                    let outcome = tokio::select! {
                        r = call => Ok(r),
                        _ = tokio::time::sleep_until(deadline) => Err(StopReason::Deadline),
                        _ = cancel.cancelled() => Err(StopReason::Cancelled),
                    };
                    record_model_call(&span, started.elapsed(), &outcome);
                    // Every text delta is out before any tool event of this step.
                    if let Some(forwarder) = forwarder {
                        let _ = forwarder.await;
                    }
                    step = match outcome {
                        Ok(Ok(response)) => turn.model_response(response),
                        Ok(Err(e)) => {
                            warn!(error = %e, "model call failed");
                            model_error = Some(e);
                            break turn.interrupt(StopReason::ModelFailed);
                        }
                        Err(reason) => break turn.interrupt(reason),
                    };
                }
                Step::CallTools(calls) => {
                    let work = self.run_tools(session, context, calls, options, requested);
                    let outcome = tokio::select! {
                        r = work => Ok(r),
                        _ = tokio::time::sleep_until(deadline) => Err(StopReason::Deadline),
                        _ = cancel.cancelled() => Err(StopReason::Cancelled),
                    };
                    match outcome {
                        Ok((results, mut recs, mut held)) => {
                            let opened = &mut session.opened_tools;
                            if inner.exposure.open(opened, &recs, turn.messages()) {
                                turn.set_tools(self.tool_defs(session, context));
                            }
                            records.append(&mut recs);
                            approvals.append(&mut held);
                            step = turn.tool_results(results);
                        }
                        Err(reason) => break turn.interrupt(reason),
                    }
                }
                Step::Done(end) => break end,
            }
        };

        // Writes whose answers were lost are confirmed before the hand-over, within the
        // turn's deadline; whatever is still unknown is tried again with the next answer.
        if !session.uncertain.is_empty() && !cancel.is_cancelled() {
            let settle = self.settle_uncertain(session, context, &mut records);
            let changed = tokio::select! {
                changed = settle => changed,
                _ = tokio::time::sleep_until(deadline) => true,
                _ = cancel.cancelled() => true,
            };
            if changed {
                inner.store.save_queued(session);
            }
        }
        // Changes Stripe made outside this agent go into the same hand-over; their source
        // forgets them only once the answer carrying them is saved.
        let handed_over = self.take_pending(session, context).await;
        // Everything after the preamble is the thread's history from now on.
        session.history = turn.messages()[preamble..].to_vec();
        let (model_text, answer_end) = match &end {
            TurnEnd::Answer(text) => (text.clone(), AnswerEnd::Completed),
            TurnEnd::Cut(text) => (text.clone(), AnswerEnd::Cut),
            TurnEnd::Stopped { text, reason } => {
                let end = match reason {
                    StopReason::ModelFailed => AnswerEnd::ModelFailed {
                        error: model_error
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_default(),
                    },
                    _ => AnswerEnd::Stopped(*reason),
                };
                (text.clone(), end)
            }
        };
        let answer = info_span!("compose").in_scope(|| {
            self.compose(
                session,
                context,
                &model_text,
                answer_end,
                &turn,
                records,
                approvals,
            )
        });
        // What the room saw replaces the model's raw last words in the history.
        match session.history.last_mut() {
            Some(last) if last.role == Role::Assistant && last.tool_calls.is_empty() => {
                last.content = Some(answer.text.clone());
            }
            _ => session
                .history
                .push(ChatMessage::assistant(answer.text.clone())),
        }
        session.answers += 1;
        session.trail.push(RoomMessage {
            member_id: context.agent_member_id.clone().unwrap_or_default(),
            name: context.agent_name().to_string(),
            kind: MemberKind::Agent,
            text: answer.text.clone(),
        });
        inner.store.save(session).await?;
        record_turn(session, &answer);
        self.release_handed_over(context, &handed_over).await;
        if let Some(events) = &options.events {
            let _ = events.send(AgentEvent::Completed {
                answer: Box::new(answer.clone()),
            });
        }
        Ok(answer)
    }
}

impl Agent {
    /// The tools of the session's next model call.
    fn tool_defs(&self, session: &Session, context: &AgentContext) -> ToolDefs {
        self.inner
            .exposure
            .definitions(&session.opened_tools, context.account_id.is_some())
    }
}

/// Passes the model's text deltas on as events; the task ends when the model drops its sender.
pub(super) fn forward_deltas(
    events: Option<UnboundedSender<AgentEvent>>,
) -> (
    Option<UnboundedSender<ModelDelta>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let Some(events) = events else {
        return (None, None);
    };
    let (tx, mut rx) = unbounded_channel::<ModelDelta>();
    let task = tokio::spawn(async move {
        while let Some(delta) = rx.recv().await {
            if let ModelDelta::Text(text) = delta
                && events.send(AgentEvent::TextDelta { text }).is_err()
            {
                break;
            }
        }
    });
    (Some(tx), Some(task))
}

pub(super) fn prompt_context(context: &AgentContext) -> PromptContext {
    PromptContext::from_agent_context(context)
}

/// The span of one turn (`invoke_agent` in the GenAI conventions); the model-call, tool,
/// Pay-request and store-commit spans of the turn are its children.
pub(super) fn turn_span(thread_id: &str) -> Span {
    info_span!(
        "turn",
        otel.name = "invoke_agent Altan Pay",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = "Altan Pay",
        gen_ai.conversation.id = thread_id,
        thread = thread_id,
        altan_pay.status = field::Empty,
        altan_pay.tool_calls = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
    )
}

/// The span of one model call (`chat` in the GenAI conventions); usage and finish reason are
/// filled in when the answer is there.
fn model_span(model: &str, messages: usize) -> Span {
    info_span!(
        "model_call",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "openai",
        gen_ai.request.model = model,
        gen_ai.response.finish_reasons = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        gen_ai.usage.cached_tokens = field::Empty,
        error.type = field::Empty,
        messages = int(messages as u64),
    )
}

/// The model call's usage and outcome into its span and the metrics.
fn record_model_call<E>(
    span: &Span,
    took: std::time::Duration,
    outcome: &Result<Result<crate::model::ChatResponse, ModelError>, E>,
) {
    let metrics = crate::metrics::global();
    match outcome {
        Ok(Ok(response)) => {
            let u = &response.usage;
            span.record("gen_ai.usage.input_tokens", int(u.prompt_tokens));
            span.record("gen_ai.usage.output_tokens", int(u.completion_tokens));
            span.record("gen_ai.usage.cached_tokens", int(u.cached_tokens));
            // One choice, one reason (`tracing` fields cannot be arrays).
            if let Some(reason) = &response.finish_reason {
                use crate::model::FinishReason::*;
                let reason = match reason {
                    Stop => "stop",
                    ToolCalls => "tool_calls",
                    Length => "length",
                    ContentFilter => "content_filter",
                    Other(other) => other.as_str(),
                };
                span.record("gen_ai.response.finish_reasons", reason);
            }
            metrics.model_call(true, took, Some(u));
        }
        Ok(Err(e)) => {
            span.record("error.type", field::display(model_error_type(e)));
            metrics.model_call(false, took, None);
        }
        // Cut short by the deadline or a cancellation.
        Err(_) => {
            span.record("error.type", "cancelled");
            metrics.model_call(false, took, None);
        }
    }
}

fn model_error_type(e: &ModelError) -> String {
    match e {
        ModelError::Status { status, .. } => status.to_string(),
        ModelError::Transport(_) => "transport".into(),
        ModelError::BadResponse(_) => "bad_response".into(),
        ModelError::Cancelled => "cancelled".into(),
        ModelError::Config(_) => "config".into(),
    }
}

/// The finished turn into the turn span and the metrics.
pub(super) fn record_turn(session: &Session, answer: &Answer) {
    let status = match answer.end {
        AnswerEnd::Completed => "completed",
        AnswerEnd::Cut => "cut",
        AnswerEnd::Stopped(_) => "stopped",
        AnswerEnd::ModelFailed { .. } => "failed",
    };
    let span = Span::current();
    let usage = answer.total_usage();
    span.record("altan_pay.status", status);
    span.record("altan_pay.tool_calls", int(answer.tool_calls.len() as u64));
    span.record("gen_ai.usage.input_tokens", int(usage.prompt_tokens));
    span.record("gen_ai.usage.output_tokens", int(usage.completion_tokens));
    let metrics = crate::metrics::global();
    metrics.turn(status);
    if answer.sync_plan.is_some() {
        metrics.sync_plan("emitted");
    }
    metrics.uncertain_writes(&session.thread_id, session.uncertain.len());
}

/// OTLP integers are signed: `tracing-opentelemetry` exports an unsigned field as a string.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
