//! A turn whose thread lease is lost while it runs (its lease connection dies and another
//! turn takes the thread over) ends with a named error, `409 lease_lost`, not a bare 500:
//! through the real `altan-pay serve` binary on PostgreSQL.
//!
//! Needs ALTAN_PAY_TEST_DATABASE_URL (scripts/with-postgres.sh).

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;
#[path = "support/postgres.rs"]
mod test_pg;
#[path = "support/wait.rs"]
mod wait;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use process::{free_port, port_guard, wait_up};
use script::{ScriptServer, native_body};
use serde_json::{Value, json};
use test_pg::{client, database_url, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_whose_lease_was_taken_over_ends_with_lease_lost() {
    let url = database_url();
    let database = fresh_database(&url).await;
    let (gateway, _sandbox) = script::gateway().await;
    let model = ScriptServer::start().await;
    // The model answers only once the test has taken the lease away (at most 30 s).
    let release = Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    model.push(Box::new(move |_| {
        for _ in 0..300 {
            if gate.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(json!({"content": "Answer of a turn that lost its lease."}))
    }));
    let dir = tempfile::tempdir().unwrap();
    let guard = port_guard().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--pay-base-url", &gateway.base_url])
        .current_dir(dir.path())
        .env("ALTAN_PAY_DATABASE_URL", &database)
        .env("OPENAI_BASE_URL", &model.base_url)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ALTAN_PAY_SERVER_TOKENS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&base).await;
    drop(guard);

    let turn = {
        let base = base.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/threads/lost/messages"))
                .json(&native_body("Anything new?"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    wait::until(Duration::from_secs(5), || model.calls() >= 1).await;
    assert_eq!(model.calls(), 1, "the turn did not reach the model");

    // The lease's connection dies, and another turn takes the thread over (its fencing token
    // moves on), as a second replica would.
    let db = client(&database).await;
    let killed = db
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "exactly one lease is held");
    let moved = db
        .execute(
            "UPDATE altan_pay_thread_leases SET token = token + 1, holder = 'another replica' WHERE thread_id = 'lost'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);
    release.store(true, Ordering::SeqCst);

    let (status, body) = turn.await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "lease_lost", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("lost") && message.contains("lease"),
        "{body}"
    );
}
