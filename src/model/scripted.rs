//! A model that answers from a script, for tests and recorded demos: each call takes the
//! next step, records the request, and can check it against what the step expects.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::wire::deltas_of;
use super::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError,
    ModelFuture, Role, ToolCall, Usage,
};

/// Checks the request a step is given; `Err` says what was wrong.
pub type Matcher = Box<dyn Fn(&ChatRequest) -> Result<(), String> + Send + Sync>;

/// One scripted model turn: an answer or an error, optionally guarded by a matcher.
pub struct ScriptedStep {
    outcome: Result<ChatResponse, ModelError>,
    matchers: Vec<(String, Matcher)>,
    /// Builds the answer from the request (ids Stripe returned earlier, say).
    make: Option<Maker>,
}

/// Makes a step's answer from the request it is given.
pub type Maker = Box<dyn Fn(&ChatRequest) -> Result<ChatResponse, String> + Send + Sync>;

impl std::fmt::Debug for ScriptedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedStep")
            .field("outcome", &self.outcome)
            .field(
                "expects",
                &self.matchers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ScriptedStep {
    /// A full response, returned as is.
    pub fn response(response: ChatResponse) -> ScriptedStep {
        ScriptedStep {
            outcome: Ok(response),
            matchers: Vec::new(),
            make: None,
        }
    }

    /// An answer computed from the request, e.g. tool calls that use an id from the last
    /// tool result; `Err` fails the call with a message naming the step.
    pub fn dynamic(
        make: impl Fn(&ChatRequest) -> Result<ChatResponse, String> + Send + Sync + 'static,
    ) -> ScriptedStep {
        ScriptedStep {
            outcome: Err(ModelError::Config("dynamic step".into())),
            matchers: Vec::new(),
            make: Some(Box::new(make)),
        }
    }

    /// A final text answer (`finish_reason: stop`).
    pub fn text(text: impl Into<String>) -> ScriptedStep {
        ScriptedStep::response(ChatResponse {
            message: ChatMessage::assistant(text),
            finish_reason: Some(FinishReason::Stop),
            usage: Usage::default(),
        })
    }

    /// Tool calls `(id, name, arguments)` with JSON arguments (`finish_reason: tool_calls`).
    pub fn tool_calls<I, S, N>(calls: I) -> ScriptedStep
    where
        I: IntoIterator<Item = (S, N, Value)>,
        S: Into<String>,
        N: Into<String>,
    {
        ScriptedStep::raw_tool_calls(
            calls
                .into_iter()
                .map(|(id, name, args)| (id, name, args.to_string())),
        )
    }

    /// Tool calls whose arguments are given as raw text, which need not be JSON: for
    /// testing what happens with malformed model output.
    pub fn raw_tool_calls<I, S, N, A>(calls: I) -> ScriptedStep
    where
        I: IntoIterator<Item = (S, N, A)>,
        S: Into<String>,
        N: Into<String>,
        A: Into<String>,
    {
        let tool_calls = calls
            .into_iter()
            .map(|(id, name, arguments)| ToolCall {
                id: id.into(),
                name: name.into(),
                arguments: arguments.into(),
            })
            .collect();
        ScriptedStep::response(ChatResponse {
            message: ChatMessage {
                role: Role::Assistant,
                content: None,
                name: None,
                tool_calls,
                tool_call_id: None,
                reasoning: None,
            },
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Usage::default(),
        })
    }

    /// The call fails with this error.
    pub fn error(error: ModelError) -> ScriptedStep {
        ScriptedStep {
            outcome: Err(error),
            matchers: Vec::new(),
            make: None,
        }
    }

    /// Adds text next to tool calls (or replaces the text of a text step).
    pub fn with_text(mut self, text: impl Into<String>) -> ScriptedStep {
        if let Ok(response) = &mut self.outcome {
            response.message.content = Some(text.into());
        }
        self
    }

    /// Sets the usage the step reports, to test token accounting.
    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> ScriptedStep {
        if let Ok(response) = &mut self.outcome {
            response.usage = Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                ..Usage::default()
            };
        }
        self
    }

    /// Sets the finish reason the step reports (`None`: the server did not say).
    pub fn with_finish_reason(mut self, reason: Option<FinishReason>) -> ScriptedStep {
        if let Ok(response) = &mut self.outcome {
            response.finish_reason = reason;
        }
        self
    }

    /// The step only answers a request for which `check` holds; otherwise the call fails
    /// with a `Config` error naming the step and `expected`.
    pub fn expect(
        mut self,
        expected: impl Into<String>,
        check: impl Fn(&ChatRequest) -> bool + Send + Sync + 'static,
    ) -> ScriptedStep {
        self.matchers.push((
            expected.into(),
            Box::new(move |r| {
                if check(r) {
                    Ok(())
                } else {
                    Err(describe_last(r))
                }
            }),
        ));
        self
    }

    /// Like [`ScriptedStep::expect`] with a matcher that explains the mismatch itself.
    pub fn expect_with(mut self, expected: impl Into<String>, matcher: Matcher) -> ScriptedStep {
        self.matchers.push((expected.into(), matcher));
        self
    }

    /// The last message is a tool result whose content contains `needle`.
    pub fn expect_tool_result_containing(self, needle: impl Into<String>) -> ScriptedStep {
        let needle = needle.into();
        let expected = format!("the last message to be a tool result containing {needle:?}");
        self.expect(expected, move |r| {
            r.messages.last().is_some_and(|m| {
                m.role == Role::Tool && m.content.as_deref().is_some_and(|c| c.contains(&needle))
            })
        })
    }

    /// The last message is a user message containing `needle`.
    pub fn expect_user_message_containing(self, needle: impl Into<String>) -> ScriptedStep {
        let needle = needle.into();
        let expected = format!("the last message to be a user message containing {needle:?}");
        self.expect(expected, move |r| {
            r.messages.last().is_some_and(|m| {
                m.role == Role::User && m.content.as_deref().is_some_and(|c| c.contains(&needle))
            })
        })
    }
}

