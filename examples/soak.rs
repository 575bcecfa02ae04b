//! A bounded soak on loopback: many concurrent conversations (a rule-following model, the real
//! agent and client, the sandbox gateway with faults switched on) for a few minutes.
//!
//! ```text
//! cargo run --release --example soak -- [--seconds 120] [--concurrency 16]
//! ```
//! The gateway runs as its own process (`examples/sandbox_gateway.rs` with `--faults`), so
//! the RSS measured here is the agent's. Checks, and exits non-zero when one fails: every request answered within 60 s, no turn lost
//! or applied twice (each product name once in Stripe), every successful write in its turn's
//! plan and nothing else there, memory flat (RSS from /proc/self/status at start, middle, end).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use altan_pay::agent::{Agent, AnswerEnd, Session, SessionStore, StoreError, StoreFuture};
use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError,
    ModelFuture, Role, ToolCall, Usage,
};
use altan_pay::pay::{PayCall, PayClient, PayConfig, RetryPolicy, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

/// Creates the product the user names, then a price for it, then answers; keeps no state.
struct RuleModel;

impl ChatModel for RuleModel {
    fn name(&self) -> &str {
        "soak-rules"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        _deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let last = request.messages.last();
            let tool_results = request
                .messages
                .iter()
                .filter(|m| m.role == Role::Tool)
                .count();
            let call = |name: &str, args: Value| ToolCall {
                id: format!("c{tool_results}"),
                name: name.into(),
                arguments: args.to_string(),
            };
            let calls = match last {
                Some(m) if m.role == Role::User => {
                    let text = m.content.clone().unwrap_or_default();
                    let name = text.rsplit(' ').next().unwrap_or("x").to_string();
                    vec![call("create_product", json!({"name": name}))]
                }
                Some(m) if m.role == Role::Tool && tool_results == 1 => {
                    let result: Value = serde_json::from_str(m.content.as_deref().unwrap_or(""))
                        .unwrap_or_default();
                    match result["id"].as_str() {
                        Some(id) => vec![call(
                            "create_price",
                            json!({"product": id, "unit_amount": 1000, "currency": "usd"}),
                        )],
                        None => vec![],
                    }
                }
                _ => vec![],
            };
            let message = if calls.is_empty() {
                ChatMessage::assistant("Done.")
            } else {
                ChatMessage {
                    role: Role::Assistant,
                    content: None,
                    name: None,
                    tool_calls: calls,
                    tool_call_id: None,
                    reasoning: None,
                }
            };
            let finish = if message.tool_calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            };
            Ok(ChatResponse {
                message,
                finish_reason: Some(finish),
                usage: Usage::default(),
            })
        })
    }
}

/// Sessions in memory that the soak drops once a turn is checked, so memory measures leaks.
#[derive(Default)]
struct DroppingStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl DroppingStore {
    fn put(&self, session: &Session) -> Result<(), StoreError> {
        let mut s = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("poisoned".into()))?;
        s.insert(session.thread_id.clone(), session.clone());
        Ok(())
    }
}

impl SessionStore for DroppingStore {
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>> {
        let found = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("poisoned".into()))
            .map(|s| s.get(thread_id).cloned());
        Box::pin(std::future::ready(found))
    }
    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.put(session)))
    }
    fn save_queued(&self, session: &Session) {
        let _ = self.put(session);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    turns: AtomicU64,
    clean: AtomicU64,
    unknown: AtomicU64,
    failed_other: AtomicU64,
    unanswered: AtomicU64,
    bad_plans: AtomicU64,
    planned_products: Mutex<HashSet<String>>,
}

