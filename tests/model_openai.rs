//! The OpenAI-compatible model against a real local HTTP server playing the endpoint: the
//! exact request sent, plain and streamed answers, the malformed-output catalogue, retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, ModelDelta, ModelError, OpenAiConfig,
    OpenAiModel, RetryPolicy, Role, ToolCall, Usage,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, Uri};
use serde_json::{Value, json};

// ---------------------------------------------------------------- the fake endpoint

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Option<Duration>,
    },
    /// SSE: each event is sent as `data: ...\n\n`; then `[DONE]` if `done`; then the
    /// connection is broken if `broken`.
    Sse {
        events: Vec<String>,
        done: bool,
        broken: bool,
    },
}

impl Reply {
    fn json(body: Value) -> Reply {
        Reply::status(200, "application/json", &body.to_string())
    }

    fn status(status: u16, content_type: &str, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.to_string(),
            delay: None,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name, value.to_string()));
        }
        self
    }

    fn delayed(mut self, by: Duration) -> Reply {
        if let Reply::Full { delay, .. } = &mut self {
            *delay = Some(by);
        }
        self
    }

    fn sse(chunks: Vec<Value>) -> Reply {
        Reply::Sse {
            events: chunks.iter().map(Value::to_string).collect(),
            done: true,
            broken: false,
        }
    }
}

#[derive(Default)]
struct Script {
    requests: Mutex<Vec<Recorded>>,
    replies: Mutex<VecDeque<Reply>>,
}

struct Endpoint {
    base_url: String,
    script: Arc<Script>,
}

impl Endpoint {
    async fn start(replies: Vec<Reply>) -> Endpoint {
        let script = Arc::new(Script {
            requests: Mutex::default(),
            replies: Mutex::new(replies.into()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Endpoint { base_url, script }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.script.requests.lock().unwrap().clone()
    }

    fn config(&self) -> OpenAiConfig {
        OpenAiConfig {
            base_url: self.base_url.clone(),
            api_key: None,
            model: "test-model".into(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                max_retry_after: Duration::from_secs(5),
            },
            temperature: None,
            stream: true,
            ..OpenAiConfig::default()
        }
    }

    fn model(&self) -> OpenAiModel {
        OpenAiModel::new(self.config()).unwrap()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    script.requests.lock().unwrap().push(Recorded {
        path: uri.path().to_string(),
        headers,
        body,
    });
    let next = script.replies.lock().unwrap().pop_front();
    match next {
        None => Response::builder()
            .status(599)
            .body(Body::from("no reply scripted"))
            .unwrap(),
        Some(Reply::Full {
            status,
            headers,
            body,
            delay,
        }) => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut response = Response::builder().status(status);
            for (k, v) in headers {
                response = response.header(k, v);
            }
            response.body(Body::from(body)).unwrap()
        }
        Some(Reply::Sse {
            events,
            done,
            broken,
        }) => {
            let mut parts: Vec<Result<Bytes, std::io::Error>> = events
                .into_iter()
                .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
                .collect();
            if done {
                parts.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
            }
            use futures::StreamExt;
            // The break comes after a pause, so what was sent before it is flushed first.
            let tail = futures::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("connection dropped"))
            })
            .take(usize::from(broken));
            let body = futures::stream::iter(parts).chain(tail);
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(body))
                .unwrap()
        }
    }
}

// ---------------------------------------------------------------- helpers

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are Altan Pay."),
            ChatMessage::user("List my products"),
        ]
        .into(),
        tools: vec![tool("list_products")].into(),
    }
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name, "description": "d",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": false}
    }})
}

fn completion(message: Value, finish: Value, usage: Option<Value>) -> Value {
    let mut body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    body
}

fn text_answer(text: &str) -> Reply {
    Reply::json(completion(
        json!({"role": "assistant", "content": text}),
        json!("stop"),
        Some(json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})),
    ))
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

async fn run(
    model: &OpenAiModel,
    stream: bool,
) -> (
    Result<altan_pay::model::ChatResponse, ModelError>,
    Vec<ModelDelta>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = model
        .complete(&request(), if stream { Some(tx) } else { None })
        .await;
    let mut deltas = Vec::new();
    while let Ok(d) = rx.try_recv() {
        deltas.push(d);
    }
    (result, deltas)
}

// ---------------------------------------------------------------- the request

