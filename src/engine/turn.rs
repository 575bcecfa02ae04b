//! One turn of the agent as a plain state machine: it says what to do next (call the model,
//! run tools, stop) and is told what happened; it does no I/O, so it is tested without a network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::model::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall, ToolDefs, Usage,
};
use crate::tools::{ErrorCode, ToolError, ToolOutput};

/// How the model reads tool results and exchanges, decided by the component that owns tool
/// exposure (the agent's `ToolExposure`): the engine keeps the history valid and knows no tool.
pub trait ToolHistory: Send + Sync {
    /// The text the model reads of a result it has not read yet (`changed`: Stripe changed).
    fn fresh(&self, content: &Value, changed: bool) -> String;
    /// What a result the model has read becomes (`None`: it stays as it is).
    fn digest(&self, content: &str) -> Option<String>;
    /// Whether an answered exchange of these calls says nothing more and leaves the history.
    fn drops_exchange(&self, calls: &[ToolCall]) -> bool;
}

/// Results as the tools returned them, read or not; no exchange dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verbatim;

impl ToolHistory for Verbatim {
    fn fresh(&self, content: &Value, _changed: bool) -> String {
        content.to_string()
    }

    fn digest(&self, _content: &str) -> Option<String> {
        None
    }

    fn drops_exchange(&self, _calls: &[ToolCall]) -> bool {
        false
    }
}

/// Bounds on one turn. Whatever the model does, the turn ends within these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Model calls in one turn; the last one is asked for an answer without tools.
    pub max_model_calls: u32,
    /// Tool calls in one turn, all tools together.
    pub max_tool_calls: u32,
    /// Tool calls the model gets wrong in a row (bad arguments, unknown tool) before the turn
    /// stops asking it to fix them.
    pub max_invalid_in_a_row: u32,
    /// Arguments longer than this are refused unread.
    pub max_argument_bytes: usize,
    /// The whole turn, model and tools included.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_model_calls: 12,
            max_tool_calls: 40,
            max_invalid_in_a_row: 3,
            max_argument_bytes: 64 * 1024,
            deadline: Duration::from_secs(180),
        }
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this request to the model and report its reply with [`Turn::model_response`].
    CallModel(ChatRequest),
    /// Run these calls (concurrently) and report every result with [`Turn::tool_results`].
    CallTools(Vec<ToolCall>),
    /// The turn is over; nothing more to run.
    Done(TurnEnd),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEnd {
    /// The model answered.
    Answer(String),
    /// The model's answer ended at its output limit (`finish_reason: length`): the text is what
    /// it wrote before the cut, and may stop mid-sentence or inside a code block.
    Cut(String),
    /// A limit stopped the turn; the text says what was done and why it stopped.
    Stopped {
        /// What the model said, or the runtime's account of what was done.
        text: String,
        /// Which limit, failure or request stopped it.
        reason: StopReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Which limit, failure or request stopped a turn before the model answered.
pub enum StopReason {
    /// [`Limits::max_model_calls`] model calls were made.
    ModelCallLimit,
    /// [`Limits::max_tool_calls`] tool calls were made.
    ToolCallLimit,
    /// [`Limits::max_invalid_in_a_row`] calls in a row could not be run (bad arguments, unknown tool).
    RepeatedInvalidCalls,
    /// [`Limits::max_invalid_in_a_row`] calls in a row repeated a call that had already failed.
    RepeatedFailingCall,
    /// [`Limits::deadline`] passed.
    Deadline,
    /// The driver cancelled the turn (the client went away).
    Cancelled,
    /// The model could not be reached or answered with an error, after retries.
    ModelFailed,
}

impl StopReason {
    /// The reason as the end of a sentence ("it ran out of time"), for the answer's closing line.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::ModelCallLimit => "it reached the limit of model calls for one answer",
            StopReason::ToolCallLimit => "it reached the limit of tool calls for one answer",
            StopReason::RepeatedInvalidCalls => {
                "the model kept sending tool calls that could not be run"
            }
            StopReason::RepeatedFailingCall => {
                "the model kept repeating a call that had already failed"
            }
            StopReason::Deadline => "it ran out of time",
            StopReason::Cancelled => "it was cancelled",
            StopReason::ModelFailed => "the model could not be reached",
        }
    }
}

/// A tool call the turn decided not to run, and why; the model reads [`Refusal::error`].
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The call as the model made it.
    pub call: ToolCall,
    /// Why it was not run.
    pub reason: RefusalReason,
}

