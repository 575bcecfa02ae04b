//! The chaos run shared by `tests/chaos.rs` and `examples/chaos.rs`: a seeded random model
//! drives the real agent through `serve` (real HTTP) over all 24 Altan Pay tools, with
//! gateway faults, sandbox events and a stand-in Altan that applies every handoff to
//! PostgreSQL (failing some on purpose); at the end `reconcile` measures the drift.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use altan_pay::agent::Agent;
use altan_pay::events::reconcile::{DbWins, Mirror, diff, list_stripe};
use altan_pay::events::{AccountMap, EventsConfig, EventsState, PendingStore, SqlitePendingStore};
use altan_pay::gateway::faults::{Fault, FaultCounts, FaultPlan, FaultRule, FaultyBackend};
use altan_pay::gateway::sandbox::{EventSink, EventSinkConfig, EventingSandbox};
use altan_pay::gateway::{Backend, PayRequest, PayResponse, Sandbox, spawn};
use altan_pay::mirror::{Acknowledgement, ApplyError, apply_text, connect, ddl, parse_plan};
use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, ModelDelta, ModelError, Role, ToolCall,
    Usage,
};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::retry::RetryPolicy;
use altan_pay::server::{ServerConfig, ServerState, Tokens};
use altan_pay::store::SqliteStore;
use altan_pay::sync::SyncMapping;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const SECRET: &str = "whsec_chaos";
/// Every id the model makes up carries this, so the gateway can tell one reached it.
const INVENTED: &str = "inv0chaos";

/// The 24 Altan Pay tools (the plan tools are not the Altan Pay API).
pub const PAY_TOOLS: [&str; 24] = [
    "get_account_stripe_connection_id",
    "create_product",
    "get_products",
    "update_product",
    "delete_product",
    "create_price",
    "get_prices",
    "update_price",
    "create_customer",
    "get_customers",
    "update_customer",
    "delete_customer",
    "create_subscription",
    "get_subscriptions",
    "update_subscription",
    "cancel_subscription",
    "create_coupon",
    "get_coupons",
    "update_coupon",
    "delete_coupon",
    "create_promotion_code",
    "get_promotion_codes",
    "update_promotion_code",
    "create_checkout_session",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub conversations: usize,
    /// Workspaces, each with its own mirror schema; their conversations run concurrently,
    /// each workspace's one after another.
    pub accounts: usize,
    pub database_url: String,
    /// Probability the stand-in Altan fails a handoff on purpose (never in a closing turn).
    pub fail_rate: f64,
    /// Probability of each gateway fault kind per call.
    pub fault_rate: f64,
    pub schema_prefix: String,
}

/// What happened, and the verdict's evidence.
#[derive(Debug, Default, Clone)]
pub struct ChaosReport {
    pub conversations: usize,
    pub turns: u64,
    pub tool_calls: u64,
    pub tools_used: BTreeSet<String>,
    pub tool_errors: u64,
    /// Stripe mutations the sandbox committed (a dropped answer's included).
    pub writes: u64,
    pub plans: u64,
    pub plans_applied: u64,
    pub plans_failed_on_purpose: u64,
    pub rows_written: u64,
    pub stale_skipped: u64,
    pub faults: FaultCounts,
    pub events_delivered: u64,
    pub events_failed: u64,
    pub checkouts_completed: u64,
    /// Objects reconcile found out of line, `table id`.
    pub drift: BTreeSet<String>,
    /// Objects of failed syncs the agent reported as inconsistencies.
    pub reported_failed_objects: BTreeSet<String>,
    /// Failed syncs the agent never reported.
    pub failed_unreported: BTreeSet<String>,
    /// Failed syncs handed over again (same rows, same id) and then applied.
    pub failed_then_resent: usize,
    /// Answers that broke a rule, and made-up ids the gateway saw.
    pub violations: Vec<String>,
    /// For each drifted object (`table id`): how the mirror and Stripe differ, then what the
    /// run did to it (tool results, plan rows and their fate), to diagnose an unexplained one.
    pub drift_story: BTreeMap<String, Vec<String>>,
    pub elapsed: Duration,
}

impl ChaosReport {
    /// Drift that no reported inconsistency explains.
    pub fn unexplained_drift(&self) -> Vec<&String> {
        self.drift
            .iter()
            .filter(|d| !self.reported_failed_objects.contains(*d))
            .collect()
    }

