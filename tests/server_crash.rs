//! `altan-pay serve` killed with SIGKILL in the middle of a turn, after a Stripe write and
//! before the answer (or while the write's answer is still on its way), then restarted on the
//! same database: the thread still works and the next answer hands the committed write to
//! Altan. The process is really killed.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;
#[path = "support/wait.rs"]
mod wait;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use altan_pay::gateway::PayRequest;
use process::{free_port, port_guard, wait_up};
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

/// `serve` as its own process on a port and database of its own.
struct Served {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    port: u16,
    base: String,
    pay: String,
    model: String,
    child: Child,
}

impl Served {
    async fn start(pay: &str, model: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sessions.db");
        let guard = port_guard().await;
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let child = start_serve(port, &db, pay, model);
        wait_up(&base).await;
        drop(guard);
        Served {
            _dir: dir,
            db,
            port,
            base,
            pay: pay.to_string(),
            model: model.to_string(),
            child,
        }
    }

    /// SIGKILL, then the same binary on the same port and database, answering again.
    async fn kill_and_restart(&mut self) {
        let _guard = port_guard().await;
        self.child.kill().unwrap();
        let _ = self.child.wait();
        self.child = start_serve(self.port, &self.db, &self.pay, &self.model);
        wait_up(&self.base).await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The answer hands over exactly the one product Stripe has.
fn assert_one_product_handed_over(sandbox: &altan_pay::gateway::Sandbox, answer: &Value) {
    let stripe = products(sandbox);
    assert_eq!(stripe.len(), 1, "one product in Stripe: {stripe:?}");
    let ops = answer["sync_plan"]["operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ops.len(), 1, "{answer}");
    assert_eq!(ops[0]["table"], "products");
    assert_eq!(ops[0]["key"]["id"], stripe[0]["id"]);
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

/// Posts a user message to thread `t1`.
async fn send(
    client: reqwest::Client,
    base: String,
    text: &'static str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/v1/threads/t1/messages"))
        .json(&native_body(text))
        .send()
        .await
}

/// Whether the thread's stored session holds a Stripe change not yet handed over.
fn unsynced_on_disk(db: &std::path::Path, thread: &str) -> bool {
    stored_session(db, thread)
        .is_some_and(|s| s["unsynced"].as_array().is_some_and(|u| !u.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_after_a_stripe_write_loses_nothing() {
    let (gateway, sandbox) = gateway().await;
    let script = ScriptServer::start().await;
    script.tool_call("c1", "create_product", json!({"name": "Pro"}));
    // The second model call is answered only once the server that asked is dead (the reply
    // waits for the test to let it go; a minute at most, so nothing hangs if the test fails).
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    script.push(Box::new(move |_| {
        let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(60));
        Ok(json!({"content": "too late"}))
    }));
    script.text("Here is where things stand.");

    let mut served = Served::start(&gateway.base_url, &script.base_url).await;
    let client = reqwest::Client::new();
    let post = tokio::spawn(send(
        client.clone(),
        served.base.clone(),
        "Create a product called Pro",
    ));
    // Wait until Stripe has the product and the model is asked again: the write is done and
    // the answer is not. The session save after the write is committed while the model is
    // asked, so also wait until the file shows it (read on a connection of the test's own).
    let ready = wait::until(Duration::from_secs(4), || {
        products(&sandbox).len() == 1 && script.calls() >= 2 && unsynced_on_disk(&served.db, "t1")
    })
    .await;
    assert!(ready, "the turn did not reach the second model call");
    // Same database, new process: the thread continues and the write is handed over.
    served.kill_and_restart().await;
    drop(release);
    let lost = post.await.unwrap();
    assert!(
        lost.is_err() || !lost.unwrap().status().is_success(),
        "the first answer never arrived"
    );
    let answer: Value = send(client.clone(), served.base.clone(), "Did it work?")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(served);
    assert_one_product_handed_over(&sandbox, &answer);
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(
        text.trim_end().ends_with("[@Altan](/member/altan-1)"),
        "{text}"
    );
}

/// Killed while Stripe has committed a write and its answer is still on the way: the agent
/// recorded the write in the session before sending it, so after the restart the next answer
/// replays it with the same idempotency key, gets the first attempt's object back (no second
/// product) and hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_while_a_write_is_in_flight_loses_nothing() {
    use altan_pay::gateway::faults::{Fault, FaultPlan, FaultRule, FaultyBackend};
    use altan_pay::gateway::{Sandbox, spawn};
    use altan_pay::pay::RouteTable;
    use std::sync::Arc;

    let sandbox = Sandbox::in_memory().deterministic(7);
    let slow_answer = FaultPlan::new(1).rule(
        FaultRule::new(
            "products.create",
            Fault::Delay {
                delay: Duration::from_secs(20),
                after_commit: true,
            },
        )
        .times(1),
    );
    let backend = FaultyBackend::new(Arc::new(sandbox.clone()), slow_answer);
    let gateway = spawn(RouteTable::embedded(), Arc::new(backend), None)
        .await
        .unwrap();
    let script = ScriptServer::start().await;
    script.tool_call("c1", "create_product", json!({"name": "Pro"}));
    script.text("Here is where things stand.");

    let mut served = Served::start(&gateway.base_url, &script.base_url).await;
    let client = reqwest::Client::new();
    let post = tokio::spawn(send(
        client.clone(),
        served.base.clone(),
        "Create a product called Pro",
    ));
    let ready = wait::until(Duration::from_secs(5), || {
        products(&sandbox).len() == 1 && uncertain_on_disk(&served.db, "t1")
    })
    .await;
    assert!(ready, "the write was not committed and recorded");
    assert_eq!(script.calls(), 1, "the write's answer has not arrived");
    served.kill_and_restart().await;
    post.abort();
    let answer: Value = send(client.clone(), served.base.clone(), "Did it work?")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(served);

    assert_one_product_handed_over(&sandbox, &answer);
    let confirm = answer["tool_calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["id"] == "c1-confirm"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        confirm["result"]["id"],
        products(&sandbox)[0]["id"],
        "{answer}"
    );
}

/// Whether the thread's stored session holds a write whose outcome is not known yet.
fn uncertain_on_disk(db: &std::path::Path, thread: &str) -> bool {
    stored_session(db, thread)
        .is_some_and(|s| s["uncertain"].as_array().is_some_and(|u| !u.is_empty()))
}

fn stored_session(db: &std::path::Path, thread: &str) -> Option<Value> {
    let conn = rusqlite::Connection::open(db).ok()?;
    let text: String = conn
        .query_row(
            "SELECT session FROM sessions WHERE thread_id = ?1",
            [thread],
            |r| r.get(0),
        )
        .ok()?;
    serde_json::from_str(&text).ok()
}
