//! OpenAI chat-completions JSON, both ways: the request body we send, and tolerant parsing of
//! answers and stream chunks from servers that leave fields out.

use serde_json::{Map, Value, json};

use super::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ModelDelta, Role, ToolCall, ToolDefs,
    Usage,
};
use super::{ModelError, ToolCall as Call};

/// The request body, in OpenAI's wire format, as a JSON value (for recordings).
pub fn request_body(
    model: &str,
    request: &ChatRequest,
    temperature: Option<f32>,
    stream: bool,
) -> Value {
    serde_json::to_value(request_body_ref(model, request, temperature, stream))
        .unwrap_or(Value::Null)
}

/// The request body for sending, borrowed from the request: the messages are written straight
/// from the conversation and the tool definitions from their serialised form, with no copy.
pub struct RequestBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: Option<f32>,
    stream: bool,
    tools: &'a ToolDefs,
    max_completion_tokens: Option<u32>,
}

impl RequestBody<'_> {
    /// Asks the server for at most `tokens` of output (`max_completion_tokens`).
    pub fn max_completion_tokens(mut self, tokens: Option<u32>) -> Self {
        self.max_completion_tokens = tokens;
        self
    }
}

impl serde::Serialize for RequestBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // What is the same across conversations comes first, so the body's bytes start with a
        // prefix servers can cache: settings, the tools (core first), then the messages
        // (system prompt first, the conversation's context after it).
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        if let Some(t) = self.temperature {
            map.serialize_entry("temperature", &t)?;
        }
        map.serialize_entry("stream", &self.stream)?;
        if let Some(tokens) = self.max_completion_tokens {
            map.serialize_entry("max_completion_tokens", &tokens)?;
        }
        if self.stream {
            map.serialize_entry("stream_options", &json!({"include_usage": true}))?;
        }
        if !self.tools.is_empty() {
            match self.tools.raw_json() {
                Some(raw) => map.serialize_entry("tools", raw)?,
                None => map.serialize_entry("tools", &**self.tools)?,
            }
        }
        map.serialize_entry("messages", &WireMessages(self.messages))?;
        map.end()
    }
}

struct WireMessages<'a>(&'a [ChatMessage]);

impl serde::Serialize for WireMessages<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(WireMessage))
    }
}

/// One message as OpenAI expects it: tool calls nested under `function` with
/// `type: "function"`, `tool_call_id` on tool results, `name` where set.
struct WireMessage<'a>(&'a ChatMessage);

impl serde::Serialize for WireMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let message = self.0;
        let mut m = serializer.serialize_map(None)?;
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        m.serialize_entry("role", role)?;
        match (&message.content, message.role) {
            (Some(text), _) => m.serialize_entry("content", text)?,
            // An assistant message that only calls tools may leave content out.
            (None, Role::Assistant) if !message.tool_calls.is_empty() => {}
            // Everything else must carry content; servers reject a message without it.
            (None, _) => m.serialize_entry("content", "")?,
        }
        if let Some(name) = &message.name {
            m.serialize_entry("name", name)?;
        }
        if !message.tool_calls.is_empty() {
            let calls: Vec<WireCall> = message.tool_calls.iter().map(WireCall::from).collect();
            m.serialize_entry("tool_calls", &calls)?;
        }
        if let Some(id) = &message.tool_call_id {
            m.serialize_entry("tool_call_id", id)?;
        }
        m.end()
    }
}

/// A tool call as OpenAI nests it: `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(serde::Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(serde::Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl<'a> From<&'a Call> for WireCall<'a> {
    fn from(call: &'a Call) -> WireCall<'a> {
        WireCall {
            id: &call.id,
            kind: "function",
            function: WireFunction {
                name: &call.name,
                arguments: &call.arguments,
            },
        }
    }
}

/// The request body in OpenAI's wire format. `parallel_tool_calls` is left to the server.
pub fn request_body_ref<'a>(
    model: &'a str,
    request: &'a ChatRequest,
    temperature: Option<f32>,
    stream: bool,
) -> RequestBody<'a> {
    RequestBody {
        model,
        messages: &request.messages,
        temperature,
        stream,
        tools: &request.tools,
        max_completion_tokens: None,
    }
}

/// One message as OpenAI expects it, as a JSON value.
pub fn message_json(message: &ChatMessage) -> Value {
    serde_json::to_value(WireMessage(message)).unwrap_or(Value::Null)
}

