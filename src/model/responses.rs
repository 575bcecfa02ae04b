//! OpenAI's Responses API (`POST {base}/responses`) as a second wire under the same
//! [`ChatModel`](super::ChatModel) contract: the conversation becomes `instructions` plus
//! `input` items, the answer's `output` items become one assistant message.
//!
//! Stateless: every request carries the whole conversation (`store: false`), and the
//! reasoning items a reasoning model returns (`include: ["reasoning.encrypted_content"]`)
//! ride on the assistant message and go back before its function calls in the next request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::retry::parse_retry_after;
use super::wire::{RawCall, error_body_text, error_text, excerpt, normalise_tool_calls};
use super::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError, Role, ToolDefs,
    Usage,
};
use crate::pay::client::read_capped;
use tokio::sync::mpsc::UnboundedSender;

/// What goes into every request besides the conversation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    /// The model name sent as `model`.
    pub model: &'a str,
    /// Sent as `temperature` when set; `None` leaves the server's default.
    pub temperature: Option<f32>,
    /// Sent as `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// Ask for server-sent events.
    pub stream: bool,
}

/// The request body. Field order is the order on the wire.
#[derive(Debug, Serialize)]
pub(crate) struct ResponsesBody {
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    /// Nothing is kept on the server: each request carries the conversation.
    store: bool,
    stream: bool,
    /// Reasoning items come back encrypted so they can be sent again with `store: false`.
    include: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    prompt_cache_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Box<RawValue>>,
    input: Vec<Value>,
}