/// Why the turn refused a call before running it.
#[derive(Debug, Clone, PartialEq)]
pub enum RefusalReason {
    /// The arguments are longer than [`Limits::max_argument_bytes`].
    OversizedArguments {
        /// Bytes of arguments the model sent.
        bytes: usize,
        /// [`Limits::max_argument_bytes`].
        limit: usize,
    },
    /// The same call (tool and arguments, however spelled) already failed in this turn.
    RepeatsFailedCall {
        /// The failure the first attempt got; the model reads it again.
        earlier: ToolError,
    },
}

impl Refusal {
    /// The result the model reads instead of the call's.
    pub fn error(&self) -> ToolError {
        match &self.reason {
            RefusalReason::OversizedArguments { bytes, limit } => ToolError::invalid(
                None,
                format!("the arguments are {bytes} bytes; at most {limit} are accepted"),
            ),
            RefusalReason::RepeatsFailedCall { earlier } => ToolError::new(
                ErrorCode::InvalidArguments,
                format!(
                    "this exact call already failed in this answer ({}); do not repeat it: change the arguments, use another tool, or explain the problem to the user",
                    earlier.model_message
                ),
            ),
        }
    }
}

/// The state of one turn.
#[derive(Clone)]
pub struct Turn {
    messages: Arc<Vec<ChatMessage>>,
    /// Where this turn's own messages start (after the prompt, context and history).
    own_from: usize,
    tools: ToolDefs,
    /// How results read and exchanges answered are shown from the next call on.
    history: Arc<dyn ToolHistory>,
    limits: Limits,
    model_calls: u32,
    tool_calls: u32,
    invalid_in_a_row: u32,
    /// Calls (name + arguments) that failed, with their error: an identical call is not run again.
    failed_calls: HashMap<(String, String), ToolError>,
    /// Usage of each model call, in order.
    usage: Vec<Usage>,
    /// Calls the turn refused before running them (repeats, oversized arguments).
    refused: Vec<Refusal>,
    /// Tool calls handed to the driver and not yet answered, in the model's order.
    awaiting: Vec<ToolCall>,
    ended: Option<TurnEnd>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("messages", &self.messages.len())
            .field("model_calls", &self.model_calls)
            .field("tool_calls", &self.tool_calls)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Turn {
    /// `messages`: system prompt, context, history and the new room messages. Results are
    /// shown [`Verbatim`] unless [`Turn::with_history`] hands over another [`ToolHistory`].
    pub fn new(messages: Vec<ChatMessage>, tools: impl Into<ToolDefs>, limits: Limits) -> Turn {
        Turn {
            own_from: messages.len(),
            messages: Arc::new(messages),
            tools: tools.into(),
            history: Arc::new(Verbatim),
            limits,
            model_calls: 0,
            tool_calls: 0,
            invalid_in_a_row: 0,
            failed_calls: HashMap::new(),
            usage: Vec::new(),
            refused: Vec::new(),
            awaiting: Vec::new(),
            ended: None,
        }
    }

    /// How the model reads results and exchanges, from the owner of tool exposure.
    pub fn with_history(mut self, history: Arc<dyn ToolHistory>) -> Turn {
        self.history = history;
        self
    }

    /// The tool definitions of the next model calls (the driver opened more tools).
    pub fn set_tools(&mut self, tools: ToolDefs) {
        self.tools = tools;
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        self.call_model()
    }

    /// The conversation so far: the request's messages, then each model reply and tool result.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Tokens of each model call made so far, in order.
    pub fn usage(&self) -> &[Usage] {
        &self.usage
    }

    /// The calls the turn refused before running them, in order.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// The limits this turn runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How the turn ended, once it has; `None` while it runs.
    pub fn ended(&self) -> Option<&TurnEnd> {
        self.ended.as_ref()
    }

    fn call_model(&mut self) -> Step {
        self.model_calls += 1;
        // The last allowed call gets no tools, so the model must answer in words.
        let tools = if self.model_calls >= self.limits.max_model_calls {
            ToolDefs::default()
        } else {
            self.tools.clone()
        };
        Step::CallModel(ChatRequest {
            messages: self.messages.clone(),
            tools,
        })
    }

    /// The model answered.
    pub fn model_response(&mut self, response: ChatResponse) -> Step {
        self.usage.push(response.usage);
        let mut message = response.message;
        message.role = Role::Assistant;
        let calls = std::mem::take(&mut message.tool_calls);
        if calls.is_empty() {
            let text = message.content.clone().unwrap_or_default();
            Arc::make_mut(&mut self.messages).push(message);
            if text.trim().is_empty() {
                let note = match response.finish_reason {
                    Some(FinishReason::Length) => {
                        "The model's answer was cut off before it said anything."
                    }
                    Some(FinishReason::ContentFilter) => {
                        "The model's answer was withheld by its content filter."
                    }
                    _ => "The model returned an empty answer.",
                };
                return self.finish(TurnEnd::Answer(note.to_string()));
            }
            if response.finish_reason == Some(FinishReason::Length) {
                return self.finish(TurnEnd::Cut(text));
            }
            return self.finish(TurnEnd::Answer(text));
        }
        if self.model_calls >= self.limits.max_model_calls {
            // Tools were not offered on this call; a model that calls them anyway is stopped.
            message.tool_calls = Vec::new();
            Arc::make_mut(&mut self.messages).push(message);
            return self.stop(StopReason::ModelCallLimit);
        }
        let calls = unique_ids(calls);
        message.tool_calls = calls.clone();
        Arc::make_mut(&mut self.messages).push(message);

        let mut to_run = Vec::new();
        for call in calls {
            if let Some(refusal) = self.precheck(&call) {
                self.refused.push(refusal);
            } else {
                to_run.push(call.clone());
            }
            self.awaiting.push(call);
        }
        if self.tool_calls + to_run.len() as u32 > self.limits.max_tool_calls {
            // Answer every call so the history stays valid, then stop.
            let calls = std::mem::take(&mut self.awaiting);
            for call in calls {
                Arc::make_mut(&mut self.messages).push(ChatMessage::tool_result(
                    call.id.clone(),
                    ToolError::new(
                        ErrorCode::Internal,
                        "not run: the tool call limit of this answer was reached",
                    )
                    .to_model_json()
                    .to_string(),
                ));
            }
            return self.stop(StopReason::ToolCallLimit);
        }
        Step::CallTools(to_run)
    }

    /// Refuses calls that must not run: repeats of a failed call and oversized arguments.
    fn precheck(&self, call: &ToolCall) -> Option<Refusal> {
        let reason = if call.arguments.len() > self.limits.max_argument_bytes {
            RefusalReason::OversizedArguments {
                bytes: call.arguments.len(),
                limit: self.limits.max_argument_bytes,
            }
        } else {
            let key = (call.name.clone(), normalise_arguments(&call.arguments));
            let earlier = self.failed_calls.get(&key)?.clone();
            RefusalReason::RepeatsFailedCall { earlier }
        };
        Some(Refusal {
            call: call.clone(),
            reason,
        })
    }

    /// The results of the calls of the last [`Step::CallTools`], by call id, any order.
    /// Calls the turn refused are answered by the turn itself.
    pub fn tool_results(&mut self, mut results: HashMap<String, ToolOutput>) -> Step {
        self.digest_read_results();
        let awaiting = std::mem::take(&mut self.awaiting);
        let mut repeated = false;
        let mut all_invalid = !awaiting.is_empty();
        for call in &awaiting {
            let refused = self
                .refused
                .iter()
                .rev()
                .find(|r| r.call.id == call.id)
                .cloned();
            let mut write = false;
            let (content, error) = match (refused, results.remove(&call.id)) {
                (Some(r), _) => {
                    repeated |= matches!(r.reason, RefusalReason::RepeatsFailedCall { .. });
                    let error = r.error();
                    (error.to_model_json(), Some(error))
                }
                (None, Some(Ok(success))) => {
                    self.tool_calls += 1;
                    write = success.effect.is_some();
                    (success.content, None)
                }
                (None, Some(Err(error))) => {
                    self.tool_calls += 1;
                    (error.to_model_json(), Some(error))
                }
                (None, None) => {
                    let e = ToolError::new(ErrorCode::Internal, "the tool did not report a result");
                    (e.to_model_json(), Some(e))
                }
            };
            match &error {
                Some(e) => {
                    all_invalid &= e.code.disposition().malformed_call;
                    self.failed_calls.insert(
                        (call.name.clone(), normalise_arguments(&call.arguments)),
                        e.clone(),
                    );
                }
                None => all_invalid = false,
            }
            let content = match error {
                None => self.history.fresh(&content, write),
                Some(_) => content.to_string(),
            };
            Arc::make_mut(&mut self.messages)
                .push(ChatMessage::tool_result(call.id.clone(), content));
        }
        if all_invalid {
            self.invalid_in_a_row += 1;
        } else {
            self.invalid_in_a_row = 0;
        }
        if self.invalid_in_a_row >= self.limits.max_invalid_in_a_row {
            return self.stop(if repeated {
                StopReason::RepeatedFailingCall
            } else {
                StopReason::RepeatedInvalidCalls
            });
        }
        if self.model_calls >= self.limits.max_model_calls {
            return self.stop(StopReason::ModelCallLimit);
        }
        self.call_model()
    }

    /// The results of this turn's earlier steps have been read (the model took a step after
    /// them): from now on the model gets their digests, and the exchanges the
    /// [`ToolHistory`] drops are gone.
    fn digest_read_results(&mut self) {
        self.drop_open_exchanges();
        let own_from = self.own_from;
        let digests: Vec<(usize, String)> = self.messages[own_from..]
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::Tool)
            .filter_map(|(i, m)| Some((own_from + i, self.history.digest(m.content.as_deref()?)?)))
            .collect();
        if digests.is_empty() {
            return;
        }
        let messages = Arc::make_mut(&mut self.messages);
        for (i, text) in digests {
            messages[i].content = Some(text);
        }
    }

