//! Tokens per model call: the cacheable prefix of the request bodies, the cached tokens a
//! server reports, and the per-call budget of every recorded scenario (o200k, deterministic).

#[path = "support/openai_script.rs"]
mod script;

#[path = "../bench/tokens/share.rs"]
mod share;

use std::path::Path;

use altan_pay::transcript::format::Transcript;
use script::{Options, ScriptServer, gateway, serve};
use serde_json::{Value, json};

fn chat(text: &str, thread: &str, account: &str) -> Value {
    json!({"model": "altan-pay", "messages": [{"role": "user", "content": text}],
           "metadata": {"thread_id": thread, "account_id": account}})
}

/// The scripted model, `serve` over it, and what must live as long as the server.
async fn start() -> (
    ScriptServer,
    altan_pay::server::ServerHandle,
    (
        altan_pay::gateway::GatewayHandle,
        altan_pay::gateway::Sandbox,
        tempfile::TempDir,
    ),
) {
    let script = ScriptServer::start().await;
    let (gw, sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&script, &gw, &dir.path().join("s.db"), Options::default()).await;
    (script, server, (gw, sandbox, dir))
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[tokio::test]
async fn the_prompt_and_tools_are_a_byte_identical_prefix_across_accounts_and_threads() {
    let (script, server, _keep) = start().await;
    let url = format!("{}/v1/chat/completions", server.base_url);
    let client = reqwest::Client::new();
    for (thread, account) in [("t-a", "ws_1"), ("t-b", "ws_other")] {
        script.text("Nothing to change.");
        let r = client
            .post(&url)
            .json(&chat("What can you do?", thread, account))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let raw = script.raw_requests();
    let parsed = script.requests();
    assert_eq!(raw.len(), 2);
    let text = |i: usize| String::from_utf8(raw[i].clone()).unwrap();
    let (a, b) = (text(0), text(1));
    assert_ne!(a, b, "the two conversations differ");
    let shared = &a[..common_prefix(a.as_bytes(), b.as_bytes())];
    // The whole tool list and the whole system prompt are in the shared bytes, and what
    // varies (the account, the conversation) only comes after them.
    let tools = serde_json::to_string(&parsed[0]["tools"]).unwrap();
    let prompt = serde_json::to_string(&parsed[0]["messages"][0]["content"]).unwrap();
    assert!(shared.contains(&tools), "tools not in the shared prefix");
    assert!(
        shared.contains(&prompt),
        "system prompt not in the shared prefix"
    );
    assert!(!shared.contains("ws_1"), "the account is in the prefix");
    let prompt_end = shared.find(&prompt).unwrap() + prompt.len();
    assert!(
        a.find("ws_1").unwrap() > prompt_end,
        "the account comes after the prompt"
    );
    assert!(b.find("ws_other").unwrap() > prompt_end);
}

#[tokio::test]
async fn cached_and_reasoning_tokens_are_summed_per_turn_and_reported_in_openai_names() {
    let (script, server, _keep) = start().await;
    script.set_usage(json!({
        "prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 16}
    }));
    script.tool_call("c1", "create_product", json!({"name": "Pro"}));
    script.text("Created Pro.");
    let client = reqwest::Client::new();
    let r: Value = client
        .post(format!("{}/v1/chat/completions", server.base_url))
        .json(&chat("Create Pro", "t-cache", "ws_1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(script.calls(), 2);
    let usage = &r["usage"];
    assert_eq!(usage["prompt_tokens"], 2400, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 2048,
        "{usage}"
    );
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"], 32,
        "{usage}"
    );
    // The native answer riding along says the same in its own names.
    assert_eq!(r["altan_pay"]["usage"]["cached_tokens"], 2048, "{r}");
    assert_eq!(r["altan_pay"]["usage"]["reasoning_tokens"], 32, "{r}");
}

/// Every recorded scenario, the demo's included.
fn recorded() -> Vec<Transcript> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transcripts");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(Transcript::load(&path).unwrap());
        }
    }
    out
}

/// The budget of one model call (system prompt + tools + messages, the whole request body).
const CALL_BUDGET: usize = 3_000;

/// Every model call of every recorded scenario, the demo's included, in o200k tokens of its
/// whole request body; the calls over `limit`.
fn calls_over(limit: usize) -> (usize, usize, Vec<String>) {
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let mut over = Vec::new();
    let mut calls = 0;
    let mut demo_calls = 0;
    for t in recorded() {
        let demo = t.name == altan_pay::transcript::demo::DEMO_NAME;
        for (i, call) in t.turns.iter().flat_map(|t| &t.model_calls).enumerate() {
            calls += 1;
            demo_calls += usize::from(demo);
            let n = bpe
                .encode_with_special_tokens(&call.request.to_string())
                .len();
            if n > limit {
                over.push(format!(
                    "{} call {}: {n} tokens, limit {limit}",
                    t.name,
                    i + 1
                ));
            }
        }
    }
    (calls, demo_calls, over)
}