/// Parses a whole (non-streamed) answer. Only a missing body, no choices or no message is
/// an error; every other gap is filled in (see [`normalise_tool_calls`]).
pub fn parse_response(body: &Value) -> Result<ChatResponse, ModelError> {
    let Some(obj) = body.as_object() else {
        return Err(ModelError::BadResponse(format!(
            "expected a JSON object, got {}",
            excerpt(&body.to_string())
        )));
    };
    let choices = obj.get("choices").and_then(Value::as_array);
    let Some(choice) = choices.and_then(|c| first_choice(c)) else {
        if let Some(error) = obj.get("error") {
            return Err(ModelError::BadResponse(format!(
                "no choices; the server reported an error: {}",
                error_text(error)
            )));
        }
        return Err(ModelError::BadResponse("no choices".into()));
    };
    let Some(message) = choice.get("message").and_then(Value::as_object) else {
        return Err(ModelError::BadResponse(
            "the first choice has no message".into(),
        ));
    };
    let mut calls = Vec::new();
    if let Some(raw) = message.get("tool_calls").and_then(Value::as_array) {
        for entry in raw {
            if let Some(call) = raw_call(entry) {
                calls.push(call);
            }
        }
    }
    // The legacy single `function_call` still comes from some servers.
    if calls.is_empty()
        && let Some(fc) = message.get("function_call").and_then(Value::as_object)
    {
        calls.push(RawCall {
            id: None,
            name: fc.get("name").and_then(Value::as_str).map(str::to_string),
            arguments: fc.get("arguments").map(arguments_text),
        });
    }
    let content = content_text(message.get("content"));
    Ok(ChatResponse {
        message: assistant_message(content, normalise_tool_calls(calls)),
        finish_reason: choice.get("finish_reason").and_then(finish_reason),
        usage: obj.get("usage").map(usage).unwrap_or_default(),
    })
}

/// A tool call as the server sent it, before gaps are filled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCall {
    /// The call's id, if the server sent one.
    pub id: Option<String>,
    /// The tool's name, if the server sent one.
    pub name: Option<String>,
    /// The arguments text, if the server sent any.
    pub arguments: Option<String>,
}

/// Fills the gaps so the history stays valid: a missing or repeated id becomes `call_<n>`
/// (n = position, bumped until unique), a missing name is `""` (the tools layer reports it
/// as unknown), missing arguments are `{}` (what OpenAI sends for a call without parameters).
pub fn normalise_tool_calls(raw: Vec<RawCall>) -> Vec<Call> {
    let mut taken: Vec<String> = Vec::new();
    // Ids the server did give are kept first, so a made-up id never steals one.
    let given: Vec<Option<String>> = raw
        .iter()
        .map(|c| c.id.clone().filter(|id| !id.trim().is_empty()))
        .collect();
    let mut out = Vec::with_capacity(raw.len());
    for (n, call) in raw.into_iter().enumerate() {
        let id = match &given[n] {
            Some(id) if !taken.contains(id) => id.clone(),
            _ => {
                let mut k = n;
                loop {
                    let candidate = format!("call_{k}");
                    let clashes_later = given[n + 1..].iter().flatten().any(|g| *g == candidate);
                    if !taken.contains(&candidate) && !clashes_later {
                        break candidate;
                    }
                    k += 1;
                }
            }
        };
        taken.push(id.clone());
        out.push(ToolCall {
            id,
            name: call.name.unwrap_or_default(),
            arguments: call.arguments.unwrap_or_else(|| "{}".to_string()),
        });
    }
    out
}

/// Assembles a streamed answer chunk by chunk and says what to pass on.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    text: String,
    saw_text: bool,
    slots: Vec<Slot>,
    /// Server index -> position in `slots` of the call that index currently means.
    by_index: Vec<(u64, usize)>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    chunks_with_choices: usize,
}

#[derive(Debug, Default)]
struct Slot {
    id: Option<String>,
    name: String,
    arguments: String,
    saw_arguments: bool,
}

impl StreamAssembler {
    /// An assembler that has seen no chunk yet.
    pub fn new() -> StreamAssembler {
        StreamAssembler::default()
    }

    /// Takes one chunk; returns the deltas to pass on. A chunk carrying an `error` object is
    /// the server giving up mid-stream.
    pub fn push(&mut self, chunk: &Value) -> Result<Vec<ModelDelta>, ModelError> {
        let Some(obj) = chunk.as_object() else {
            return Err(ModelError::BadResponse(format!(
                "stream chunk is not a JSON object: {}",
                excerpt(&chunk.to_string())
            )));
        };
        if let Some(error) = obj.get("error") {
            return Err(ModelError::BadResponse(format!(
                "the server reported an error mid-stream: {}",
                error_text(error)
            )));
        }
        if let Some(u) = obj.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        let mut out = Vec::new();
        let Some(choice) = obj
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| first_choice(c))
        else {
            return Ok(out);
        };
        self.chunks_with_choices += 1;
        if let Some(reason) = choice.get("finish_reason").and_then(finish_reason) {
            self.finish_reason = Some(reason);
        }
        let Some(delta) = choice
            .get("delta")
            .or_else(|| choice.get("message"))
            .and_then(Value::as_object)
        else {
            return Ok(out);
        };
        if let Some(text) = content_text(delta.get("content")) {
            self.saw_text = true;
            if !text.is_empty() {
                self.text.push_str(&text);
                out.push(ModelDelta::Text(text));
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for fragment in calls {
                self.push_call_fragment(fragment, &mut out);
            }
        }
        Ok(out)
    }

