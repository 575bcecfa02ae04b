//! Three `altan-pay serve` processes on one PostgreSQL, behind them one shared gateway (the
//! embedded sandbox, served by this test process) and one scripted model. Turns are sent
//! round robin so that the same thread is hit on different replicas at once; the thread's
//! lease lets one turn run at a time. The second test kills a replica with SIGKILL while a
//! Stripe write is in flight: the next answer on that thread, from another replica, confirms
//! the write with its own key and hands it over, and nothing is applied twice.
//!
//! Needs ALTAN_PAY_TEST_DATABASE_URL (scripts/with-postgres.sh); without it each test prints
//! a note and passes without running.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;
#[path = "support/postgres.rs"]
mod test_pg;
#[path = "support/wait.rs"]
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use altan_pay::gateway::{PayRequest, Sandbox};
use process::{free_port, port_guard, wait_up};
use script::{Reply, ScriptServer, native_body};
use serde_json::{Value, json};
use test_pg::{database_url, fresh_database};

/// One `serve` process.
struct Replica {
    base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(database: &str, pay: &str, model: &str) -> Replica {
        Replica::start_with(database, pay, model, "60").await
    }

    async fn start_with(database: &str, pay: &str, model: &str, wait_secs: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let guard = port_guard().await;
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--pay-base-url", pay, "--thread-wait-secs", wait_secs])
            .current_dir(dir.path())
            .env("ALTAN_PAY_DATABASE_URL", database)
            .env("OPENAI_BASE_URL", model)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ALTAN_PAY_SERVER_TOKENS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_up(&base).await;
        drop(guard);
        Replica {
            base,
            child,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the model saw of one turn: when its first call came (the user's message last) and
/// when its last one did (the tool's result last).
#[derive(Debug, Clone)]
struct TurnRecord {
    thread: String,
    turn: String,
    started: Instant,
    ended: Option<Instant>,
}

type Records = Arc<Mutex<Vec<TurnRecord>>>;

/// A model reply that works from the request alone, so the order in which replicas call the
/// shared model does not matter: a user message `<thread> turn <n>` gets one
/// `create_product` call named after it; the tool's result, or any other message, gets a
/// short text.
fn responder(records: Records) -> Reply {
    Box::new(move |request: &Value| {
        let messages = request["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or_default();
        if last["role"] == "tool" {
            let name = messages
                .iter()
                .rev()
                .filter_map(|m| m["tool_calls"][0]["function"]["arguments"].as_str())
                .find_map(|a| serde_json::from_str::<Value>(a).ok())
                .and_then(|a| a["name"].as_str().map(str::to_string))
                .unwrap_or_default();
            let mut records = records.lock().unwrap();
            if let Some(r) = records
                .iter_mut()
                .rev()
                .find(|r| r.turn == name && r.ended.is_none())
            {
                r.ended = Some(Instant::now());
            }
            return Ok(json!({"content": "Created."}));
        }
        let text = last["content"].as_str().unwrap_or_default();
        // The room message reaches the model with its sender in front.
        let Some(turn) = text.split("Create a product named ").nth(1) else {
            return Ok(json!({"content": "Here is where things stand."}));
        };
        let turn = turn.trim().to_string();
        let thread = turn.split('.').next().unwrap_or_default().to_string();
        records.lock().unwrap().push(TurnRecord {
            thread,
            turn: turn.clone(),
            started: Instant::now(),
            ended: None,
        });
        let call = json!([{"id": format!("call-{turn}"), "type": "function",
            "function": {"name": "create_product", "arguments": json!({"name": turn}).to_string()}}]);
        Ok(json!({"content": null, "tool_calls": call}))
    })
}

fn products(sandbox: &Sandbox) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = serde_json::Map::new();
        params.insert("limit".into(), json!(100));
        if let Some(a) = &after {
            params.insert("starting_after".into(), json!(a));
        }
        let body = sandbox
            .handle_now(&PayRequest {
                operation: "products.list".into(),
                account_id: "ws_1".into(),
                stripe_connect_id: Some(altan_pay::gateway::sandbox::derived_connect_id("ws_1")),
                id: None,
                params,
                idempotency_key: None,
            })
            .body;
        let page = body["data"].as_array().cloned().unwrap_or_default();
        after = page
            .last()
            .and_then(|p| p["id"].as_str().map(str::to_string));
        all.extend(page);
        if body["has_more"] != json!(true) || after.is_none() {
            return all;
        }
    }
}

async fn post(client: &reqwest::Client, base: &str, thread: &str, text: &str) -> Value {
    let response = client
        .post(format!("{base}/v1/threads/{thread}/messages"))
        .json(&native_body(text))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{thread}: {status} {body}");
    body
}

/// The product ids each answer's sync plan lists.
fn planned(answer: &Value) -> Vec<String> {
    answer["sync_plan"]["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| op["table"] == "products")
        .filter_map(|op| op["key"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Sends `turns` turns over `threads` threads to the replicas round robin, `in_flight` at a
/// time: turn `i` goes to thread `i % threads` on replica `(i + i / threads) % replicas`, so
/// consecutive turns of a thread go to different replicas and are in flight together.
async fn round_robin(
    bases: &[String],
    prefix: &str,
    threads: usize,
    turns: usize,
    in_flight: usize,
) -> Vec<Value> {
    round_robin_timed(bases, prefix, threads, turns, in_flight)
        .await
        .0
}

/// One request as the client saw it: thread, replica, sent, answered.
type Window = (String, usize, Instant, Instant);

/// [`round_robin`], with each request's window.
async fn round_robin_timed(
    bases: &[String],
    prefix: &str,
    threads: usize,
    turns: usize,
    in_flight: usize,
) -> (Vec<Value>, Vec<Window>) {
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = Vec::new();
    for i in 0..turns {
        let thread = format!("{prefix}{:02}", i % threads);
        let replica = (i + i / threads) % bases.len();
        let base = bases[replica].clone();
        let text = format!("Create a product named {thread}.{}", i / threads);
        let (client, gate) = (client.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let sent = Instant::now();
            let answer = post(&client, &base, &thread, &text).await;
            (answer, (thread, replica, sent, Instant::now()))
        }));
    }
    let (mut answers, mut windows) = (Vec::new(), Vec::new());
    for task in tasks {
        let (answer, window) = task.await.unwrap();
        answers.push(answer);
        windows.push(window);
    }
    (answers, windows)
}

/// Pairs of requests for one thread on two different replicas that were in flight together.
fn concurrent_pairs(windows: &[Window]) -> usize {
    let mut pairs = 0;
    for (i, a) in windows.iter().enumerate() {
        for b in &windows[i + 1..] {
            if a.0 == b.0 && a.1 != b.1 && a.2 < b.3 && b.2 < a.3 {
                pairs += 1;
            }
        }
    }
    pairs
}

/// No two turns of a thread overlap at the model: each ends before the next one starts.
fn assert_no_overlap(records: &[TurnRecord]) -> usize {
    let mut by_thread: BTreeMap<&str, Vec<&TurnRecord>> = BTreeMap::new();
    for r in records {
        by_thread.entry(&r.thread).or_default().push(r);
    }
    let mut checked = 0;
    for (thread, mut turns) in by_thread {
        turns.sort_by_key(|r| r.started);
        for pair in turns.windows(2) {
            let ended = pair[0]
                .ended
                .unwrap_or_else(|| panic!("{thread}: {pair:?}"));
            assert!(
                ended <= pair[1].started,
                "turns of {thread} overlap: {} and {}",
                pair[0].turn,
                pair[1].turn
            );
            checked += 1;
        }
    }
    checked
}

/// Every product exists once in Stripe and is in exactly one answer's sync plan; the stored
/// session of each thread holds each of its turns whole, none lost to another replica's save.
async fn assert_each_write_once(
    sandbox: &Sandbox,
    database: &str,
    answers: &[Value],
    expected_names: &BTreeSet<String>,
) {
    let stripe = products(sandbox);
    let names: Vec<String> = stripe
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(names.len(), unique.len(), "a duplicate Stripe object");
    assert_eq!(&unique, expected_names);
    let mut in_plans: BTreeMap<String, usize> = BTreeMap::new();
    for answer in answers {
        for id in planned(answer) {
            *in_plans.entry(id).or_default() += 1;
        }
    }
    for product in &stripe {
        let id = product["id"].as_str().unwrap_or_default();
        assert_eq!(
            in_plans.get(id),
            Some(&1),
            "{id} in {:?} plans",
            in_plans.get(id)
        );
    }
    assert_eq!(
        in_plans.len(),
        stripe.len(),
        "a plan lists what Stripe lacks"
    );

    let client = test_pg::client(database).await;
    let rows = client
        .query("SELECT thread_id, session FROM altan_pay_sessions", &[])
        .await
        .unwrap();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    for row in rows {
        let session: Value = serde_json::from_str(&row.get::<_, String>(1)).unwrap();
        for m in session["history"].as_array().into_iter().flatten() {
            if m["role"] == "user"
                && let Some(turn) = m["content"]
                    .as_str()
                    .and_then(|t| t.split("Create a product named ").nth(1))
            {
                asked.insert(turn.trim().to_string());
            }
        }
    }
    assert!(
        expected_names.is_subset(&asked),
        "turns missing from the stored sessions: {:?}",
        expected_names.difference(&asked).collect::<Vec<_>>()
    );
}

fn script_with(records: &Records, replies: usize) -> impl FnOnce(&ScriptServer) {
    let records = records.clone();
    move |script: &ScriptServer| {
        for _ in 0..replies {
            script.push(responder(records.clone()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_run_one_turn_per_thread() {
    let url = database_url();
    let database = fresh_database(&url).await;
    let (gateway, sandbox) = script::gateway().await;
    let model = ScriptServer::start().await;
    let records: Records = Arc::default();
    script_with(&records, 700)(&model);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&database, &gateway.base_url, &model.base_url).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    let (answers, windows) = round_robin_timed(&bases, "rr", 30, 300, 90).await;
    // The same thread was asked on different replicas at once, many times over.
    let pairs = concurrent_pairs(&windows);
    assert!(
        pairs >= 30,
        "only {pairs} same-thread requests overlapped across replicas"
    );

    let records = records.lock().unwrap().clone();
    assert_eq!(records.len(), 300);
    assert_eq!(assert_no_overlap(&records), 270);
    let expected: BTreeSet<String> = (0..300)
        .map(|i| format!("rr{:02}.{}", i % 30, i / 30))
        .collect();
    assert_each_write_once(&sandbox, &database, &answers, &expected).await;
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_write_is_handed_over_by_another() {
    use altan_pay::gateway::faults::{Fault, FaultPlan, FaultRule, FaultyBackend};
    use altan_pay::pay::RouteTable;

    let url = database_url();
    let database = fresh_database(&url).await;
    let sandbox = Sandbox::in_memory().deterministic(7);
    // The first product write is committed in Stripe and its answer held back: the replica
    // that sent it dies while it is in flight.
    let slow_answer = FaultPlan::new(1).rule(
        FaultRule::new(
            "products.create",
            Fault::Delay {
                delay: Duration::from_secs(30),
                after_commit: true,
            },
        )
        .times(1),
    );
    let backend = FaultyBackend::new(Arc::new(sandbox.clone()), slow_answer);
    let gateway = altan_pay::gateway::spawn(RouteTable::embedded(), Arc::new(backend), None)
        .await
        .unwrap();
    let model = ScriptServer::start().await;
    let records: Records = Arc::default();
    script_with(&records, 400)(&model);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&database, &gateway.base_url, &model.base_url).await);
    }

    let client = reqwest::Client::new();
    let victim = "victim";
    let first = {
        let (client, base) = (client.clone(), replicas[0].base.clone());
        tokio::spawn(async move {
            client
                .post(format!("{base}/v1/threads/{victim}/messages"))
                .json(&native_body("Create a product named victim.0"))
                .send()
                .await
        })
    };
    // Stripe has the product and the session in PostgreSQL records the write as in flight.
    let db = test_pg::client(&database).await;
    let mut ready = false;
    for _ in 0..500 {
        let uncertain = db
            .query_opt(
                "SELECT session FROM altan_pay_sessions WHERE thread_id = $1",
                &[&victim],
            )
            .await
            .unwrap()
            .and_then(|r| serde_json::from_str::<Value>(&r.get::<_, String>(0)).ok())
            .is_some_and(|s| s["uncertain"].as_array().is_some_and(|u| !u.is_empty()));
        if uncertain && products(&sandbox).len() == 1 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "the write was not committed and recorded");

    // Other threads keep the two other replicas busy while the first dies.
    let others: Vec<String> = replicas[1..].iter().map(|r| r.base.clone()).collect();
    let load = tokio::spawn(async move { round_robin(&others, "bg", 6, 60, 12).await });
    replicas[0].kill();
    let lost = first.await.unwrap();
    assert!(
        lost.is_err() || !lost.unwrap().status().is_success(),
        "the dead replica answered"
    );
    // The next answer on the thread, from another replica: the write is confirmed with its
    // own key (the same product back, no second one) and handed over.
    let answer = post(&client, &replicas[1].base, victim, "Did it work?").await;
    let mut answers = load.await.unwrap();
    let victim_product: Vec<Value> = products(&sandbox)
        .into_iter()
        .filter(|p| p["name"] == "victim.0")
        .collect();
    assert_eq!(victim_product.len(), 1, "applied once");
    assert_eq!(
        planned(&answer),
        [victim_product[0]["id"].as_str().unwrap().to_string()]
    );
    let confirm = answer["tool_calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["id"] == "call-victim.0-confirm"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(confirm["result"]["id"], victim_product[0]["id"], "{answer}");

    answers.push(answer);
    let mut expected: BTreeSet<String> = (0..60)
        .map(|i| format!("bg{:02}.{}", i % 6, i / 6))
        .collect();
    expected.insert("victim.0".into());
    assert_each_write_once(&sandbox, &database, &answers, &expected).await;
    let records = records.lock().unwrap().clone();
    let background: Vec<TurnRecord> = records.into_iter().filter(|r| r.thread != victim).collect();
    assert_eq!(assert_no_overlap(&background), 54);
    drop(replicas);
}

/// A thread busy on one replica for longer than another replica's wait: that one answers 409
/// `thread_busy` with `Retry-After`, frees the request's idempotency key, and the retry with
/// the same key runs once the first turn is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thread_busy_on_another_replica_is_a_409_with_retry_after() {
    let url = database_url();
    let database = fresh_database(&url).await;
    let (gateway, _sandbox) = script::gateway().await;
    let model = ScriptServer::start().await;
    // The first turn's model call takes 4 s; the other replica waits 1 s at most.
    model.push(Box::new(|_| {
        std::thread::sleep(Duration::from_secs(4));
        Ok(json!({"content": "Slow answer."}))
    }));
    model.text("Second answer.");
    let a = Replica::start_with(&database, &gateway.base_url, &model.base_url, "1").await;
    let b = Replica::start_with(&database, &gateway.base_url, &model.base_url, "1").await;
    let client = reqwest::Client::new();
    let slow = {
        let (client, base) = (client.clone(), a.base.clone());
        tokio::spawn(async move { post(&client, &base, "busy", "first").await })
    };
    wait::until(Duration::from_secs(5), || model.calls() >= 1).await;
    assert_eq!(model.calls(), 1, "the first turn did not reach the model");
    let send = || {
        client
            .post(format!("{}/v1/threads/busy/messages", b.base))
            .header("Idempotency-Key", "retry-1")
            .json(&native_body("second"))
            .send()
    };
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "thread_busy", "{body}");
    let first = slow.await.unwrap();
    assert!(
        first["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Slow answer."),
        "{first}"
    );
    let retried = send().await.unwrap();
    assert_eq!(retried.status(), 200);
    let body: Value = retried.json().await.unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Second answer."),
        "{body}"
    );
    assert_eq!(
        model.calls(),
        2,
        "the refused request never reached the model"
    );
}

/// A database URL that is not PostgreSQL, or a server that does not answer, stops `serve` at
/// start-up with a message that says so; the password never appears.
#[test]
fn a_bad_database_url_is_a_clear_error() {
    let closed = free_port();
    for (url, says) in [
        ("mysql://root@127.0.0.1/x", "postgres://"),
        (
            &*format!("postgres://altan:hunter2@127.0.0.1:{closed}/x"),
            "cannot connect",
        ),
        ("postgres://altan@127.0.0.1:notaport/x", "--database-url"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--pay-base-url",
                "http://127.0.0.1:9",
            ])
            .args(["--database-url", url])
            .current_dir(dir.path())
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ALTAN_PAY_SERVER_TOKENS")
            .env_remove("ALTAN_PAY_DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "no SQLite file was made"
        );
    }
}