impl ResponsesBody {
    /// The body as a JSON value, for the tests.
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The tool definitions in the Responses shape, converted once per list: every call of every
/// turn shares the same `ToolDefs`, so the conversion is remembered by identity.
#[derive(Debug, Default)]
pub(crate) struct ToolCache {
    last: Mutex<Option<Converted>>,
}

/// A tool list and its conversion.
type Converted = (Arc<[Value]>, Box<RawValue>);

impl ToolCache {
    fn get(&self, tools: &ToolDefs) -> Option<Box<RawValue>> {
        if tools.is_empty() {
            return None;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((values, raw)) = last.as_ref()
            && Arc::ptr_eq(values, &tools.values)
        {
            return Some(raw.clone());
        }
        let flat: Vec<Value> = tools.iter().map(responses_tool).collect();
        let raw = serde_json::value::to_raw_value(&flat).ok()?;
        *last = Some((tools.values.clone(), raw.clone()));
        Some(raw)
    }
}

/// A chat-completions tool (`{"type":"function","function":{name, description, parameters,
/// strict}}`) flattened to the Responses shape (`{"type":"function", name, description,
/// parameters, strict}`). An entry without `function` is taken as already flat.
pub(crate) fn responses_tool(tool: &Value) -> Value {
    let Some(function) = tool.get("function").and_then(Value::as_object) else {
        return tool.clone();
    };
    let mut flat = Map::new();
    flat.insert("type".into(), json!("function"));
    for (key, value) in function {
        flat.insert(key.clone(), value.clone());
    }
    Value::Object(flat)
}

/// The key OpenAI routes cached prompts by: the same for every request of one configuration
/// (model and system prompt), so calls that share the long prefix land where it is cached.
/// `altan-pay-` and the first 16 bytes of SHA-256 over the model name, a newline and the
/// instructions, in hex. Tool names are left out on purpose: the tool list changes within a
/// turn (opened tools, none on the last allowed call) while the prefix mostly does not.
pub fn prompt_cache_key(model: &str, instructions: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(model.as_bytes());
    hasher.update(b"\n");
    hasher.update(instructions.unwrap_or_default().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("altan-pay-{hex}")
}

/// The request body for one call. The first message, if it is the system prompt, becomes
/// `instructions` (the Responses API's place for it); everything after it becomes `input`
/// items in order.
pub(crate) fn request_body(
    settings: Settings<'_>,
    request: &ChatRequest,
    tools: &ToolCache,
) -> ResponsesBody {
    let messages: &[ChatMessage] = &request.messages;
    let (instructions, rest) = match messages.split_first() {
        Some((first, rest)) if first.role == Role::System => {
            (Some(first.content.clone().unwrap_or_default()), rest)
        }
        _ => (None, messages),
    };
    let mut input = Vec::with_capacity(rest.len());
    for message in rest {
        input_items(message, &mut input);
    }
    ResponsesBody {
        model: settings.model.to_string(),
        temperature: settings.temperature,
        store: false,
        stream: settings.stream,
        include: ["reasoning.encrypted_content"],
        max_output_tokens: settings.max_output_tokens,
        prompt_cache_key: prompt_cache_key(settings.model, instructions.as_deref()),
        instructions,
        tools: tools.get(&request.tools),
        input,
    }
}

/// One message as `input` items: text messages as `message` items; an assistant message as
/// its reasoning items, its text, then one `function_call` per call; a tool result as a
/// `function_call_output`. The Responses API has no speaker name: a user message with one
/// starts with `name: `.
fn input_items(message: &ChatMessage, out: &mut Vec<Value>) {
    let text = message.content.clone().unwrap_or_default();
    match message.role {
        Role::System => out.push(json!({"type": "message", "role": "system", "content": text})),
        Role::User => {
            let content = match &message.name {
                Some(name) => format!("{name}: {text}"),
                None => text,
            };
            out.push(json!({"type": "message", "role": "user", "content": content}));
        }
        Role::Assistant => {
            if let Some(reasoning) = &message.reasoning {
                out.extend(reasoning.iter().cloned());
            }
            if !text.is_empty() || message.tool_calls.is_empty() {
                out.push(json!({"type": "message", "role": "assistant", "content": text}));
            }
            for call in &message.tool_calls {
                out.push(json!({
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                }));
            }
        }
        Role::Tool => out.push(json!({
            "type": "function_call_output",
            "call_id": message.tool_call_id.clone().unwrap_or_default(),
            "output": text,
        })),
    }
}

/// Parses a whole response object. A body that is not an object, has no `output` array, or
/// says `status: "failed"` is unusable; everything else is taken as far as it goes.
pub fn parse_response(body: &Value) -> Result<ChatResponse, ModelError> {
    let Some(obj) = body.as_object() else {
        return Err(ModelError::BadResponse(format!(
            "expected a JSON object, got {}",
            excerpt(&body.to_string())
        )));
    };
    let status = obj.get("status").and_then(Value::as_str).unwrap_or("");
    let error = obj.get("error").filter(|e| !e.is_null());
    if status == "failed" || (error.is_some() && obj.get("output").is_none()) {
        return Err(ModelError::BadResponse(format!(
            "the response failed: {}",
            error
                .map(error_text)
                .unwrap_or_else(|| "(no error given)".into())
        )));
    }
    let Some(output) = obj.get("output").and_then(Value::as_array) else {
        return Err(ModelError::BadResponse("no output".into()));
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let mut reasoning = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let parts = item.get("content").and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    let piece = match part.get("type").and_then(Value::as_str) {
                        Some("output_text") | Some("text") => part.get("text"),
                        Some("refusal") => part.get("refusal"),
                        _ => None,
                    };
                    if let Some(piece) = piece.and_then(Value::as_str) {
                        text.get_or_insert_with(String::new).push_str(piece);
                    }
                }
            }
            Some("function_call") => calls.push(RawCall {
                id: item
                    .get("call_id")
                    .or_else(|| item.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                name: item.get("name").and_then(Value::as_str).map(str::to_string),
                arguments: item
                    .get("arguments")
                    .filter(|a| !a.is_null())
                    .map(|a| match a {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
            }),
            Some("reasoning") => reasoning.push(item.clone()),
            _ => {}
        }
    }
    let tool_calls = normalise_tool_calls(calls);
    let incomplete = obj
        .get("incomplete_details")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    let finish_reason = match (status, incomplete) {
        ("incomplete", Some("max_output_tokens")) => FinishReason::Length,
        ("incomplete", Some("content_filter")) => FinishReason::ContentFilter,
        _ if !tool_calls.is_empty() => FinishReason::ToolCalls,
        ("incomplete", Some(other)) => FinishReason::Other(other.to_string()),
        _ => FinishReason::Stop,
    };
    let content = match text {
        Some(t) if t.is_empty() && !tool_calls.is_empty() => None,
        None if tool_calls.is_empty() => Some(String::new()),
        other => other,
    };
    Ok(ChatResponse {
        message: ChatMessage {
            role: Role::Assistant,
            content,
            name: None,
            tool_calls,
            tool_call_id: None,
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
        },
        finish_reason: Some(finish_reason),
        usage: obj.get("usage").map(usage).unwrap_or_default(),
    })
}

/// The Responses API's usage object in the shared [`Usage`].
pub fn usage(value: &Value) -> Usage {
    let count = |v: Option<&Value>| v.and_then(Value::as_u64);
    let input = count(value.get("input_tokens")).unwrap_or(0);
    let output = count(value.get("output_tokens")).unwrap_or(0);
    let detail =
        |group: &str, key: &str| count(value.get(group).and_then(|g| g.get(key))).unwrap_or(0);
    Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: count(value.get("total_tokens")).unwrap_or(input.saturating_add(output)),
        cached_tokens: detail("input_tokens_details", "cached_tokens"),
        reasoning_tokens: detail("output_tokens_details", "reasoning_tokens"),
    }
}

/// One POST of the body, on the model's HTTP client, with its headers, up to the response
/// headers: an error status becomes [`ModelError::Status`] (with `Retry-After`), and a failure
/// on the way is sorted by `transport` (the chat wire's own mapping, so both wires report
/// alike).
async fn send(
    http: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: &ResponsesBody,
    transport: &impl Fn(reqwest::Error) -> ModelError,
) -> Result<reqwest::Response, ModelError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ModelError::Config(format!("cannot write the request: {e}")))?;
    let mut response = http
        .post(url)
        .headers(headers)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(bytes)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = read_capped(&mut response, ERROR_BODY_BYTES)
        .await
        .map_err(transport)?
        .unwrap_or_else(|| b"(an error body too large to read)".to_vec());
    Err(ModelError::Status {
        status: status.as_u16(),
        message: error_body_text(&body),
        retry_after,
    })
}

