//! `altan-pay serve` as a child process for the MCP tests: on a free loopback port, with the
//! given Pay flags and tokens, killed when dropped.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::process;

/// A running `altan-pay serve`.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `altan-pay serve` with `pay_flags` (`--sandbox`, or `--pay-base-url URL`) and
/// `tokens` (`ALTAN_PAY_SERVER_TOKENS`), sessions in a fresh SQLite file, no model reachable.
pub async fn serve(pay_flags: &[&str], tokens: &str) -> Served {
    let _ports = process::port_guard().await;
    let port = process::free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .arg("serve")
        .args(pay_flags)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(dir.path().join("s.db"))
        .args(["--max-body-bytes", "65536"])
        .env("ALTAN_PAY_SERVER_TOKENS", tokens)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9")
        .env("OPENAI_API_KEY", "sk-unused")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the altan-pay binary starts");
    let base = format!("http://127.0.0.1:{port}");
    process::wait_up(&base).await;
    Served {
        child,
        base,
        _dir: dir,
    }
}

/// The `_meta` a 2026-07-28 request carries.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "altan-pay-tests", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// Posts `body` to `/mcp` with `token` and the 2026-07-28 standard headers naming `method`
/// (and the tool `name`); the status and the body.
pub async fn post_rpc(
    served: &Served,
    token: &str,
    method: &str,
    name: Option<&str>,
    body: String,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/mcp", served.base))
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("MCP-Protocol-Version", "2026-07-28")
        .header("Mcp-Method", method);
    if let Some(name) = name {
        request = request.header("Mcp-Name", name);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}
