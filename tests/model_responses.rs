//! The Responses API wire (`ALTAN_PAY_MODEL_API=responses`) against a scripted Responses
//! server on 127.0.0.1: written from OpenAI's published reference for `POST /v1/responses`,
//! it checks the shape of every request it receives (refusing a malformed one with 400, as
//! the real API does) and answers from a queue of response objects.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altan_pay::agent::{Agent, AgentEvent, TurnOptions};
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, ModelApi, ModelDelta, ModelError,
    OpenAiConfig, OpenAiModel, RetryPolicy, ToolDefs,
};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

/// Makes the response object from the request body, or an error `(status, message)`.
type Reply = Box<dyn Fn(&Value) -> Result<Value, (u16, String)> + Send + Sync>;

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<Value>,
}

#[derive(Clone)]
struct ResponsesServer {
    base_url: String,
    script: Arc<Mutex<Script>>,
}

impl ResponsesServer {
    async fn start(replies: Vec<Reply>) -> ResponsesServer {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            requests: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/v1/responses", axum::routing::post(respond))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ResponsesServer { base_url, script }
    }

    fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap().requests.clone()
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
            max_completion_tokens: Some(321),
            api: ModelApi::Responses,
            ..OpenAiConfig::default()
        }
    }

    fn model(&self) -> OpenAiModel {
        OpenAiModel::new(self.config()).unwrap()
    }
}

async fn respond(State(script): State<Arc<Mutex<Script>>>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("not JSON: {e}")),
    };
    if let Err(problem) = check_request(&request) {
        return error(400, &problem);
    }
    let reply = {
        let mut script = script.lock().unwrap();
        script.requests.push(request.clone());
        script.replies.pop_front()
    };
    match reply.map(|r| r(&request)) {
        Some(Ok(response)) if request["stream"] == true => (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            sse(&response),
        )
            .into_response(),
        Some(Ok(response)) => axum::Json(response).into_response(),
        Some(Err((status, message))) => error(status, &message),
        None => error(400, "the script has no reply left"),
    }
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// The response object as the reference's stream of events: `response.created`, per output
/// item `response.output_item.added`, its text or arguments in two `…delta` pieces and
/// `response.output_item.done`, then `response.completed` (or `.incomplete`, `.failed`)
/// carrying the whole object.
fn sse(response: &Value) -> String {
    let mut events = Vec::new();
    let mut created = response.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    events.push(json!({"type": "response.created", "response": created}));
    for (i, item) in response["output"].as_array().unwrap().iter().enumerate() {
        let id = item["id"].clone();
        let mut added = item.clone();
        match item["type"].as_str() {
            Some("message") => {
                added["content"] = json!([]);
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                for (c, part) in item["content"].as_array().unwrap().iter().enumerate() {
                    for piece in halves(part["text"].as_str().unwrap_or("")) {
                        events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": i, "content_index": c, "delta": piece}));
                    }
                }
            }
            Some("function_call") => {
                added["arguments"] = json!("");
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                for piece in halves(item["arguments"].as_str().unwrap_or("")) {
                    events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": i, "delta": piece}));
                }
                events.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": i, "arguments": item["arguments"]}));
            }
            _ => events.push(
                json!({"type": "response.output_item.added", "output_index": i, "item": added}),
            ),
        }
        events.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    let end = match response["status"].as_str() {
        Some("incomplete") => "response.incomplete",
        Some("failed") => "response.failed",
        _ => "response.completed",
    };
    events.push(json!({"type": end, "response": response}));
    events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            event["sequence_number"] = json!(n);
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap()
            )
        })
        .collect()
}