    fn push_call_fragment(&mut self, fragment: &Value, out: &mut Vec<ModelDelta>) {
        let Some(f) = fragment.as_object() else {
            return;
        };
        let function = f.get("function").and_then(Value::as_object);
        let id = f
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let args = function
            .and_then(|f| f.get("arguments"))
            .filter(|a| !a.is_null())
            .map(arguments_text);
        // Without an index, a fragment with a new id is a new call; otherwise it continues
        // the last one.
        let index = f.get("index").and_then(Value::as_u64);
        let existing = match index {
            Some(i) => self.by_index.iter().find(|(k, _)| *k == i).map(|(_, p)| *p),
            None if id.is_none() => self.slots.len().checked_sub(1),
            None => None,
        };
        // Some servers reuse index 0 for every parallel call: a different id means a new call.
        let existing = existing.filter(|&p| match (id, &self.slots[p].id) {
            (Some(new), Some(old)) => new == old,
            _ => true,
        });
        let position = match existing {
            Some(p) => p,
            None => {
                let p = self.slots.len();
                self.slots.push(Slot::default());
                let key = index.unwrap_or(p as u64);
                self.by_index.retain(|(k, _)| *k != key);
                self.by_index.push((key, p));
                p
            }
        };
        let is_new = existing.is_none();
        let slot = &mut self.slots[position];
        if slot.id.is_none() {
            slot.id = id.map(str::to_string);
        }
        if let Some(name) = name {
            // Names come whole from OpenAI; some servers repeat them on every fragment,
            // a few split them.
            if slot.name.is_empty() {
                slot.name = name.to_string();
            } else if slot.name != name {
                slot.name.push_str(name);
            }
        }
        if is_new {
            out.push(ModelDelta::ToolCallStarted {
                index: position,
                id: slot
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("call_{position}")),
                name: slot.name.clone(),
            });
        }
        if let Some(args) = args {
            slot.saw_arguments = true;
            if !args.is_empty() {
                slot.arguments.push_str(&args);
                out.push(ModelDelta::ToolCallArguments {
                    index: position,
                    fragment: args,
                });
            }
        }
    }

    /// The whole message. A stream that stopped early is accepted if any chunk carried a
    /// choice; one with none is an error (a server that ignored `stream: true` ends here).
    /// Bytes of answer text assembled so far.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The whole response once the stream ended; an error if no chunk carried a choice.
    pub fn finish(self) -> Result<ChatResponse, ModelError> {
        if self.chunks_with_choices == 0 {
            return Err(ModelError::BadResponse(
                "the stream ended without any choice (no `data:` chunk with choices)".into(),
            ));
        }
        let raw: Vec<RawCall> = self
            .slots
            .into_iter()
            .map(|s| RawCall {
                id: s.id,
                name: Some(s.name),
                arguments: s.saw_arguments.then_some(s.arguments),
            })
            .collect();
        let content = self.saw_text.then_some(self.text);
        Ok(ChatResponse {
            message: assistant_message(content, normalise_tool_calls(raw)),
            finish_reason: self.finish_reason,
            usage: self.usage.unwrap_or_default(),
        })
    }
}

/// The deltas a streaming caller would have seen, for a response that was not streamed.
pub fn deltas_of(response: &ChatResponse) -> Vec<ModelDelta> {
    let mut out = Vec::new();
    if let Some(text) = response.message.content.as_ref().filter(|t| !t.is_empty()) {
        out.push(ModelDelta::Text(text.clone()));
    }
    for (index, call) in response.message.tool_calls.iter().enumerate() {
        out.push(ModelDelta::ToolCallStarted {
            index,
            id: call.id.clone(),
            name: call.name.clone(),
        });
        if !call.arguments.is_empty() {
            out.push(ModelDelta::ToolCallArguments {
                index,
                fragment: call.arguments.clone(),
            });
        }
    }
    out
}

/// The text of an error body (`{"error": {"message": ...}}`, `{"error": "..."}`, or raw).
pub fn error_text(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str());
    match message {
        Some(m) => excerpt(m),
        None => excerpt(&error.to_string()),
    }
}

