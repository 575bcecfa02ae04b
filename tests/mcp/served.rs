//! `altan-pay serve` as a child process for the MCP tests: on a free loopback port, with the
//! given Pay flags and tokens, killed when dropped.

use std::process::{Child, Command, Stdio};

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