/// A text in two pieces (on a character boundary), or none when empty.
fn halves(text: &str) -> Vec<String> {
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    [&text[..mid], &text[mid..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the reference says a create-response body is, as far as this runtime uses it.
fn check_request(body: &Value) -> Result<(), String> {
    if !body["model"].is_string() {
        return Err("`model` is required".into());
    }
    if body.get("messages").is_some() {
        return Err("`messages` is a Chat Completions field".into());
    }
    if body.get("max_completion_tokens").is_some() {
        return Err("`max_completion_tokens` is a Chat Completions field".into());
    }
    let Some(input) = body["input"].as_array() else {
        return Err("`input` must be a list of items".into());
    };
    for tool in body["tools"].as_array().into_iter().flatten() {
        if tool["type"] != "function" || !tool["name"].is_string() || tool.get("function").is_some()
        {
            return Err(format!("a function tool is flat (type, name, ...): {tool}"));
        }
    }
    let mut called = Vec::new();
    for item in input {
        match item["type"].as_str() {
            Some("message") => {
                let role = item["role"].as_str().unwrap_or("");
                if !["user", "assistant", "system", "developer"].contains(&role) {
                    return Err(format!("a message item has role {role:?}"));
                }
                if !item["content"].is_string() && !item["content"].is_array() {
                    return Err("a message item needs content".into());
                }
            }
            Some("function_call") => {
                for key in ["call_id", "name", "arguments"] {
                    if !item[key].is_string() {
                        return Err(format!("a function_call item needs {key}"));
                    }
                }
                called.push(item["call_id"].clone());
            }
            Some("function_call_output") => {
                if !item["output"].is_string() {
                    return Err("a function_call_output item needs output".into());
                }
                if !called.contains(&item["call_id"]) {
                    return Err(format!(
                        "no function_call with call_id {} before its output",
                        item["call_id"]
                    ));
                }
            }
            Some("reasoning") => {
                if !item["id"].is_string() {
                    return Err("a reasoning item goes back as it came, with its id".into());
                }
            }
            other => return Err(format!("unknown input item type {other:?}")),
        }
    }
    Ok(())
}

/// A completed response object with these output items.
fn response(output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "model": "test-model",
        "output": output,
        "usage": usage,
    })
}

fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    })
}

fn message_item(text: &str) -> Value {
    json!({
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn call_item(call_id: &str, name: &str, arguments: Value) -> Value {
    json!({
        "type": "function_call",
        "id": format!("fc_{call_id}"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments.to_string(),
        "status": "completed",
    })
}

fn reasoning_item(id: &str) -> Value {
    json!({
        "type": "reasoning",
        "id": id,
        "summary": [],
        "encrypted_content": format!("gAAA-{id}-opaque"),
    })
}

fn answer(body: Value) -> Reply {
    Box::new(move |_| Ok(body.clone()))
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": format!("{name} tool"),
        "parameters": {"type": "object", "properties": {}},
        "strict": false,
    }})
}

fn request(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        messages: Arc::new(messages),
        tools: ToolDefs::from(vec![tool("create_product"), tool("get_products")]),
    }
}

