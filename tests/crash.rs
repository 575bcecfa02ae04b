//! Crash safety at the library level, with processes really killed: an agent turn in a child
//! process aborts right after a Stripe write; a new process on the same files hands it to Altan.

use std::path::{Path, PathBuf};
use std::process::Command;

use altan_pay::agent::Session;
use altan_pay::gateway::{PayRequest, Sandbox};
use serde_json::{Value, json};

fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

struct Files {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sessions: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    Files {
        db: dir.path().join("sandbox.db"),
        sessions: dir.path().join("sessions.json"),
        _dir: dir,
    }
}

/// Runs one phase; returns whether it exited normally and its last stdout line as JSON.
fn run(files: &Files, phase: &str) -> (bool, Option<Value>) {
    let out = Command::new(example_binary("crash_turn"))
        .arg("--data")
        .arg(&files.db)
        .arg("--sessions")
        .arg(&files.sessions)
        .args(["--phase", phase])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    if out.status.success() {
        (true, json)
    } else {
        use std::os::unix::process::ExitStatusExt;
        // abort() ends the process with SIGABRT, not an exit code.
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{phase}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (false, json)
    }
}

fn saved_session(path: &Path) -> Session {
    let text = std::fs::read_to_string(path).unwrap();
    let mut all: std::collections::HashMap<String, Session> = serde_json::from_str(&text).unwrap();
    all.remove("t").unwrap()
}

fn products(db: &Path) -> Vec<String> {
    let sandbox = Sandbox::open(db).unwrap();
    let r = sandbox.handle_now(&PayRequest {
        operation: "products.list".into(),
        account_id: "ws_1".into(),
        stripe_connect_id: Some(altan_pay::gateway::sandbox::derived_connect_id("ws_1")),
        id: None,
        params: serde_json::Map::from_iter([("limit".to_string(), json!("100"))]),
        idempotency_key: None,
    });
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// Killed after the write's result was saved and before the answer: the session holds the
/// mutation, and the next answer, in a new process, hands it to Altan.
#[test]
fn a_turn_killed_after_a_stripe_write_hands_it_over_in_the_next_process() {
    let f = files();
    let (exited, _) = run(&f, "after-write");
    assert!(!exited, "the first process must die");
    let ids = products(&f.db);
    assert_eq!(ids.len(), 1, "the write is durable");
    let session = saved_session(&f.sessions);
    assert_eq!(
        session.unsynced.len(),
        1,
        "the mutation is saved as unsynced"
    );
    assert!(
        serde_json::to_string(&session.unsynced)
            .unwrap()
            .contains(&ids[0])
    );

    let (exited, answer) = run(&f, "resume-text");
    assert!(exited);
    let answer = answer.unwrap();
    assert_eq!(answer["plan"], json!([["products", ids[0]]]));
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains(&ids[0]), "{text}");
    assert!(
        text.trim_end().ends_with("[@Altan](/member/altan-1)"),
        "{text}"
    );
    assert!(saved_session(&f.sessions).unsynced.is_empty());
    assert_eq!(products(&f.db), ids, "nothing created twice");
}

/// Killed inside the gateway after the sandbox committed, before the agent saw the answer:
/// the session only knows the call was asked for; the model resending it (same call id, same
/// idempotency key) in the next process gets the same object, and the plan hands it over.
#[test]
fn a_turn_killed_between_commit_and_answer_recovers_by_idempotent_resend() {
    let f = files();
    let (exited, _) = run(&f, "after-commit");
    assert!(!exited, "the first process must die");
    let ids = products(&f.db);
    assert_eq!(ids.len(), 1, "the committed write survived the abort");
    assert!(saved_session(&f.sessions).unsynced.is_empty());

    let (exited, answer) = run(&f, "resume-create");
    assert!(exited);
    let answer = answer.unwrap();
    assert_eq!(answer["errors"], json!([null]));
    assert_eq!(answer["plan"], json!([["products", ids[0]]]));
    assert_eq!(products(&f.db), ids, "the resend created nothing new");
}
