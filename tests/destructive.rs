//! Destructive effects through the `altan-pay serve` binary on the embedded sandbox, a scripted
//! model playing the attacker: with `--approve-destructive` every destructive effect is held
//! (also the ones an argument value makes destructive), and without it a destructive call runs
//! only when a user asked for that effect in this turn's messages.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use script::{ScriptServer, native_body};
use serde_json::{Value, json};

/// The server, killed when dropped.
struct Serve {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(script: &ScriptServer, extra: &[&str]) -> Serve {
    let _ports = process::port_guard().await;
    let port = process::free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["serve", "--sandbox", "--addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--db")
        .arg(dir.path().join("s.db"))
        .env("OPENAI_BASE_URL", &script.base_url)
        .env("OPENAI_API_KEY", "sk-test")
        .env("ALTAN_PAY_SERVER_TOKENS", "decl-token-1=ws_1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    process::wait_up(&serve.base).await;
    serve
}

async fn turn(serve: &Serve, thread: &str, text: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/v1/threads/{thread}/messages", serve.base))
        .bearer_auth("decl-token-1")
        .json(&native_body(text))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The first id starting with `prefix` in the tool results the model has read.
fn seen_id(body: &Value, prefix: &str) -> Option<String> {
    fn find(v: &Value, prefix: &str) -> Option<String> {
        match v {
            Value::Object(m) => match m.get("id") {
                Some(Value::String(id)) if id.starts_with(prefix) => Some(id.clone()),
                _ => m.values().find_map(|v| find(v, prefix)),
            },
            Value::Array(items) => items.iter().find_map(|v| find(v, prefix)),
            _ => None,
        }
    }
    body["messages"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| serde_json::from_str::<Value>(m["content"].as_str()?).ok())
        .find_map(|v| find(&v, prefix))
}

/// A scripted call whose arguments name ids the model read in earlier results: each
/// `"$prefix"` string value is replaced by the first id with that prefix.
fn call_with_ids(script: &ScriptServer, id: &str, name: &str, args: Value) {
    let (id, name) = (id.to_string(), name.to_string());
    script.push(Box::new(move |body| {
        let mut args = args.clone();
        fill(&mut args, body)?;
        Ok(
            json!({"content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": name, "arguments": args.to_string()}}]}),
        )
    }));
}

fn fill(v: &mut Value, body: &Value) -> Result<(), (u16, String)> {
    match v {
        Value::String(s) if s.starts_with('$') => {
            let prefix = s[1..].to_string();
            *s = seen_id(body, &prefix).ok_or((500, format!("no {prefix} id read yet")))?;
        }
        Value::Object(m) => m.values_mut().try_for_each(|v| fill(v, body))?,
        Value::Array(items) => items.iter_mut().try_for_each(|v| fill(v, body))?,
        _ => {}
    }
    Ok(())
}

/// The call named `name` in an answer's tool calls.
fn call<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["tool_calls"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} call: {answer}"))
}

/// The product as Stripe has it, fetched by the model in a new turn.
async fn product_now(serve: &Serve, script: &ScriptServer, thread: &str) -> Value {
    call_with_ids(script, "g1", "get_products", json!({"id": "$prod_"}));
    script.text("Here it is.");
    let answer = turn(serve, thread, "Show me the product.").await;
    call(&answer, "get_products")["result"]["data"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gate_archiving_a_product_is_held_not_run() {
    let script = ScriptServer::start().await;
    let serve = serve(&script, &["--approve-destructive"]).await;
    script.tool_call("c1", "create_product", json!({"name": "T-shirt"}));
    call_with_ids(
        &script,
        "c2",
        "update_product",
        json!({"id": "$prod_", "active": false}),
    );
    script.text("Archiving waits for approval.");
    let answer = turn(&serve, "t1", "Create a T-shirt product, then archive it.").await;
    let update = call(&answer, "update_product");
    assert_eq!(
        update["result"]["status"], "awaiting_approval",
        "update_product active=false ran under --approve-destructive: {update}"
    );
    assert_eq!(answer["approvals"].as_array().map(Vec::len), Some(1));
    assert_eq!(product_now(&serve, &script, "t1").await["active"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gate_cancelling_a_subscription_at_period_end_is_held_not_run() {
    let script = ScriptServer::start().await;
    let serve = serve(&script, &["--approve-destructive"]).await;
    script.tool_call("c1", "create_customer", json!({"email": "ann@example.com"}));
    script.tool_call("c2", "create_product", json!({"name": "Pro"}));
    call_with_ids(
        &script,
        "c3",
        "create_price",
        json!({"product": "$prod_", "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month"}}),
    );
    call_with_ids(
        &script,
        "c4",
        "create_subscription",
        json!({"customer": "$cus_", "items": [{"price": "$price_"}]}),
    );
    call_with_ids(
        &script,
        "c5",
        "update_subscription",
        json!({"id": "$sub_", "cancel_at_period_end": true}),
    );
    script.text("Ending it at the period end waits for approval.");
    let answer = turn(
        &serve,
        "t1",
        "Subscribe ann@example.com to Pro at $20/month, then cancel it at the period end.",
    )
    .await;
    let update = call(&answer, "update_subscription");
    assert_eq!(
        update["result"]["status"], "awaiting_approval",
        "update_subscription cancel_at_period_end=true ran under --approve-destructive: {update}"
    );
    assert_eq!(answer["approvals"].as_array().map(Vec::len), Some(1));
    let synced: Vec<&Value> = answer["sync_plan"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["table"] == "subscriptions")
        .collect();
    assert_eq!(synced.len(), 1, "only the creation is synced: {synced:?}");
    assert_ne!(synced[0]["row"]["cancel_at_period_end"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gate_a_delete_nobody_asked_for_this_turn_is_held() {
    let script = ScriptServer::start().await;
    let serve = serve(&script, &[]).await;
    script.tool_call("c1", "create_product", json!({"name": "Old"}));
    script.text("Created Old.");
    turn(&serve, "t1", "Create a product called Old.").await;
    // A new turn: the user says not to delete; the model deletes anyway.
    call_with_ids(&script, "c2", "delete_product", json!({"id": "$prod_"}));
    script.text("Done.");
    let answer = turn(
        &serve,
        "t1",
        "Please do NOT delete anything, just tell me what we sell.",
    )
    .await;
    let delete = call(&answer, "delete_product");
    assert_eq!(
        delete["result"]["status"], "awaiting_approval",
        "a delete ran though the user said not to delete: {delete}"
    );
    assert_eq!(product_now(&serve, &script, "t1").await["name"], "Old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gate_a_delete_the_user_asked_for_this_turn_runs() {
    let script = ScriptServer::start().await;
    let serve = serve(&script, &[]).await;
    script.tool_call("c1", "create_product", json!({"name": "T-shirt"}));
    call_with_ids(&script, "c2", "delete_product", json!({"id": "$prod_"}));
    script.text("Deleted.");
    let answer = turn(
        &serve,
        "t1",
        "Create a T-shirt product. Then delete the T-shirt product.",
    )
    .await;
    let delete = call(&answer, "delete_product");
    assert_eq!(delete["error"], Value::Null, "{delete}");
    assert_eq!(delete["result"]["deleted"], true, "{delete}");
}
