//! `altan_pay::Agent`: the library API. It runs turns (prompt, model, policy, tools), keeps the
//! thread's session, and ends every answer with the sync plan and one handoff to Altan.
//!
//! ```no_run
//! use std::sync::Arc;
//! use altan_pay::agent::Agent;
//! use altan_pay::model::scripted::{ScriptedModel, Step};
//! use altan_pay::pay::{PayClient, PayConfig, RouteTable};
//! use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pay = PayClient::new(PayConfig::new(RouteTable::embedded()))?;
//! let model = Arc::new(ScriptedModel::new(vec![Step::text("Nothing to change.")]));
//! let agent = Agent::builder().model(model).pay(pay).build()?;
//! let context = AgentContext { account_id: Some("ws_1".into()), ..Default::default() };
//! let said = RoomMessage {
//!     member_id: "u1".into(),
//!     name: "Ada".into(),
//!     kind: MemberKind::User,
//!     text: "Do we have products?".into(),
//! };
//! let answer = agent.respond("thread-1", &context, &[said]).await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```

pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::engine::{Limits, Step, StopReason, Turn, TurnEnd};
use crate::model::{
    ChatMessage, ChatModel, ModelDelta, ModelError, Role, ToolCall, ToolDefs, Usage,
};
use crate::pay::PayClient;
use crate::policy::{self, CallScope, PolicyConfig, Verdict};
use crate::prompt::{PromptContext, PromptLibrary};
use crate::room::{AgentContext, MemberKind, RoomMessage};
use crate::sync::{
    AnswerInput, Member, Mention, Mutation, Room, SyncLedger, SyncMapping, SyncPlan,
    compose_answer, detect_agents_bouncing, parse_acknowledgements,
};
use crate::tools::{ErrorCode, ToolContext, ToolEnv, ToolError, ToolOutput, ToolSet};
pub use session::{
    MemoryStore, PendingApproval, Session, SessionStore, StoreError, UncertainWrite,
};

/// Thread locks kept before the idle ones are dropped.
const LOCKS_BEFORE_PRUNING: usize = 1024;

/// How many of the latest room messages are kept for spotting agents going back and forth.
const TRAIL_LEN: usize = 20;

/// One tool call of an answer, for callers and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: String,
    /// What the model read back.
    pub result: Value,
    pub error: Option<ErrorCode>,
}

/// How the answer came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerEnd {
    /// The model answered.
    Completed,
    /// A limit, the deadline or cancellation ended the turn; the text says so.
    Stopped,
    /// The model could not be reached; whatever Stripe already did is still handed over.
    ModelFailed,
}

/// The agent's answer to new room messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The message to post in the room: the model's words, the sync plan, the mention.
    pub text: String,
    /// Who the answer hands over to (Altan), if anyone.
    pub mention: Option<Mention>,
    /// Exactly the Stripe changes of this answer (and any earlier ones not yet handed over).
    pub sync_plan: Option<SyncPlan>,
    pub end: AnswerEnd,
    /// Why the turn stopped, when it did not complete.
    pub stop_reason: Option<String>,
    /// Tokens of each model call, in order.
    pub usage: Vec<Usage>,
    pub tool_calls: Vec<ToolCallRecord>,
    /// Calls waiting for a person's approval (see [`Agent::decide_approval`]).
    pub approvals: Vec<PendingApproval>,
}

impl Answer {
    pub fn total_usage(&self) -> Usage {
        let mut total = Usage::default();
        for u in &self.usage {
            total += *u;
        }
        total
    }
}

/// What happens during a turn, as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    Started {
        thread_id: String,
    },
    /// Text of the model's answer as it streams (before the handoff is added).
    TextDelta {
        text: String,
    },
    ToolCallStarted {
        id: String,
        name: String,
        arguments: String,
    },
    ToolCallFinished {
        id: String,
        name: String,
        result: Value,
        error: Option<ErrorCode>,
    },
    Completed {
        answer: Box<Answer>,
    },
}

/// Why a turn could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no pending approval `{0}` in this thread")]
    UnknownApproval(String),
    #[error("agent setup: {0}")]
    Setup(String),
}