/// Every product of the soak account, page by page over HTTP: (id, name).
async fn all_products(
    pay: &PayClient,
) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let connect = pay.stripe_connect_id("ws_soak").await?;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = json!({"limit": 100});
        if let Some(a) = &after {
            params["starting_after"] = json!(a);
        }
        let page = pay
            .call(PayCall {
                operation: "products.list",
                account_id: "ws_soak",
                stripe_connect_id: Some(&connect),
                id: None,
                params,
                idempotency_key: None,
            })
            .await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for p in &data {
            out.push((
                p["id"].as_str().unwrap_or("").to_string(),
                p["name"].as_str().unwrap_or("").to_string(),
            ));
        }
        match (page["has_more"].as_bool(), data.last()) {
            (Some(true), Some(last)) => after = last["id"].as_str().map(str::to_string),
            _ => break,
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = arg("--seconds", 120);
    let concurrency = arg("--concurrency", 16);
    let started = Instant::now();
    let rss_start = rss_kib();

    // The gateway (sandbox and faults) runs in its own process, so this process's memory is
    // the agent's, not the growing Stripe state's.
    let dir = std::env::temp_dir().join(format!("altan-pay-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fault_file = dir.join("faults.toml");
    std::fs::write(
        &fault_file,
        "seed = 42\n\
         [[rule]]\noperation = \"*\"\nfault = \"error\"\nstatus = 503\nprobability = 0.05\n\
         [[rule]]\noperation = \"*\"\nfault = \"drop_after_commit\"\nprobability = 0.05\n\
         [[rule]]\noperation = \"*\"\nfault = \"rate_limit\"\nretry_after_secs = 0\nprobability = 0.03\n\
         [[rule]]\noperation = \"*\"\nfault = \"delay\"\ndelay_ms = 30\nafter_commit = true\nprobability = 0.05\n",
    )?;
    let gateway_bin = std::env::current_exe()?
        .parent()
        .ok_or("no example dir")?
        .join("sandbox_gateway");
    let mut child = std::process::Command::new(&gateway_bin)
        .args(["--addr", "127.0.0.1:0", "--faults"])
        .arg(&fault_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} (build it with --examples): {e}",
                gateway_bin.display()
            )
        })?;
    let mut child_out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut child_out, &mut line)?;
    let base_url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected gateway output {line:?}"))?
        .to_string();
    let routes = RouteTable::embedded();
    let mut config = PayConfig::new(routes.clone().with_base_url(&base_url));
    config.timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
    };
    let store = Arc::new(DroppingStore::default());
    let agent = Agent::builder()
        .model(Arc::new(RuleModel))
        .pay(PayClient::new(config.clone())?)
        .store(store.clone())
        .build()?;
    let context = AgentContext {
        account_id: Some("ws_soak".into()),
        ..AgentContext::default()
    };

    let tally = Arc::new(Tally::default());
    let deadline = started + Duration::from_secs(seconds);
    let half = started + Duration::from_secs(seconds / 2);
    let rss_middle = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (agent, context, tally, store) =
            (agent.clone(), context.clone(), tally.clone(), store.clone());
        let rss_middle = rss_middle.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if w == 0 && Instant::now() >= half && rss_middle.load(Ordering::Relaxed) == 0 {
                    rss_middle.store(rss_kib(), Ordering::Relaxed);
                }
                n += 1;
                let thread = format!("w{w}-t{n}");
                let name = format!("soak-{w}-{n}");
                let said = RoomMessage {
                    member_id: "u".into(),
                    name: "Ada".into(),
                    kind: MemberKind::User,
                    text: format!("Create a product called {name}"),
                };
                tally.turns.fetch_add(1, Ordering::Relaxed);
                let outcome = tokio::time::timeout(
                    Duration::from_secs(60),
                    agent.respond(&thread, &context, &[said]),
                )
                .await;
                let answer = match outcome {
                    Ok(Ok(a)) if a.end == AnswerEnd::Completed => a,
                    _ => {
                        tally.unanswered.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let planned: Vec<(String, String)> = answer
                    .sync_plan
                    .iter()
                    .flat_map(|p| p.operations())
                    .map(|o| (o.table.clone(), o.id.clone()))
                    .collect();
                let succeeded: Vec<(String, String)> = answer
                    .tool_calls
                    .iter()
                    .filter(|c| c.error.is_none())
                    .filter_map(|c| {
                        let table = match c.name.as_str() {
                            "create_product" => "products",
                            "create_price" => "prices",
                            _ => return None,
                        };
                        Some((table.to_string(), c.result["id"].as_str()?.to_string()))
                    })
                    .collect();
                let mut a = planned.clone();
                let mut b = succeeded.clone();
                a.sort();
                b.sort();
                if a != b {
                    tally.bad_plans.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut p) = tally.planned_products.lock() {
                    p.extend(
                        planned
                            .iter()
                            .filter(|(t, _)| t == "products")
                            .map(|(_, id)| id.clone()),
                    );
                }
                let unknown = answer
                    .tool_calls
                    .iter()
                    .any(|c| c.result["error"]["outcome_unknown"] == json!(true));
                let failed = answer.tool_calls.iter().any(|c| c.error.is_some());
                let counter = match (failed, unknown) {
                    (false, _) => &tally.clean,
                    (true, true) => &tally.unknown,
                    (true, false) => &tally.failed_other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = store.sessions.lock() {
                    s.remove(&thread);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let rss_end = rss_kib();
    let elapsed = started.elapsed();

    let products = all_products(&PayClient::new(config)?).await?;
    // SIGINT: the gateway prints its fault counts and exits.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut child_out, &mut rest);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let fault_line = rest
        .lines()
        .find(|l| l.starts_with("faults injected"))
        .unwrap_or("faults injected: (the gateway did not report)")
        .to_string();
    let names: HashSet<&str> = products.iter().map(|(_, n)| n.as_str()).collect();
    let ids: HashSet<String> = products.iter().map(|(i, _)| i.clone()).collect();
    let planned = tally
        .planned_products
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let turns = tally.turns.load(Ordering::Relaxed);
    let middle = rss_middle.load(Ordering::Relaxed);
    println!(
        "soak: {seconds} s requested, {:.1} s run, {concurrency} concurrent conversations",
        elapsed.as_secs_f64()
    );
    println!(
        "turns: {turns} ({:.1}/s); clean {}; write outcome unknown {}; other failures {}; unanswered {}",
        turns as f64 / elapsed.as_secs_f64(),
        tally.clean.load(Ordering::Relaxed),
        tally.unknown.load(Ordering::Relaxed),
        tally.failed_other.load(Ordering::Relaxed),
        tally.unanswered.load(Ordering::Relaxed)
    );
    println!("{fault_line}");
    println!(
        "stripe: {} products, {} distinct names, {} planned, plans that differ from the writes: {}",
        products.len(),
        names.len(),
        planned.len(),
        tally.bad_plans.load(Ordering::Relaxed)
    );
    println!(
        "rss: start {} MiB, middle {} MiB, end {} MiB",
        rss_start / 1024,
        middle / 1024,
        rss_end / 1024
    );

    let mut problems = Vec::new();
    if tally.unanswered.load(Ordering::Relaxed) > 0 {
        problems.push("some requests were not answered".to_string());
    }
    if names.len() != products.len() {
        problems.push("a turn was applied twice (duplicate product names)".to_string());
    }
    if !planned.is_subset(&ids) {
        problems.push("a planned product is not in Stripe".to_string());
    }
    if tally.bad_plans.load(Ordering::Relaxed) > 0 {
        problems.push("a plan differs from the turn's successful writes".to_string());
    }
    if products.len() as u64 > turns {
        problems.push("more products than turns".to_string());
    }
    // Flat memory: the second half may not grow by more than half of what the first did, plus
    // 32 MiB for allocator slack and the soak's own tally of planned ids.
    if middle > 0 && rss_end > middle + (middle.saturating_sub(rss_start)) / 2 + 32 * 1024 {
        problems.push(format!(
            "memory grew in the second half: {middle} KiB -> {rss_end} KiB"
        ));
    }
    if problems.is_empty() {
        println!("soak: OK");
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}