    pub fn summary(&self) -> String {
        format!(
            "conversations {} | turns {} | tool calls {} ({} tools, {} errors) | writes {} | plans {} (applied {}, failed on purpose {}) | rows written {} | stale skipped {} | faults {} (errors {}, 429 {}, drops {}) | events {} (failed {}) | checkouts completed {} | drift {} (unexplained {}) | failed syncs reported {}, resent and applied {}, unreported {} | violations {} | {:.1} s",
            self.conversations,
            self.turns,
            self.tool_calls,
            self.tools_used.len(),
            self.tool_errors,
            self.writes,
            self.plans,
            self.plans_applied,
            self.plans_failed_on_purpose,
            self.rows_written,
            self.stale_skipped,
            self.faults.total(),
            self.faults.errors,
            self.faults.rate_limits,
            self.faults.drops,
            self.events_delivered,
            self.events_failed,
            self.checkouts_completed,
            self.drift.len(),
            self.unexplained_drift().len(),
            self.plans_failed_on_purpose as usize
                - self.failed_then_resent
                - self.failed_unreported.len(),
            self.failed_then_resent,
            self.failed_unreported.len(),
            self.violations.len(),
            self.elapsed.as_secs_f64(),
        )
    }
}

// ---- the gateway side: every request recorded ----

/// Counts successful writes and keeps every made-up id that reached the API.
struct Recording {
    inner: Arc<dyn Backend>,
    writes: AtomicU64,
    invented: Mutex<Vec<String>>,
}

impl Backend for Recording {
    fn handle(
        &self,
        request: PayRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PayResponse> + Send + '_>> {
        Box::pin(async move {
            let text = format!(
                "{} {} {}",
                request.operation,
                request.id.as_deref().unwrap_or(""),
                Value::Object(request.params.clone())
            );
            if text.contains(INVENTED) {
                self.invented.lock().unwrap().push(text);
            }
            let mutation = !(request.operation.ends_with(".list")
                || request.operation.ends_with(".retrieve")
                || request.operation.starts_with("account."));
            let response = self.inner.handle(request).await;
            if mutation && response.status == 200 {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            response
        })
    }
}

// ---- the model ----

/// A model that picks random tool calls over the ids it saw (or invents), with bad arguments,
/// repeats and parallel calls, and ends with texts that thank, mention others or nobody.
/// Seeded: the same history gets the same choice.
pub struct ChaosModel {
    seed: u64,
}

fn history_rng(seed: u64, messages: &[ChatMessage]) -> StdRng {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    for m in messages.iter().skip(1) {
        m.content.hash(&mut h);
        for c in &m.tool_calls {
            c.name.hash(&mut h);
            c.arguments.hash(&mut h);
        }
    }
    StdRng::seed_from_u64(h.finish())
}

/// The object kind of an id, by Stripe's prefix, for results that no longer carry `object`
/// (the digest of a result the model has read; nested objects).
fn kind_of_id(id: &str) -> Option<&'static str> {
    [
        ("prod_", "product"),
        ("price_", "price"),
        ("cus_", "customer"),
        ("sub_", "subscription"),
        ("promo_", "promotion_code"),
        ("cs_", "checkout.session"),
    ]
    .into_iter()
    .find(|(prefix, _)| id.starts_with(prefix))
    .map(|(_, kind)| kind)
}