#[tokio::test]
async fn sends_the_exact_openai_request_with_the_key() {
    let server = Endpoint::start(vec![text_answer("ok")]).await;
    let mut config = server.config();
    config.api_key = Some("sk-test".into());
    config.temperature = Some(0.25);
    let model = OpenAiModel::new(config).unwrap();

    let mut named_user = ChatMessage::user("Create a product");
    named_user.name = Some("maria".into());
    let mut calls = ChatMessage::assistant("");
    calls.content = None;
    calls.tool_calls = vec![ToolCall {
        id: "call_a".into(),
        name: "list_products".into(),
        arguments: "{}".into(),
    }];
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("sys"),
            named_user,
            calls,
            ChatMessage::tool_result("call_a", "{\"data\":[]}"),
        ]
        .into(),
        tools: vec![tool("list_products")].into(),
    };
    let response = model.complete(&request, None).await.unwrap();
    assert_eq!(response.message.content.as_deref(), Some("ok"));

    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(
        sent[0].header("authorization").as_deref(),
        Some("Bearer sk-test")
    );
    assert_eq!(
        sent[0].json(),
        json!({
            "model": "test-model",
            "max_completion_tokens": 4096,
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Create a product", "name": "maria"},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "list_products", "arguments": "{}"}}
                ]},
                {"role": "tool", "content": "{\"data\":[]}", "tool_call_id": "call_a"}
            ],
            "tools": [tool("list_products")],
            "temperature": 0.25,
            "stream": false
        })
    );
}

#[tokio::test]
async fn no_authorization_header_without_a_key() {
    let server = Endpoint::start(vec![text_answer("ok")]).await;
    let model = server.model();
    run(&model, false).await.0.unwrap();
    let sent = server.requests();
    assert_eq!(sent[0].header("authorization"), None);
    assert!(sent[0].json().get("temperature").is_none());
    assert!(sent[0].json().get("parallel_tool_calls").is_none());
}

#[tokio::test]
async fn bad_config_is_a_config_error() {
    let config = OpenAiConfig {
        api_key: None,
        ..OpenAiConfig::default()
    };
    assert!(
        matches!(OpenAiModel::new(config), Err(ModelError::Config(m)) if m.contains("OPENAI_API_KEY"))
    );
    let config = OpenAiConfig {
        base_url: "not a url".into(),
        ..OpenAiConfig::default()
    };
    assert!(matches!(
        OpenAiModel::new(config),
        Err(ModelError::Config(_))
    ));
    let config = OpenAiConfig {
        base_url: "http://127.0.0.1:1/v1".into(),
        api_key: Some("bad\nkey".into()),
        ..OpenAiConfig::default()
    };
    assert!(matches!(OpenAiModel::new(config), Err(ModelError::Config(m)) if m.contains("header")));
}

// ---------------------------------------------------------------- plain answers

#[tokio::test]
async fn text_answer_with_usage() {
    let server = Endpoint::start(vec![text_answer("Here are your products.")]).await;
    let response = run(&server.model(), false).await.0.unwrap();
    assert_eq!(response.message.role, Role::Assistant);
    assert_eq!(
        response.message.content.as_deref(),
        Some("Here are your products.")
    );
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
            ..Usage::default()
        }
    );
}

#[tokio::test]
async fn cached_and_reasoning_tokens_are_read_from_the_details() {
    let server = Endpoint::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "Done."}),
        json!("stop"),
        Some(
            json!({"prompt_tokens": 2400, "completion_tokens": 30, "total_tokens": 2430,
                    "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 12}}),
        ),
    ))])
    .await;
    let response = run(&server.model(), false).await.0.unwrap();
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: 2400,
            completion_tokens: 30,
            total_tokens: 2430,
            cached_tokens: 2048,
            reasoning_tokens: 12,
        }
    );
}

#[tokio::test]
async fn parallel_tool_calls_with_empty_content() {
    let server = Endpoint::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "list_products", "arguments": "{\"limit\":3}"}},
            {"id": "call_2", "type": "function", "function": {"name": "list_prices", "arguments": "{}"}}
        ]}),
        json!("tool_calls"),
        None,
    ))])
    .await;
    let response = run(&server.model(), false).await.0.unwrap();
    assert_eq!(response.message.content, None);
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.message.tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "list_products".into(),
                arguments: "{\"limit\":3}".into()
            },
            ToolCall {
                id: "call_2".into(),
                name: "list_prices".into(),
                arguments: "{}".into()
            },
        ]
    );
}