fn describe_last(request: &ChatRequest) -> String {
    match request.messages.last() {
        None => "the request has no messages".into(),
        Some(m) => {
            let content = m.content.as_deref().unwrap_or("");
            let mut short: String = content.chars().take(200).collect();
            if short.len() < content.len() {
                short.push('…');
            }
            format!("the last message is {:?} with {short:?}", m.role)
        }
    }
}

/// A [`ChatModel`] that plays [`ScriptedStep`]s in order.
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    steps: VecDeque<ScriptedStep>,
    requests: Vec<ChatRequest>,
    taken: usize,
}

impl ScriptedModel {
    /// A model that answers with `steps`, one per call, in order; a call after the last step fails
    /// with [`ModelError::Config`].
    pub fn new(steps: Vec<ScriptedStep>) -> ScriptedModel {
        ScriptedModel {
            name: "scripted".into(),
            state: Mutex::new(State {
                steps: steps.into(),
                ..State::default()
            }),
        }
    }

    /// The name reported by [`ChatModel::name`].
    pub fn with_name(mut self, name: impl Into<String>) -> ScriptedModel {
        self.name = name.into();
        self
    }

    /// Appends steps, for scripts built while the test runs.
    pub fn push(&self, step: ScriptedStep) {
        self.lock().steps.push_back(step);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// Steps not yet used, so a test can assert the script was played to the end.
    pub fn remaining(&self) -> usize {
        self.lock().steps.len()
    }

    /// A test's own failure elsewhere must not hide the script's state behind a poison error.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let mut state = self.lock();
        state.requests.push(request.clone());
        let Some(step) = state.steps.pop_front() else {
            return Err(ModelError::Config(format!(
                "scripted model: no step left (call {} after {} scripted steps); {}",
                state.taken + 1,
                state.taken,
                describe_last(request)
            )));
        };
        state.taken += 1;
        let number = state.taken;
        drop(state);
        for (expected, matcher) in &step.matchers {
            if let Err(found) = matcher(request) {
                return Err(ModelError::Config(format!(
                    "scripted model: step {number} expected {expected}, but {found}"
                )));
            }
        }
        match &step.make {
            Some(make) => make(request).map_err(|e| {
                ModelError::Config(format!(
                    "scripted model: step {number} could not answer: {e}"
                ))
            }),
            None => step.outcome,
        }
    }
}

