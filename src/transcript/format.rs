//! The transcript file (JSON, `docs/transcripts.md`): one conversation with its recordings
//! and the outcome it must reach. Only data here; running and judging live next door.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TranscriptError;
use crate::room::{AgentContext, RoomMessage};

/// The `format` tag of every transcript this code writes and reads.
pub const FORMAT: &str = "altan-pay-transcript/1";

fn format_tag() -> String {
    FORMAT.to_string()
}

fn one() -> u64 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One recorded conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// The format tag, [`FORMAT`].
    #[serde(default = "format_tag")]
    pub format: String,
    /// A short name, the file's stem: `demo-create-product-pro`.
    pub name: String,
    /// What the conversation shows, for people.
    #[serde(default)]
    pub description: String,
    /// The trusted context the platform sends with every turn.
    pub context: AgentContext,
    /// Part of every idempotency key, so it must stay fixed for ids to repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The policy the agent runs with.
    #[serde(default)]
    pub policy: PolicyName,
    /// The sandbox the tools run against.
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// Network faults injected between the agent and the Altan Pay API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<RecordedFault>,
    /// How the recordings were made (for people; replay ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingInfo>,
    /// What every recorded request repeats, stored once (see [`SHARED_TOOLS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<Shared>,
    /// The turns, in order.
    pub turns: Vec<RecordedTurn>,
}

/// A request's `tools` equal to `shared.tools` is stored as this string.
pub const SHARED_TOOLS: &str = "$shared.tools";
/// A system message equal to `shared.system_prompt` is stored with this content.
pub const SHARED_PROMPT: &str = "$shared.system_prompt";

/// The tool definitions and system prompt sent with every model call: 45 KB a request, so a
/// file stores them once and the requests point here. Loading puts them back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shared {
    /// The `tools` array every request sent.
    pub tools: Value,
    /// The system prompt every request sent.
    pub system_prompt: String,
}

/// Which policy the agent runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// [`crate::policy::PolicyConfig::default`].
    #[default]
    Default,
    /// Deletes, cancels and deactivations wait for a person's approval.
    GateDestructive,
}

impl PolicyName {
    /// The policy configuration this name stands for.
    pub fn config(self) -> crate::policy::PolicyConfig {
        match self {
            PolicyName::Default => crate::policy::PolicyConfig::default(),
            PolicyName::GateDestructive => crate::policy::PolicyConfig::gate_destructive(),
        }
    }
}

/// The deterministic sandbox the tools run against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Seed of the sandbox's ids; with the idempotency keys it fixes every created id.
    #[serde(default = "one")]
    pub seed: u64,
    /// Initial state (format of `gateway::sandbox::seed`); `created` defaults to the
    /// sandbox's fixed clock so tool results repeat exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            seed: 1,
            state: None,
        }
    }
}

/// A fault between the agent and the Altan Pay API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordedFault {
    /// The request reaches Stripe and commits, but the answer is lost (the client sees a
    /// 502): what a dropped connection after the write looks like.
    LoseResponse {
        /// The HTTP method matched, case-insensitive (`POST`).
        method: String,
        /// Matches requests whose path contains this text.
        path_contains: String,
        /// How many matching requests lose their answer (1 by default).
        #[serde(default = "one_usize")]
        times: usize,
    },
}

fn one_usize() -> usize {
    1
}

/// How a transcript's recordings were made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingInfo {
    /// The model name the requests carried.
    pub model: String,
    /// `live` or `generator` (a scripted model in `examples/make_transcripts.rs`).
    pub source: String,
    /// Whether the model calls were streamed (the replay then streams too).
    #[serde(default)]
    pub stream: bool,
}