#[tokio::test]
async fn without_streaming_deltas_come_at_the_end() {
    let server = Endpoint::start(vec![text_answer("whole")]).await;
    let mut config = server.config();
    config.stream = false;
    let model = OpenAiModel::new(config).unwrap();
    let (result, deltas) = run(&model, true).await;
    assert_eq!(result.unwrap().message.content.as_deref(), Some("whole"));
    assert_eq!(deltas, vec![ModelDelta::Text("whole".into())]);
    assert_eq!(server.requests()[0].json()["stream"], json!(false));
}

// ---------------------------------------------------------------- streaming

#[tokio::test]
async fn streamed_text_with_usage() {
    let server = Endpoint::start(vec![Reply::sse(vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}),
    ])])
    .await;
    let mut config = server.config();
    config.api_key = Some("sk-s".into());
    let model = OpenAiModel::new(config).unwrap();
    let (result, deltas) = run(&model, true).await;
    let response = result.unwrap();
    assert_eq!(response.message.content.as_deref(), Some("Hello"));
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    assert_eq!(response.usage.total_tokens, 9);
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Text("Hel".into()),
            ModelDelta::Text("lo".into())
        ]
    );
    let sent = server.requests()[0].json();
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are Altan Pay."},
            {"role": "user", "content": "List my products"}
        ])
    );
}