/// The whole JSON body, at most `max_bytes` of it.
async fn whole_body(
    mut response: reqwest::Response,
    max_bytes: usize,
    transport: &impl Fn(reqwest::Error) -> ModelError,
) -> Result<Value, ModelError> {
    let body = read_capped(&mut response, max_bytes)
        .await
        .map_err(transport)?
        .ok_or_else(|| {
            ModelError::BadResponse(format!(
                "the answer is larger than the limit of {max_bytes} bytes"
            ))
        })?;
    serde_json::from_slice::<Value>(&body).map_err(|e| {
        let text = String::from_utf8_lossy(&body);
        ModelError::BadResponse(format!(
            "the body is not JSON ({e}): {}",
            if text.trim().is_empty() {
                "(empty body)".to_string()
            } else {
                excerpt(text.trim())
            }
        ))
    })
}

/// Where a call goes and how it is bounded.
pub(crate) struct Call<'a, F> {
    /// The HTTP client (its connection pool is shared).
    pub http: &'a reqwest::Client,
    /// The endpoint, `.../v1/responses`.
    pub url: &'a str,
    /// Headers of the request, the bearer key included when there is one.
    pub headers: HeaderMap,
    /// Without streaming: the whole call. Streaming: up to the response headers (the
    /// client's read timeout bounds each silence after that).
    pub timeout: Duration,
    /// The most bytes read: the whole body, or the whole stream.
    pub max_bytes: usize,
    /// How a failure on the way becomes a [`ModelError`].
    pub transport: F,
}