#[test]
fn every_call_of_the_demo_and_the_suite_fits_the_budget() {
    let (calls, demo_calls, over) = calls_over(CALL_BUDGET);
    assert!(calls > 50, "only {calls} model calls found");
    assert_eq!(demo_calls, 3, "the demo takes 3 model calls");
    assert!(over.is_empty(), "{}", over.join("\n"));
}

#[test]
fn the_budget_check_sees_the_largest_call() {
    // The same count with a lower budget names the calls above it: the check reads every
    // call of every file, the largest scenario's included.
    let (_, _, over) = calls_over(2_000);
    assert!(
        over.iter().any(|o| o.starts_with("coupon-to-subscription")),
        "{over:?}"
    );
}

/// The model calls each recorded scenario needs at least: one per step of its script, none to
/// open tools (the runtime sends what a request needs with its first call). 90 in all.
const MINIMUM_CALLS: &[(&str, usize)] = &[
    ("account-id-missing", 2),
    ("approval-delete-customer", 4),
    ("checkout-session", 4),
    ("connect-id-lookup", 2),
    ("coupon-promo-code-to-customer", 5),
    ("coupon-to-subscription", 4),
    ("create-customer-with-subscription", 5),
    ("create-product-one-time-price", 5),
    ("database-change-pushed", 3),
    ("delete-product-archive-fallback", 6),
    ("delete-product-without-prices", 4),
    ("demo-create-product-pro", 3),
    ("hard-agent-ping-pong", 1),
    ("hard-forgotten-handoff", 2),
    ("hard-invented-id", 2),
    ("hard-lost-response-retried", 2),
    ("hard-other-provider", 1),
    ("hard-prompt-injection", 2),
    ("hard-stripe-error-partial", 3),
    ("hard-thank-you", 4),
    ("hard-two-mentions", 2),
    ("plan-execution", 3),
    ("plan-section-delegation", 1),
    ("sync-acknowledged", 3),
    ("sync-failure-reported", 3),
    ("update-customer-verified", 3),
    ("update-price-verified", 4),
    ("update-product-verified", 3),
    ("update-subscription-cancel-at-period-end", 4),
];

/// Each recorded scenario's model calls, and how many of them only opened tools.
fn scenario_calls() -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for t in recorded() {
        let calls: Vec<_> = t.turns.iter().flat_map(|t| &t.model_calls).collect();
        let opening = calls
            .iter()
            .filter(|c| c.called_tools() == ["open_tools"])
            .count();
        out.push((t.name, calls.len(), opening));
    }
    out.sort();
    out
}

#[test]
fn every_recorded_scenario_takes_its_minimum_model_calls() {
    let mut wrong = Vec::new();
    let found = scenario_calls();
    for (name, calls, opening) in &found {
        match MINIMUM_CALLS.iter().find(|(n, _)| n == name) {
            Some((_, min)) if calls > min => wrong.push(format!(
                "{name}: {calls} model calls, minimum {min} ({opening} only opened tools)"
            )),
            Some(_) if *opening > 0 => {
                wrong.push(format!("{name}: {opening} model call(s) only opened tools"))
            }
            Some(_) => {}
            None => wrong.push(format!("{name}: no minimum in MINIMUM_CALLS")),
        }
    }
    for (name, _) in MINIMUM_CALLS {
        if !found.iter().any(|(n, _, _)| n == name) {
            wrong.push(format!("{name}: in MINIMUM_CALLS, not recorded"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let total: usize = found.iter().map(|(_, c, _)| c).sum();
    assert_eq!(total, 90, "the suite's model calls");
}

/// From a thread's second model call on, at least this share of a call's tokens (in percent)
/// is the previous call's prefix, which a prompt cache reuses.
const SHARED_PERCENT: usize = 80;

/// Every call of every recorded scenario after the first that shares less than `percent` of
/// its tokens with the thread's previous call.
fn calls_sharing_less_than(percent: usize) -> Vec<String> {
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let mut low = Vec::new();
    for t in recorded() {
        for (i, (tokens, shared)) in share::shared_prefixes(&bpe, &share::requests(&t))
            .into_iter()
            .enumerate()
            .skip(1)
        {
            let p = share::percent(tokens, shared);
            if p < percent {
                low.push(format!("{} call {}: {p}% shared", t.name, i + 1));
            }
        }
    }
    low
}

#[test]
fn from_the_second_call_on_a_call_mostly_repeats_the_previous_one() {
    let low = calls_sharing_less_than(SHARED_PERCENT);
    assert!(low.is_empty(), "{}", low.join("\n"));
    // The same measure with the bar at 100% names calls: it reads the calls of every file.
    assert!(!calls_sharing_less_than(100).is_empty());
}