#[tokio::test]
async fn streamed_parallel_tool_calls_interleaved_by_index() {
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        if let Some(name) = name {
            c["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [c]}), Value::Null)
    };
    let server = Endpoint::start(vec![Reply::sse(vec![
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        call(0, Some("call_a"), Some("get_product"), ""),
        call(1, Some("call_b"), Some("list_prices"), ""),
        call(0, None, None, "{\"id\":"),
        call(1, None, None, "{\"product\":"),
        call(0, None, None, "\"prod_1\"}"),
        call(1, None, None, "\"prod_1\"}"),
        chunk(json!({}), json!("tool_calls")),
    ])])
    .await;
    let (result, deltas) = run(&server.model(), true).await;
    let response = result.unwrap();
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(response.message.content, None);
    assert_eq!(
        response.message.tool_calls,
        vec![
            ToolCall {
                id: "call_a".into(),
                name: "get_product".into(),
                arguments: "{\"id\":\"prod_1\"}".into()
            },
            ToolCall {
                id: "call_b".into(),
                name: "list_prices".into(),
                arguments: "{\"product\":\"prod_1\"}".into()
            },
        ]
    );
    assert_eq!(response.usage, Usage::default());
    assert_eq!(
        deltas[..2],
        [
            ModelDelta::ToolCallStarted {
                index: 0,
                id: "call_a".into(),
                name: "get_product".into()
            },
            ModelDelta::ToolCallStarted {
                index: 1,
                id: "call_b".into(),
                name: "list_prices".into()
            },
        ]
    );
    assert_eq!(
        deltas[2],
        ModelDelta::ToolCallArguments {
            index: 0,
            fragment: "{\"id\":".into()
        }
    );
    assert_eq!(deltas.len(), 6);
}

#[tokio::test]
async fn stream_without_done_but_with_content_is_accepted() {
    let server = Endpoint::start(vec![Reply::Sse {
        events: vec![chunk(json!({"content": "partial but whole"}), Value::Null).to_string()],
        done: false,
        broken: false,
    }])
    .await;
    let response = run(&server.model(), true).await.0.unwrap();
    assert_eq!(
        response.message.content.as_deref(),
        Some("partial but whole")
    );
    assert_eq!(response.finish_reason, None);
}

#[tokio::test]
async fn stream_that_breaks_midway_is_a_transport_error_and_not_replayed() {
    let server = Endpoint::start(vec![
        Reply::Sse {
            events: vec![chunk(json!({"content": "Hel"}), Value::Null).to_string()],
            done: false,
            broken: true,
        },
        text_answer("must not be used"),
    ])
    .await;
    let (result, deltas) = run(&server.model(), true).await;
    assert!(
        matches!(result, Err(ModelError::Transport(_))),
        "{result:?}"
    );
    assert_eq!(deltas, vec![ModelDelta::Text("Hel".into())]);
    // Pieces already went to the caller: a retry would repeat them.
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn stream_that_breaks_before_any_piece_is_retried() {
    let server = Endpoint::start(vec![
        Reply::Sse {
            events: vec![],
            done: false,
            broken: true,
        },
        Reply::sse(vec![chunk(json!({"content": "ok"}), json!("stop"))]),
    ])
    .await;
    let (result, _) = run(&server.model(), true).await;
    assert_eq!(result.unwrap().message.content.as_deref(), Some("ok"));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn empty_stream_is_a_bad_response() {
    let server = Endpoint::start(vec![Reply::sse(vec![])]).await;
    let (result, _) = run(&server.model(), true).await;
    assert!(
        matches!(result, Err(ModelError::BadResponse(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn streamed_error_status_is_retried_then_streams() {
    let server = Endpoint::start(vec![
        Reply::status(503, "text/plain", "overloaded"),
        Reply::sse(vec![chunk(json!({"content": "ok"}), json!("stop"))]),
    ])
    .await;
    let (result, deltas) = run(&server.model(), true).await;
    assert_eq!(result.unwrap().message.content.as_deref(), Some("ok"));
    assert_eq!(deltas, vec![ModelDelta::Text("ok".into())]);
    assert_eq!(server.requests().len(), 2);
}

// ---------------------------------------------------------------- malformed output

#[tokio::test]
async fn empty_choices_is_a_bad_response() {
    let server = Endpoint::start(vec![Reply::json(json!({"id": "x", "choices": []}))]).await;
    let result = run(&server.model(), false).await.0;
    assert_eq!(result, Err(ModelError::BadResponse("no choices".into())));
    // Not retried: the same request would get the same answer.
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn minimal_answer_from_a_local_server() {
    // No id, object, created, model, usage or finish_reason: what some local servers send.
    let server = Endpoint::start(vec![Reply::json(
        json!({"choices": [{"message": {"content": "hi"}}]}),
    )])
    .await;
    let response = run(&server.model(), false).await.0.unwrap();
    assert_eq!(response.message.content.as_deref(), Some("hi"));
    assert_eq!(response.finish_reason, None);
    assert_eq!(response.usage, Usage::default());
}

#[tokio::test]
async fn malformed_tool_calls_are_kept_as_far_as_possible() {
    let server = Endpoint::start(vec![Reply::json(json!({"choices": [{"message": {
        "role": "assistant",
        "tool_calls": [
            {"function": {"name": "create_product", "arguments": "{name: 'Pro',"}},
            {"type": "function", "function": {"name": "update_product", "arguments": {"id": "prod_1", "active": false}}},
            {"id": "call_0", "function": {"name": "list_prices"}},
            {"id": "x", "function": {"arguments": "{}"}},
            "garbage"
        ]
    }}]}))])
    .await;
    let response = run(&server.model(), false).await.0.unwrap();
    let calls = response.message.tool_calls;
    assert_eq!(calls.len(), 4);
    // Not JSON: passed through verbatim for the tools layer to judge.
    assert_eq!(calls[0].arguments, "{name: 'Pro',");
    // A JSON object instead of a string: serialised.
    let args: Value = serde_json::from_str(&calls[1].arguments).unwrap();
    assert_eq!(args, json!({"id": "prod_1", "active": false}));
    // Made-up ids never clash with given ones.
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_1", "call_2", "call_0", "x"]);
    assert_eq!(calls[2].arguments, "{}");
    assert_eq!(calls[3].name, "");
    assert_eq!(response.finish_reason, None);
}

#[tokio::test]
async fn huge_arguments_pass_whole() {
    let big = "x".repeat(1024 * 1024);
    let args = json!({"description": big}).to_string();
    let server = Endpoint::start(vec![
        Reply::json(completion(
            json!({"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "create_product", "arguments": args}}
            ]}),
            json!("tool_calls"),
            None,
        )),
        Reply::sse(vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                    "function": {"name": "create_product", "arguments": args}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ]),
    ])
    .await;
    let model = server.model();
    let plain = run(&model, false).await.0.unwrap();
    assert_eq!(plain.message.tool_calls[0].arguments, args);
    let streamed = run(&model, true).await.0.unwrap();
    assert_eq!(streamed.message.tool_calls[0].arguments, args);
}

#[tokio::test]
async fn non_json_body_is_a_bad_response_naming_it() {
    let server = Endpoint::start(vec![Reply::status(200, "text/plain", "Welcome to nginx!")]).await;
    let result = run(&server.model(), false).await.0;
    match result {
        Err(ModelError::BadResponse(m)) => {
            assert!(
                m.contains("not JSON") && m.contains("Welcome to nginx!"),
                "{m}"
            )
        }
        other => panic!("expected BadResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn non_json_stream_chunk_is_a_bad_response() {
    let server = Endpoint::start(vec![Reply::Sse {
        events: vec!["<html>".into()],
        done: true,
        broken: false,
    }])
    .await;
    let result = run(&server.model(), true).await.0;
    assert!(
        matches!(result, Err(ModelError::BadResponse(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------- status codes and retries

#[tokio::test]
async fn html_502_is_retried_then_reported_with_its_text() {
    let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let server = Endpoint::start(vec![
        Reply::status(502, "text/html", page),
        Reply::status(502, "text/html", page),
        Reply::status(502, "text/html", page),
    ])
    .await;
    let result = run(&server.model(), false).await.0;
    match result {
        Err(ModelError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, 502);
            assert!(message.contains("502 Bad Gateway"), "{message}");
        }
        other => panic!("expected a 502, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
}

// Paused time: the second of Retry-After passes on Tokio's clock without being waited for.
#[tokio::test(start_paused = true)]
async fn rate_limit_honours_retry_after_then_succeeds() {
    let server = Endpoint::start(vec![
        Reply::status(
            429,
            "application/json",
            r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
        )
        .header("retry-after", "1"),
        text_answer("after the wait"),
    ])
    .await;
    // Backoff alone would wait at most 5 ms: a wait of about a second is Retry-After's.
    let started = Instant::now();
    let response = run(&server.model(), false).await.0;
    assert_eq!(
        response.unwrap().message.content.as_deref(),
        Some("after the wait")
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_with_a_long_retry_after_is_reported_not_waited() {
    let server = Endpoint::start(vec![
        Reply::status(
            429,
            "application/json",
            r#"{"error":{"message":"slow down"}}"#,
        )
        .header("retry-after", "3600"),
    ])
    .await;
    let result = run(&server.model(), false).await.0;
    assert_eq!(
        result,
        Err(ModelError::Status {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(3600)),
        })
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let server = Endpoint::start(vec![
        Reply::status(
            400,
            "application/json",
            r#"{"error":{"message":"Invalid schema for function 'x'","type":"invalid_request_error","param":"tools[0]","code":null}}"#,
        ),
        text_answer("must not be used"),
    ])
    .await;
    let result = run(&server.model(), false).await.0;
    assert_eq!(
        result,
        Err(ModelError::Status {
            status: 400,
            message: "Invalid schema for function 'x'".into(),
            retry_after: None,
        })
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let server = Endpoint::start(vec![
        Reply::status(500, "application/json", r#"{"error":{"message":"boom"}}"#),
        text_answer("recovered"),
    ])
    .await;
    let response = run(&server.model(), false).await.0.unwrap();
    assert_eq!(response.message.content.as_deref(), Some("recovered"));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn slow_server_times_out_as_transport() {
    let server = Endpoint::start(vec![text_answer("late").delayed(Duration::from_secs(3))]).await;
    let mut config = server.config();
    config.timeout = Duration::from_millis(200);
    config.retry = RetryPolicy::none();
    let model = OpenAiModel::new(config).unwrap();
    let result = run(&model, false).await.0;
    assert!(
        matches!(result, Err(ModelError::Transport(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error() {
    // Bind then drop, so the port is very likely closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = OpenAiConfig {
        base_url: format!("http://{addr}/v1"),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_secs(1),
        },
        ..OpenAiConfig::default()
    };
    let model = OpenAiModel::new(config).unwrap();
    let result = run(&model, false).await.0;
    assert!(
        matches!(result, Err(ModelError::Transport(_))),
        "{result:?}"
    );
}

#[test]
fn config_debug_hides_the_key() {
    let config = OpenAiConfig {
        api_key: Some("sk-secret-123".into()),
        ..OpenAiConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("sk-secret-123"), "{shown}");
    assert!(shown.contains("redacted"));
}

#[tokio::test]
async fn a_streamed_answer_past_the_answer_limit_is_cut_marked_and_not_passed_on() {
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for _ in 0..8 {
        chunks.push(chunk(json!({"content": "0123456789"}), Value::Null));
    }
    chunks.push(chunk(json!({}), json!("stop")));
    let server = Endpoint::start(vec![Reply::sse(chunks)]).await;
    let mut config = server.config();
    config.max_answer_bytes = 25;
    let model = OpenAiModel::new(config).unwrap();
    let (result, deltas) = run(&model, true).await;
    let response = result.unwrap();
    let text = response.message.content.unwrap_or_default();
    assert!(
        text.starts_with("0123456789012345678901234\n\n[answer cut at 25 bytes"),
        "{text}"
    );
    assert_eq!(response.finish_reason, Some(FinishReason::Length));
    let passed_on: usize = deltas
        .iter()
        .map(|d| match d {
            ModelDelta::Text(t) => t.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(passed_on, 25, "{deltas:?}");
    assert_eq!(server.requests()[0].json()["max_completion_tokens"], 4096);
}