    /// Removes this turn's assistant messages the [`ToolHistory`] drops, with their results.
    /// An exchange is the assistant message and the results right after it (the turn writes
    /// them so), found by position: call ids may repeat across steps.
    fn drop_open_exchanges(&mut self) {
        let m = &self.messages;
        let mut gone = Vec::new();
        for i in self.own_from..m.len() {
            let calls = &m[i].tool_calls;
            let says_nothing = m[i].role == Role::Assistant
                && m[i].content.as_deref().is_none_or(|c| c.trim().is_empty())
                && !calls.is_empty()
                && self.history.drops_exchange(calls);
            let results = m.get(i + 1..i + 1 + calls.len());
            // Only once every one of its results is in: the history stays valid.
            let answered = results.is_some_and(|r| {
                r.iter().zip(calls).all(|(r, c)| {
                    r.role == Role::Tool && r.tool_call_id.as_deref() == Some(c.id.as_str())
                })
            });
            if says_nothing && answered {
                gone.extend(i..=i + calls.len());
            }
        }
        if gone.is_empty() {
            return;
        }
        let messages = Arc::make_mut(&mut self.messages);
        let mut position = 0;
        messages.retain(|_| {
            let keep = !gone.contains(&position);
            position += 1;
            keep
        });
    }

    /// Ends the turn from outside (deadline, cancellation, a model that cannot be reached).
    /// Calls still awaiting a result are answered so the history stays valid.
    pub fn interrupt(&mut self, reason: StopReason) -> TurnEnd {
        let awaiting = std::mem::take(&mut self.awaiting);
        for call in awaiting {
            Arc::make_mut(&mut self.messages).push(ChatMessage::tool_result(
                call.id,
                ToolError::new(
                    ErrorCode::Internal,
                    format!("not finished: {}", reason.describe()),
                )
                .to_model_json()
                .to_string(),
            ));
        }
        match self.stop(reason) {
            Step::Done(end) => end,
            _ => TurnEnd::Stopped {
                text: String::new(),
                reason,
            },
        }
    }

    fn stop(&mut self, reason: StopReason) -> Step {
        let text = format!("I stopped before finishing because {}.", reason.describe());
        self.finish(TurnEnd::Stopped { text, reason })
    }

    fn finish(&mut self, end: TurnEnd) -> Step {
        self.ended = Some(end.clone());
        Step::Done(end)
    }
}

/// Gives every call a distinct, non-empty id (servers sometimes repeat or omit them), so each
/// tool result answers exactly one call.
fn unique_ids(calls: Vec<ToolCall>) -> Vec<ToolCall> {
    let mut seen = std::collections::HashSet::new();
    calls
        .into_iter()
        .enumerate()
        .map(|(i, mut call)| {
            if call.id.trim().is_empty() || !seen.insert(call.id.clone()) {
                let mut n = i;
                loop {
                    let candidate = format!("call_{n}");
                    if seen.insert(candidate.clone()) {
                        call.id = candidate;
                        break;
                    }
                    n += 1;
                }
            }
            call
        })
        .collect()
}

/// The same arguments written differently (spacing, key order) are the same call.
fn normalise_arguments(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| arguments.trim().to_string())
}
