//! The OpenAI-compatible endpoint over real HTTP, with reqwest and with the official `openai`
//! Python SDK as clients (installed by scripts/install-test-python.sh).

#[path = "support/openai_script.rs"]
mod script;

use script::{Options, ScriptServer, gateway, parse_sse, serve, venv_python};
use serde_json::{Value, json};

fn chat(text: &str) -> Value {
    json!({"model": "altan-pay", "messages": [{"role": "user", "content": text}],
           "metadata": {"thread_id": "oa-1", "account_id": "ws_1"}})
}

#[tokio::test]
async fn non_streamed_completion_runs_tools_and_fills_usage() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.text("Created the Pro plan.");
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.base_url);
    let r: Value = client
        .post(&url)
        .json(&chat("Create a Pro plan"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], "altan-pay");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("Created the Pro plan.") && text.contains("\"table\":\"products\""),
        "{text}"
    );
    assert_eq!(r["usage"]["total_tokens"], 30);
    assert_eq!(r["altan_pay"]["thread_id"], "oa-1");
    assert_eq!(
        r["altan_pay"]["sync_plan"]["operations"][0]["table"],
        "products"
    );
    // The model saw our own prompt and tools, not the client's.
    let first = &script.requests()[0];
    assert_eq!(first["messages"][0]["role"], "system");
    let tools = first["tools"].as_array().unwrap();
    assert!(
        tools
            .iter()
            .any(|t| t["function"]["name"] == "create_product"),
        "{tools:?}"
    );

    // The client resends the whole conversation: only the new user message is taken in.
    script.text("Nothing else to do.");
    let body = json!({"model": "altan-pay", "metadata": {"thread_id": "oa-1", "account_id": "ws_1"},
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Create a Pro plan"},
        {"role": "assistant", "content": text},
        {"role": "user", "content": "Anything else?"}
    ]});
    let r: Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(second.starts_with("Nothing else to do."), "{second}");
    assert!(
        second.contains("never confirmed"),
        "the unconfirmed sync is reported: {second}"
    );
    let sent = &script.requests()[2]["messages"];
    let users: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(users[1].contains("Anything else?"));

    let models: Value = client
        .get(format!("{}/v1/models", server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "altan-pay");
}

#[tokio::test]
async fn streamed_completion_is_chunks_then_done() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.text("Created the Pro plan.");
    let mut body = chat("Create a Pro plan");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base_url))
        .header("x-altan-account-id", "ws_1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().data, json!("[DONE]"));
    let chunks: Vec<&Value> = events
        .iter()
        .map(|e| &e.data)
        .filter(|d| d.is_object())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        content.starts_with("Created the Pro plan.") && content.contains("products"),
        "{content}"
    );
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"] == "stop")
        .unwrap();
    assert_eq!(
        finish["altan_pay"]["sync_plan"]["operations"][0]["table"],
        "products"
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 30);
}

const PY_CLIENT: &str = r#"
import json, os
from openai import OpenAI
client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["TOKEN"], max_retries=0,
                default_headers={"X-Altan-Account-Id": "ws_1", "X-Altan-Member-Id": "pay-1"})
out = {"models": [m.id for m in client.models.list().data]}
first = [{"role": "user", "content": "Create a Pro plan product"}]
r = client.chat.completions.create(model="altan-pay", messages=first, user="py-thread")
out["text"] = r.choices[0].message.content
out["usage"] = r.usage.total_tokens
out["finish"] = r.choices[0].finish_reason
out["tables"] = [o["table"] for o in r.model_extra["altan_pay"]["sync_plan"]["operations"]]
msgs = first + [{"role": "assistant", "content": out["text"]}, {"role": "user", "content": "Anything else?"}]
stream = client.chat.completions.create(model="altan-pay", messages=msgs, user="py-thread",
                                        stream=True, stream_options={"include_usage": True})
parts, out["stream_usage"], out["stream_finish"] = [], None, None
for chunk in stream:
    if chunk.usage:
        out["stream_usage"] = chunk.usage.total_tokens
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            out["stream_finish"] = c.finish_reason
out["stream_text"] = "".join(parts)
try:
    client.chat.completions.create(model="altan-pay", messages=first,
                                   extra_headers={"X-Altan-Account-Id": "ws_2"}, user="py-other")
    out["forbidden"] = None
except Exception as e:
    out["forbidden"] = getattr(e, "status_code", None)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_streamed_and_not() {
    let python = venv_python();
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        tokens: Some("py-token-123=ws_1"),
        ..Options::default()
    };
    let server = serve(&script, &gw, &dir.path().join("s.db"), options).await;
    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.text("Created the Pro plan.");
    script.text("Nothing else to do.");
    let base = server.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg("-c")
            .arg(PY_CLIENT)
            .env("BASE", base)
            .env("TOKEN", "py-token-123")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["models"], json!(["altan-pay"]));
    assert!(
        out["text"]
            .as_str()
            .unwrap()
            .starts_with("Created the Pro plan.")
    );
    assert!(
        out["text"].as_str().unwrap().ends_with("@Altan"),
        "{}",
        out["text"]
    );
    assert_eq!(out["usage"], 30);
    assert_eq!(out["finish"], "stop");
    assert_eq!(out["tables"], json!(["products"]));
    assert!(
        out["stream_text"]
            .as_str()
            .unwrap()
            .starts_with("Nothing else to do.")
    );
    assert_eq!(out["stream_usage"], 15);
    assert_eq!(out["stream_finish"], "stop");
    assert_eq!(out["forbidden"], 403);
    assert_eq!(
        script.calls(),
        3,
        "the forbidden request never reached the model"
    );
}

/// A model answer cut at its output limit inside a code block: the client gets
/// `finish_reason: length` (streamed and not), the native status `cut`, and a text whose code
/// block is closed, which says it was cut and ends with the one mention.
#[tokio::test]
async fn an_answer_cut_at_the_output_limit_finishes_with_length() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    let cut = || -> script::Reply {
        Box::new(|_| {
            Ok(
                json!({"content": "Here it is:\n```json\n{\"name\": \"Pro", "finish_reason": "length"}),
            )
        })
    };
    script.push(cut());
    script.push(cut());
    let url = format!("{}/v1/chat/completions", server.base_url);
    let client = reqwest::Client::new();
    let r: Value = client
        .post(&url)
        .json(&chat("Show me the product JSON"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    assert_eq!(r["altan_pay"]["status"], "cut", "{r}");
    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains(altan_pay::sync::CUT_NOTE), "{text}");
    let fences = text
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    assert_eq!(fences % 2, 0, "a code block is left open: {text}");
    assert!(
        text.lines().last().unwrap_or_default().contains("@Altan"),
        "{text}"
    );

    let mut body = chat("Show me the product JSON again");
    body["stream"] = json!(true);
    let sse = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let finishes: Vec<Value> = parse_sse(&sse)
        .into_iter()
        .filter_map(|c| c.data["choices"][0].get("finish_reason").cloned())
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, vec![json!("length")], "{sse}");
}
