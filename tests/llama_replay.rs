//! The tool-call leg on real server bytes: responses of llama.cpp's `llama-server` captured
//! with scripts/capture-llama-recordings.sh (tests/data/llama/README.md says how), replayed
//! byte for byte by a loopback HTTP server to altan-pay's Chat Completions wire. The small
//! model of the live tests does not call tools by itself, so this is where the shapes a real
//! server sends for tool calls are exercised: random ids, arguments as JSON strings, streamed
//! fragments keyed by index, a usage chunk with empty `choices`. No llama-server is needed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, ModelDelta, OpenAiConfig, OpenAiModel,
    RetryPolicy,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/llama")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One recorded response: its body exactly as llama-server sent it.
#[derive(Clone)]
struct Recording {
    body: String,
    sse: bool,
}

fn recording(name: &str) -> Recording {
    Recording {
        body: data(name),
        sse: name.ends_with(".sse"),
    }
}

/// A loopback HTTP server that answers the n-th request with the n-th recording (the last one
/// again after that) and keeps the request bodies.
struct Replay {
    base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Replay {
    async fn start(recordings: Vec<Recording>) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let Some(body) = read_request(&mut socket).await else {
                    continue;
                };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    seen.len() - 1
                };
                let r = recordings[n.min(recordings.len() - 1)].clone();
                tokio::spawn(async move {
                    if r.sse {
                        // As the server does: headers, then one write per event, then close.
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                    Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        for event in r.body.split_inclusive("\n\n") {
                            let _ = socket.write_all(event.as_bytes()).await;
                            let _ = socket.flush().await;
                        }
                    } else {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            r.body.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(r.body.as_bytes()).await;
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Replay { base_url, requests }
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request; its body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

fn model(base_url: &str) -> OpenAiModel {
    OpenAiModel::new(OpenAiConfig {
        base_url: base_url.to_string(),
        api_key: None,
        model: "smollm2-135m-instruct".into(),
        retry: RetryPolicy::none(),
        ..OpenAiConfig::default()
    })
    .unwrap()
}

/// The request of the recordings: the tools they were captured with, as altan-pay sends them.
fn request() -> ChatRequest {
    let captured: Value = serde_json::from_str(&data("tool-calls.request.json")).unwrap();
    let tools = captured["tools"].as_array().unwrap().clone();
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are Altan Pay."),
            ChatMessage::user("Create a product called Pro with a monthly price of $20."),
        ]
        .into(),
        tools: tools.into(),
    }
}

/// The tool calls of a recorded non-streamed response, read straight from its JSON.
fn calls_in_json(body: &Value) -> Vec<(String, String, String)> {
    body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["function"]["name"].as_str().unwrap().to_string(),
                c["function"]["arguments"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The tool calls of a recorded stream, read straight from its chunks: id and name from the
/// first fragment of each index, arguments joined by index.
fn calls_in_sse(body: &str) -> (Vec<(String, String, String)>, Vec<Value>) {
    let chunks: Vec<Value> = body
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in &chunks {
        for choice in chunk["choices"].as_array().unwrap() {
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                if calls.len() <= index {
                    calls.resize(index + 1, Default::default());
                }
                if let Some(id) = call["id"].as_str() {
                    calls[index].0 = id.to_string();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    calls[index].1.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    calls[index].2.push_str(args);
                }
            }
        }
    }
    (calls, chunks)
}

fn got_calls(message: &ChatMessage) -> Vec<(String, String, String)> {
    message
        .tool_calls
        .iter()
        .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
        .collect()
}

#[tokio::test]
async fn recorded_llama_server_tool_calls_are_read_with_their_ids_and_json_string_arguments() {
    let recorded: Value = serde_json::from_str(&data("tool-calls.json")).unwrap();
    let expected = calls_in_json(&recorded);
    assert!(!expected.is_empty(), "the recording has no tool call");
    for (id, _, arguments) in &expected {
        assert!(id.len() >= 16, "a server-made random id: {id}");
        let args: Value = serde_json::from_str(arguments).unwrap();
        assert!(args.is_object(), "arguments are a JSON object in a string");
    }
    let replay = Replay::start(vec![recording("tool-calls.json")]).await;
    let response = model(&replay.base_url)
        .complete(&request(), None)
        .await
        .unwrap();
    assert_eq!(got_calls(&response.message), expected);
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.usage.prompt_tokens,
        recorded["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        response.usage.completion_tokens,
        recorded["usage"]["completion_tokens"].as_u64().unwrap()
    );
    // What llama-server sent next to the calls, kept as the message's text.
    let text = recorded["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        response.message.content.as_deref().unwrap_or_default(),
        text
    );
    assert_eq!(replay.requests().len(), 1);
}

#[tokio::test]
async fn recorded_streamed_llama_server_tool_calls_are_joined_by_index_with_usage_from_the_last_chunk()
 {
    let body = data("tool-calls-stream.sse");
    let (expected, chunks) = calls_in_sse(&body);
    assert!(!expected.is_empty(), "the recording has no tool call");
    let usage_chunk = chunks
        .iter()
        .find(|c| c["choices"] == json!([]) && c["usage"].is_object())
        .expect("the recording ends with a usage chunk with empty choices");
    let indexes: Vec<u64> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .map(|call| call["index"].as_u64().unwrap())
        .collect();
    assert!(
        indexes.contains(&1),
        "the calls' fragments are keyed by index: {indexes:?}"
    );

    let replay = Replay::start(vec![recording("tool-calls-stream.sse")]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let response = model(&replay.base_url)
        .complete(&request(), Some(tx))
        .await
        .unwrap();
    assert_eq!(got_calls(&response.message), expected);
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.usage.total_tokens,
        usage_chunk["usage"]["total_tokens"].as_u64().unwrap()
    );
    let mut started = Vec::new();
    let mut arguments = vec![String::new(); expected.len()];
    while let Ok(delta) = rx.try_recv() {
        match delta {
            ModelDelta::ToolCallStarted { index, id, name } => started.push((index, id, name)),
            ModelDelta::ToolCallArguments { index, fragment } => arguments[index] += &fragment,
            ModelDelta::Text(_) => {}
        }
    }
    let want_started: Vec<(usize, String, String)> = expected
        .iter()
        .enumerate()
        .map(|(i, (id, name, _))| (i, id.clone(), name.clone()))
        .collect();
    assert_eq!(started, want_started, "each call announced once, in order");
    let want_arguments: Vec<String> = expected.iter().map(|c| c.2.clone()).collect();
    assert_eq!(
        arguments, want_arguments,
        "the fragments, passed on as they came"
    );
    let sent = &replay.requests()[0];
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn recorded_llama_server_answers_are_read_as_text_plain_and_streamed() {
    let plain: Value = serde_json::from_str(&data("answer.json")).unwrap();
    let replay = Replay::start(vec![recording("answer.json")]).await;
    let response = model(&replay.base_url)
        .complete(&request(), None)
        .await
        .unwrap();
    assert_eq!(
        response.message.content.as_deref(),
        plain["choices"][0]["message"]["content"].as_str()
    );
    assert!(response.message.tool_calls.is_empty());
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));

    let body = data("answer-stream.sse");
    let (_, chunks) = calls_in_sse(&body);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let replay = Replay::start(vec![recording("answer-stream.sse")]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let response = model(&replay.base_url)
        .complete(&request(), Some(tx))
        .await
        .unwrap();
    assert_eq!(response.message.content.as_deref(), Some(text.as_str()));
    let mut streamed = String::new();
    while let Ok(delta) = rx.try_recv() {
        if let ModelDelta::Text(t) = delta {
            streamed += &t;
        }
    }
    assert_eq!(streamed, text);
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
}

/// `altan-pay demo` with its model at the replay: the recorded calls run in the sandbox, the
/// recorded answer ends the turn, and the answer hands the product over to Altan.
async fn demo_on_recordings(recordings: Vec<Recording>, stream: bool) -> (String, Vec<Value>) {
    let replay = Replay::start(recordings).await;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_altan-pay"));
    command
        .arg("demo")
        .env("OPENAI_BASE_URL", &replay.base_url)
        .env_remove("OPENAI_API_KEY")
        .env("ALTAN_PAY_MODEL", "smollm2-135m-instruct")
        .env(
            "ALTAN_PAY_MODEL_STREAM",
            if stream { "true" } else { "false" },
        )
        .env_remove("ALTAN_PAY_MODEL_API")
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (stdout, replay.requests())
}

fn check_turn(stdout: &str, requests: &[Value], calls: &[(String, String, String)]) {
    assert!(
        stdout.contains("→ create_product"),
        "the recorded call ran: {stdout}"
    );
    assert!(
        stdout.contains("operation(s) for Altan to apply")
            && stdout.contains("  - upsert products prod_"),
        "the product is in the sync plan: {stdout}"
    );
    assert!(
        stdout.contains("Handoff: one mention, [@Altan](/member/altan-1), at the end."),
        "{stdout}"
    );
    // The second request carries the recorded calls back, under the server's own ids.
    assert!(requests.len() >= 2, "{requests:?}");
    let sent = requests[1]["messages"].as_array().unwrap();
    let assistant = sent
        .iter()
        .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .unwrap();
    let ids: Vec<&str> = assistant["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, want);
    for id in want {
        assert!(
            sent.iter()
                .any(|m| m["role"] == "tool" && m["tool_call_id"] == id),
            "a tool result for {id}"
        );
    }
}

#[tokio::test]
async fn a_demo_turn_on_recorded_llama_server_tool_calls_ends_with_the_sync_plan() {
    let calls = calls_in_json(&serde_json::from_str(&data("tool-calls.json")).unwrap());
    let (stdout, requests) = demo_on_recordings(
        vec![recording("tool-calls.json"), recording("answer.json")],
        false,
    )
    .await;
    check_turn(&stdout, &requests, &calls);
}

#[tokio::test]
async fn a_streamed_demo_turn_on_recorded_llama_server_tool_calls_ends_with_the_sync_plan() {
    let (calls, _) = calls_in_sse(&data("tool-calls-stream.sse"));
    let (stdout, requests) = demo_on_recordings(
        vec![
            recording("tool-calls-stream.sse"),
            recording("answer-stream.sse"),
        ],
        true,
    )
    .await;
    check_turn(&stdout, &requests, &calls);
}
