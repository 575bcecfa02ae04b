//! One agent turn in its own process, for the crash tests: it can die on purpose with
//! `std::process::abort()` right after a Stripe write, and a later run resumes from the files.
//!
//! ```text
//! crash_turn --data sandbox.db --sessions sessions.json --phase PHASE
//! ```
//! Phases: `after-write` (abort once the write's result is saved in the session, before the
//! answer), `after-commit` (abort inside the gateway right after the sandbox committed, before
//! the answer reaches the agent), `resume-text` and `resume-create` (a new process answering
//! the next message; `resume-create` has the model resend the interrupted call). Prints the
//! answer as one JSON line: `{"text", "plan": [[table, id]...], "errors": [...]}`.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use altan_pay::agent::{Agent, Session, SessionStore, StoreError, StoreFuture};
use altan_pay::gateway::{Backend, PayRequest, PayResponse, Sandbox, spawn};
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMember, RoomMessage};
use serde_json::json;

/// Sessions in one JSON file, replaced atomically (write, fsync, rename) on every save.
struct JsonFileStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonFileStore {
    fn read(&self) -> Result<HashMap<String, Session>, StoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Failed(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(e) => Err(StoreError::Failed(e.to_string())),
        }
    }
}

impl JsonFileStore {
    fn get(&self, thread_id: &str) -> Result<Option<Session>, StoreError> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| StoreError::Failed("poisoned".into()))?;
        Ok(self.read()?.remove(thread_id))
    }

    /// Saves at once: the crash phases count on a queued save being on disk.
    fn put(&self, session: &Session) -> Result<(), StoreError> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| StoreError::Failed("poisoned".into()))?;
        let mut all = self.read()?;
        all.insert(session.thread_id.clone(), session.clone());
        let text = serde_json::to_string(&all).map_err(|e| StoreError::Failed(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        let io = |e: std::io::Error| StoreError::Failed(e.to_string());
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

impl SessionStore for JsonFileStore {
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(std::future::ready(self.get(thread_id)))
    }

    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.put(session)))
    }

    fn save_queued(&self, session: &Session) {
        if let Err(e) = self.put(session) {
            eprintln!("could not save the session: {e}");
        }
    }
}

/// Dies right after the inner backend committed a product: the answer never leaves.
struct AbortAfterCommit {
    inner: Sandbox,
}

impl Backend for AbortAfterCommit {
    fn handle(
        &self,
        request: PayRequest,
    ) -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>> {
        Box::pin(async move {
            let create = request.operation == "products.create";
            let response = self.inner.handle(request).await;
            if create && response.status == 200 {
                std::process::abort();
            }
            response
        })
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn context() -> AgentContext {
    AgentContext {
        account_id: Some("ws_1".into()),
        agent_member_id: Some("pay-1".into()),
        agent_name: Some("Altan Pay".into()),
        members: vec![
            RoomMember {
                member_id: "altan-1".into(),
                name: "Altan".into(),
                kind: MemberKind::Agent,
            },
            RoomMember {
                member_id: "u-1".into(),
                name: "Ada".into(),
                kind: MemberKind::User,
            },
        ],
        ..AgentContext::default()
    }
}

fn create_pro() -> ScriptedStep {
    ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (Some(data), Some(sessions), Some(phase)) =
        (arg("--data"), arg("--sessions"), arg("--phase"))
    else {
        return Err("usage: crash_turn --data DB --sessions FILE --phase PHASE".into());
    };
    let sandbox = Sandbox::open(Path::new(&data))?;
    let backend: Arc<dyn Backend> = match phase.as_str() {
        "after-commit" => Arc::new(AbortAfterCommit { inner: sandbox }),
        _ => Arc::new(sandbox),
    };
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), backend, None).await?;
    let steps = match phase.as_str() {
        "after-write" => vec![
            create_pro(),
            // The write's result is in the saved session by the time the model is asked again.
            ScriptedStep::dynamic(|_| std::process::abort()),
        ],
        "after-commit" => vec![create_pro(), ScriptedStep::text("never reached")],
        "resume-text" => vec![ScriptedStep::text("Pro is ready.")],
        "resume-create" => vec![create_pro(), ScriptedStep::text("Pro is ready.")],
        other => return Err(format!("unknown phase {other}").into()),
    };
    let store = Arc::new(JsonFileStore {
        path: PathBuf::from(sessions),
        lock: Mutex::new(()),
    });
    let agent = Agent::builder()
        .model(Arc::new(ScriptedModel::new(steps)))
        .pay(PayClient::new(PayConfig::new(
            routes.with_base_url(&gateway.base_url),
        ))?)
        .store(store)
        .build()?;
    let text = if phase.starts_with("resume") {
        "Is it done?"
    } else {
        "Create a product called Pro"
    };
    let said = RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.into(),
    };
    let answer = agent.respond("t", &context(), &[said]).await?;
    let plan: Vec<_> = answer
        .sync_plan
        .iter()
        .flat_map(|p| p.operations())
        .map(|o| json!([o.table, o.id]))
        .collect();
    let errors: Vec<_> = answer.tool_calls.iter().map(|c| json!(c.error)).collect();
    println!(
        "{}",
        json!({"text": answer.text, "plan": plan, "errors": errors})
    );
    Ok(())
}
