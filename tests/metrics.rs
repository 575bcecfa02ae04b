//! `GET /metrics` after a scripted conversation, read by the official Python Prometheus client's
//! parsers (installed by scripts/install-test-python.sh): every counter the conversation moved,
//! by exactly what it did. The registry is the process's, so the test compares a scrape before
//! with a scrape after; it is the only test in this binary.

#[path = "support/openai_script.rs"]
mod script;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use altan_pay::events::{AccountMap, EventsConfig, EventsState, SqlitePendingStore, signature};
use script::{Options, ScriptServer, gateway, native_body, serve, venv_python};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-metrics-token";

/// Reads the exposition with `prometheus_client.parser.text_string_to_metric_families` (and
/// checks the OpenMetrics parser accepts it too); every sample as `name{k="v",...}` → value.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
text = sys.stdin.read()
list(openmetrics(text))
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;

type Samples = BTreeMap<String, f64>;

fn parse(text: &str) -> Samples {
    let mut child = std::process::Command::new(venv_python())
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parsers refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn scrape(base: &str) -> Samples {
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    parse(&r.text().await.unwrap())
}

/// How much a sample moved between two scrapes (absent counts as 0).
fn delta(before: &Samples, after: &Samples, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

async fn post(base: &str, thread: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/threads/{thread}/messages"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_scripted_conversation_did() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        &script,
        &gw,
        &dir.path().join("m.db"),
        Options {
            tokens: Some(&format!("{TOKEN}=*")),
            ..Options::default()
        },
    )
    .await;
    let base = server.base_url.clone();
    let before = scrape(&base).await;

    // Without the token: refused, and counted as such.
    let refused = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(refused.status(), 401);

    // Turn 1: a product is created, the answer hands over one sync plan.
    script.tool_call("c1", "create_product", json!({"name": "Pro"}));
    script.push(Box::new(|_| {
        Ok(
            json!({"content": "Created Pro.", "usage": {"prompt_tokens": 30, "completion_tokens": 7,
            "total_tokens": 37, "prompt_tokens_details": {"cached_tokens": 24}}}),
        )
    }));
    let first = post(&base, "m-1", &native_body("Create a product Pro")).await;
    assert_eq!(first["status"], "completed", "{first}");
    let sync_id = first["sync_plan"]["sync_id"].as_str().unwrap().to_string();

    // Turn 2: Altan acknowledges the sync; the model calls a tool that does not exist and
    // updates a product nobody has seen (refused by the id rules).
    script.push(Box::new(|_| {
        Ok(json!({"content": null, "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "no_such_tool", "arguments": "{}"}},
            {"id": "c3", "type": "function", "function": {"name": "update_product",
             "arguments": "{\"id\":\"prod_invented\",\"name\":\"X\"}"}}
        ]}))
    }));
    script.text("Nothing else changed.");
    let mut ack = native_body("");
    ack["messages"] = json!([{"member_id": "altan-1", "name": "Altan", "member_type": "agent",
        "text": format!("{sync_id} applied")}]);
    let second = post(&base, "m-1", &ack).await;
    assert_eq!(second["status"], "completed", "{second}");
    let refusal = second["tool_calls"][1]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(second["tool_calls"][0]["error"], "unknown_tool", "{second}");

    // Turn 3: the model server fails.
    script.error(500, "boom");
    let third = post(&base, "m-2", &native_body("Hello")).await;
    assert_eq!(third["status"], "failed", "{third}");

    // Stripe events, through the intake the events endpoint uses.
    let events = EventsState::new(
        EventsConfig::new(vec!["whsec_m".into()], AccountMap::single("acct_m", "ws_1")),
        Arc::new(SqlitePendingStore::in_memory().unwrap()),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let event = |id: &str, kind: &str| {
        json!({"id": id, "object": "event", "type": kind, "created": now, "account": "acct_m",
               "data": {"object": {"id": "prod_e1", "object": "product", "name": "E"}}})
        .to_string()
    };
    let created = event("evt_1", "product.created");
    let ignored = event("evt_2", "invoice.paid");
    for (body, secret) in [
        (&created, "whsec_m"),
        (&created, "whsec_m"),
        (&ignored, "whsec_m"),
        (&created, "whsec_wrong"),
    ] {
        let header = signature::header(secret, now, body.as_bytes());
        let _ = events.receive(Some(&header), body.as_bytes()).await;
    }

    let after = scrape(&base).await;
    let moved = |key: &str| delta(&before, &after, key);
    let expected = [
        (r#"altan_pay_turns_total{status="completed"}"#, 2.0),
        (r#"altan_pay_turns_total{status="failed"}"#, 1.0),
        (
            r#"altan_pay_tool_calls_total{outcome="ok",tool="create_product"}"#,
            1.0,
        ),
        (
            r#"altan_pay_tool_calls_total{outcome="unknown_tool",tool="unknown"}"#,
            1.0,
        ),
        (
            &format!(r#"altan_pay_tool_calls_total{{outcome="{refusal}",tool="update_product"}}"#),
            1.0,
        ),
        (r#"altan_pay_model_calls_total{outcome="ok"}"#, 4.0),
        (r#"altan_pay_model_calls_total{outcome="error"}"#, 1.0),
        ("altan_pay_model_call_duration_seconds_count{}", 5.0),
        // 30 + 10 + 10 + 10 in, 7 + 5 + 5 + 5 out, 24 cached.
        (r#"altan_pay_tokens_total{kind="input"}"#, 60.0),
        (r#"altan_pay_tokens_total{kind="output"}"#, 22.0),
        (r#"altan_pay_tokens_total{kind="cached"}"#, 24.0),
        (r#"altan_pay_sync_plans_total{state="emitted"}"#, 1.0),
        (r#"altan_pay_sync_plans_total{state="acknowledged"}"#, 1.0),
        (
            r#"altan_pay_http_requests_total{route="/v1/threads/{thread_id}/messages",status="200"}"#,
            3.0,
        ),
        (
            r#"altan_pay_http_requests_total{route="/metrics",status="401"}"#,
            1.0,
        ),
        (r#"altan_pay_stripe_events_total{status="applied"}"#, 1.0),
        (r#"altan_pay_stripe_events_total{status="duplicate"}"#, 1.0),
        (r#"altan_pay_stripe_events_total{status="ignored"}"#, 1.0),
        (r#"altan_pay_stripe_events_total{status="rejected"}"#, 1.0),
    ];
    let mut wrong = Vec::new();
    for (key, want) in expected {
        let got = moved(key);
        if got != want {
            wrong.push(format!("{key}: moved {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nafter: {after:#?}");
    assert_ne!(refusal, "unknown_tool");

    // The store committed the turns' writes: each turn waits for at least its answer's commit.
    let commits = moved("altan_pay_store_commit_duration_seconds_count{}");
    let writes = moved("altan_pay_store_commit_batch_size_sum{}");
    assert!(commits >= 3.0, "{commits} commits");
    assert!(writes >= commits, "{writes} writes in {commits} commits");
    assert_eq!(
        after.get("altan_pay_uncertain_writes_pending{}"),
        Some(&0.0),
        "no write of unknown outcome was left"
    );
    server.shutdown().await.unwrap();
}
