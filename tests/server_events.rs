//! `altan-pay serve` with the events part and the room post turned on by its flags: a checkout
//! completed in Stripe (the sandbox, sending signed events to the server) reaches the account's
//! thread as one handoff to Altan, without any chat turn; bad room flags stop the start-up.

#[path = "support/process.rs"]
mod process;
#[path = "support/room.rs"]
mod room_api;
#[path = "support/wait.rs"]
mod wait;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use altan_pay::gateway::sandbox::EventingSandbox;
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::pay::{PayCall, PayClient, PayConfig, RouteTable};
use process::{free_port, port_guard, wait_up};
use room_api::{assert_handoff, room_standin};
use serde_json::{Value, json};

const SECRET: &str = "whsec_serve_events";
const TOKEN: &str = "events-test-token";
const PLAN_KEY: &str = "events-plan-key";

fn serve_command(dir: &std::path::Path, port: u16, pay: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_altan-pay"));
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--pay-base-url", pay])
        .arg("--db")
        .arg(dir.join("sessions.db"))
        .arg("--events-db")
        .arg(dir.join("events.db"))
        // The model is never called in these tests.
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9")
        .env_remove("OPENAI_API_KEY")
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .env_remove("ALTAN_ROOM_URL")
        .env_remove("ALTAN_ROOM_TOKEN")
        .env("ALTAN_PAY_SERVER_TOKENS", format!("{TOKEN}=ws_1"));
    cmd
}

/// A sandbox that sends its signed events to `base`, with ws_1's product and price.
async fn eventing_stripe(
    base: &str,
) -> (
    EventingSandbox,
    altan_pay::gateway::GatewayHandle,
    RouteTable,
) {
    let seed = json!({"accounts": {"ws_1": {
        "stripe_connect_id": "acct_serve1",
        "prices": [{"id": "price_1", "product": "prod_1", "currency": "usd", "unit_amount": 2000,
            "recurring": {"interval": "month", "interval_count": 1}}],
        "products": [{"id": "prod_1", "name": "Pro"}]
    }}});
    let eventing = Sandbox::with_state(&seed)
        .unwrap()
        .with_event_sink(&format!("{base}/v1/stripe/events"), SECRET);
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(eventing.clone()), None)
        .await
        .unwrap();
    (eventing, gateway, routes)
}

/// A checkout completed in the sandbox, its 3 events delivered; the new customer's and
/// subscription's ids.
async fn complete_a_checkout(
    eventing: &EventingSandbox,
    gateway: &altan_pay::gateway::GatewayHandle,
    routes: &RouteTable,
) -> (String, String) {
    let pay = PayClient::new(PayConfig::new(
        routes.clone().with_base_url(&gateway.base_url),
    ))
    .unwrap();
    let session = pay
        .call(PayCall {
            operation: "checkout_sessions.create",
            account_id: "ws_1",
            stripe_connect_id: Some("acct_serve1"),
            id: None,
            params: json!({"mode": "subscription", "customer_email": "ada@example.com",
                "success_url": "https://example.com/ok",
                "line_items": [{"price": "price_1", "quantity": 1}]}),
            idempotency_key: Some("serve-checkout-1".into()),
        })
        .await
        .unwrap();
    let done = eventing
        .complete_checkout("ws_1", session["id"].as_str().unwrap())
        .await
        .unwrap();
    eventing.sink().flush().await;
    assert_eq!(eventing.sink().stats().delivered, 3, "3 events accepted");
    let id = |o: Option<Value>| o.unwrap()["id"].as_str().unwrap().to_string();
    (id(done.created_customer), id(done.subscription))
}