/// Ids of Stripe objects in tool results, by object kind.
fn seen_ids(messages: &[ChatMessage]) -> BTreeMap<String, Vec<String>> {
    fn walk(v: &Value, out: &mut BTreeMap<String, Vec<String>>) {
        match v {
            Value::Object(m) => {
                let id = m.get("id").and_then(Value::as_str);
                let kind = m
                    .get("object")
                    .and_then(Value::as_str)
                    .or_else(|| id.and_then(kind_of_id));
                if let (Some(kind), Some(id)) = (kind, id) {
                    let ids = out.entry(kind.to_owned()).or_default();
                    if !ids.iter().any(|seen| seen == id) {
                        ids.push(id.to_owned());
                    }
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for m in messages.iter().filter(|m| m.role == Role::Tool) {
        if let Some(v) = m
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
        {
            walk(&v, &mut out);
        }
    }
    out
}

struct Gen<'a> {
    rng: &'a mut StdRng,
    seen: &'a BTreeMap<String, Vec<String>>,
}

impl Gen<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A seen id of the kind (80 %), else one made up.
    fn id(&mut self, kind: &str, prefix: &str) -> String {
        let ids = self.seen.get(kind).map(Vec::as_slice).unwrap_or_default();
        if !ids.is_empty() && self.chance(0.8) {
            return ids[self.rng.random_range(0..ids.len())].clone();
        }
        format!("{prefix}{INVENTED}{}", self.rng.random_range(0..1000))
    }

    fn word(&mut self) -> String {
        const WORDS: [&str; 8] = ["Pro", "Basic", "Team", "Gold", "Lite", "Max", "Plus", "Zen"];
        format!(
            "{} {}",
            WORDS[self.rng.random_range(0..WORDS.len())],
            self.rng.random_range(0..100)
        )
    }

    fn metadata(&mut self) -> Value {
        if self.chance(0.5) {
            Value::Null
        } else {
            json!([{"key": "tier", "value": self.word()}])
        }
    }

    /// Arguments for a tool: valid ones over seen ids, sometimes broken on purpose.
    fn args(&mut self, tool: &str) -> Value {
        let mut a = match tool {
            "get_account_stripe_connection_id" => json!({}),
            "create_product" => {
                json!({"name": self.word(), "description": if self.chance(0.5) { json!("made by chaos") } else { Value::Null }, "metadata": self.metadata()})
            }
            "get_products" => json!({"limit": 5}),
            "update_product" => {
                json!({"id": self.id("product", "prod_"), "name": self.word(), "active": self.chance(0.8), "metadata": self.metadata()})
            }
            "delete_product" => json!({"id": self.id("product", "prod_")}),
            "create_price" => {
                let recurring = if self.chance(0.7) {
                    json!({"interval": "month", "interval_count": 1})
                } else {
                    Value::Null
                };
                json!({"product": self.id("product", "prod_"), "currency": "usd", "unit_amount": self.rng.random_range(100..5000), "recurring": recurring})
            }
            "get_prices" => json!({"limit": 5}),
            "update_price" => {
                json!({"id": self.id("price", "price_"), "nickname": self.word(), "active": self.chance(0.8)})
            }
            "create_customer" => {
                json!({"email": format!("c{}@example.com", self.rng.random_range(0..10_000)), "name": self.word()})
            }
            "get_customers" => json!({"limit": 5}),
            "update_customer" => {
                let discounts = if self.chance(0.3) {
                    json!([{"coupon": self.id("coupon", "co_"), "promotion_code": null}])
                } else {
                    Value::Null
                };
                json!({"id": self.id("customer", "cus_"), "name": self.word(), "discounts": discounts})
            }
            "delete_customer" => json!({"id": self.id("customer", "cus_")}),
            "create_subscription" => {
                json!({"customer": self.id("customer", "cus_"), "items": [{"price": self.id("price", "price_"), "quantity": 1}]})
            }
            "get_subscriptions" => json!({"status": "all", "limit": 5}),
            "update_subscription" => {
                json!({"id": self.id("subscription", "sub_"), "cancel_at_period_end": self.chance(0.5), "metadata": self.metadata()})
            }
            "cancel_subscription" => json!({"id": self.id("subscription", "sub_")}),
            "create_coupon" => {
                if self.chance(0.5) {
                    json!({"percent_off": self.rng.random_range(5..50), "duration": "once", "name": self.word()})
                } else {
                    json!({"amount_off": 500, "currency": "usd", "duration": "repeating", "duration_in_months": 3})
                }
            }
            "get_coupons" => json!({"limit": 5}),
            "update_coupon" => json!({"id": self.id("coupon", "co_"), "name": self.word()}),
            "delete_coupon" => json!({"id": self.id("coupon", "co_")}),
            "create_promotion_code" => {
                json!({"coupon": self.id("coupon", "co_"), "code": format!("CODE{}", self.rng.random_range(0..1_000_000))})
            }
            "get_promotion_codes" => json!({"limit": 5}),
            "update_promotion_code" => {
                json!({"id": self.id("promotion_code", "promo_"), "active": self.chance(0.5)})
            }
            "create_checkout_session" => {
                json!({"mode": "subscription", "customer_email": "buyer@example.com", "success_url": "https://example.com/ok",
                    "line_items": [{"price": self.id("price", "price_"), "quantity": 1}]})
            }
            _ => json!({}),
        };
        // Broken on purpose: a wrong type, an unknown field, or a missing required field.
        if self.chance(0.12)
            && let Some(map) = a.as_object_mut()
        {
            match self.rng.random_range(0..3) {
                0 => {
                    map.insert("unit_amount".into(), json!("ten dollars"));
                }
                1 => {
                    map.insert("colour".into(), json!("red"));
                }
                _ => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    if let Some(k) = keys.first() {
                        map.remove(k);
                    }
                }
            }
        }
        a
    }
}

const FINAL_TEXTS: [&str; 7] = [
    "Done.",
    "Thank you! Everything is set up. @Altan please sync the rows.",
    "Thanks @Ada, I also asked [@Bob](/member/bob-1) to double-check.",
    "",
    "Here is a short summary of what I did.",
    "Thanks so much for your patience, @Bob!",
    "Handing over to [@Altan](/member/altan-1) now, thank you.",
];

impl ChatModel for ChaosModel {
    fn name(&self) -> &str {
        "chaos"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        _deltas: Option<tokio::sync::mpsc::UnboundedSender<ModelDelta>>,
    ) -> futures::future::BoxFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move {
            let messages = request.messages.as_slice();
            let mut rng = history_rng(self.seed, messages);
            let last_user = messages
                .iter()
                .rposition(|m| m.role == Role::User)
                .unwrap_or(0);
            let rounds = messages[last_user..]
                .iter()
                .filter(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
                .count();
            let asked = messages[last_user].content.as_deref().unwrap_or_default();
            let closing = asked.contains(CLOSING);
            // Asked for a checkout link, a model mostly works towards one: a price for a
            // product it has seen, then the checkout.
            let wants_checkout = asked.contains("checkout");
            let budget = if closing { 0 } else { rng.random_range(0..=3) };
            let message = if rounds >= budget || request.tools.is_empty() {
                ChatMessage::assistant(FINAL_TEXTS[rng.random_range(0..FINAL_TEXTS.len())])
            } else {
                let seen = seen_ids(messages);
                let earlier: Vec<&ToolCall> =
                    messages.iter().flat_map(|m| m.tool_calls.iter()).collect();
                let n = rng.random_range(1..=3);
                let mut calls = Vec::with_capacity(n);
                for i in 0..n {
                    let id = format!("call_{}_{i}", messages.len());
                    if !earlier.is_empty() && rng.random_bool(0.1) {
                        let again = earlier[rng.random_range(0..earlier.len())];
                        calls.push(ToolCall {
                            id,
                            name: again.name.clone(),
                            arguments: again.arguments.clone(),
                        });
                        continue;
                    }
                    // Now and then what a real conversation leads to: a checkout or a
                    // subscription once a price (and a customer) has been seen.
                    let has = |kind: &str| seen.contains_key(kind);
                    let tool = match (has("price"), has("customer")) {
                        (true, _) if rng.random_bool(if wants_checkout { 0.6 } else { 0.2 }) => {
                            "create_checkout_session"
                        }
                        (true, true) if rng.random_bool(0.15) => "create_subscription",
                        (false, _) if wants_checkout && has("product") && rng.random_bool(0.6) => {
                            "create_price"
                        }
                        _ => PAY_TOOLS[rng.random_range(0..PAY_TOOLS.len())],
                    };
                    let args = Gen {
                        rng: &mut rng,
                        seen: &seen,
                    }
                    .args(tool);
                    calls.push(ToolCall {
                        id,
                        name: tool.to_owned(),
                        arguments: args.to_string(),
                    });
                }
                ChatMessage {
                    role: Role::Assistant,
                    content: None,
                    name: None,
                    tool_calls: calls,
                    tool_call_id: None,
                    reasoning: None,
                }
            };
            Ok(ChatResponse {
                message,
                finish_reason: None,
                usage: Usage::default(),
            })
        })
    }
}

