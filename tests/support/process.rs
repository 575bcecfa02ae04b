//! For tests that run the `altan-pay` binary: a free loopback port, and waiting until the
//! server on it answers `/healthz`.

use std::sync::OnceLock;
use std::time::Duration;

/// The tests of one binary run at once. From choosing a port until a server listens on it
/// (or from killing a server until its successor listens on the same port) the port looks
/// free, and another test could be handed it: hold this guard over that span.
pub async fn port_guard() -> tokio::sync::MutexGuard<'static, ()> {
    static PORTS: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    PORTS
        .get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 10 s for `GET {base}/healthz` to answer.
pub async fn wait_up(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up at {base}");
}
