//! The `altan-pay serve` binary itself: the live model path from the environment (pointed at a
//! scripted OpenAI-compatible server), the embedded sandbox, a turn, and SIGTERM.

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use script::{ScriptServer, native_body};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_turn_and_stops_on_sigterm() {
    let script = ScriptServer::start().await;
    script.tool_call("c1", "create_product", json!({"name": "Pro plan"}));
    script.text("Created.");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args([
            "serve",
            "--sandbox",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(dir.path().join("s.db"))
        .env("OPENAI_BASE_URL", &script.base_url)
        .env("OPENAI_API_KEY", "sk-test-never-logged")
        .env("ALTAN_PAY_SERVER_TOKENS", "bin-token-1=ws_1")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    process::wait_up(&base).await;
    let answer: Value = client
        .post(format!("{base}/v1/threads/t1/messages"))
        .bearer_auth("bin-token-1")
        .json(&native_body("Create Pro"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["sync_plan"]["operations"][0]["table"], "products",
        "{answer}"
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.try_wait();
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "exit: {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("listening on"), "{logs}");
    assert!(logs.contains("turn finished"), "{logs}");
    assert!(
        !logs.contains("sk-test-never-logged") && !logs.contains("bin-token-1"),
        "{logs}"
    );
}