impl<F: Fn(reqwest::Error) -> ModelError> Call<'_, F> {
    fn timed_out(&self) -> ModelError {
        ModelError::Transport(format!(
            "no answer from {} within {:?}",
            self.url, self.timeout
        ))
    }

    /// One plain (not streamed) call: the response object.
    pub async fn post(self, body: &ResponsesBody) -> Result<Value, ModelError> {
        let call = async {
            let response = send(
                self.http,
                self.url,
                self.headers.clone(),
                body,
                &self.transport,
            )
            .await?;
            whole_body(response, self.max_bytes, &self.transport).await
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| self.timed_out())?
    }

    /// One streamed call: text and call pieces go to `tx` as the events arrive (text past
    /// `answer_limit` bytes is not passed on; the caller cuts the final text), `forwarded`
    /// says whether any did. A server that answers with one JSON object instead is read
    /// whole and passed on at the end.
    pub async fn stream(
        self,
        body: &ResponsesBody,
        tx: &UnboundedSender<ModelDelta>,
        forwarded: &mut bool,
        answer_limit: usize,
    ) -> Result<ChatResponse, ModelError> {
        let open = send(
            self.http,
            self.url,
            self.headers.clone(),
            body,
            &self.transport,
        );
        let mut response = tokio::time::timeout(self.timeout, open)
            .await
            .map_err(|_| self.timed_out())??;
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if !is_stream {
            let answer = whole_body(response, self.max_bytes, &self.transport).await?;
            let parsed = parse_response(&answer)?;
            for delta in super::wire::deltas_of(&parsed) {
                *forwarded = true;
                let _ = tx.send(delta);
            }
            return Ok(parsed);
        }
        let mut reader = StreamReader::default();
        let mut read = 0usize;
        let mut text_seen = 0usize;
        while let Some(chunk) = response.chunk().await.map_err(&self.transport)? {
            read += chunk.len();
            if read > self.max_bytes {
                return Err(ModelError::BadResponse(format!(
                    "the stream is larger than the limit of {} bytes",
                    self.max_bytes
                )));
            }
            for delta in reader.push(&chunk)? {
                let delta = match delta {
                    ModelDelta::Text(text) => {
                        let before = text_seen;
                        text_seen += text.len();
                        match clip(&text, before, answer_limit) {
                            Some(kept) => ModelDelta::Text(kept),
                            None => continue,
                        }
                    }
                    other => other,
                };
                *forwarded = true;
                let _ = tx.send(delta);
            }
            if reader.done() {
                break;
            }
        }
        reader.finish()
    }
}

/// The part of a text piece that fits under `limit` bytes when `before` were already
/// passed on (cut on a character boundary); `None` when nothing fits.
fn clip(text: &str, before: usize, limit: usize) -> Option<String> {
    if before >= limit {
        return None;
    }
    let mut end = (limit - before).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (end > 0).then(|| text[..end].to_string())
}

/// Reads the server-sent events of a streamed response: `response.output_text.delta` is
/// text, `response.output_item.added` of a `function_call` starts a call,
/// `response.function_call_arguments.delta` continues it (by `output_index`), and
/// `response.completed`, `.incomplete` or `.failed` carry the final response object, which
/// is what the answer is built from. An `error` event is the server giving up.
#[derive(Debug, Default)]
pub(crate) struct StreamReader {
    buffer: Vec<u8>,
    /// Server `output_index` -> position of the call in the message.
    calls: Vec<(u64, usize)>,
    last: Option<Value>,
}

impl StreamReader {
    /// Takes bytes of the stream; returns the deltas of the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<ModelDelta>, ModelError> {
        self.buffer
            .extend(bytes.iter().copied().filter(|b| *b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            if data.trim().is_empty() || data.trim() == "[DONE]" {
                continue;
            }
            let event: Value = serde_json::from_str(&data).map_err(|e| {
                ModelError::BadResponse(format!(
                    "a stream event is not JSON ({e}): {}",
                    excerpt(&data)
                ))
            })?;
            self.event(&event, &mut out)?;
        }
        Ok(out)
    }