fn input_types(body: &Value) -> Vec<String> {
    body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn a_text_answer_is_read_with_its_usage_and_cached_tokens() {
    let server = ResponsesServer::start(vec![
        answer(response(
            vec![message_item("Two products.")],
            usage(1200, 1024, 30, 0),
        )),
        answer(response(
            vec![message_item("Still two.")],
            usage(1300, 1200, 20, 0),
        )),
    ])
    .await;
    let model = OpenAiModel::new(OpenAiConfig {
        stream: false,
        ..server.config()
    })
    .unwrap();
    let first = request(vec![
        ChatMessage::system("You are Altan Pay."),
        ChatMessage::user("Which products do we have?"),
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = model.complete(&first, Some(tx)).await.unwrap();
    assert_eq!(r.message.content.as_deref(), Some("Two products."));
    assert!(r.message.tool_calls.is_empty());
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.usage.prompt_tokens, 1200);
    assert_eq!(r.usage.cached_tokens, 1024);
    assert_eq!(r.usage.completion_tokens, 30);
    assert_eq!(r.usage.total_tokens, 1230);
    // Streaming off: one plain request, the text passed on as a delta at the end.
    assert_eq!(
        rx.recv().await,
        Some(ModelDelta::Text("Two products.".into()))
    );

    let mut second = (*first.messages).clone();
    second.push(r.message);
    second.push(ChatMessage::user("And now?"));
    model.complete(&request(second), None).await.unwrap();

    let sent = server.requests();
    let body = &sent[0];
    assert_eq!(body["stream"], false);
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["instructions"], "You are Altan Pay.");
    assert_eq!(body["store"], false);
    assert_eq!(body["max_output_tokens"], 321);
    assert_eq!(
        body["input"],
        json!([{"type": "message", "role": "user", "content": "Which products do we have?"}])
    );
    assert_eq!(body["tools"][0]["name"], "create_product");
    assert_eq!(body["tools"][0]["description"], "create_product tool");
    assert_eq!(body["tools"][0]["strict"], false);
    // One cache key for the configuration: both calls carry the same one.
    let key = body["prompt_cache_key"].as_str().unwrap();
    assert!(key.starts_with("altan-pay-"), "{key}");
    assert_eq!(sent[1]["prompt_cache_key"], key);
    assert_eq!(
        input_types(&sent[1]),
        ["message", "message", "message"],
        "user, the earlier answer, user"
    );
    assert_eq!(sent[1]["input"][1]["role"], "assistant");
    assert_eq!(sent[1]["input"][1]["content"], "Two products.");
}

#[tokio::test]
async fn a_function_call_becomes_a_tool_call_and_its_result_goes_back_under_the_same_call_id() {
    let server = ResponsesServer::start(vec![
        answer(response(
            vec![call_item(
                "call_Ab12",
                "create_product",
                json!({"name": "Pro"}),
            )],
            usage(900, 0, 12, 0),
        )),
        answer(response(
            vec![message_item("Created Pro.")],
            usage(950, 900, 5, 0),
        )),
    ])
    .await;
    let model = server.model();
    let mut messages = vec![
        ChatMessage::system("You are Altan Pay."),
        ChatMessage::user("Create a product Pro"),
    ];
    let first = model
        .complete(&request(messages.clone()), None)
        .await
        .unwrap();
    assert_eq!(first.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(first.message.content, None);
    let call = &first.message.tool_calls[0];
    assert_eq!(call.id, "call_Ab12", "the call_id, not the item id");
    assert_eq!(call.name, "create_product");
    assert_eq!(call.arguments, r#"{"name":"Pro"}"#);

    messages.push(first.message.clone());
    messages.push(ChatMessage::tool_result("call_Ab12", r#"{"id":"prod_1"}"#));
    let second = model.complete(&request(messages), None).await.unwrap();
    assert_eq!(second.message.content.as_deref(), Some("Created Pro."));

    let body = &server.requests()[1];
    assert_eq!(
        input_types(body),
        ["message", "function_call", "function_call_output"]
    );
    assert_eq!(
        body["input"][1],
        json!({"type": "function_call", "call_id": "call_Ab12", "name": "create_product", "arguments": "{\"name\":\"Pro\"}"})
    );
    assert_eq!(
        body["input"][2],
        json!({"type": "function_call_output", "call_id": "call_Ab12", "output": "{\"id\":\"prod_1\"}"})
    );
}

#[tokio::test]
async fn a_reasoning_item_of_the_first_answer_is_sent_back_in_the_second_request_of_the_turn() {
    let server = ResponsesServer::start(vec![
        answer(response(
            vec![
                reasoning_item("rs_7"),
                call_item("call_1", "get_products", json!({})),
            ],
            usage(800, 0, 40, 32),
        )),
        answer(response(
            vec![message_item("None yet.")],
            usage(850, 800, 5, 0),
        )),
    ])
    .await;
    let model = server.model();
    let mut messages = vec![
        ChatMessage::system("You are Altan Pay."),
        ChatMessage::user("Which products do we have?"),
    ];
    let first = model
        .complete(&request(messages.clone()), None)
        .await
        .unwrap();
    assert_eq!(first.usage.reasoning_tokens, 32);
    assert_eq!(first.message.reasoning, Some(vec![reasoning_item("rs_7")]));
    // The reasoning survives the session store's JSON round trip.
    let stored = serde_json::to_string(&first.message).unwrap();
    let restored: ChatMessage = serde_json::from_str(&stored).unwrap();
    assert_eq!(restored, first.message);

    messages.push(restored);
    messages.push(ChatMessage::tool_result("call_1", "[]"));
    model.complete(&request(messages), None).await.unwrap();

    let sent = server.requests();
    assert_eq!(sent[0]["include"], json!(["reasoning.encrypted_content"]));
    let body = &sent[1];
    assert_eq!(
        input_types(body),
        [
            "message",
            "reasoning",
            "function_call",
            "function_call_output"
        ],
        "the reasoning item goes back right before the call it led to"
    );
    assert_eq!(
        body["input"][1],
        reasoning_item("rs_7"),
        "as it came, byte for byte"
    );
}

#[tokio::test]
async fn a_message_without_reasoning_is_stored_as_before() {
    let text = serde_json::to_value(ChatMessage::assistant("hi")).unwrap();
    assert_eq!(text, json!({"role": "assistant", "content": "hi"}));
    let old: ChatMessage = serde_json::from_value(json!({"role": "user", "content": "x"})).unwrap();
    assert_eq!(old.reasoning, None);
}

#[tokio::test]
async fn an_answer_cut_at_max_output_tokens_ends_with_finish_reason_length() {
    let mut cut = response(
        vec![message_item("Here is the table:\n| name |")],
        usage(700, 0, 321, 0),
    );
    cut["status"] = json!("incomplete");
    cut["incomplete_details"] = json!({"reason": "max_output_tokens"});
    let server = ResponsesServer::start(vec![answer(cut)]).await;
    let r = server
        .model()
        .complete(
            &request(vec![
                ChatMessage::system("s"),
                ChatMessage::user("List everything"),
            ]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        r.message.content.as_deref(),
        Some("Here is the table:\n| name |")
    );
}

#[tokio::test]
async fn an_unknown_model_api_setting_is_a_config_error_naming_it() {
    // SAFETY: no other test of this binary reads the environment.
    unsafe { std::env::set_var("ALTAN_PAY_MODEL_API", "assistants") };
    let config = OpenAiConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        ..OpenAiConfig::from_env()
    };
    unsafe { std::env::remove_var("ALTAN_PAY_MODEL_API") };
    assert_eq!(config.api, ModelApi::Unknown("assistants".into()));
    let err = OpenAiModel::new(config).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("ALTAN_PAY_MODEL_API") && m.contains("assistants") && m.contains("responses")),
        "{err}"
    );
    assert_eq!(ModelApi::from_setting("Responses"), ModelApi::Responses);
    assert_eq!(ModelApi::from_setting("chat"), ModelApi::ChatCompletions);
    assert_eq!(OpenAiConfig::default().api, ModelApi::ChatCompletions);
}

#[tokio::test]
async fn an_error_status_is_retried_under_the_same_policy_and_a_bad_request_is_not() {
    let server = ResponsesServer::start(vec![
        Box::new(|_| Err((503, "overloaded".into()))),
        answer(response(vec![message_item("ok")], usage(1, 0, 1, 0))),
        Box::new(|_| Err((400, "bad tool schema".into()))),
    ])
    .await;
    let model = server.model();
    let req = request(vec![ChatMessage::system("s"), ChatMessage::user("hi")]);
    let r = model.complete(&req, None).await.unwrap();
    assert_eq!(r.message.content.as_deref(), Some("ok"));
    let err = model.complete(&req, None).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Status { status: 400, message, .. } if message.contains("bad tool schema")),
        "{err}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_body_that_is_not_a_response_is_a_bad_response() {
    let server = ResponsesServer::start(vec![answer(json!({"choices": []}))]).await;
    let err = server
        .model()
        .complete(&request(vec![ChatMessage::user("hi")]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::BadResponse(m) if m.contains("no output")),
        "{err}"
    );
}

#[tokio::test]
async fn a_whole_agent_turn_over_the_responses_wire_creates_a_product_and_ends_with_the_sync_plan()
{
    let sent = agent_turn_creating_pro(None).await;
    assert_eq!(sent[0]["stream"], false);
}

#[tokio::test]
async fn a_streamed_agent_turn_over_the_responses_wire_passes_the_text_on_and_keeps_the_reasoning()
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sent = agent_turn_creating_pro(Some(tx)).await;
    assert_eq!(sent[0]["stream"], true);
    let mut text = String::new();
    let mut started = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            AgentEvent::TextDelta { text: t } => text.push_str(&t),
            AgentEvent::ToolCallStarted { id, name, .. } => started.push((id, name)),
            _ => {}
        }
    }
    assert!(text.starts_with("Created Pro (prod_"), "{text}");
    assert_eq!(
        started,
        [("call_pro".to_string(), "create_product".to_string())]
    );
}