// ---- the room ----

/// The workspace's last message: the model answers it with text only.
const CLOSING: &str = "Is anything left to sync?";

const USER_TEXTS: [&str; 5] = [
    "Set up our pricing, please.",
    "Add a customer and subscribe them.",
    "Clean up: delete, cancel or archive whatever is obsolete.",
    "Create a coupon and a promotion code for the launch.",
    "Make a checkout link for the monthly plan.",
];

fn message(member_id: &str, name: &str, kind: &str, text: &str) -> Value {
    json!({"member_id": member_id, "name": name, "member_type": kind, "text": text})
}

/// A turn's new room messages: Altan's acknowledgement of the last handoff, if any, then Ada.
fn room_messages(ack: Option<String>, text: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    if let Some(a) = ack {
        messages.push(message("altan-1", "Altan", "agent", &a));
    }
    messages.push(message("u-1", "Ada", "user", text));
    messages
}

/// What one answer broke, if anything.
fn rule_violations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let altan = "[@Altan](/member/altan-1)";
    if !text.trim_end().ends_with(altan) {
        out.push("does not end with the one mention of Altan".to_owned());
    }
    if text.matches("@Altan").count() != 1 {
        out.push(format!(
            "mentions Altan {} times",
            text.matches("@Altan").count()
        ));
    }
    for other in ["@Bob", "@Ada", "@Altan Pay"] {
        if text.contains(other) {
            out.push(format!("mentions {other}"));
        }
    }
    if text.to_lowercase().contains("thank") {
        out.push("thanks someone".to_owned());
    }
    out
}