impl ChatModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let response = self.next(request)?;
            if let Some(tx) = deltas {
                for delta in deltas_of(&response).into_iter().flat_map(split_delta) {
                    let _ = tx.send(delta);
                }
            }
            Ok(response)
        })
    }
}

/// Splits text and arguments into a few pieces, so consumers are tested on fragments.
fn split_delta(delta: ModelDelta) -> Vec<ModelDelta> {
    match delta {
        ModelDelta::Text(text) => pieces(&text, 3).into_iter().map(ModelDelta::Text).collect(),
        ModelDelta::ToolCallArguments { index, fragment } => pieces(&fragment, 2)
            .into_iter()
            .map(|fragment| ModelDelta::ToolCallArguments { index, fragment })
            .collect(),
        other => vec![other],
    }
}

fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(last: ChatMessage) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::system("s"), last].into(),
            tools: Vec::new().into(),
        }
    }

    #[tokio::test]
    async fn plays_steps_and_records_requests() {
        let model = ScriptedModel::new(vec![
            ScriptedStep::tool_calls(vec![("c1", "list_products", json!({"limit": 3}))]),
            ScriptedStep::text("done").expect_tool_result_containing("prod_1"),
        ]);
        let first = model
            .complete(&request(ChatMessage::user("hi")), None)
            .await
            .unwrap();
        assert_eq!(first.message.tool_calls[0].arguments, r#"{"limit":3}"#);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let second = model
            .complete(
                &request(ChatMessage::tool_result("c1", "[prod_1]")),
                Some(tx),
            )
            .await
            .unwrap();
        assert_eq!(second.message.content.as_deref(), Some("done"));
        let mut text = String::new();
        while let Ok(ModelDelta::Text(t)) = rx.try_recv() {
            text.push_str(&t);
        }
        assert_eq!(text, "done");
        assert_eq!(model.requests().len(), 2);
        assert_eq!(model.remaining(), 0);
        let err = model
            .complete(&request(ChatMessage::user("again")), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ModelError::Config(m) if m.contains("no step left")));
    }

    #[tokio::test]
    async fn matcher_failure_names_step_and_expectation() {
        let model = ScriptedModel::new(vec![
            ScriptedStep::text("a"),
            ScriptedStep::text("b").expect_tool_result_containing("prod_9"),
        ]);
        model
            .complete(&request(ChatMessage::user("x")), None)
            .await
            .unwrap();
        let err = model
            .complete(&request(ChatMessage::user("y")), None)
            .await
            .unwrap_err();
        let ModelError::Config(message) = err else {
            panic!("expected a config error");
        };
        assert!(message.contains("step 2"), "{message}");
        assert!(message.contains("prod_9"), "{message}");
    }

    #[tokio::test]
    async fn tool_call_deltas_start_then_arguments() {
        let model = ScriptedModel::new(vec![ScriptedStep::tool_calls(vec![(
            "c1",
            "get_product",
            json!({"id": "prod_1"}),
        )])]);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        model
            .complete(&request(ChatMessage::user("x")), Some(tx))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Ok(d) = rx.try_recv() {
            got.push(d);
        }
        assert!(
            matches!(&got[0], ModelDelta::ToolCallStarted { index: 0, id, name } if id == "c1" && name == "get_product")
        );
        let args: String = got[1..]
            .iter()
            .map(|d| match d {
                ModelDelta::ToolCallArguments { fragment, .. } => fragment.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(args, r#"{"id":"prod_1"}"#);
        assert!(got.len() >= 3);
    }
}
