//! The chat model the agent talks to: message types in OpenAI's shape, the `ChatModel` trait,
//! and its implementations (OpenAI-compatible over HTTP, scripted for tests).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

pub mod openai;
pub mod responses;
pub(crate) mod retry;
#[cfg(feature = "scripted")]
pub mod scripted;
pub mod wire;

pub use openai::{DEFAULT_BASE_URL, DEFAULT_MODEL, ModelApi, OpenAiConfig, OpenAiModel};
pub use retry::RetryPolicy;
#[cfg(feature = "scripted")]
pub use scripted::{Matcher, ScriptedModel, ScriptedStep};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// A room member's message (with `name` in a multi-member room).
    User,
    /// The model's own message: text, tool calls, or both.
    Assistant,
    /// A tool's result, answering one call by `tool_call_id`.
    Tool,
}

/// One tool call the model asked for. `arguments` is the raw text the model wrote, which
/// may not be JSON at all: the tools layer judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id as the model server gave it (`call_...`), or `call_<n>` when it gave none; the
    /// tool message answering it carries the same id.
    pub id: String,
    /// The name of the tool the model asked for, possibly one that does not exist.
    pub name: String,
    /// The arguments exactly as the model wrote them, meant to be a JSON object.
    pub arguments: String,
}

/// A message of the conversation sent to the model, in OpenAI's chat format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Text; `None` for an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The speaker's name for user messages from a multi-member room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning items of an assistant message from the Responses API, kept as the server
    /// sent them (opaque, possibly encrypted) and sent back before the message's calls in the
    /// next request of the turn. `None` everywhere else; absent in sessions that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Vec<Value>>,
}

impl ChatMessage {
    /// A system message.
    pub fn system(text: impl Into<String>) -> ChatMessage {
        ChatMessage::text(Role::System, text)
    }

    /// A user message without a speaker name.
    pub fn user(text: impl Into<String>) -> ChatMessage {
        ChatMessage::text(Role::User, text)
    }

    /// An assistant message with text and no tool calls.
    pub fn assistant(text: impl Into<String>) -> ChatMessage {
        ChatMessage::text(Role::Assistant, text)
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::Tool,
            content: Some(content.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            reasoning: None,
        }
    }

    fn text(role: Role, text: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: Some(text.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: None,
        }
    }
}

/// What one model call is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The whole conversation, system prompt first; shared with the turn, which only copies
    /// it if it must add a message while a request still holds it.
    pub messages: Arc<Vec<ChatMessage>>,
    /// OpenAI `tools` entries (`{"type":"function","function":{...}}`), shared: the same
    /// definitions go into every call of every turn, so they are never copied.
    pub tools: ToolDefs,
}

/// The tool definitions of every request of an agent: the values, for in-process models and
/// recordings, and the same list serialised once, written into each request body as it is
/// (escaping some 60 KB of definitions on every call was the top cost of a model call).
#[derive(Clone)]
pub struct ToolDefs {
    values: Arc<[Value]>,
    /// `None` only if the values could not be serialised; they are then written one by one.
    json: Option<Arc<serde_json::value::RawValue>>,
}

impl ToolDefs {
    /// Takes the definitions and serialises them once.
    pub fn new(values: impl Into<Arc<[Value]>>) -> ToolDefs {
        let values = values.into();
        let json = serde_json::value::to_raw_value(&*values)
            .ok()
            .map(Arc::from);
        ToolDefs { values, json }
    }

    /// The definitions as one JSON array, ready to write.
    pub fn raw_json(&self) -> Option<&serde_json::value::RawValue> {
        self.json.as_deref()
    }
}

impl Default for ToolDefs {
    fn default() -> ToolDefs {
        ToolDefs::new(Vec::new())
    }
}

impl std::ops::Deref for ToolDefs {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.values
    }
}

impl From<Vec<Value>> for ToolDefs {
    fn from(values: Vec<Value>) -> ToolDefs {
        ToolDefs::new(values)
    }
}

impl From<Arc<[Value]>> for ToolDefs {
    fn from(values: Arc<[Value]>) -> ToolDefs {
        ToolDefs::new(values)
    }
}

impl PartialEq for ToolDefs {
    fn eq(&self, other: &ToolDefs) -> bool {
        self.values == other.values
    }
}

impl std::fmt::Debug for ToolDefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.iter()).finish()
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The answer is complete (`stop`).
    Stop,
    /// The model stopped to call tools (`tool_calls`).
    ToolCalls,
    /// Cut at the token limit (`length`); the text is incomplete.
    Length,
    /// Cut by the server's content filter (`content_filter`).
    ContentFilter,
    /// A value this code does not know, kept as sent.
    Other(String),
}

/// Tokens counted by the server for one call (zeros when it did not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the request (input), cached ones included.
    pub prompt_tokens: u64,
    /// Tokens the model wrote (output), reasoning included.
    pub completion_tokens: u64,
    /// Input plus output, as the server counted it.
    pub total_tokens: u64,
    /// Of `prompt_tokens`, those the server read from its prompt cache
    /// (`prompt_tokens_details.cached_tokens`): what a byte-identical prefix saves.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of `completion_tokens`, those spent reasoning
    /// (`completion_tokens_details.reasoning_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// The model's answer to one call, already normalised: tool calls always have an id and a
/// name (an id the server left out is made up as `call_<n>`, so the history stays valid).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The assistant message to append to the history.
    pub message: ChatMessage,
    /// `None` when the server did not say.
    pub finish_reason: Option<FinishReason>,
    /// Tokens the call cost; zeros when the server did not say.
    pub usage: Usage,
}

/// A piece of a streamed answer, passed on as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelDelta {
    /// More text of the answer.
    Text(String),
    /// A tool call began (index in the message, id, name).
    ToolCallStarted {
        /// The call's position in the message, 0 first; later fragments name it.
        index: usize,
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's arguments.
    ToolCallArguments {
        /// The position of the call the fragment belongs to.
        index: usize,
        /// The next piece of the raw arguments text.
        fragment: String,
    },
}

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The server answered an error status (after the implementation's own retries).
    #[error("the model server answered HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's error message, query strings removed.
        message: String,
        /// What `Retry-After` asked, if anything.
        retry_after: Option<Duration>,
    },
    /// No connection, a reset, or a timeout.
    #[error("the model server could not be reached: {0}")]
    Transport(String),
    /// An answer that cannot be used (not JSON, no choices, no message).
    #[error("the model server gave an unusable answer: {0}")]
    BadResponse(String),
    /// The caller gave up (cancellation, deadline).
    #[error("the model call was cancelled")]
    Cancelled,
    /// Setup problem: no key, bad URL, a scripted model with no step left.
    #[error("{0}")]
    Config(String),
}

impl ModelError {
    /// 429, 5xx and transport failures may pass on another try.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Status { status, .. } => *status == 429 || *status >= 500,
            ModelError::Transport(_) => true,
            _ => false,
        }
    }
}

/// The future a [`ChatModel`] returns: boxed and `Send`, so the trait stays object-safe.
pub type ModelFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A chat model with tool calling.
pub trait ChatModel: Send + Sync {
    /// The model's name, for logs and usage reports.
    fn name(&self) -> &str;

    /// One completion. With `deltas`, the implementation streams and sends each piece as it
    /// arrives; the returned response is the whole message either way.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>>;
}