/// Sync ids the answer reports as failed in the database.
fn reported_failures(text: &str) -> Vec<String> {
    text.split("Sync ")
        .skip(1)
        .filter_map(|rest| {
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest.get(id.len()..)
                .is_some_and(|r| r.starts_with(" failed in the database"))
                .then_some(id)
        })
        .collect()
}

struct Account {
    index: usize,
    id: String,
    connect_id: String,
    schema: String,
}

#[derive(Default)]
struct Tally {
    turns: u64,
    tool_calls: u64,
    tool_errors: u64,
    tools_used: BTreeSet<String>,
    plans: u64,
    applied: u64,
    failed: u64,
    rows_written: u64,
    stale: u64,
    checkouts: u64,
    /// sync id → its targets (`table id`), for syncs failed on purpose.
    failed_syncs: BTreeMap<String, Vec<String>>,
    /// The last acknowledgement of each sync id: a failed plan the agent hands over again
    /// (same rows, same id) and Altan then applies is resolved, not an inconsistency.
    last_applied: BTreeMap<String, bool>,
    reported: BTreeSet<String>,
    violations: Vec<String>,
    /// Stripe id → what happened to it, in order (`ChaosReport::drift_story`).
    history: BTreeMap<String, Vec<String>>,
}

impl Tally {
    fn note(&mut self, id: &str, what: String) {
        self.history.entry(id.to_owned()).or_default().push(what);
    }
}

