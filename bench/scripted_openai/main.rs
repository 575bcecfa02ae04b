//! The scripted OpenAI-compatible model server of the side-by-side benchmark (`bench/run.sh`).
//!
//! `POST /v1/chat/completions` answers from the conversation state, the same for every client:
//! - no assistant tool call yet → one `create_product` call;
//! - one assistant tool call round → two `create_price` calls (monthly and yearly) for the
//!   `prod_...` id found in the latest tool result;
//! - otherwise → the final text with the handoff.
//!
//! No latency is added: what the clients measure is their own overhead plus loopback HTTP.
//! With `--count-tokens` each answer's `usage` is measured on the request body (o200k):
//! `prompt_tokens` the whole body, `prompt_tokens_details.cached_tokens` the bytes it shares
//! with the previous request from the start (what a prompt cache would reuse); each call is
//! also logged on stderr. Streamed requests are answered as SSE chunks.
//! Usage: `cargo run --release --example scripted_openai -- --addr 127.0.0.1:PORT [--count-tokens]`

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The tokenizer and the previous body, with `--count-tokens`.
struct Counter {
    bpe: tiktoken_rs::CoreBPE,
    previous: std::sync::Mutex<Vec<u8>>,
}

static COUNTER: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();

/// `usage` measured on the body (zeros without `--count-tokens`).
fn measured_usage(body: &[u8]) -> Value {
    let Some(c) = COUNTER.get() else {
        return json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    };
    let count = |b: &[u8]| {
        c.bpe
            .encode_with_special_tokens(&String::from_utf8_lossy(b))
            .len()
    };
    let mut previous = c.previous.lock().unwrap_or_else(|e| e.into_inner());
    let shared = previous
        .iter()
        .zip(body)
        .take_while(|(a, b)| a == b)
        .count();
    // Cut at a character boundary so the prefix counts as text.
    let shared = (0..=shared)
        .rev()
        .find(|&i| std::str::from_utf8(&body[..i]).is_ok())
        .unwrap_or(0);
    let (prompt, cached) = (count(body), count(&body[..shared]));
    *previous = body.to_vec();
    eprintln!("model call: {prompt} tokens, {cached} in the prefix shared with the previous call");
    json!({"prompt_tokens": prompt, "completion_tokens": 20, "total_tokens": prompt + 20,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

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

async fn chat(raw: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": e, "type": "invalid_request_error"}})),
        )
            .into_response()
    };
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    let mut answer = match answer(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    answer["usage"] = measured_usage(&raw);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return (StatusCode::OK, Json(answer)).into_response();
    }
    // One chunk with the whole message, one with the finish reason, one with the usage.
    let choice = &answer["choices"][0];
    let mut delta = choice["message"].clone();
    if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for (i, call) in calls.iter_mut().enumerate() {
            call["index"] = json!(i);
        }
    }
    let chunk = |choices: Value, usage: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"],
                   "model": answer["model"], "choices": choices, "usage": usage})
        )
    };
    let mut out = chunk(
        json!([{"index": 0, "delta": delta, "finish_reason": null}]),
        Value::Null,
    );
    out.push_str(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]),
        Value::Null,
    ));
    out.push_str(&chunk(json!([]), answer["usage"].clone()));
    out.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], out).into_response()
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
            "--count-tokens" => {
                let bpe = tiktoken_rs::o200k_base()?;
                let _ = COUNTER.set(Counter {
                    bpe,
                    previous: Default::default(),
                });
            }
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
