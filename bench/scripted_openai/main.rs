//! The scripted OpenAI-compatible model server of the side-by-side benchmark (`bench/run.sh`).
//!
//! `POST /v1/chat/completions` answers from the conversation state, the same for every client:
//! - no assistant tool call yet → one `create_product` call;
//! - one assistant tool call round → two `create_price` calls (monthly and yearly) for the
//!   `prod_...` id found in the latest tool result;
//! - otherwise → the final text with the handoff.
//!
//! No latency is added: what the clients measure is their own overhead plus loopback HTTP.
//! Usage: `cargo run --release --example scripted_openai -- --addr 127.0.0.1:PORT`

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The first `prod_...` id in a text, if any.
fn find_product_id(text: &str) -> Option<String> {
    let start = text.find("prod_")?;
    let id: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (id.len() > "prod_".len()).then_some(id)
}

fn tool_calls(n: u64, calls: Vec<(String, &str, Value)>) -> Value {
    let calls: Vec<Value> = calls
        .into_iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    completion(
        n,
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
        "tool_calls",
    )
}

fn completion(n: u64, message: Value, finish: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

/// The answer for a request body, from the conversation state alone.
pub fn answer(body: &Value) -> Result<Value, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("the request has no `messages` array")?;
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let rounds = messages
        .iter()
        .filter(|m| {
            m.get("role").and_then(Value::as_str) == Some("assistant")
                && m.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty())
        })
        .count();
    match rounds {
        0 => Ok(tool_calls(
            n,
            vec![(
                format!("call_{n}_p"),
                "create_product",
                json!({"name": "Pro"}),
            )],
        )),
        1 => {
            let last_tool = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
                .ok_or("no tool result after the create_product call")?;
            let product = find_product_id(&last_tool.to_string())
                .ok_or("no prod_ id in the latest tool result")?;
            Ok(tool_calls(
                n,
                vec![
                    (
                        format!("call_{n}_m"),
                        "create_price",
                        json!({"product": product, "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month"}}),
                    ),
                    (
                        format!("call_{n}_y"),
                        "create_price",
                        json!({"product": product, "unit_amount": 20000, "currency": "usd", "recurring": {"interval": "year"}}),
                    ),
                ],
            ))
        }
        _ => Ok(completion(
            n,
            json!({"role": "assistant", "content": "Created Pro with a monthly ($20) and a yearly ($200) price. @Altan please add the product and its two prices to the database."}),
            "stop",
        )),
    }
}

async fn chat(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "streaming is not scripted", "type": "invalid_request_error"}}),
            ),
        );
    }
    match answer(&body) {
        Ok(v) => (StatusCode::OK, Json(v)),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": e, "type": "invalid_request_error"}})),
        ),
    }
}

async fn calls() -> String {
    CALLS.load(Ordering::Relaxed).to_string()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:8790".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/calls", get(calls));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("scripted model on http://{}/v1", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