/// The top-level scalar fields of a Stripe object or row, for a history line.
fn digest(object: &Value) -> String {
    let Some(fields) = object.as_object() else {
        return object.to_string();
    };
    fields
        .iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One workspace's side of the run: its mirror connection, its random stream, its counts.
struct Run {
    account: Account,
    db: altan_pay::mirror::Connected,
    rng: StdRng,
    tally: Tally,
}

struct Room {
    http: reqwest::Client,
    database_url: String,
    base: String,
    mapping: SyncMapping,
    eventing: EventingSandbox,
    fail_rate: f64,
}

impl Room {
    /// One turn: post the messages, check the answer, complete some checkouts, and as
    /// Altan apply the handoff (or fail it on purpose); returns Altan's acknowledgement.
    async fn turn(
        &self,
        run: &mut Run,
        thread: &str,
        messages: Vec<Value>,
        may_fail: bool,
    ) -> Option<String> {
        let body = json!({
            "messages": messages,
            "context": {
                "account_id": run.account.id,
                "stripe_connect_id": run.account.connect_id,
                "agent_member_id": "pay-1",
                "members": [
                    {"member_id": "u-1", "name": "Ada", "kind": "user"},
                    {"member_id": "altan-1", "name": "Altan", "kind": "agent"},
                    {"member_id": "bob-1", "name": "Bob", "kind": "agent"},
                    {"member_id": "pay-1", "name": "Altan Pay", "kind": "agent"}
                ]
            }
        });
        let url = format!("{}/v1/threads/{thread}/messages", self.base);
        let answer: Value = match self.http.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            Ok(r) => {
                run.tally
                    .violations
                    .push(format!("{thread}: serve answered {}", r.status()));
                return None;
            }
            Err(e) => {
                run.tally.violations.push(format!("{thread}: serve: {e}"));
                return None;
            }
        };
        run.tally.turns += 1;
        let text = answer["text"].as_str().unwrap_or_default();
        if std::env::var("CHAOS_DEBUG").is_ok() {
            eprintln!("=== {thread} <- {}\n{text}\n", body["messages"]);
        }
        for v in rule_violations(text) {
            run.tally.violations.push(format!("{thread}: answer {v}"));
        }
        run.tally.reported.extend(reported_failures(text));
        for call in answer["tool_calls"].as_array().into_iter().flatten() {
            run.tally.tool_calls += 1;
            if let Some(name) = call["name"].as_str() {
                run.tally.tools_used.insert(name.to_owned());
            }
            if !call["error"].is_null() {
                run.tally.tool_errors += 1;
            }
            if let Some(id) = call["result"]["id"].as_str() {
                let line = format!(
                    "{thread} turn {}: {} -> {}",
                    run.tally.turns,
                    call["name"].as_str().unwrap_or("?"),
                    digest(&call["result"])
                );
                run.tally.note(id, line);
            }
            let session = &call["result"];
            if call["name"] == "create_checkout_session"
                && call["error"].is_null()
                && run.rng.random_bool(0.7)
                && let Some(id) = session["id"].as_str()
                && self
                    .eventing
                    .complete_checkout(&run.account.id, id)
                    .await
                    .is_ok()
            {
                run.tally.checkouts += 1;
            }
        }
        if answer["sync_plan"].is_null() {
            return None;
        }
        run.tally.plans += 1;
        let plan = match parse_plan(text, &self.mapping) {
            Ok(plan) => plan,
            Err(e) => {
                run.tally.violations.push(format!(
                    "{thread}: the applier refused the agent's plan: {e}"
                ));
                return None;
            }
        };
        let failing = may_fail && run.rng.random_bool(self.fail_rate);
        for op in &plan.operations {
            let row = op.row.as_ref().map(|r| digest(&Value::Object(r.clone())));
            let line = format!(
                "{thread} turn {}: plan {} {} {}{} {}",
                run.tally.turns,
                plan.sync_id,
                op.op.as_str(),
                op.table,
                if failing { " (failed on purpose)" } else { "" },
                row.unwrap_or_default()
            );
            run.tally.note(&op.id, line);
        }
        if failing {
            run.tally.failed += 1;
            let targets = plan
                .operations
                .iter()
                .map(|o| format!("{} {}", o.table, o.id))
                .collect();
            run.tally.failed_syncs.insert(plan.sync_id.clone(), targets);
            run.tally.last_applied.insert(plan.sync_id.clone(), false);
            let error =
                ApplyError::Database("the stand-in Altan failed this sync on purpose".into());
            return Some(Acknowledgement::failed(&plan.sync_id, Some(&plan), &error).message);
        }
        match apply_text(&mut run.db.client, &run.account.schema, &self.mapping, text).await {
            Ok((ack, Ok(applied))) => {
                run.tally.applied += 1;
                run.tally.last_applied.insert(plan.sync_id.clone(), true);
                run.tally.rows_written += applied.count(|r| {
                    matches!(
                        r,
                        altan_pay::mirror::OpResult::Written | altan_pay::mirror::OpResult::Deleted
                    )
                }) as u64;
                run.tally.stale +=
                    applied.count(|r| matches!(r, altan_pay::mirror::OpResult::Stale(_))) as u64;
                Some(ack.message)
            }
            Ok((ack, Err(e))) => {
                run.tally
                    .violations
                    .push(format!("{thread}: applying the agent's plan failed: {e}"));
                Some(ack.message)
            }
            Err(e) => {
                run.tally.violations.push(format!("{thread}: {e}"));
                None
            }
        }
    }
}