/// The message of an error response body, JSON or not, shortened.
pub fn error_body_text(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "(empty body)".into();
    }
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error") {
            Some(e) => error_text(e),
            None => excerpt(&v.to_string()),
        },
        Err(_) => excerpt(String::from_utf8_lossy(body).trim()),
    };
    crate::pay::error::scrub_queries(&text)
}

const EXCERPT_LEN: usize = 300;

/// At most 300 bytes, cut on a character boundary, so errors stay readable.
pub fn excerpt(s: &str) -> String {
    let mut end = s.len().min(EXCERPT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s.to_string()
    }
}

fn first_choice(choices: &[Value]) -> Option<&Map<String, Value>> {
    let objects = || choices.iter().filter_map(Value::as_object);
    objects()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        .or_else(|| objects().next())
}

fn raw_call(entry: &Value) -> Option<RawCall> {
    let obj = entry.as_object()?;
    let function = obj.get("function").and_then(Value::as_object);
    Some(RawCall {
        id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        name: function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        arguments: function
            .and_then(|f| f.get("arguments"))
            .filter(|a| !a.is_null())
            .map(arguments_text),
    })
}

/// Arguments as text: a string is kept verbatim (even if it is not JSON), any other JSON
/// value is serialised, since some servers send the object itself.
fn arguments_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `content` as text: a string, or the text parts of an array of parts joined.
fn content_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let text: String = parts
                .iter()
                .filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str)))
                .collect();
            Some(text)
        }
        _ => None,
    }
}

/// `content: ""` next to tool calls means no text.
fn assistant_message(content: Option<String>, tool_calls: Vec<Call>) -> ChatMessage {
    let content = match content {
        Some(c) if c.is_empty() && !tool_calls.is_empty() => None,
        other => other,
    };
    ChatMessage {
        role: Role::Assistant,
        content,
        name: None,
        tool_calls,
        tool_call_id: None,
        reasoning: None,
    }
}

fn finish_reason(value: &Value) -> Option<FinishReason> {
    let s = value.as_str()?;
    Some(match s {
        "stop" => FinishReason::Stop,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "" => return None,
        other => FinishReason::Other(other.to_string()),
    })
}

fn usage(value: &Value) -> Usage {
    let count = |value: Option<&Value>| {
        value.and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
    };
    let n = |key: &str| count(value.get(key));
    let detail = |group: &str, key: &str| count(value.get(group).and_then(|g| g.get(key)));
    let prompt = n("prompt_tokens").unwrap_or(0);
    let completion = n("completion_tokens").unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: n("total_tokens").unwrap_or(prompt.saturating_add(completion)),
        cached_tokens: detail("prompt_tokens_details", "cached_tokens").unwrap_or(0),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: Option<&str>) -> RawCall {
        RawCall {
            id: id.map(str::to_string),
            name: Some("f".into()),
            arguments: None,
        }
    }

    #[test]
    fn ids_are_made_up_unique() {
        let calls = normalise_tool_calls(vec![
            raw(None),
            raw(Some("call_0")),
            raw(Some("x")),
            raw(Some("x")),
        ]);
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call_1", "call_0", "x", "call_3"]);
        assert_eq!(calls[0].arguments, "{}");
    }

    #[test]
    fn tool_message_and_assistant_calls_on_the_wire() {
        let mut assistant = ChatMessage::assistant("");
        assistant.content = None;
        assistant.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "list_products".into(),
            arguments: "{}".into(),
        }];
        assert_eq!(
            message_json(&assistant),
            json!({"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"list_products","arguments":"{}"}}]})
        );
        assert_eq!(
            message_json(&ChatMessage::tool_result("c1", "[]")),
            json!({"role":"tool","content":"[]","tool_call_id":"c1"})
        );
    }

    #[test]
    fn content_parts_and_odd_finish_reasons() {
        let r = parse_response(&json!({"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"eos"}]})).unwrap();
        assert_eq!(r.message.content.as_deref(), Some("ab"));
        assert_eq!(r.finish_reason, Some(FinishReason::Other("eos".into())));
    }

    #[test]
    fn legacy_function_call() {
        let r = parse_response(&json!({"choices":[{"message":{"function_call":{"name":"f","arguments":"{\"a\":1}"}}}]})).unwrap();
        assert_eq!(r.message.tool_calls.len(), 1);
        assert_eq!(r.message.tool_calls[0].id, "call_0");
    }

    #[test]
    fn stream_reusing_index_zero_with_new_ids() {
        let mut a = StreamAssembler::new();
        a.push(&json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]})).unwrap();
        a.push(&json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]})).unwrap();
        let r = a.finish().unwrap();
        let names: Vec<&str> = r
            .message
            .tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["f", "g"]);
    }
}
