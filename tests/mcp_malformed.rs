//! Malformed JSON-RPC to `/mcp` (truncated JSON, wrong types, unknown methods, huge params):
//! each row gets its named error, nothing panics, and the server still serves afterwards.

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "mcp/served.rs"]
mod served;

use std::process::{Command, Stdio};

use served::Served;

use serde_json::{Value, json};

const TOKEN: &str = "mcp-token-ws1";

async fn serve() -> Served {
    served::serve(&["--sandbox"], &format!("{TOKEN}=ws_1")).await
}

fn meta() -> Value {
    served::modern_meta()
}

async fn post(served: &Served, method: &str, name: Option<&str>, body: String) -> (u16, String) {
    served::post_rpc(served, TOKEN, method, name, body).await
}

/// The JSON-RPC error code of an answer, read from a JSON body or the SSE `data:` line.
fn error_code(body: &str) -> Option<i64> {
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(body)
        .trim();
    serde_json::from_str::<Value>(json).ok()?["error"]["code"].as_i64()
}

async fn tools_list_still_served(served: &Served) {
    let body =
        json!({"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {"_meta": meta()}});
    let (status, text) = post(served, "tools/list", None, body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("create_product"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_its_named_error_and_the_server_still_serves() {
    let served = serve().await;
    tools_list_still_served(&served).await;
    let huge = "x".repeat(200 * 1024);
    // (row, body, what must come back: an HTTP status, or a JSON-RPC error code)
    let rows: Vec<(&str, &str, Option<&str>, String, Expect)> = vec![
        (
            "truncated JSON",
            "tools/list", None,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/li"#.to_string(),
            Expect::Rpc(-32700),
        ),
        ("not JSON at all", "tools/list", None, "hello".to_string(), Expect::Rpc(-32700)),
        (
            "an unknown method",
            "tools/explode", None,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/explode", "params": {"_meta": meta()}})
                .to_string(),
            Expect::Rpc(-32601),
        ),
        (
            "a tool name that is a number",
            "tools/call", Some("5"),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": meta(), "name": 5}})
                .to_string(),
            Expect::Rpc(-32602),
        ),
        (
            "arguments that are a string",
            "tools/call", Some("create_product"),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"_meta": meta(), "name": "create_product", "arguments": "x"}})
                .to_string(),
            Expect::Rpc(-32602),
        ),
        (
            "an unknown tool",
            "tools/call", Some("drop_database"),
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"_meta": meta(), "name": "drop_database", "arguments": {}}})
                .to_string(),
            Expect::Rpc(-32602),
        ),
        (
            "a conversation handle that is not one",
            "tools/call", Some("get_products"),
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"_meta": {"ai.altan.pay/conversation": "../../etc", "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}, "name": "get_products", "arguments": {}}})
                .to_string(),
            Expect::Rpc(-32602),
        ),
        (
            "a forged confirmation",
            "tools/call", Some("delete_product"),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"_meta": meta(), "name": "delete_product", "arguments": {"id": "prod_x"}, "requestState": "9999999999.00", "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}}})
                .to_string(),
            Expect::Rpc(-32602),
        ),
        (
            "huge params",
            "tools/call", Some("create_product"),
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"_meta": meta(), "name": "create_product", "arguments": {"name": huge}}})
                .to_string(),
            Expect::Status(413),
        ),
    ];
    let mut failures = Vec::new();
    for (row, method, name, body, expect) in rows {
        let (status, text) = post(&served, method, name, body).await;
        let ok = match expect {
            Expect::Status(s) => status == s,
            Expect::Rpc(code) => error_code(&text) == Some(code),
        };
        if !ok {
            failures.push(format!("{row}: expected {expect:?}, got {status} {text}"));
        }
        tools_list_still_served(&served).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Status(u16),
    Rpc(i64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_on_stdio_get_named_errors_and_the_connection_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["mcp", "--sandbox", "--account-id", "ws_1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/explode"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "drop_database", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).to_string(),
    ];
    let read = tokio::task::spawn_blocking(move || {
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
        stdin.flush().unwrap();
        let mut answers = Vec::new();
        while answers.len() < 4 {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            answers.push(serde_json::from_str::<Value>(&line).unwrap());
        }
        drop(stdin);
        answers
    });
    let answers = read.await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).cloned().unwrap();
    assert_eq!(by_id(1)["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(by_id(2)["error"]["code"], -32601, "{answers:?}");
    assert_eq!(by_id(3)["error"]["code"], -32602, "{answers:?}");
    assert!(
        by_id(3)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drop_database")
    );
    assert!(by_id(4)["result"]["tools"].as_array().unwrap().len() > 10);
}