    fn event(&mut self, event: &Value, out: &mut Vec<ModelDelta>) -> Result<(), ModelError> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let output_index = event.get("output_index").and_then(Value::as_u64);
        match kind {
            "response.output_text.delta" => {
                if let Some(text) = event.get("delta").and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push(ModelDelta::Text(text.to_string()));
                }
            }
            "response.output_item.added" => {
                let item = &event["item"];
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    let index = self.calls.len();
                    self.calls
                        .push((output_index.unwrap_or(index as u64), index));
                    let id = item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("call_{index}"));
                    let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                    out.push(ModelDelta::ToolCallStarted {
                        index,
                        id,
                        name: name.to_string(),
                    });
                    if let Some(args) = item.get("arguments").and_then(Value::as_str)
                        && !args.is_empty()
                    {
                        out.push(ModelDelta::ToolCallArguments {
                            index,
                            fragment: args.to_string(),
                        });
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                let index = self
                    .calls
                    .iter()
                    .find(|(k, _)| Some(*k) == output_index)
                    .map(|(_, p)| *p);
                if let (Some(index), Some(fragment)) =
                    (index, event.get("delta").and_then(Value::as_str))
                    && !fragment.is_empty()
                {
                    out.push(ModelDelta::ToolCallArguments {
                        index,
                        fragment: fragment.to_string(),
                    });
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.last = event.get("response").cloned();
            }
            "error" => {
                return Err(ModelError::BadResponse(format!(
                    "the server reported an error mid-stream: {}",
                    error_text(event)
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// The final response object arrived.
    pub fn done(&self) -> bool {
        self.last.is_some()
    }

    /// The answer, from the final response object; a stream that ended without one is an
    /// unusable answer.
    pub fn finish(self) -> Result<ChatResponse, ModelError> {
        match self.last {
            Some(response) => parse_response(&response),
            None => Err(ModelError::BadResponse(
                "the stream ended without response.completed".into(),
            )),
        }
    }
}

/// The most of an error body read: its message is all that is kept.
const ERROR_BODY_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolCall;

    #[test]
    fn tools_are_flattened_and_the_conversation_becomes_items() {
        let mut assistant = ChatMessage::assistant("");
        assistant.content = None;
        assistant.reasoning = Some(vec![json!({"type": "reasoning", "id": "rs_1"})]);
        assistant.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "list_products".into(),
            arguments: "{}".into(),
        }];
        let request = ChatRequest {
            messages: Arc::new(vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hi"),
                assistant,
                ChatMessage::tool_result("c1", "[]"),
            ]),
            tools: ToolDefs::from(vec![
                json!({"type": "function", "function": {"name": "list_products", "parameters": {"type": "object"}}}),
            ]),
        };
        let settings = Settings {
            model: "m",
            temperature: None,
            max_output_tokens: Some(100),
            stream: false,
        };
        let body = request_body(settings, &request, &ToolCache::default()).to_value();
        assert_eq!(body["instructions"], "be brief");
        assert_eq!(body["store"], false);
        assert_eq!(body["max_output_tokens"], 100);
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "name": "list_products", "parameters": {"type": "object"}}])
        );
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1"},
                {"type": "function_call", "call_id": "c1", "name": "list_products", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "[]"},
            ])
        );
        assert_eq!(
            body["prompt_cache_key"],
            prompt_cache_key("m", Some("be brief")).as_str()
        );
    }

    #[test]
    fn a_failed_response_is_unusable() {
        let err = parse_response(
            &json!({"status": "failed", "error": {"message": "boom"}, "output": []}),
        )
        .unwrap_err();
        assert!(matches!(err, ModelError::BadResponse(m) if m.contains("boom")));
    }

    #[test]
    fn events_split_across_reads_and_crlf_lines_are_read_whole() {
        let mut reader = StreamReader::default();
        let event = "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"h\u{e9}\"}\r\n\r\n";
        let (a, b) = event.as_bytes().split_at(40);
        assert!(reader.push(a).unwrap().is_empty());
        assert_eq!(
            reader.push(b).unwrap(),
            [ModelDelta::Text("h\u{e9}".into())]
        );
        assert!(!reader.done());
        assert!(reader.finish().is_err());
        assert_eq!(clip("h\u{e9}llo", 0, 2), Some("h".into()));
        assert_eq!(clip("abc", 5, 5), None);
    }
}