/// One turn of an agent on the embedded sandbox gateway, over the Responses wire: the model
/// reasons and creates Pro, then reports the id it got back. Checks the answer and the second
/// request; returns the requests.
async fn agent_turn_creating_pro(events: Option<UnboundedSender<AgentEvent>>) -> Vec<Value> {
    let server = ResponsesServer::start(vec![
        answer(response(
            vec![
                reasoning_item("rs_turn"),
                call_item("call_pro", "create_product", json!({"name": "Pro"})),
            ],
            usage(2500, 0, 40, 24),
        )),
        Box::new(|body: &Value| {
            // The tool's result is in the request, under the call's id.
            let output = body["input"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "function_call_output" && i["call_id"] == "call_pro")
                .ok_or((400, "no result for call_pro".to_string()))?;
            let product: Value = serde_json::from_str(output["output"].as_str().unwrap())
                .map_err(|e| (400, e.to_string()))?;
            let id = product["id"].as_str().unwrap_or("?").to_string();
            Ok(response(
                vec![message_item(&format!("Created Pro ({id})."))],
                usage(2600, 2500, 10, 0),
            ))
        }),
    ])
    .await;
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(Sandbox::in_memory()), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url))).unwrap();
    let agent = Agent::builder()
        .model(Arc::new(server.model()))
        .pay(pay)
        .build()
        .unwrap();
    let context = AgentContext {
        account_id: Some("ws_1".into()),
        ..AgentContext::default()
    };
    let said = vec![RoomMessage {
        member_id: "u".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create a product Pro".into(),
    }];
    let options = TurnOptions {
        events,
        cancel: None,
    };
    let answer = agent
        .respond_with("t-responses", &context, &said, options)
        .await
        .unwrap();

    let text = &answer.text;
    assert!(text.contains("Created Pro (prod_"), "{text}");
    let plan = answer.sync_plan.as_ref().expect("a sync plan");
    assert_eq!(plan.operations().len(), 1, "{text}");
    assert!(text.contains(plan.sync_id()), "{text}");
    let sent = server.requests();
    assert_eq!(sent.len(), 2);
    let second = input_types(&sent[1]);
    let reasoning = second
        .iter()
        .position(|t| t == "reasoning")
        .expect("reasoning sent back");
    let call = second.iter().position(|t| t == "function_call").unwrap();
    assert_eq!(call, reasoning + 1, "{second:?}");
    assert_eq!(sent[1]["input"][reasoning], reasoning_item("rs_turn"));
    assert_eq!(sent[0]["prompt_cache_key"], sent[1]["prompt_cache_key"]);
    sent
}