/// Stripe changes the agent did not make itself (Stripe events, checkout), waiting for the
/// next answer in their account's thread so nothing exists only in Stripe.
/// Nothing is removed until the answer that carries the changes is saved: a crash in between
/// hands them over again (the rows are upserts, a repeat is harmless), never loses them.
pub trait PendingSource: Send + Sync {
    /// The account's pending changes, oldest first, each with the receipt that removes it.
    fn pending(&self, account_id: &str) -> Vec<(i64, Mutation)>;
    /// Removes the changes an answer carried, once that answer is saved.
    fn handed_over(&self, account_id: &str, receipts: &[i64]);
}

/// Builds an [`Agent`].
#[derive(Default)]
pub struct AgentBuilder {
    model: Option<Arc<dyn ChatModel>>,
    pay: Option<PayClient>,
    prompt: Option<String>,
    policy: PolicyConfig,
    limits: Limits,
    store: Option<Arc<dyn SessionStore>>,
    mapping: Option<SyncMapping>,
    bounce_threshold: Option<usize>,
    plans: Option<crate::tools::plan::PlanStore>,
    pending: Option<Arc<dyn PendingSource>>,
    compact_tools: bool,
}

impl AgentBuilder {
    /// Send the compact tool definitions ([`ToolSet::to_openai_json_compact`]): no strict
    /// mode, optional properties not required. Off by default.
    pub fn compact_tools(mut self, compact: bool) -> Self {
        self.compact_tools = compact;
        self
    }

    pub fn model(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.model = Some(model);
        self
    }

    pub fn pay(mut self, pay: PayClient) -> Self {
        self.pay = Some(pay);
        self
    }

    /// The rendered system prompt (default: the project's own, embedded).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Which database tables and columns the sync plan writes.
    pub fn sync_mapping(mut self, mapping: SyncMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Where Stripe changes made outside the agent come from (e.g. the events endpoint).
    pub fn pending_source(mut self, source: Arc<dyn PendingSource>) -> Self {
        self.pending = Some(source);
        self
    }

    /// Where the room's plans are kept (default: in memory).
    pub fn plans(mut self, plans: crate::tools::plan::PlanStore) -> Self {
        self.plans = Some(plans);
        self
    }

    /// How many agent messages in a row count as agents going back and forth (default 4).
    pub fn bounce_threshold(mut self, n: usize) -> Self {
        self.bounce_threshold = Some(n.max(2));
        self
    }

    pub fn build(self) -> Result<Agent, AgentError> {
        let model = self
            .model
            .ok_or_else(|| AgentError::Setup("a model is required".into()))?;
        let pay = self
            .pay
            .ok_or_else(|| AgentError::Setup("an Altan Pay client is required".into()))?;
        let prompt = match self.prompt {
            Some(p) => p,
            None => PromptLibrary::embedded()
                .render_default()
                .map_err(|e| AgentError::Setup(e.to_string()))?,
        };
        let tools = ToolSet::altan_pay_with_plans(self.plans.unwrap_or_default());
        let as_list = |v: Value| match v {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        let (tool_json_account_known, definitions) = if self.compact_tools {
            (
                Some(ToolDefs::new(as_list(tools.to_openai_json_compact(true)))),
                tools.to_openai_json_compact(false),
            )
        } else {
            (None, tools.to_openai_json())
        };
        let tool_json = ToolDefs::new(as_list(definitions));
        Ok(Agent {
            inner: Arc::new(Inner {
                model,
                env: ToolEnv { pay },
                tools,
                tool_json,
                tool_json_account_known,
                prompt,
                policy: self.policy,
                limits: self.limits,
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryStore::default())),
                mapping: self.mapping.unwrap_or_default(),
                bounce_threshold: self.bounce_threshold.unwrap_or(4),
                pending: self.pending,
                threads: Mutex::default(),
            }),
        })
    }
}

/// The Altan Pay agent. Cheap to clone; clones share sessions and locks.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<dyn ChatModel>,
    env: ToolEnv,
    tools: ToolSet,
    tool_json: ToolDefs,
    /// Compact mode only: the tools without `account_id`, for turns whose trusted context
    /// carries the account id.
    tool_json_account_known: Option<ToolDefs>,
    prompt: String,
    policy: PolicyConfig,
    limits: Limits,
    store: Arc<dyn SessionStore>,
    mapping: SyncMapping,
    bounce_threshold: usize,
    pending: Option<Arc<dyn PendingSource>>,
    /// One lock per thread: answers in a thread are serialised, threads run in parallel.
    threads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Per-turn options.
