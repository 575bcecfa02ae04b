//! `altan-pay serve` killed with SIGKILL in the middle of a turn, after a Stripe write and
//! before the answer, then restarted on the same database: the thread still works and the
//! next answer hands the committed write to Altan. The process is really killed.

#[path = "support/openai_script.rs"]
mod script;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use altan_pay::gateway::PayRequest;
use script::{ScriptServer, gateway, native_body};
use serde_json::{Value, json};

fn start_serve(port: u16, db: &std::path::Path, pay: &str, model: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--pay-base-url",
            pay,
            "--db",
        ])
        .arg(db)
        .env("OPENAI_BASE_URL", model)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ALTAN_PAY_SERVER_TOKENS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_up(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up at {base}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn products(sandbox: &altan_pay::gateway::Sandbox) -> Vec<Value> {
    let body = sandbox
        .handle_now(&PayRequest {
            operation: "products.list".into(),
            account_id: "ws_1".into(),
            stripe_connect_id: Some(altan_pay::gateway::sandbox::derived_connect_id("ws_1")),
            id: None,
            params: serde_json::Map::new(),
            idempotency_key: None,
        })
        .body;
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Whether the thread's stored session holds a Stripe change not yet handed over.
fn unsynced_on_disk(db: &std::path::Path, thread: &str) -> bool {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return false;
    };
    let text: Option<String> = conn
        .query_row(
            "SELECT session FROM sessions WHERE thread_id = ?1",
            [thread],
            |r| r.get(0),
        )
        .ok();
    text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|s| s["unsynced"].as_array().is_some_and(|u| !u.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_after_a_stripe_write_loses_nothing() {
    let (gateway, sandbox) = gateway().await;
    let script = ScriptServer::start().await;
    script.tool_call("c1", "create_product", json!({"name": "Pro"}));
    // The second model call never answers in time: the server dies while waiting for it.
    script.push(Box::new(|_| {
        std::thread::sleep(Duration::from_secs(4));
        Ok(json!({"content": "too late"}))
    }));
    script.text("Here is where things stand.");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = start_serve(port, &db, &gateway.base_url, &script.base_url);
    wait_up(&base).await;

    let client = reqwest::Client::new();
    let post = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            client
                .post(format!("{base}/v1/threads/t1/messages"))
                .json(&native_body("Create a product called Pro"))
                .send()
                .await
        })
    };
    // Wait until Stripe has the product and the model is asked again: the write is done and
    // the answer is not. The session save after the write is committed while the model is
    // asked, so also wait until the file shows it (read on a connection of the test's own).
    let mut ready = false;
    for _ in 0..200 {
        if products(&sandbox).len() == 1 && script.calls() >= 2 && unsynced_on_disk(&db, "t1") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "the turn did not reach the second model call");
    first.kill().unwrap(); // SIGKILL
    let _ = first.wait();
    let lost = post.await.unwrap();
    assert!(
        lost.is_err() || !lost.unwrap().status().is_success(),
        "the first answer never arrived"
    );

    // Same database, new process: the thread continues and the write is handed over.
    let mut second = start_serve(port, &db, &gateway.base_url, &script.base_url);
    wait_up(&base).await;
    let answer: Value = client
        .post(format!("{base}/v1/threads/t1/messages"))
        .json(&native_body("Did it work?"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = second.kill();
    let _ = second.wait();

    let stripe = products(&sandbox);
    assert_eq!(stripe.len(), 1, "one product in Stripe");
    let ops = answer["sync_plan"]["operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ops.len(), 1, "{answer}");
    assert_eq!(ops[0]["table"], "products");
    assert_eq!(ops[0]["key"]["id"], stripe[0]["id"]);
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(
        text.trim_end().ends_with("[@Altan](/member/altan-1)"),
        "{text}"
    );
}