/// One answer of the agent: what it was given, what it did, what must come of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedTurn {
    /// What starts the turn.
    pub input: TurnInput,
    /// The model calls, in order (empty in a scenario not yet recorded).
    #[serde(default)]
    pub model_calls: Vec<ModelCall>,
    /// The Altan Pay exchanges the tool calls made, in order.
    #[serde(default)]
    pub pay_exchanges: Vec<PayExchange>,
    /// What the turn must come to.
    #[serde(default)]
    pub expect: Expect,
}

/// What starts a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TurnInput {
    /// New room messages (users, Altan, other agents).
    Messages(Vec<RoomMessage>),
    /// A person decides on the call the previous answer held for approval.
    Approval {
        /// `true` approves the call, `false` refuses it.
        approve: bool,
        /// Which held call of the previous answer (default the first).
        #[serde(default)]
        index: usize,
    },
}

/// One model call: the request as sent and the response as received, in OpenAI's wire JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCall {
    /// The request body as sent (with the `$shared` markers in a stored file).
    pub request: Value,
    /// A whole `chat.completion` (non-streamed calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// The `chat.completion.chunk` list of a streamed call, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<Value>>,
}

impl ModelCall {
    /// The tool names the recorded response calls (the request must offer them).
    pub fn called_tools(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut push = |calls: Option<&Vec<Value>>| {
            for call in calls.into_iter().flatten() {
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str)
                    && !name.is_empty()
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
            }
        };
        if let Some(r) = &self.response {
            push(
                r.pointer("/choices/0/message/tool_calls")
                    .and_then(Value::as_array),
            );
        }
        for chunk in self.chunks.iter().flatten() {
            push(
                chunk
                    .pointer("/choices/0/delta/tool_calls")
                    .and_then(Value::as_array),
            );
        }
        names
    }
}

/// One HTTP exchange with the Altan Pay API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayExchange {
    /// The model call (1-based, within the turn) whose tool calls made this request;
    /// 0 before the turn's first model call (an approved call running).
    pub model_call: usize,
    /// The HTTP method, `GET` or `POST`.
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Request headers, secrets redacted, `host` and `content-length` left out.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON request body; `None` for a GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The HTTP status answered.
    pub status: u16,
    /// The JSON answer body.
    pub response: Value,
    /// The fault injection swallowed this answer; the client saw a 502 instead.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lost: bool,
}

/// What a turn must come to. Every part is optional; absent parts are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Checks on the answer's text and end.
    #[serde(default, skip_serializing_if = "AnswerExpect::is_empty")]
    pub answer: AnswerExpect,
    /// The sync plan the answer must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_plan: Option<PlanExpect>,
    /// Per object kind (`products`, `prices`, ...): exactly these objects exist after the
    /// turn, each with the given fields (dotted paths such as `recurring.interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe: Option<BTreeMap<String, Vec<Map<String, Value>>>>,
    /// Tool call id -> error code (`ok` for success).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_errors: BTreeMap<String, String>,
    /// Rules of the spec the outcome must keep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// Checks on the answer posted to the room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerExpect {
    /// The exact text (replay only; a live model words things its own way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Pieces of text the answer must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// Pieces of text the answer must not contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_contains: Vec<String>,
    /// The text the answer must end with (trailing whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    /// How many mentions (`[@Name](/member/..)` or a bare `@Name`) the text has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<usize>,
    /// `completed`, `stopped` or `model_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

impl AnswerExpect {
    /// Whether nothing is checked.
    pub fn is_empty(&self) -> bool {
        self == &AnswerExpect::default()
    }
}

/// The sync plan: `"none"`, or its operations in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanExpect {
    /// The answer carries no plan.
    None(NoPlan),
    /// The answer's plan has exactly these operations, in this order.
    Plan {
        /// The expected operations.
        operations: Vec<OpExpect>,
    },
}

/// The string `"none"` in a transcript: no sync plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoPlan {
    /// `"none"`.
    None,
}

/// One expected operation of a sync plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpExpect {
    /// The database table, e.g. `products`.
    pub table: String,
    /// `upsert` or `delete`.
    pub op: String,
    /// The row's key: Stripe's id of the object.
    pub id: String,
    /// Columns the row must have with these values (others are not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Map<String, Value>>,
}