#[derive(Default, Clone)]
pub struct TurnOptions {
    pub events: Option<UnboundedSender<AgentEvent>>,
    pub cancel: Option<CancellationToken>,
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// The rendered system prompt this agent sends.
    pub fn system_prompt(&self) -> &str {
        &self.inner.prompt
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Answers the new messages of a thread.
    pub async fn respond(
        &self,
        thread_id: &str,
        context: &AgentContext,
        new_messages: &[RoomMessage],
    ) -> Result<Answer, AgentError> {
        self.respond_with(thread_id, context, new_messages, TurnOptions::default())
            .await
    }

    /// [`Agent::respond`] with events and cancellation.
    pub async fn respond_with(
        &self,
        thread_id: &str,
        context: &AgentContext,
        new_messages: &[RoomMessage],
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        let lock = self.thread_lock(thread_id);
        let _guard = lock.lock().await;
        let mut session = self.load(thread_id)?;
        session.syncs.answer_started();
        for message in new_messages {
            self.take_in(&mut session, context, message);
        }
        // Durable before the answer (the final save waits for it), not before the model call.
        self.inner.store.save_queued(&session);
        self.run(&mut session, context, &options)
            .instrument(info_span!("turn", thread = thread_id))
            .await
    }

    /// Runs (or drops) a call that was waiting for approval, then lets the model report.
    pub async fn decide_approval(
        &self,
        thread_id: &str,
        context: &AgentContext,
        approval_id: &str,
        approve: bool,
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        let lock = self.thread_lock(thread_id);
        let _guard = lock.lock().await;
        let mut session = self.load(thread_id)?;
        let index = session
            .approvals
            .iter()
            .position(|a| a.approval_id == approval_id)
            .ok_or_else(|| AgentError::UnknownApproval(approval_id.to_string()))?;
        let pending = session.approvals.remove(index);
        session.syncs.answer_started();
        let note = if approve {
            let output = self
                .execute(&mut session, context, &pending.call, true)
                .await;
            format!(
                "[platform] The held call {} {} was approved and has run. Result: {}",
                pending.call.name, pending.call.arguments, output.content
            )
        } else {
            format!(
                "[platform] The held call {} {} was declined; it did not run.",
                pending.call.name, pending.call.arguments
            )
        };
        session.history.push(ChatMessage::user(note));
        // Durable before the answer (the final save waits for it), not before the model call.
        self.inner.store.save_queued(&session);
        self.run(&mut session, context, &options).await
    }

    fn thread_lock(&self, thread_id: &str) -> Arc<tokio::sync::Mutex<()>> {
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

    fn load(&self, thread_id: &str) -> Result<Session, AgentError> {
        Ok(self
            .inner
            .store
            .load(thread_id)?
            .unwrap_or_else(|| Session::new(thread_id)))
    }

    /// Adds one room message to the session: evidence for the id rules, Altan's
    /// acknowledgements of earlier syncs, and the model's history.
    fn take_in(&self, session: &mut Session, context: &AgentContext, message: &RoomMessage) {
        session.provenance.observe_room_text(&message.text);
        let from_altan = context
            .altan()
            .is_some_and(|a| a.member_id == message.member_id)
            || (message.kind == MemberKind::Agent && message.name.eq_ignore_ascii_case("Altan"));
        if from_altan {
            let acks = parse_acknowledgements(&message.text);
            if !acks.is_empty() {
                session.syncs.apply(&acks);
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

    async fn run(
        &self,
        session: &mut Session,
        context: &AgentContext,
        options: &TurnOptions,
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
        let tools = match (&inner.tool_json_account_known, &context.account_id) {
            (Some(known), Some(_)) => known.clone(),
            _ => inner.tool_json.clone(),
        };
        let mut turn = Turn::new(messages, tools, inner.limits);
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
                    let call = inner
                        .model
                        .complete(&request, deltas)
                        .instrument(info_span!(
                            "model_call",
                            model = inner.model.name(),
                            messages = request.messages.len()
                        ));
                    let outcome = tokio::select! {
                        r = call => Ok(r),
                        _ = tokio::time::sleep_until(deadline) => Err(StopReason::Deadline),
                        _ = cancel.cancelled() => Err(StopReason::Cancelled),
                    };
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
                    let work = self.run_tools(session, context, calls, options);
                    let outcome = tokio::select! {
                        r = work => Ok(r),
                        _ = tokio::time::sleep_until(deadline) => Err(StopReason::Deadline),
                        _ = cancel.cancelled() => Err(StopReason::Cancelled),
                    };
                    match outcome {
                        Ok((results, mut recs, mut held)) => {
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
        let mut handed_over = Vec::new();
        if let (Some(source), Some(account)) = (&inner.pending, &context.account_id) {
            let (receipts, pending): (Vec<i64>, Vec<Mutation>) =
                source.pending(account).into_iter().unzip();
            session.unsynced.extend(pending);
            handed_over = receipts;
        }
        // Everything after the preamble is the thread's history from now on.
        session.history = turn.messages()[preamble..].to_vec();
        let (model_text, answer_end, stop_reason) = match &end {
            TurnEnd::Answer(text) => (text.clone(), AnswerEnd::Completed, None),
            TurnEnd::Stopped { text, reason } => {
                let end = if *reason == StopReason::ModelFailed {
                    AnswerEnd::ModelFailed
                } else {
                    AnswerEnd::Stopped
                };
                let detail = model_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                (
                    text.clone(),
                    end,
                    Some(format!("{}{detail}", reason.describe())),
                )
            }
        };
        let answer = self.compose(
            session,
            context,
            &model_text,
            answer_end,
            stop_reason,
            &turn,
            records,
            approvals,
        );
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
        inner.store.save_async(session).await?;
        if let (Some(source), Some(account), false) =
            (&inner.pending, &context.account_id, handed_over.is_empty())
        {
            source.handed_over(account, &handed_over);
        }
        if let Some(events) = &options.events {
            let _ = events.send(AgentEvent::Completed {
                answer: Box::new(answer.clone()),
            });
        }
        Ok(answer)
    }

    /// Turns the model's last words into the room message: sync plan, inconsistencies, and
    /// exactly one mention of Altan (none when agents are bouncing).
    #[allow(clippy::too_many_arguments)]
    fn compose(
        &self,
        session: &mut Session,
        context: &AgentContext,
        model_text: &str,
        end: AnswerEnd,
        stop_reason: Option<String>,
        turn: &Turn,
        tool_calls: Vec<ToolCallRecord>,
        approvals: Vec<PendingApproval>,
    ) -> Answer {
        let mut ledger = SyncLedger::new();
        for mutation in session.unsynced.drain(..) {
            ledger.record(mutation);
        }
        let plan = ledger.plan(&self.inner.mapping, &session.provenance);
        if let Some(plan) = &plan {
            session.syncs.sent(plan);
        }
        let inconsistencies = session.syncs.inconsistencies();
        session
            .syncs
            .mark_reported(inconsistencies.iter().map(|i| i.sync_id.as_str()));
        let bouncing = detect_agents_bouncing(&session.trail, self.inner.bounce_threshold);
        let room = room_of(context);
        let composed = compose_answer(AnswerInput {
            model_text,
            plan: plan.as_ref(),
            inconsistencies: &inconsistencies,
            room: &room,
            agents_bouncing: bouncing,
        });
        Answer {
            text: composed.text,
            mention: composed.mention,
            sync_plan: plan,
            end,
            stop_reason,
            usage: turn.usage().to_vec(),
            tool_calls,
            approvals,
        }
    }

    /// Checks each call against the policy, runs the allowed ones concurrently, and returns
    /// every result by call id.
    async fn run_tools(
        &self,
        session: &mut Session,
        context: &AgentContext,
        calls: Vec<ToolCall>,
        options: &TurnOptions,
    ) -> (
        HashMap<String, ToolOutput>,
        Vec<ToolCallRecord>,
        Vec<PendingApproval>,
    ) {
        let mut results = HashMap::new();
        let mut runnable = Vec::new();
        let mut held = Vec::new();
        let order: Vec<ToolCall> = calls.clone();
        for call in calls {
            if let Some(events) = &options.events {
                let _ = events.send(AgentEvent::ToolCallStarted {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
            }
            match self.admit(session, context, &call).await {
                Admission::Run => runnable.push(call),
                Admission::Answer(output) => {
                    results.insert(call.id.clone(), *output);
                }
                Admission::Hold => {
                    let approval = PendingApproval {
                        approval_id: format!("appr_{}", uuid::Uuid::new_v4().simple()),
                        call: call.clone(),
                    };
                    results.insert(
                        call.id.clone(),
                        ToolOutput::ok(
                            json!({
                                "status": "awaiting_approval",
                                "approval_id": approval.approval_id,
                                "message": "This call needs a person's approval and has not run. Tell the user what is waiting for approval; it runs once approved."
                            }),
                            None,
                        ),
                    );
                    session.approvals.push(approval.clone());
                    held.push(approval);
                }
            }
        }
        let mut keys: Vec<String> = runnable.iter().map(|c| key_id(session, c)).collect();
        let fresh = match self.write_ahead(session, runnable.iter().zip(&keys)).await {
            Ok(fresh) => fresh,
            Err(e) => {
                // Unrecorded writes are not sent; reads in the same step still run.
                warn!(error = %e, "could not record the writes about to be sent; not sending them");
                let (writes, reads): (Vec<_>, Vec<_>) = runnable
                    .into_iter()
                    .zip(keys)
                    .partition(|(call, _)| self.inner.tools.writes_to_stripe(&call.name));
                for (call, _) in writes {
                    results.insert(call.id.clone(), ToolOutput::failed(not_recorded(&e)));
                }
                (runnable, keys) = reads.into_iter().unzip();
                Vec::new()
            }
        };
        let outputs = futures::future::join_all(
            runnable
                .iter()
                .zip(&keys)
                .map(|(call, key)| self.call_tool_with_key(session, context, call, key)),
        )
        .await;
        let mut changed = false;
        for ((call, key), output) in runnable.iter().zip(&keys).zip(outputs) {
            changed |= self.absorb(session, call, key, fresh.contains(key), &output);
            results.insert(call.id.clone(), output);
        }
        if changed {
            // On disk one commit after Stripe answered, while the model is already asked the
            // next question; the answer waits for it (the final save is committed after it).
            self.inner.store.save_queued(session);
        }
        let mut records = Vec::new();
        for call in &order {
            if let Some(output) = results.get(&call.id) {
                records.push(record(call, output));
            }
        }
        if let Some(events) = &options.events {
            for r in &records {
                let _ = events.send(AgentEvent::ToolCallFinished {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    result: r.result.clone(),
                    error: r.error,
                });
            }
        }
        (results, records, held)
    }

    /// Records the calls that may change Stripe as uncertain writes and waits until that is
    /// durable, before they are sent: a crash from then until their results are absorbed
    /// leaves them to be confirmed with their keys by the next answer, never lost. Absorbing a
    /// result settles each one. Returns the keys recorded for this attempt; when they cannot
    /// be recorded, the entries are taken back and the writes must not be sent.
    async fn write_ahead<'c>(
        &self,
        session: &mut Session,
        calls: impl IntoIterator<Item = (&'c ToolCall, &'c String)>,
    ) -> Result<Vec<String>, StoreError> {
        let mut recorded = Vec::new();
        for (call, key) in calls {
            if self.inner.tools.writes_to_stripe(&call.name) && session.record_uncertain(call, key)
            {
                recorded.push(key.clone());
            }
        }
        if !recorded.is_empty()
            && let Err(e) = self.inner.store.save_async(session).await
        {
            for key in &recorded {
                session.settle_uncertain(key);
            }
            return Err(e);
        }
        Ok(recorded)
    }

    /// Replays each write of unknown outcome with its own idempotency key: Stripe answers with
    /// what the first attempt did, or does it now, once. Applied writes join the sync plan;
    /// writes Stripe refuses outright are dropped; the rest wait for the next answer. Each replay is
    /// listed among the answer's tool calls as `<call id>-confirm`. Returns whether the session
    /// changed. Cancelling it between replays loses nothing: each settles on its own.
    async fn settle_uncertain(
        &self,
        session: &mut Session,
        context: &AgentContext,
        records: &mut Vec<ToolCallRecord>,
    ) -> bool {
        let mut changed = false;
        for write in session.uncertain.clone() {
            if unix_now().saturating_sub(write.since) > KEY_LIFETIME_SECS {
                warn!(
                    tool = %write.call.name,
                    call = %write.call.id,
                    "a write of unknown outcome is older than Stripe keeps idempotency keys; not replayed, reconcile finds it if it happened"
                );
                session.settle_uncertain(&write.key_id);
                changed = true;
                continue;
            }
            let output = self
                .call_tool_with_key(session, context, &write.call, &write.key_id)
                .await;
            let confirm = ToolCall {
                id: format!("{}-confirm", write.call.id),
                ..write.call.clone()
            };
            records.push(record(&confirm, &output));
            match &output.error {
                // Stripe refused the request itself: with the same key it would have answered
                // with the first attempt's result had that attempt applied, so nothing was.
                Some(e) if refused_outright(e) => {
                    session.settle_uncertain(&write.key_id);
                    changed = true;
                }
                // Unavailable, rate limited, in flight, unreadable: still unknown, tried again
                // with the next answer.
                Some(_) => {}
                None => {
                    changed |= self.absorb(session, &write.call, &write.key_id, false, &output);
                }
            }
        }
        changed
    }

    /// Decides whether a call may run, verifying the objects it targets first.
    async fn admit(
        &self,
        session: &mut Session,
        context: &AgentContext,
        call: &ToolCall,
    ) -> Admission {
        for _ in 0..2 {
            let verdict = policy::check(
                &self.inner.policy,
                &session.provenance,
                CallScope {
                    trusted_account_id: context.account_id.as_deref(),
                    approved: false,
                    destruction_requested: destruction_requested(session, context),
                },
                &call.name,
                &call.arguments,
            );
            match verdict {
                Verdict::Run => return Admission::Run,
                Verdict::NeedsApproval => return Admission::Hold,
                Verdict::Refuse(error) => {
                    return Admission::Answer(Box::new(ToolOutput::failed(error)));
                }
                Verdict::VerifyFirst { tool, id } => {
                    let check = ToolCall {
                        id: format!("{}-verify", call.id),
                        name: tool.to_string(),
                        arguments: json!({ "id": id }).to_string(),
                    };
                    let output = self.call_tool(session, context, &check).await;
                    match output.error {
                        None => session.provenance.observe_result(&output.content),
                        Some(e) => {
                            let error = ToolError::new(
                                e.code,
                                format!(
                                    "`{id}` could not be verified in Stripe before {}: {}",
                                    call.name, e.model_message
                                ),
                            );
                            return Admission::Answer(Box::new(ToolOutput::failed(error)));
                        }
                    }
                }
            }
        }
        Admission::Answer(Box::new(ToolOutput::failed(ToolError::new(
            ErrorCode::Internal,
            "the object could not be verified",
        ))))
    }

    /// Runs one call exactly as the model asked (approval already given).
    async fn execute(
        &self,
        session: &mut Session,
        context: &AgentContext,
        call: &ToolCall,
        approved: bool,
    ) -> ToolOutput {
        let verdict = policy::check(
            &self.inner.policy,
            &session.provenance,
            CallScope {
                trusted_account_id: context.account_id.as_deref(),
                approved,
                destruction_requested: destruction_requested(session, context),
            },
            &call.name,
            &call.arguments,
        );
        if let Verdict::Refuse(error) = verdict {
            return ToolOutput::failed(error);
        }
        let key = key_id(session, call);
        let fresh = match self.write_ahead(session, [(call, &key)]).await {
            Ok(fresh) => !fresh.is_empty(),
            Err(e) => return ToolOutput::failed(not_recorded(&e)),
        };
        let output = self.call_tool_with_key(session, context, call, &key).await;
        if self.absorb(session, call, &key, fresh, &output) {
            self.inner.store.save_queued(session);
        }
        output
    }

    async fn call_tool(
        &self,
        session: &Session,
        context: &AgentContext,
        call: &ToolCall,
    ) -> ToolOutput {
        let key = key_id(session, call);
        self.call_tool_with_key(session, context, call, &key).await
    }

    /// Runs a call whose idempotency key is made from `key_id` (see [`key_id`]).
    async fn call_tool_with_key(
        &self,
        session: &Session,
        context: &AgentContext,
        call: &ToolCall,
        key_id: &str,
    ) -> ToolOutput {
        let ctx = ToolContext {
            conversation_id: session.thread_id.clone(),
            tool_call_id: key_id.to_string(),
            account_id: context.account_id.clone(),
            stripe_connect_id: context.stripe_connect_id.clone(),
        };
        self.inner
            .tools
            .call(&self.inner.env, &ctx, &call.name, &call.arguments)
            .await
    }

    /// Learns from a finished call made with `key_id`; returns whether the session gained
    /// something that must be saved at once (a Stripe change, or a write of unknown outcome).
    /// `fresh`: the call's uncertain entry was written ahead for this very attempt, so a
    /// definite failure means nothing happened; otherwise the key belongs to an earlier attempt
    /// that may have applied, and only Stripe refusing the request outright settles it.
    fn absorb(
        &self,
        session: &mut Session,
        call: &ToolCall,
        key_id: &str,
        fresh: bool,
        output: &ToolOutput,
    ) -> bool {
        if let Some(error) = &output.error {
            if error.outcome_unknown {
                return session.record_uncertain(call, key_id);
            }
            // Still unknown when an earlier attempt with this key may have applied.
            let settled = fresh || refused_outright(error);
            let recorded = session.uncertain.iter().any(|w| w.key_id == key_id);
            if settled && recorded {
                session.settle_uncertain(key_id);
            }
            return settled && recorded;
        }
        // A repeat of an uncertain write (same key) settles it.
        session.settle_uncertain(key_id);
        session.provenance.observe_result(&output.content);
        let Some(effect) = &output.effect else {
            return false;
        };
        match Mutation::from_effect(effect, &call.id) {
            Ok(mutation) => session.unsynced.push(mutation),
            Err(e) => warn!(error = %e, "a Stripe change has no table to sync"),
        }
        true
    }
}

/// What a call's idempotency key is made from: the key of an uncertain write it repeats, so
/// the repeat cannot apply twice; otherwise the answer number (keys stay apart when a model
/// reuses call ids across answers) and the model's call id.
fn key_id(session: &Session, call: &ToolCall) -> String {
    match session.uncertain.iter().find(|w| w.matches(call)) {
        Some(write) => write.key_id.clone(),
        None => format!("a{}-{}", session.answers, call.id),
    }
}

/// Whether Stripe refused a request itself (invalid, no such object) with no doubt about the
/// outcome: with the same idempotency key it would have answered with an earlier attempt's
/// result had that attempt applied, so none did.
fn refused_outright(error: &ToolError) -> bool {
    !error.outcome_unknown
        && matches!(
            error.code,
            ErrorCode::StripeInvalidRequest | ErrorCode::NotFound
        )
}

/// The answer for a write that was not sent because it could not be recorded first.
fn not_recorded(error: &StoreError) -> ToolError {
    ToolError::new(
        ErrorCode::Unavailable,
        "The change was not sent: this agent could not save its records first. Nothing was changed; try again later or tell the user.",
    )
    .with_operator_detail(format!("write-ahead save failed: {error}"))
}

/// Stripe forgets an idempotency key after 24 hours; an uncertain write older than this is not
/// replayed (the replay could apply it twice) and is left to `altan-pay reconcile`.
const KEY_LIFETIME_SECS: u64 = 23 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How many recent room messages (ours excluded) can carry a request to delete or cancel:
/// enough for "delete X" followed by "yes, go ahead".
const REQUEST_WINDOW: usize = 6;

/// Whether someone in the room recently asked to delete or cancel something. Only room
/// messages count; Stripe data in tool results never does.
fn destruction_requested(session: &Session, context: &AgentContext) -> bool {
    policy::room_requests_destruction(
        session
            .trail
            .iter()
            .rev()
            .filter(|m| !context.is_self(m))
            .take(REQUEST_WINDOW)
            .map(|m| m.text.as_str()),
    )
}

enum Admission {
    Run,
    Answer(Box<ToolOutput>),
    Hold,
}

fn record(call: &ToolCall, output: &ToolOutput) -> ToolCallRecord {
    ToolCallRecord {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
        result: output.content.clone(),
        error: output.error.as_ref().map(|e| e.code),
    }
}

/// Passes the model's text deltas on as events; the task ends when the model drops its sender.
fn forward_deltas(
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

fn prompt_context(context: &AgentContext) -> PromptContext {
    PromptContext::from_agent_context(context)
}

/// The room as the answer composer needs it: who we are, Altan, and everyone else.
fn room_of(context: &AgentContext) -> Room {
    let altan = context.altan();
    Room {
        me: Member::new(context.agent_name(), context.agent_member_id.clone()),
        altan: Member::new(
            altan.map_or(crate::room::ALTAN, |a| a.name.as_str()),
            altan.map(|a| a.member_id.clone()),
        ),
        others: context
            .members
            .iter()
            .filter(|m| Some(&m.member_id) != context.agent_member_id.as_ref())
            .filter(|m| altan.is_none_or(|a| a.member_id != m.member_id))
            .map(|m| Member::new(m.name.clone(), Some(m.member_id.clone())))
            .collect(),
    }
}