#[tokio::test]
async fn a_streamed_answer_passes_text_and_call_pieces_on_as_they_arrive_and_ends_like_a_plain_one()
{
    let output = vec![
        reasoning_item("rs_s"),
        message_item("Creating Pro now."),
        call_item("call_s1", "create_product", json!({"name": "Pro"})),
    ];
    let server = ResponsesServer::start(vec![
        answer(response(output.clone(), usage(500, 256, 20, 8))),
        answer(response(output, usage(500, 256, 20, 8))),
    ])
    .await;
    let req = request(vec![
        ChatMessage::system("s"),
        ChatMessage::user("Create Pro"),
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let streamed = server.model().complete(&req, Some(tx)).await.unwrap();
    let mut deltas = Vec::new();
    while let Ok(d) = rx.try_recv() {
        deltas.push(d);
    }
    let text: Vec<&str> = deltas
        .iter()
        .filter_map(|d| match d {
            ModelDelta::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, ["Creating", " Pro now."], "two pieces, as sent");
    assert!(deltas.contains(&ModelDelta::ToolCallStarted {
        index: 0,
        id: "call_s1".into(),
        name: "create_product".into(),
    }));
    let args: String = deltas
        .iter()
        .filter_map(|d| match d {
            ModelDelta::ToolCallArguments { index: 0, fragment } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(args, r#"{"name":"Pro"}"#);
    assert_eq!(server.requests()[0]["stream"], true);

    let plain = OpenAiModel::new(OpenAiConfig {
        stream: false,
        ..server.config()
    })
    .unwrap()
    .complete(&req, None)
    .await
    .unwrap();
    assert_eq!(
        streamed, plain,
        "the same answer, reasoning and usage either way"
    );
    assert_eq!(streamed.usage.cached_tokens, 256);
    assert_eq!(
        streamed.message.reasoning,
        Some(vec![reasoning_item("rs_s")])
    );
}

#[tokio::test]
async fn a_stream_that_ends_without_its_final_event_is_a_bad_response() {
    let app = axum::Router::new().route(
        "/v1/responses",
        axum::routing::post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hel\"}\n\n",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let model = OpenAiModel::new(OpenAiConfig {
        base_url,
        api_key: None,
        model: "m".into(),
        api: ModelApi::Responses,
        ..OpenAiConfig::default()
    })
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = model
        .complete(&request(vec![ChatMessage::user("hi")]), Some(tx))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::BadResponse(m) if m.contains("response.completed")),
        "{err}"
    );
    assert_eq!(rx.try_recv(), Ok(ModelDelta::Text("Hel".into())));
}
