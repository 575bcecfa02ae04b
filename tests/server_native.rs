//! The native thread API over real HTTP: a scripted OpenAI-compatible model server, the
//! sandbox gateway, and `serve` in-process; reqwest as the client (JSON and SSE).

#[path = "support/openai_script.rs"]
mod script;
#[path = "support/wait.rs"]
mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use altan_pay::policy::PolicyConfig;
use script::{Options, ScriptServer, gateway, native_body, parse_sse, serve};
use serde_json::{Value, json};

async fn post(base: &str, thread: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/threads/{thread}/messages"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn product_then_text(script: &ScriptServer, text: &str) {
    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.text(text);
}

#[tokio::test]
async fn json_turn_creates_a_product_and_hands_the_sync_plan_to_altan() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    product_then_text(&script, "Created the Pro plan product.");

    let (status, answer) = post(
        &server.base_url,
        "t-json",
        &native_body("Create a Pro plan product"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    let ops = answer["sync_plan"]["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["table"], "products");
    assert_eq!(ops[0]["op"], "upsert");
    assert_eq!(answer["handoff"]["who"], "Altan");
    assert_eq!(answer["handoff"]["member_id"], "altan-1");
    assert!(
        answer["handoff"]["task"]
            .as_str()
            .unwrap()
            .contains("products")
    );
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .ends_with("[@Altan](/member/altan-1)")
    );
    assert_eq!(answer["tool_calls"][0]["name"], "create_product");
    assert_eq!(answer["usage"]["total_tokens"], 30);
    assert_eq!(script.remaining(), 0);

    // The thread shows the sync as pending until Altan confirms it.
    let thread: Value = reqwest::get(format!("{}/v1/threads/t-json", server.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(thread["answers"], 1);
    assert_eq!(thread["account_id"], "ws_1");
    let pending = thread["pending_syncs"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["sync_id"], answer["sync_plan"]["sync_id"]);
    assert_eq!(pending[0]["status"]["status"], "pending");
}

#[tokio::test]
async fn sse_turn_streams_parts_and_ends_with_response_completed() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    product_then_text(&script, "Created the Pro plan product.");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/threads/t-sse/messages", server.base_url))
        .header("accept", "text/event-stream")
        .json(&native_body("Create a Pro plan product"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.started"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let tool_done = events
        .iter()
        .find(|e| e.event == "message_part.completed" && e.data["type"] == "tool")
        .expect("a completed tool part");
    assert_eq!(tool_done.data["name"], "create_product");
    assert!(
        tool_done.data["result"]["id"]
            .as_str()
            .unwrap()
            .starts_with("prod_")
    );
    let tool_added = events
        .iter()
        .find(|e| e.event == "message_part.added" && e.data["type"] == "tool")
        .unwrap();
    assert!(
        tool_added.data["arguments"]
            .as_str()
            .unwrap()
            .contains("Pro plan")
    );
    let streamed: String = events
        .iter()
        .filter(|e| e.event == "message_part.updated" && e.data["type"] == "text")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "Created the Pro plan product.");
    assert!(names.contains(&"message_part.completed"));
    let done = &events.last().unwrap().data;
    assert_eq!(done["sync_plan"]["operations"][0]["table"], "products");
    assert_eq!(done["handoff"]["who"], "Altan");
}

#[tokio::test]
async fn a_model_failure_ends_the_turn_but_the_sync_plan_still_goes_to_altan() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;

    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.error(400, "context window exceeded");
    let (status, answer) = post(&server.base_url, "t-fail", &native_body("Create Pro")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["error"]["type"], "model_failed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context window exceeded")
    );
    assert_eq!(answer["sync_plan"]["operations"][0]["table"], "products");

    // Over SSE the same failure is `response.failed` carrying the plan.
    script.tool_call("c1", "create_product", json!({"name": "Team plan"}));
    script.error(400, "overloaded");
    let body = reqwest::Client::new()
        .post(format!(
            "{}/v1/threads/t-fail-sse/messages",
            server.base_url
        ))
        .header("accept", "text/event-stream")
        .json(&native_body("Create Team"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&body);
    let last = events.last().unwrap();
    assert_eq!(last.event, "response.failed");
    assert!(last.data["reason"].as_str().unwrap().contains("overloaded"));
    assert_eq!(
        last.data["response"]["sync_plan"]["operations"][0]["table"],
        "products"
    );
}

#[tokio::test]
async fn destructive_calls_wait_for_an_approval_over_http() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        policy: PolicyConfig::gate_destructive(),
        ..Options::default()
    };
    let server = serve(&script, &gw, &dir.path().join("s.db"), options).await;
    script.tool_call("c1", "create_product", json!({"name": "Old plan"}));
    // Deletes the product the tool just created (its id comes from the tool result).
    script.push(Box::new(|req: &Value| {
        let last = req["messages"].as_array().unwrap().last().unwrap();
        let created: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        Ok(
            json!({"content": null, "tool_calls": [{"id": "c2", "type": "function",
            "function": {"name": "delete_product", "arguments": json!({"id": id}).to_string()}}]}),
        )
    }));
    script.text("Deleting Old plan needs your approval.");
    let (_, answer) = post(
        &server.base_url,
        "t-appr",
        &native_body("Create then delete Old plan"),
    )
    .await;
    let approval = answer["approvals"][0]["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answer["approvals"][0]["tool"], "delete_product");

    let client = reqwest::Client::new();
    let url = |id: &str| format!("{}/v1/threads/t-appr/approvals/{id}", server.base_url);
    let missing = client
        .post(url("appr_nope"))
        .json(&json!({"approve": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["type"], "approval_not_found");

    script.text("Old plan is deleted.");
    let resumed: Value = client
        .post(url(&approval))
        .json(&json!({"approve": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["status"], "completed", "{resumed}");
    let ops = resumed["sync_plan"]["operations"].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|o| o["op"] == "delete" && o["table"] == "products"),
        "{resumed}"
    );
}

#[tokio::test]
async fn idempotency_keys_replay_the_answer_and_refuse_another_body() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    product_then_text(&script, "Created.");
    let client = reqwest::Client::new();
    let send = |body: Value, accept: &'static str| {
        client
            .post(format!("{}/v1/threads/t-idem/messages", server.base_url))
            .header("idempotency-key", "key-1")
            .header("accept", accept)
            .json(&body)
            .send()
    };
    let first: Value = send(native_body("Create Pro"), "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(script.calls(), 2);
    let again = send(native_body("Create Pro"), "application/json")
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(script.calls(), 2, "a replay never calls the model");
    // The replay also comes as SSE when asked.
    let events = parse_sse(
        &send(native_body("Create Pro"), "text/event-stream")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap().event, "response.completed");
    assert_eq!(events.last().unwrap().data["sync_plan"], first["sync_plan"]);

    let conflict = send(native_body("Create Team"), "application/json")
        .await
        .unwrap();
    assert_eq!(conflict.status(), 422);
    let body: Value = conflict.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_key_reused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(script.calls(), 2);
}

#[tokio::test]
async fn sessions_survive_a_restart_on_the_same_database() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let server = serve(&script, &gw, &db, Options::default()).await;
    product_then_text(&script, "Created the Pro plan.");
    let (_, first) = post(
        &server.base_url,
        "t-restart",
        &native_body("Create Pro plan"),
    )
    .await;
    server.shutdown().await.unwrap();

    let server = serve(&script, &gw, &db, Options::default()).await;
    script.text("Nothing else to change.");
    let mut body = native_body("Altan confirmed, anything else?");
    body["messages"][0]["text"] = json!("Anything else?");
    let (status, second) = post(&server.base_url, "t-restart", &body).await;
    assert_eq!(status, 200, "{second}");
    let request = script.requests().last().unwrap().clone();
    let history = request["messages"].to_string();
    assert!(
        history.contains("Create Pro plan"),
        "the thread continues: {history}"
    );
    assert!(history.contains("create_product"));
    assert!(first["sync_plan"].is_object());
    let thread: Value = reqwest::get(format!("{}/v1/threads/t-restart", server.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(thread["answers"], 2);
}

/// A reply that waits (up to `wait`) until `want` model calls are in flight at once, and
/// records the most it saw.
fn rendezvous(
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    want: usize,
    wait: Duration,
) -> script::Reply {
    Box::new(move |_| {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        let start = Instant::now();
        while in_flight.load(Ordering::SeqCst) < want && start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(5));
        }
        most.fetch_max(in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"content": "done"}))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_threads_run_together_and_one_thread_runs_in_order() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;

    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let wait = Duration::from_secs(5);
    script.push(rendezvous(in_flight.clone(), most.clone(), 2, wait));
    script.push(rendezvous(in_flight.clone(), most.clone(), 2, wait));
    let base = server.base_url.clone();
    let (ba, bb) = (native_body("hello a"), native_body("hello b"));
    let (a, b) = tokio::join!(post(&base, "t-a", &ba), post(&base, "t-b", &bb));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "two threads were answered at the same time"
    );

    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Each call waits a little for a second one, which must not come.
    let wait = Duration::from_millis(500);
    script.push(rendezvous(in_flight.clone(), most.clone(), 2, wait));
    script.push(rendezvous(in_flight.clone(), most.clone(), 2, wait));
    let (ba, bb) = (native_body("first"), native_body("second"));
    let (a, b) = tokio::join!(post(&base, "t-same", &ba), post(&base, "t-same", &bb));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one thread's turns never overlap"
    );
    let last = script.requests().last().unwrap()["messages"].to_string();
    assert!(
        last.contains("first") && last.contains("second"),
        "the later turn saw the earlier one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_turn_in_flight() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    script.push(Box::new(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Ok(json!({"content": "Slow but done."}))
    }));
    let base = server.base_url.clone();
    let body = native_body("hello");
    let turn = tokio::spawn(async move { post(&base, "t-slow", &body).await });
    let reached = wait::until(Duration::from_secs(10), || script.calls() > 0).await;
    assert!(reached, "the turn did not reach the model");
    server.shutdown().await.unwrap();
    let (status, answer) = turn.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "completed");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .starts_with("Slow but done.")
    );
}