/// ws_1's pending syncs, as the platform reads them.
async fn pending_syncs(base: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/accounts/ws_1/pending-syncs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_checkout_is_posted_to_the_accounts_thread_by_serve() {
    let (room_url, room_log) = room_standin().await;
    let guard = port_guard().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (eventing, gateway, routes) = eventing_stripe(&base).await;

    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_command(dir.path(), port, &gateway.base_url)
        .args(["--stripe-webhook-secret", SECRET])
        .args(["--stripe-account-map", "acct_serve1=ws_1"])
        .args(["--room-url", &room_url, "--room-agent-id", "agent_pay"])
        .args(["--room-thread", "ws_1=thread_ws_1"])
        .args([
            "--room-altan-member-id",
            "mem_altan",
            "--room-window-ms",
            "300",
        ])
        .args(["--plan-signing-key", PLAN_KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_up(&base).await;
    drop(guard);
    let (customer, subscription) = complete_a_checkout(&eventing, &gateway, &routes).await;

    wait::until(Duration::from_secs(10), || {
        !room_log.lock().unwrap().posts.is_empty()
    })
    .await;
    let post = room_log.lock().unwrap().posts.first().cloned();
    let (thread, agent, text) = post.expect("no room post");
    assert_eq!(
        (thread.as_str(), agent.as_str()),
        ("thread_ws_1", "agent_pay")
    );
    assert_handoff(&text, &customer, &subscription);
    // The posted plan is the runtime's, signed: an applier with the key takes it.
    let key = altan_pay::sync::PlanSigningKey::new(PLAN_KEY).unwrap();
    let mapping = altan_pay::sync::SyncMapping::default();
    let signed = altan_pay::mirror::parse_signed_plan(&text, &mapping, Some(&key));
    assert!(signed.is_ok(), "{signed:?}: {text}");

    // Handed over: nothing left pending for the next answer.
    let pending = pending_syncs(&base).await;
    assert_eq!(pending["pending"], json!([]), "{pending}");
    let _ = child.kill();
    let _ = child.wait();
}

/// With `--plan-signing-key`, the plan of the pending-syncs listing is signed like an
/// answer's, so an applier that checks signatures takes it; under another key it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_syncs_plan_is_signed_with_the_servers_key() {
    let guard = port_guard().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (eventing, gateway, routes) = eventing_stripe(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_command(dir.path(), port, &gateway.base_url)
        .args(["--stripe-webhook-secret", SECRET])
        .args(["--stripe-account-map", "acct_serve1=ws_1"])
        .args(["--plan-signing-key", PLAN_KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_up(&base).await;
    drop(guard);
    let (customer, _) = complete_a_checkout(&eventing, &gateway, &routes).await;
    let pending = pending_syncs(&base).await;
    let _ = child.kill();
    let _ = child.wait();
    let plan = &pending["sync_plan"];
    assert!(plan.to_string().contains(&customer), "{pending}");
    let key = altan_pay::sync::PlanSigningKey::new(PLAN_KEY).unwrap();
    assert_eq!(key.verify(plan), Ok(()), "{pending}");
    let other = altan_pay::sync::PlanSigningKey::new("not the server's key").unwrap();
    assert_eq!(
        other.verify(plan),
        Err(altan_pay::sync::PlanSignatureError::Mismatch)
    );
}

/// Room flags that cannot work stop the start-up with a message naming the flag.
#[test]
fn bad_room_flags_stop_serve_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--room-url", "http://127.0.0.1:9", "--room-agent-id", "a"],
            "--room-url needs --stripe-webhook-secret",
        ),
        (
            &[
                "--stripe-webhook-secret",
                SECRET,
                "--room-url",
                "http://127.0.0.1:9",
                "--room-thread",
                "ws_1=t",
            ],
            "--room-url needs --room-agent-id",
        ),
        (
            &[
                "--stripe-webhook-secret",
                SECRET,
                "--room-url",
                "http://127.0.0.1:9",
                "--room-agent-id",
                "a",
                "--room-thread",
                "ws_1",
            ],
            "--room-thread: `ws_1` is not ACCOUNT=THREAD",
        ),
        (
            &[
                "--stripe-webhook-secret",
                SECRET,
                "--room-url",
                "ftp://room",
                "--room-agent-id",
                "a",
                "--room-thread",
                "ws_1=t",
            ],
            "is not an http(s) URL",
        ),
    ];
    for (flags, expected) in cases {
        let out = serve_command(dir.path(), free_port(), "http://127.0.0.1:9")
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}