/// One workspace's conversations, one after another, then the final hand-over of whatever
/// Stripe announced since.
async fn run_account(
    room: Arc<Room>,
    account: Account,
    conversations: usize,
    seed: u64,
    events: Arc<EventingSandbox>,
) -> Tally {
    let rng = StdRng::seed_from_u64(seed ^ (account.index as u64).wrapping_mul(0x9e37_79b9));
    let mut run = Run {
        db: connect(&room.database_url).await.unwrap(),
        account,
        rng,
        tally: Tally::default(),
    };
    for n in 0..conversations {
        let thread = format!("t-{}-{n}", run.account.id);
        let turns = run.rng.random_range(1..=4);
        let mut ack: Option<String> = None;
        let mut t = 0;
        // A failed handoff is always followed by a turn that tells the agent.
        while t < turns || ack.as_deref().is_some_and(|a| a.contains("\"failed\"")) {
            let text = USER_TEXTS[run.rng.random_range(0..USER_TEXTS.len())];
            let messages = room_messages(ack.take(), text);
            ack = room.turn(&mut run, &thread, messages, t + 1 < turns).await;
            t += 1;
        }
    }
    // Everything Stripe announced reaches the queue, then one more answer hands it over.
    events.sink().flush().await;
    let thread = format!("t-{}-final", run.account.id);
    let mut ack: Option<String> = None;
    for _ in 0..2 {
        let messages = room_messages(ack.take(), CLOSING);
        ack = room.turn(&mut run, &thread, messages, false).await;
    }
    run.tally
}

