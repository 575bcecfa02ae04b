//! `altan-pay serve` holds its ground against callers and upstreams, played as an attacker
//! through the real binary on loopback: stalled connections are cut off and never starve
//! `/healthz`, a stalled body is answered 408, the connection cap holds, a huge model answer is
//! neither asked for nor stored whole, a signed checkout event naming objects that do not
//! exist is acknowledged `ignored` (so Stripe stops redelivering it), and an upstream error's
//! query string (a customer's e-mail) never reaches the logs.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::pay::RouteTable;
use process::{free_port, port_guard, wait_up};
use script::{ScriptServer, native_body};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A `serve` process on a loopback port, its stderr in a file, killed when dropped.
struct Serve {
    child: Child,
    base: String,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `altan-pay serve ARGS` with `envs` (a model that is never reachable unless one
    /// is given) and waits for `/healthz`.
    async fn start(args: &[&str], envs: &[(&str, &str)]) -> Serve {
        let guard = port_guard().await;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_altan-pay"));
        cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(dir.path().join("sessions.db"))
            .arg("--events-db")
            .arg(dir.path().join("events.db"))
            .args(args)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ALTAN_PAY_SERVER_TOKENS")
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env_remove("ALTAN_ROOM_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (name, value) in envs {
            cmd.env(name, value);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut serve = Serve {
            child,
            base,
            port,
            log,
            _dir: dir,
        };
        let up = tokio::time::timeout(Duration::from_secs(15), wait_up(&serve.base)).await;
        drop(guard);
        if up.is_err() {
            let _ = serve.child.kill();
            panic!("serve did not come up: {}", serve.logs());
        }
        serve
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `n` connections that each send a request line and one header (or, every third one,
/// nothing at all) and then stall.
async fn stalled_connections(port: u16, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        if i % 3 != 0 {
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        out.push(socket);
    }
    out
}

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes; what
/// was read, and whether it was closed.
async fn read_until_closed(socket: &mut TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (seen, false),
        }
    }
}

/// Asserts every socket is closed by the server before `deadline`.
async fn assert_all_closed(sockets: &mut [TcpStream], deadline: Instant, what: &str) {
    for (i, socket) in sockets.iter_mut().enumerate() {
        let (_, closed) = read_until_closed(socket, deadline).await;
        assert!(
            closed,
            "{what}: stalled connection {i} of {} is still open",
            sockets.len()
        );
    }
}

async fn healthz(base: &str) -> reqwest::StatusCode {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("/healthz did not answer")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_by_default_and_healthz_still_answers() {
    let serve = Serve::start(&["--sandbox"], &[]).await;
    // Well below the process's descriptor limit: what is shown is that they are closed.
    let mut stalled = stalled_connections(serve.port, 200).await;
    assert_eq!(healthz(&serve.base).await, 200);
    // The default header-read timeout is 10 s; give it room on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(40);
    assert_all_closed(&mut stalled, deadline, "with the default settings").await;
    assert_eq!(healthz(&serve.base).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_and_never_starve_healthz() {
    let serve = Serve::start(
        &[
            "--sandbox",
            "--max-connections",
            "8",
            "--header-read-timeout-secs",
            "1",
        ],
        &[],
    )
    .await;
    let mut stalled = stalled_connections(serve.port, 40).await;
    // Five times the cap is stalled; /healthz waits for a slot and gets one as the stalled
    // connections time out.
    assert_eq!(healthz(&serve.base).await, 200);
    let deadline = Instant::now() + Duration::from_secs(40);
    assert_all_closed(&mut stalled, deadline, "past the cap").await;
    let logs = serve.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_answered_408_and_closed() {
    let serve = Serve::start(&["--sandbox", "--body-read-timeout-secs", "1"], &[]).await;
    let mut socket = TcpStream::connect(("127.0.0.1", serve.port)).await.unwrap();
    socket
        .write_all(
            b"POST /v1/threads/t1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": [",
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (answer, closed) = read_until_closed(&mut socket, deadline).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        closed,
        "the stalled body's connection is still open: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_model_answer_is_bounded_in_the_request_and_cut_before_it_is_stored() {
    let script = ScriptServer::start().await;
    // A server that ignores the token limit and answers 2 MB of text.
    let huge = "All done. ".repeat(200 * 1024);
    script.text(&huge);
    let serve = Serve::start(&["--sandbox"], &[("OPENAI_BASE_URL", &script.base_url)]).await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/v1/threads/t1/messages", serve.base))
        .json(&native_body("Anything new?"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = answer["text"].as_str().unwrap_or_default();
    let stored: u64 = std::fs::read_dir(serve.dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("sessions.db"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        stored < 1024 * 1024,
        "the sessions database holds {stored} bytes after one 2 MB answer"
    );
    assert!(
        text.len() <= 70 * 1024,
        "the answer is {} bytes long",
        text.len()
    );
    assert!(
        text.contains("answer cut at 65536 bytes"),
        "the cut is not marked: {}",
        &text[text.len().saturating_sub(300)..]
    );
    let requests = script.requests();
    assert_eq!(
        requests[0]["max_completion_tokens"], 4096,
        "the model request carries no output cap"
    );
}

const SECRET: &str = "whsec_limits_events";

fn signed(body: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    altan_pay::stripe::signature::header(SECRET, now, body.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_checkout_naming_missing_objects_is_acknowledged_as_ignored() {
    let seed = json!({"accounts": {"ws_1": {"stripe_connect_id": "acct_limits1"}}});
    let sandbox = Sandbox::with_state(&seed).unwrap();
    let gateway = spawn(RouteTable::embedded(), Arc::new(sandbox), None)
        .await
        .unwrap();
    let serve = Serve::start(
        &[
            "--pay-base-url",
            &gateway.base_url,
            "--stripe-webhook-secret",
            SECRET,
            "--stripe-account-map",
            "acct_limits1=ws_1",
        ],
        &[],
    )
    .await;
    let event = json!({
        "id": "evt_missing_1", "object": "event", "type": "checkout.session.completed",
        "created": 1_700_000_000, "account": "acct_limits1",
        "data": {"object": {"id": "cs_missing", "object": "checkout.session",
            "customer": "cus_doesnotexist", "subscription": "sub_doesnotexist"}}
    })
    .to_string();
    let client = reqwest::Client::new();
    for delivery in 1..=2 {
        let response = client
            .post(format!("{}/v1/stripe/events", serve.base))
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signed(&event))
            .body(event.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "delivery {delivery}: {body}");
        assert!(
            matches!(body["status"].as_str(), Some("ignored" | "duplicate")),
            "delivery {delivery}: {body}"
        );
        if delivery == 1 {
            assert_eq!(body["status"], "ignored", "{body}");
            assert!(
                body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("cus_doesnotexist")),
                "{body}"
            );
        }
    }
    let logs = serve.logs();
    assert!(
        logs.contains("evt_missing_1") && logs.contains("ignored"),
        "{logs}"
    );
}

/// A stand-in Altan Pay API that answers the Connect id lookup and hangs up on everything
/// else, so the client's error names the URL it called.
async fn hang_up_pay() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if head.contains("/stripe_connect_id ") {
                    let body = r#"{"stripe_connect_id":"acct_scrub1"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                }
                // Anything else: the connection closes unanswered.
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_is_logged_without_its_query_string() {
    let pay = hang_up_pay().await;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_altan-pay"))
            .args([
                "call",
                "get_customers",
                r#"{"email": "jane.doe@example.com"}"#,
                "--pay-base-url",
                &pay,
                "--account-id",
                "ws_1",
                "--timeout-secs",
                "5",
            ])
            .env("RUST_LOG", "debug")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The call failed on the hang-up, and said so.
    assert!(
        stderr.contains("get_customers") || stdout.contains("get_customers"),
        "the error does not name the route: {stdout}\n{stderr}"
    );
    for (name, text) in [("stderr", &stderr), ("stdout", &stdout)] {
        assert!(
            !text.contains("jane.doe") && !text.contains("example.com"),
            "{name} carries the query string: {text}"
        );
    }
}

#[test]
fn secret_holding_configs_never_show_their_secrets_in_debug() {
    use altan_pay::events::{AccountMap, EventsConfig, RoomConfig};
    use altan_pay::gateway::sandbox::EventSinkConfig;
    let events = EventsConfig::new(
        vec!["whsec_never_shown_1".into(), "whsec_never_shown_2".into()],
        AccountMap::single("acct_1", "ws_1"),
    );
    let mut room = RoomConfig::new("http://127.0.0.1:9", "agent_1");
    room.token = Some("room_token_never_shown".into());
    let sink = EventSinkConfig::new(
        "http://127.0.0.1:9/v1/stripe/events",
        "whsec_sink_never_shown",
    );
    for shown in [
        format!("{events:?}"),
        format!("{room:?}"),
        format!("{sink:?}"),
    ] {
        assert!(!shown.contains("never_shown"), "{shown}");
    }
}
