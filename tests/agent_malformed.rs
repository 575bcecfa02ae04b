//! The malformed-model-output catalogue through the whole agent and the real OpenAI client:
//! a local OpenAI-compatible server sends each kind of bad answer; the agent never panics,
//! answers every call, and the history it sends next stays valid.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use altan_pay::agent::{Agent, AnswerEnd};
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::model::ChatMessage;
use altan_pay::model::openai::{OpenAiConfig, OpenAiModel};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use support::assert_history_valid;

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Value>>,
    requests: Mutex<Vec<Value>>,
}

async fn completions(State(s): State<Arc<Script>>, Json(body): Json<Value>) -> Json<Value> {
    s.requests.lock().unwrap().push(body);
    let next = s.answers.lock().unwrap().pop_front();
    Json(next.unwrap_or_else(|| {
        completion(
            json!({"role": "assistant", "content": "done"}),
            Some("stop"),
        )
    }))
}

fn completion(message: Value, finish: Option<&str>) -> Value {
    let mut choice = json!({"index": 0, "message": message});
    if let Some(f) = finish {
        choice["finish_reason"] = json!(f);
    }
    json!({"choices": [choice]})
}

fn call(id: Option<&str>, name: &str, arguments: Value) -> Value {
    let mut c = json!({"type": "function", "function": {"name": name, "arguments": arguments}});
    if let Some(id) = id {
        c["id"] = json!(id);
    }
    c
}

async fn run(answers: Vec<Value>) -> (altan_pay::agent::Answer, Vec<Value>) {
    let script = Arc::new(Script::default());
    script.answers.lock().unwrap().extend(answers);
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(Sandbox::in_memory()), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url))).unwrap();
    let config = OpenAiConfig {
        base_url: model_url,
        stream: false,
        ..OpenAiConfig::default()
    };
    let model = Arc::new(OpenAiModel::new(config).unwrap());
    let agent = Agent::builder().model(model).pay(pay).build().unwrap();
    let context = AgentContext {
        account_id: Some("ws_1".into()),
        ..AgentContext::default()
    };
    let said = RoomMessage {
        member_id: "u".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create a product called Pro".into(),
    };
    let answer = agent.respond("t", &context, &[said]).await.unwrap();
    let requests = script.requests.lock().unwrap().clone();
    (answer, requests)
}

/// Every request the agent sent has a valid history.
fn assert_requests_valid(requests: &[Value]) {
    for r in requests {
        let messages: Vec<ChatMessage> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut m = m.clone();
                // The wire form nests calls under `function`; flatten for the checker.
                if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for c in calls.iter_mut() {
                        *c = json!({"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]});
                    }
                }
                serde_json::from_value(m).unwrap()
            })
            .collect();
        assert_history_valid(&messages);
    }
}

#[tokio::test]
async fn each_malformed_answer_is_handled_and_the_history_stays_valid() {
    let huge = "x".repeat(1_000_000);
    /// The model server's answers, in order, named by what is wrong with them.
    struct Case {
        name: &'static str,
        answers: Vec<Value>,
    }
    let cases = vec![
        Case {
            name: "empty choices",
            answers: vec![json!({"choices": []})],
        },
        Case {
            name: "missing finish_reason",
            answers: vec![completion(
                json!({"role": "assistant", "content": "ok"}),
                None,
            )],
        },
        Case {
            name: "arguments that are not JSON",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [call(Some("a"), "create_product", json!("{name: Pro"))]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "JSON with wrong types",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [call(Some("a"), "create_product", json!("{\"name\": 5}"))]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "unknown tool",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [call(Some("a"), "refund_everything", json!("{}"))]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "tool call with no id",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [call(None, "get_products", json!("{}")), call(None, "get_coupons", json!("{}"))]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "tool call with no name",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [{"id": "z", "type": "function", "function": {"arguments": "{}"}}]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "huge arguments",
            answers: vec![completion(
                json!({"role": "assistant", "tool_calls": [call(Some("a"), "create_product", json!(format!("{{\"name\": \"{huge}\"}}")))]}),
                Some("tool_calls"),
            )],
        },
        Case {
            name: "not JSON at all",
            answers: vec![json!("<html>oops</html>")],
        },
    ];
    for Case { name, answers } in cases {
        let (answer, requests) = run(answers).await;
        assert!(
            !answer.text.is_empty(),
            "{name}: an answer is always composed"
        );
        assert_eq!(
            answer.text.matches('@').count(),
            1,
            "{name}: {}",
            answer.text
        );
        assert_requests_valid(&requests);
        match name {
            "empty choices" | "not JSON at all" => {
                assert!(
                    matches!(answer.end, AnswerEnd::ModelFailed { .. }),
                    "{name}: {:?}",
                    answer.end
                )
            }
            _ => assert_eq!(
                answer.end,
                AnswerEnd::Completed,
                "{name}: {:?}",
                answer.end.reason()
            ),
        }
        if name != "empty choices" && name != "not JSON at all" && name != "missing finish_reason" {
            assert!(
                requests.len() >= 2,
                "{name}: the model was told about its mistake and asked again"
            );
        }
    }
}
