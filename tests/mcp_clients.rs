//! The MCP server (`altan-pay mcp` over stdio, `/mcp` on `altan-pay serve`) driven by the
//! official Python `mcp` client (tests/mcp/client.py, installed by
//! scripts/install-mcp-python.sh), under 2025-11-25 (initialize handshake) and 2026-07-28
//! (stateless): the tools as listed, a product and two prices with a retried call, the sync
//! plan the chat path would hand over, a made-up id, a delete that needs confirmation, and a
//! token scoped to another account.

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "support/room.rs"]
#[allow(dead_code)]
mod room_api;
#[path = "mcp/served.rs"]
mod served;
#[path = "support/wait.rs"]
mod wait;
#[path = "support/world.rs"]
mod world;

use std::path::PathBuf;
use std::process::Command;

use altan_pay::model::scripted::ScriptedStep;
use altan_pay::tools::{Opened, ToolContext, ToolSet};
use serde_json::{Value, json};
use served::Served;
use world::{World, context, user};

const TOKENS: &str = "mcp-token-ws1=ws_1;mcp-token-ws2=ws_2";
const MODERN: &str = "2026-07-28";
const LEGACY: &str = "legacy";

/// The Python of scripts/install-mcp-python.sh.
fn mcp_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci-cache/mcpenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-mcp-python.sh (scripts/test.sh does) to install the official `mcp` and `openai-agents` Python packages these tests use",
        python.display()
    );
    python
}

async fn serve(world: &World) -> Served {
    served::serve(&["--pay-base-url", &world.gateway.base_url], TOKENS).await
}