/// Rules of the spec, checked on the turn's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Exactly one mention, of Altan, at the very end.
    HandoffToAltan,
    /// No mention at all (agents going back and forth).
    NoMention,
    /// No "thank you" in the answer.
    NoThanks,
    /// The sync plan lists exactly the objects the turn's successful Pay mutations returned.
    PlanMatchesStripe,
    /// The model called no tool.
    NoToolCalls,
    /// Nothing reached the Altan Pay API.
    NoPayRequests,
    /// Requests sharing an idempotency key all got the same object.
    IdempotentRetries,
}

impl Transcript {
    /// Parses a transcript; errors name `origin` and the field (`turns[0].expect.rules[1]`).
    pub fn from_json(text: &str, origin: &str) -> Result<Transcript, TranscriptError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let t: Transcript =
            serde_path_to_error::deserialize(de).map_err(|e| TranscriptError::Invalid {
                file: origin.to_string(),
                field: field_name(&e.path().to_string()),
                reason: e.inner().to_string(),
            })?;
        let mut t = t;
        t.expand(origin)?;
        t.validate(origin)?;
        Ok(t)
    }

    /// Puts the shared tools and system prompt back into every request.
    fn expand(&mut self, origin: &str) -> Result<(), TranscriptError> {
        let shared = self.shared.take();
        for (t, turn) in self.turns.iter_mut().enumerate() {
            for (k, call) in turn.model_calls.iter_mut().enumerate() {
                let at = format!("turns[{t}].model_calls[{k}].request");
                let missing = |field: &str| TranscriptError::Invalid {
                    file: origin.to_string(),
                    field: format!("{at}.{field}"),
                    reason: "refers to `shared`, which the file does not have".into(),
                };
                if call.request.get("tools").and_then(Value::as_str) == Some(SHARED_TOOLS) {
                    let tools = shared.as_ref().ok_or_else(|| missing("tools"))?;
                    call.request["tools"] = tools.tools.clone();
                }
                let messages = call
                    .request
                    .get_mut("messages")
                    .and_then(Value::as_array_mut);
                for (i, m) in messages.into_iter().flatten().enumerate() {
                    if m.get("content").and_then(Value::as_str) == Some(SHARED_PROMPT) {
                        let prompt = shared
                            .as_ref()
                            .ok_or_else(|| missing(&format!("messages[{i}].content")))?;
                        m["content"] = Value::String(prompt.system_prompt.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores the tools and system prompt of the first request once, for the file.
    fn compacted(&self) -> Transcript {
        let mut out = self.clone();
        let Some(first) = self.turns.iter().flat_map(|t| &t.model_calls).next() else {
            return out;
        };
        let tools = first.request.get("tools").cloned().unwrap_or(Value::Null);
        let prompt = first
            .request
            .pointer("/messages/0/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for turn in &mut out.turns {
            for call in &mut turn.model_calls {
                if !tools.is_null() && call.request.get("tools") == Some(&tools) {
                    call.request["tools"] = Value::String(SHARED_TOOLS.into());
                }
                if let Some(m) = call.request.pointer_mut("/messages/0")
                    && m.get("role").and_then(Value::as_str) == Some("system")
                    && !prompt.is_empty()
                    && m.get("content").and_then(Value::as_str) == Some(prompt.as_str())
                {
                    m["content"] = Value::String(SHARED_PROMPT.into());
                }
            }
        }
        out.shared = Some(Shared {
            tools,
            system_prompt: prompt,
        });
        out
    }

    /// Reads and parses a transcript file.
    pub fn load(path: &Path) -> Result<Transcript, TranscriptError> {
        let text = std::fs::read_to_string(path).map_err(|e| TranscriptError::Io {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Transcript::from_json(&text, &path.display().to_string())
    }

    /// Pretty JSON with a final newline, as the fixtures are stored.
    pub fn to_json_pretty(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.compacted()).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    fn validate(&self, origin: &str) -> Result<(), TranscriptError> {
        let invalid = |field: String, reason: &str| TranscriptError::Invalid {
            file: origin.to_string(),
            field,
            reason: reason.to_string(),
        };
        if self.format != FORMAT {
            return Err(invalid(
                "format".into(),
                &format!("expected `{FORMAT}`, got `{}`", self.format),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(invalid("name".into(), "must not be empty"));
        }
        if self.turns.is_empty() {
            return Err(invalid("turns".into(), "needs at least one turn"));
        }
        if let Some(state) = &self.sandbox.state
            && !state.get("accounts").is_some_and(Value::is_object)
        {
            return Err(invalid(
                "sandbox.state.accounts".into(),
                "expected an object keyed by account id",
            ));
        }
        for (t, turn) in self.turns.iter().enumerate() {
            if t == 0 && matches!(turn.input, TurnInput::Approval { .. }) {
                return Err(invalid(
                    "turns[0].input".into(),
                    "the first turn cannot be an approval: nothing is held yet",
                ));
            }
            for (k, call) in turn.model_calls.iter().enumerate() {
                let at = format!("turns[{t}].model_calls[{k}]");
                if !call.request.is_object() {
                    return Err(invalid(format!("{at}.request"), "expected a JSON object"));
                }
                if !call.request.get("messages").is_some_and(Value::is_array) {
                    return Err(invalid(
                        format!("{at}.request.messages"),
                        "expected an array of chat messages",
                    ));
                }
                match (&call.response, &call.chunks) {
                    (Some(r), None) if r.is_object() => {}
                    (Some(_), None) => {
                        return Err(invalid(format!("{at}.response"), "expected a JSON object"));
                    }
                    (None, Some(chunks)) if !chunks.is_empty() => {}
                    (None, Some(_)) => {
                        return Err(invalid(format!("{at}.chunks"), "needs at least one chunk"));
                    }
                    _ => {
                        return Err(invalid(at, "needs exactly one of `response` or `chunks`"));
                    }
                }
            }
            for (k, ex) in turn.pay_exchanges.iter().enumerate() {
                if ex.model_call > turn.model_calls.len() {
                    return Err(invalid(
                        format!("turns[{t}].pay_exchanges[{k}].model_call"),
                        "names a model call the turn does not have",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The account the sandbox state is read for: the context's, else the seed's first.
    pub fn account_id(&self) -> Option<String> {
        self.context.account_id.clone().or_else(|| {
            self.sandbox
                .state
                .as_ref()
                .and_then(|s| s.get("accounts"))
                .and_then(Value::as_object)
                .and_then(|a| a.keys().next().cloned())
        })
    }

    /// The thread id turns run under: `thread_id`, or `transcript-<name>`.
    pub fn thread(&self) -> String {
        self.thread_id
            .clone()
            .unwrap_or_else(|| format!("transcript-{}", self.name))
    }

    /// Whether the recorded calls were streamed (any request says `stream: true`).
    pub fn streamed(&self) -> bool {
        self.turns
            .iter()
            .flat_map(|t| &t.model_calls)
            .any(|c| c.request.get("stream") == Some(&Value::Bool(true)))
    }

    /// The same conversation without recordings: what `record` and `eval` start from.
    pub fn scenario(&self) -> Transcript {
        let mut s = self.clone();
        for turn in &mut s.turns {
            turn.model_calls.clear();
            turn.pay_exchanges.clear();
        }
        s.recording = None;
        s.shared = None;
        s
    }
}

/// serde_path_to_error writes `turns[0].input`; `.` alone means the document itself.
fn field_name(path: &str) -> String {
    if path.is_empty() || path == "." {
        "(document)".into()
    } else {
        path.to_string()
    }
}
