//! Two `altan-pay serve` replicas on one PostgreSQL, one shared Altan Pay API: a destructive
//! MCP call asked to be confirmed on one replica is confirmed on the other, because both derive
//! the confirmation key from the plan signing key they share; a replica with another key
//! refuses the confirmation and nothing is deleted.
//!
//! Needs ALTAN_PAY_TEST_DATABASE_URL (scripts/with-postgres.sh); without it the test fails and
//! says so.

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "support/postgres.rs"]
mod test_pg;
#[path = "support/world.rs"]
mod world;

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use world::World;

const TOKENS: &str = "mcp-token-ws1=ws_1";
const HANDLE: &str = "conv_0123456789abcdef0123456789abcdef";

/// One `serve` process on the shared database.
struct Replica {
    base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn replica(database: &str, pay: &str, plan_key: &str) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let guard = process::port_guard().await;
    let port = process::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--pay-base-url", pay, "--plan-signing-key", plan_key])
        .current_dir(dir.path())
        .env("ALTAN_PAY_DATABASE_URL", database)
        .env("ALTAN_PAY_SERVER_TOKENS", TOKENS)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9")
        .env("OPENAI_API_KEY", "sk-unused")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the altan-pay binary starts");
    let base = format!("http://127.0.0.1:{port}");
    process::wait_up(&base).await;
    drop(guard);
    Replica {
        base,
        child,
        _dir: dir,
    }
}

/// A 2026-07-28 `tools/call` of `name` in the test's conversation, with `extra` params merged
/// in (a confirmation's `requestState` and `inputResponses`); the JSON-RPC answer.
async fn call(replica: &Replica, name: &str, arguments: Value, extra: Value) -> Value {
    let mut params = json!({
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "altan-pay-tests", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
            "ai.altan.pay/conversation": HANDLE,
        },
        "name": name,
        "arguments": arguments,
    });
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", replica.base))
        .bearer_auth("mcp-token-ws1")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2026-07-28")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", name)
        .json(&body)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn accept() -> Value {
    json!({"confirm": {"action": "accept", "content": {"confirm": true}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_asked_on_one_replica_is_confirmed_on_another_holding_the_same_key() {
    let world = World::builder(vec![]).deterministic(11).build().await;
    let database = test_pg::fresh_database(&test_pg::database_url()).await;
    let pay = world.gateway.base_url.clone();
    let first = replica(&database, &pay, "shared-plan-key").await;
    let second = replica(&database, &pay, "shared-plan-key").await;
    let stranger = replica(&database, &pay, "another-plan-key").await;

    let created = call(
        &first,
        "create_product",
        json!({"name": "Doomed"}),
        json!({}),
    )
    .await;
    let id = created["result"]["structuredContent"]["result"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no product id: {created}"))
        .to_string();
    let asked = call(&first, "delete_product", json!({"id": id}), json!({})).await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let state = asked["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestState: {asked}"))
        .to_string();
    let confirmation = json!({"requestState": state, "inputResponses": accept()});

    // Another key: the confirmation is not this server's, and nothing is deleted.
    let refused = call(
        &stranger,
        "delete_product",
        json!({"id": id}),
        confirmation.clone(),
    )
    .await;
    assert!(
        refused.get("error").is_some() || refused["result"]["isError"] == true,
        "a replica with another key took the confirmation: {refused}"
    );
    assert_eq!(world.counting.requests_for("products.delete"), 0);

    // The same key on another replica: the person's confirmation counts there.
    let done = call(&second, "delete_product", json!({"id": id}), confirmation).await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["result"]["deleted"], true,
        "{done}"
    );
    assert_eq!(world.counting.requests_for("products.delete"), 1);
}