/// Runs the whole chaos run and gathers the report; the caller asserts the verdict.
pub async fn run(config: ChaosConfig) -> ChaosReport {
    let started = Instant::now();
    let mapping = SyncMapping::default();
    let accounts: Vec<Account> = (0..config.accounts)
        .map(|i| Account {
            index: i,
            id: format!("ws_chaos{i}"),
            // The platform's own Connect ids: the sandbox binds each on first use.
            connect_id: format!("acct_chaosplatform{i}"),
            schema: format!("{}_{i}", config.schema_prefix),
        })
        .collect();
    let setup = connect(&config.database_url).await.unwrap();
    for a in &accounts {
        setup
            .client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE; {}",
                a.schema,
                ddl(&mapping, &a.schema).unwrap()
            ))
            .await
            .unwrap();
    }

    // serve's address first: the sandbox's events go to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut sink = EventSinkConfig::new(&format!("{base}/v1/stripe/events"), SECRET);
    sink.base_delay = Duration::from_millis(5);
    sink.max_attempts = 10;
    let sandbox = Sandbox::in_memory();
    let eventing = EventingSandbox::new(sandbox.clone(), EventSink::spawn(sink));
    let r = config.fault_rate;
    let faults = FaultPlan::new(config.seed)
        .rule(FaultRule::new("*", Fault::Error { status: 503 }).probability(r))
        .rule(
            FaultRule::new(
                "*",
                Fault::RateLimit {
                    retry_after: Duration::ZERO,
                },
            )
            .probability(r),
        )
        .rule(FaultRule::new("*", Fault::DropAfterCommit).probability(r));
    // Inside the faults: the writes Stripe committed (a dropped answer's too); outside: every
    // request that reached the API, faulted or not, for made-up ids.
    let committed = Arc::new(Recording {
        inner: Arc::new(eventing.clone()),
        writes: AtomicU64::new(0),
        invented: Mutex::new(Vec::new()),
    });
    let faulty = Arc::new(FaultyBackend::new(committed.clone(), faults));
    let recording = Arc::new(Recording {
        inner: faulty.clone(),
        writes: AtomicU64::new(0),
        invented: Mutex::new(Vec::new()),
    });
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), recording.clone(), None)
        .await
        .unwrap();
    let mut pay_config = PayConfig::new(routes.clone().with_base_url(&gateway.base_url));
    pay_config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(1),
    };
    let pay = PayClient::new(pay_config).unwrap();

    let store: Arc<dyn PendingStore> = Arc::new(SqlitePendingStore::in_memory().unwrap());
    let map = AccountMap {
        connect: accounts
            .iter()
            .map(|a| (a.connect_id.clone(), a.id.clone()))
            .collect(),
        fixed: None,
    };
    let events = Arc::new(
        EventsState::new(EventsConfig::new(vec![SECRET.into()], map), store).with_pay(pay.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let db_path: PathBuf = dir.path().join("sessions.db");
    let builder = Agent::builder()
        .model(Arc::new(ChaosModel { seed: config.seed }))
        .pay(pay.clone())
        .pending_source(events.clone());
    let state = ServerState::new(
        builder,
        Arc::new(SqliteStore::open(&db_path).unwrap()),
        Tokens::default(),
        ServerConfig::default(),
    )
    .unwrap()
    .with_events(events)
    // The deployment's binding of each workspace to its Connect account: the Connect id each
    // turn's context names is checked against it.
    .resolve_connect_ids(
        pay.clone(),
        &accounts
            .iter()
            .map(|a| (a.id.clone(), a.connect_id.clone()))
            .collect(),
    );
    let server = altan_pay::server::spawn(listener, state).unwrap();

    let room = Arc::new(Room {
        http: reqwest::Client::new(),
        database_url: config.database_url.clone(),
        base,
        mapping: mapping.clone(),
        eventing: eventing.clone(),
        fail_rate: config.fail_rate,
    });
    let eventing = Arc::new(eventing);
    let per_account = config.conversations / config.accounts.max(1);
    let extra = config.conversations % config.accounts.max(1);
    let mut tasks = Vec::new();
    let schemas: Vec<(String, String, String)> = accounts
        .iter()
        .map(|a| (a.id.clone(), a.connect_id.clone(), a.schema.clone()))
        .collect();
    for (i, a) in accounts.into_iter().enumerate() {
        let n = per_account + usize::from(i < extra);
        tasks.push(tokio::spawn(run_account(
            room.clone(),
            a,
            n,
            config.seed,
            eventing.clone(),
        )));
    }
    let mut tally = Tally::default();
    for t in tasks {
        let part = t.await.unwrap();
        tally.turns += part.turns;
        tally.tool_calls += part.tool_calls;
        tally.tool_errors += part.tool_errors;
        tally.tools_used.extend(part.tools_used);
        tally.plans += part.plans;
        tally.applied += part.applied;
        tally.failed += part.failed;
        tally.rows_written += part.rows_written;
        tally.stale += part.stale;
        tally.checkouts += part.checkouts;
        tally.failed_syncs.extend(part.failed_syncs);
        tally.last_applied.extend(part.last_applied);
        tally.reported.extend(part.reported);
        tally.violations.extend(part.violations);
        for (id, mut lines) in part.history {
            tally.history.entry(id).or_default().append(&mut lines);
        }
    }

    // The verdict: reconcile every workspace's mirror against the sandbox, without faults.
    let clean = spawn(routes.clone(), Arc::new(sandbox), None)
        .await
        .unwrap();
    let clean_pay = PayClient::new(PayConfig::new(routes.with_base_url(&clean.base_url))).unwrap();
    let mut drift = BTreeSet::new();
    let mut drift_story = BTreeMap::new();
    for (account, connect_id, schema) in &schemas {
        let mirror = Mirror::read_postgres(&config.database_url, schema, &mapping)
            .await
            .unwrap();
        let stripe = list_stripe(&clean_pay, account, connect_id).await.unwrap();
        let report = diff(account, &mapping, &mirror, &stripe, &DbWins::default());
        for d in &report.drift {
            let key = format!("{} {}", d.table, d.id);
            let mut story = vec![format!(
                "{:?} column {:?}: database {} / Stripe {}",
                d.problem, d.column, d.database, d.stripe
            )];
            story.extend(tally.history.get(&d.id).cloned().unwrap_or_default());
            drift_story.insert(key.clone(), story);
            drift.insert(key);
        }
    }
    let mut reported_failed_objects = BTreeSet::new();
    let mut failed_unreported = BTreeSet::new();
    let mut resolved = 0;
    for (sync_id, targets) in &tally.failed_syncs {
        if tally.last_applied.get(sync_id) == Some(&true) {
            resolved += 1;
        } else if tally.reported.contains(sync_id) {
            reported_failed_objects.extend(targets.iter().cloned());
        } else {
            failed_unreported.insert(sync_id.clone());
        }
    }
    let mut violations = tally.violations;
    violations.extend(
        recording
            .invented
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("a made-up id reached the API: {r}")),
    );
    let sink = eventing.sink().stats();
    let _ = server.shutdown().await;
    ChaosReport {
        conversations: config.conversations,
        turns: tally.turns,
        tool_calls: tally.tool_calls,
        tools_used: tally.tools_used,
        tool_errors: tally.tool_errors,
        writes: committed.writes.load(Ordering::Relaxed),
        plans: tally.plans,
        plans_applied: tally.applied,
        plans_failed_on_purpose: tally.failed,
        rows_written: tally.rows_written,
        stale_skipped: tally.stale,
        faults: faulty.counts(),
        events_delivered: sink.delivered,
        events_failed: sink.failed,
        checkouts_completed: tally.checkouts,
        drift,
        reported_failed_objects,
        failed_unreported,
        failed_then_resent: resolved,
        violations,
        drift_story,
        elapsed: started.elapsed(),
    }
}