/// `serve` on the world's gateway with the Stripe events part on for ws_1 (its store in the
/// returned directory, kept while the server runs) and `extra` flags.
async fn serve_with_events(world: &World, extra: &[&str]) -> (Served, tempfile::TempDir) {
    let events = tempfile::tempdir().unwrap();
    let events_db = events.path().join("events.db");
    let mut flags = vec![
        "--pay-base-url",
        &world.gateway.base_url,
        "--stripe-webhook-secret",
        "whsec_mcp_test_secret",
        "--stripe-fixed-account",
        "ws_1",
        "--events-db",
        events_db.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    (served::serve(&flags, TOKENS).await, events)
}

/// Runs tests/mcp/client.py; its JSON report.
async fn client(scenario: &str, mode: &str, transport: Vec<String>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let mut command = Command::new(mcp_python());
    command.arg(script).arg(scenario).arg(mode).args(transport);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client.py {scenario} {mode} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn http(served: &Served, token: &str, account: &str) -> Vec<String> {
    vec![
        "http".into(),
        format!("{}/mcp", served.base),
        token.into(),
        account.into(),
    ]
}

fn stdio(world: &World) -> Vec<String> {
    vec![
        "stdio".into(),
        env!("CARGO_BIN_EXE_altan-pay").into(),
        "mcp".into(),
        "--pay-base-url".into(),
        world.gateway.base_url.clone(),
        "--account-id".into(),
        "ws_1".into(),
    ]
}

fn deterministic_world() -> world::WorldBuilder {
    World::builder(vec![]).deterministic(7)
}

/// The products in the sandbox, read through the Altan Pay API.
async fn products_in_sandbox(world: &World) -> Vec<Value> {
    let tools = ToolSet::altan_pay();
    let ctx = ToolContext {
        conversation_id: "check".into(),
        tool_call_id: "check-1".into(),
        account_id: Some("ws_1".into()),
        stripe_connect_id: None,
    };
    let env = altan_pay::tools::ToolEnv {
        pay: altan_pay::pay::PayClient::new(altan_pay::pay::PayConfig::new(
            altan_pay::pay::RouteTable::embedded().with_base_url(&world.gateway.base_url),
        ))
        .unwrap(),
    };
    let listed = tools.call(&env, &ctx, "get_products", "{}").await.unwrap();
    listed.content["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// What the chat path hands over for `create_product {"name": "Pro plan"}` on a sandbox
/// with the same seed.
async fn chat_path_plan() -> Value {
    let w = World::builder(vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro plan"}))]),
        ScriptedStep::text("Created."),
    ])
    .deterministic(7)
    .build()
    .await;
    let answer = w
        .agent
        .respond("chat", &context(), &[user("Create Pro plan")])
        .await
        .unwrap();
    serde_json::to_value(answer.sync_plan.expect("the chat path hands over a plan")).unwrap()
}

/// `plan` with the object id `id` replaced and its sync id left out.
fn without_ids(plan: &Value, id: &str) -> Value {
    let text = plan.to_string().replace(id, "<id>");
    let mut plan: Value = serde_json::from_str(&text).unwrap();
    plan.as_object_mut().unwrap().remove("sync_id");
    plan
}

/// Checks one `create` report: tools, annotations, schemas, the retried call, the plans.
async fn check_create_flow(world: &World, report: &Value) {
    let first = report["tools_first"].as_array().unwrap();
    assert_eq!(first, report["tools_second"].as_array().unwrap());
    let names: Vec<&str> = first.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: Vec<Value> = ToolSet::altan_pay().entries(Opened::all(), true, false);
    let expected_names: Vec<&str> = expected
        .iter()
        .map(|e| e["function"]["name"].as_str().unwrap())
        .filter(|n| *n != "open_tools")
        .collect();
    assert_eq!(
        names, expected_names,
        "the declared order, open_tools left out"
    );
    let tool = |name: &str| first.iter().find(|t| t["name"] == name).unwrap().clone();
    let model_schema = |name: &str| {
        let entry = expected
            .iter()
            .find(|e| e["function"]["name"] == name)
            .unwrap();
        let mut params = entry["function"]["parameters"].clone();
        params.as_object_mut().unwrap().remove("strict");
        params
    };
    for name in [
        "create_product",
        "create_price",
        "delete_product",
        "get_products",
    ] {
        let t = tool(name);
        assert_eq!(
            t["inputSchema"],
            model_schema(name),
            "{name}: the model's schema"
        );
        assert_eq!(
            t["inputSchema"]["additionalProperties"],
            json!(false),
            "{name}"
        );
        assert!(t["inputSchema"]["properties"].get("account_id").is_none());
        assert_eq!(t["outputSchema"]["type"], "object", "{name}");
    }
    let reads = tool("get_products")["annotations"].clone();
    assert_eq!(reads["readOnlyHint"], true, "{reads}");
    assert!(reads.get("destructiveHint").is_none(), "{reads}");
    let create = tool("create_product")["annotations"].clone();
    assert_eq!(
        (
            &create["readOnlyHint"],
            &create["destructiveHint"],
            &create["idempotentHint"]
        ),
        (&json!(false), &json!(false), &json!(true)),
        "{create}"
    );
    assert_eq!(
        tool("delete_product")["annotations"]["destructiveHint"],
        true
    );
    assert_eq!(
        tool("update_product")["annotations"]["destructiveHint"],
        true
    );

    let product = &report["product"];
    assert_eq!(product["isError"], false, "{product}");
    let id = product["structuredContent"]["result"]["id"]
        .as_str()
        .unwrap();
    assert_eq!(
        report["retried"]["structuredContent"]["result"]["id"], id,
        "the retried call is the same write"
    );
    assert_eq!(
        product["structuredContent"]["conversation"],
        report["handle"]
    );
    assert_eq!(
        product["_meta"]["ai.altan.pay/conversation"],
        report["handle"]
    );
    let plan = &product["structuredContent"]["sync_plan"];
    assert_eq!(plan["operations"][0]["table"], "products", "{plan}");
    // The sandbox draws ids from the idempotency key, which is the conversation's: the same
    // plan once each side's product id (and the sync id made from it) is set aside.
    let chat = chat_path_plan().await;
    let chat_id = chat["operations"][0]["key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        without_ids(plan, id),
        without_ids(&chat, &chat_id),
        "the chat path's plan"
    );
    assert!(plan["sync_id"].as_str().unwrap().starts_with("sync_"));
    for price in report["prices"].as_array().unwrap() {
        assert_eq!(price["isError"], false, "{price}");
        assert_eq!(price["structuredContent"]["result"]["product"], id);
        let ops = &price["structuredContent"]["sync_plan"]["operations"];
        assert_eq!(ops[0]["table"], "prices", "{price}");
    }
    let in_sandbox = products_in_sandbox(world).await;
    assert_eq!(in_sandbox.len(), 1, "one product: {in_sandbox:?}");
    assert_eq!(world.counting.requests_for("products.create"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_client_over_http_creates_a_product_and_two_prices_with_the_chat_paths_guarantees() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let report = client("create", MODERN, http(&served, "mcp-token-ws1", "ws_1")).await;
    assert_eq!(report["protocol_version"], MODERN);
    check_create_flow(&world, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_client_over_http_creates_a_product_and_two_prices_with_the_chat_paths_guarantees() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let report = client("create", LEGACY, http(&served, "mcp-token-ws1", "ws_1")).await;
    assert_eq!(report["protocol_version"], "2025-11-25");
    check_create_flow(&world, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_client_over_stdio_creates_a_product_and_two_prices_with_the_chat_paths_guarantees()
{
    let world = deterministic_world().build().await;
    let report = client("create", LEGACY, stdio(&world)).await;
    assert_eq!(report["protocol_version"], "2025-11-25");
    check_create_flow(&world, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_client_over_stdio_creates_a_product_and_two_prices_with_the_chat_paths_guarantees()
{
    let world = deterministic_world().build().await;
    let report = client("create", MODERN, stdio(&world)).await;
    assert_eq!(report["protocol_version"], MODERN);
    check_create_flow(&world, &report).await;
}

/// Requests that reached Stripe's routes (the account's Connect lookup is not one).
fn stripe_requests(world: &World) -> usize {
    world.counting.requests() - world.counting.requests_for("account.stripe_connect_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_id_is_refused_before_any_pay_request_over_http_and_stdio() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    for transport in [http(&served, "mcp-token-ws1", "ws_1"), stdio(&world)] {
        let before = stripe_requests(&world);
        let report = client("madeup", MODERN, transport).await;
        let made_up = &report["made_up"];
        assert_eq!(made_up["isError"], true, "{made_up}");
        let text = made_up["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("prod_MadeUp0000000001"), "{text}");
        assert_eq!(stripe_requests(&world), before, "nothing reached Stripe");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_runs_only_after_an_input_required_confirmation_under_2026() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let report = client("delete", MODERN, http(&served, "mcp-token-ws1", "ws_1")).await;
    let first = &report["first"]["input_required"];
    assert_eq!(first["resultType"], "input_required", "{report}");
    let message = first["inputRequests"]["confirm"]["params"]["message"]
        .as_str()
        .unwrap();
    let id = report["product_id"].as_str().unwrap();
    assert!(
        message.contains(id) && message.contains("delete"),
        "{message}"
    );
    let still_there = &report["still_there"]["structuredContent"]["result"];
    assert!(
        still_there.to_string().contains(id) && !still_there.to_string().contains("deleted"),
        "nothing destructive ran on the first call: {report}"
    );
    let confirmed = &report["confirmed"];
    assert_eq!(confirmed["isError"], false, "{confirmed}");
    assert_eq!(confirmed["structuredContent"]["result"]["deleted"], true);
    assert_eq!(
        confirmed["structuredContent"]["sync_plan"]["operations"][0]["op"],
        "delete"
    );
    assert_eq!(world.counting.requests_for("products.delete"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_client_gets_a_tool_error_naming_the_delete_to_confirm_and_nothing_runs() {
    let world = deterministic_world().build().await;
    let report = client("delete", LEGACY, stdio(&world)).await;
    let refused = &report["refused"];
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused["content"][0]["text"].as_str().unwrap();
    let id = report["product_id"].as_str().unwrap();
    assert!(
        text.contains("delete_product") && text.contains(id) && text.contains("confirmation"),
        "{text}"
    );
    assert_eq!(world.counting.requests_for("products.delete"), 0);
    assert_eq!(products_in_sandbox(&world).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_ws_1_is_refused_for_ws_2() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let report = client("scope", MODERN, http(&served, "mcp-token-ws1", "ws_2")).await;
    assert_eq!(report["refused"], true, "{report}");
    let raw = reqwest::Client::new()
        .post(format!("{}/mcp", served.base))
        .bearer_auth("mcp-token-ws1")
        .header("X-Altan-Account-Id", "ws_2")
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 403);
    let body: Value = raw.json().await.unwrap();
    assert!(body.to_string().contains("ws_2"), "{body}");
    // The same token for its own account is served.
    let report = client("madeup", MODERN, http(&served, "mcp-token-ws1", "ws_1")).await;
    assert_eq!(report["made_up"]["isError"], true);
    assert_eq!(world.counting.requests_for("prices.create"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_agents_sdk_agent_with_a_scripted_model_creates_a_product_and_two_prices() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/agent.py");
    let mut command = Command::new(mcp_python());
    command
        .arg(script)
        .arg(format!("{}/mcp", served.base))
        .args(["mcp-token-ws1", "ws_1"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "agent.py failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let calls = report["calls"].as_array().unwrap();
    let names: Vec<&str> = calls.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["create_product", "create_price", "create_price"]);
    for call in calls {
        let output = call["output"].as_str().unwrap_or_default();
        assert!(!output.contains("\"error\""), "{call}");
    }
    let products = products_in_sandbox(&world).await;
    assert_eq!(products.len(), 1, "{products:?}");
    assert_eq!(world.counting.requests_for("prices.create"), 2);
    assert!(
        report["final"]
            .as_str()
            .unwrap()
            .contains(products[0]["id"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_change_reaches_the_accounts_pending_syncs_even_when_the_client_drops_the_result() {
    let world = deterministic_world().build().await;
    let (served, _events) = serve_with_events(&world, &[]).await;
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"_meta": served::modern_meta(), "name": "create_product", "arguments": {"name": "Dropped"}}
    });
    let (status, _) = served::post_rpc(
        &served,
        "mcp-token-ws1",
        "tools/call",
        Some("create_product"),
        call.to_string(),
    )
    .await;
    // The client makes nothing of the answer (its plan included).
    assert_eq!(status, 200);
    let products = products_in_sandbox(&world).await;
    assert_eq!(products.len(), 1, "{products:?}");
    let id = products[0]["id"].as_str().unwrap();
    let client = reqwest::Client::new();
    let pending: Value = client
        .get(format!("{}/v1/accounts/ws_1/pending-syncs", served.base))
        .bearer_auth("mcp-token-ws1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pending.to_string().contains(id), "{pending}");
    assert!(pending.to_string().contains("products.create"), "{pending}");
    // Counted as the chat path counts its tool calls and plans, and as an HTTP route.
    let metrics = client
        .get(format!("{}/metrics", served.base))
        .bearer_auth("mcp-token-ws1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"altan_pay_tool_calls_total{tool="create_product",outcome="ok"} 1"#,
        r#"route="/mcp""#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

/// With `serve` posting to rooms, an MCP change reaches the account's room thread as one
/// handoff to Altan, with no chat turn and whatever the client did with the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_change_is_posted_to_the_accounts_room_thread_without_a_chat_turn() {
    let world = deterministic_world().build().await;
    let (room_url, room_log) = room_api::room_standin().await;
    let (served, _events) = serve_with_events(
        &world,
        &[
            "--room-url",
            &room_url,
            "--room-agent-id",
            "agent_pay",
            "--room-thread",
            "ws_1=thread_ws_1",
            "--room-altan-member-id",
            "mem_altan",
            "--room-window-ms",
            "200",
        ],
    )
    .await;
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"_meta": served::modern_meta(), "name": "create_product", "arguments": {"name": "Posted"}}
    });
    let (status, _) = served::post_rpc(
        &served,
        "mcp-token-ws1",
        "tools/call",
        Some("create_product"),
        call.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let products = products_in_sandbox(&world).await;
    assert_eq!(products.len(), 1, "{products:?}");
    let id = products[0]["id"].as_str().unwrap().to_string();
    wait::until(std::time::Duration::from_secs(10), || {
        !room_log.lock().unwrap().posts.is_empty()
    })
    .await;
    let post = room_log.lock().unwrap().posts.first().cloned();
    let (thread, agent, text) = post.expect("no room post within 10 s of the MCP change");
    assert_eq!(
        (thread.as_str(), agent.as_str()),
        ("thread_ws_1", "agent_pay")
    );
    assert!(text.contains(&format!("upsert products {id}")), "{text}");
    assert_eq!(text.matches("@Altan").count(), 1, "{text}");
}

/// A 2026-07-28 `tools/call` over `/mcp` with `token`, in the conversation `handle`; the
/// JSON-RPC answer.
async fn call_in(
    served: &Served,
    token: &str,
    handle: &str,
    name: &str,
    arguments: Value,
) -> Value {
    let mut meta = served::modern_meta();
    meta["ai.altan.pay/conversation"] = json!(handle);
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"_meta": meta, "name": name, "arguments": arguments}
    });
    let (status, body) =
        served::post_rpc(served, token, "tools/call", Some(name), call.to_string()).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A token of ws_2 that learned a ws_1 conversation handle names that conversation as a chat
/// thread, in every spelling: it can neither claim it nor read anything of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_token_cannot_reach_an_mcp_conversation_through_the_chat_api() {
    let world = deterministic_world().build().await;
    let served = serve(&world).await;
    let handle = "conv_00112233445566778899aabbccddeeff";
    let created = call_in(
        &served,
        "mcp-token-ws1",
        handle,
        "create_product",
        json!({"name": "Secret"}),
    )
    .await;
    let id = created["result"]["structuredContent"]["result"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no product id: {created}"))
        .to_string();
    let client = reqwest::Client::new();
    for thread in [
        format!("mcp:ws_1:{handle}"),
        format!("mcp%2Fws_1%2F{handle}"),
    ] {
        let mut body = json!({
            "messages": [{"member_id": "u-2", "name": "Eve", "member_type": "user", "text": "hi"}],
            "context": {
                "account_id": "ws_2",
                "agent_member_id": "pay-1",
                "members": [
                    {"member_id": "u-2", "name": "Eve", "kind": "user"},
                    {"member_id": "pay-1", "name": "Altan Pay", "kind": "agent"}
                ]
            }
        });
        body["stream"] = json!(false);
        let posted = client
            .post(format!("{}/v1/threads/{thread}/messages", served.base))
            .bearer_auth("mcp-token-ws2")
            .json(&body)
            .send()
            .await
            .unwrap();
        let posted = posted.text().await.unwrap();
        assert!(
            !posted.contains(&id),
            "{thread}: the post showed ws_1's product: {posted}"
        );
        let read = client
            .get(format!("{}/v1/threads/{thread}", served.base))
            .bearer_auth("mcp-token-ws2")
            .send()
            .await
            .unwrap();
        let read = read.text().await.unwrap();
        assert!(
            !read.contains(&id),
            "{thread}: ws_2 read ws_1's MCP conversation: {read}"
        );
    }
}

/// A change that repeats an earlier one through MCP (a product created as "A", renamed "B",
/// renamed back to "A": the last plan is byte for byte the create's) reaches the pending syncs,
/// not taken for a redelivery, so the database ends with "A".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_mcp_change_is_queued_again_not_dropped_as_a_duplicate() {
    let world = deterministic_world().build().await;
    let (served, _events) = serve_with_events(&world, &[]).await;
    let handle = "conv_ffeeddccbbaa99887766554433221100";
    let created = call_in(
        &served,
        "mcp-token-ws1",
        handle,
        "create_product",
        json!({"name": "A"}),
    )
    .await;
    let id = created["result"]["structuredContent"]["result"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no product id: {created}"))
        .to_string();
    let mut plans = vec![created["result"]["structuredContent"]["sync_plan"]["sync_id"].clone()];
    for name in ["B", "A"] {
        let updated = call_in(
            &served,
            "mcp-token-ws1",
            handle,
            "update_product",
            json!({
                "id": id, "name": name, "active": null, "default_price": null,
                "description": null, "images": null, "metadata": null, "unit_label": null,
                "url": null
            }),
        )
        .await;
        assert_eq!(updated["result"]["isError"], false, "{updated}");
        plans.push(updated["result"]["structuredContent"]["sync_plan"]["sync_id"].clone());
    }
    assert_eq!(
        plans[0], plans[2],
        "the test needs the last plan to repeat the create's: {plans:?}"
    );
    let pending: Value = reqwest::Client::new()
        .get(format!("{}/v1/accounts/ws_1/pending-syncs", served.base))
        .bearer_auth("mcp-token-ws1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows: Vec<&Value> = pending["sync_plan"]["operations"]
        .as_array()
        .unwrap_or_else(|| panic!("{pending}"))
        .iter()
        .filter(|op| op["key"]["id"] == id.as_str())
        .map(|op| &op["row"])
        .collect();
    assert_eq!(rows.len(), 1, "{pending}");
    assert_eq!(
        rows[0]["name"], "A",
        "the last change is the one pending: {pending}"
    );
}
