//! What the agent remembers of a thread between answers, and the `SessionStore` trait that
//! keeps it (in memory here; SQLite with the chat endpoint).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::model::{ChatMessage, ToolCall};
use crate::policy::Provenance;
use crate::room::RoomMessage;
use crate::sync::{Mutation, PendingSyncs};

/// A tool call held until a person approves or declines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub approval_id: String,
    pub call: ToolCall,
}

/// A Stripe write whose answer was lost on every attempt: it may or may not have happened.
/// Replaying it with the same idempotency key either returns what Stripe did or does it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UncertainWrite {
    /// The call as the model made it.
    pub call: ToolCall,
    /// What its idempotency key was made from; every replay and repeat uses it again.
    pub key_id: String,
    /// When it was first sent (unix seconds): Stripe keeps keys for 24 hours.
    pub since: u64,
}

impl UncertainWrite {
    /// Whether `call` asks for the same write: same tool, same arguments (as JSON values).
    pub fn matches(&self, call: &ToolCall) -> bool {
        if self.call.name != call.name {
            return false;
        }
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        match (parse(&self.call.arguments), parse(&call.arguments)) {
            (Some(a), Some(b)) => a == b,
            _ => self.call.arguments == call.arguments,
        }
    }
}

/// One thread's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub thread_id: String,
    /// The conversation as the model saw it, without the system prompt and context message.
    pub history: Vec<ChatMessage>,
    /// Ids and objects seen in this thread: the evidence for the id rules.
    pub provenance: Provenance,
    /// Stripe changes not yet handed to Altan. Saved as soon as they happen, so a crash
    /// between a Stripe write and the answer still hands the change over next time.
    pub unsynced: Vec<Mutation>,
    /// The latest room messages, for spotting agents going back and forth.
    pub trail: Vec<RoomMessage>,
    /// Calls waiting for a person's approval.
    pub approvals: Vec<PendingApproval>,
    /// Writes whose outcome is unknown, confirmed with their own key before each answer.
    #[serde(default)]
    pub uncertain: Vec<UncertainWrite>,
    /// Sync plans handed to Altan and what Altan said about them.
    pub syncs: PendingSyncs,
    /// Answers given in this thread.
    pub answers: u64,
    /// Tools the model opened with `open_tools` (none: the starter tools are sent).
    #[serde(default)]
    pub opened_tools: Vec<String>,
}

impl Session {
    pub fn new(thread_id: &str) -> Session {
        Session {
            thread_id: thread_id.to_string(),
            ..Session::default()
        }
    }

    /// Records `call` as a write of unknown outcome under `key_id`; false when that key is
    /// already recorded.
    pub fn record_uncertain(&mut self, call: &ToolCall, key_id: &str) -> bool {
        if self.uncertain.iter().any(|w| w.key_id == key_id) {
            return false;
        }
        self.uncertain.push(UncertainWrite {
            call: call.clone(),
            key_id: key_id.to_string(),
            since: super::write_ahead::unix_now(),
        });
        true
    }

    /// Forgets the uncertain write recorded under `key_id`: its outcome is known now.
    pub fn settle_uncertain(&mut self, key_id: &str) {
        self.uncertain.retain(|w| w.key_id != key_id);
    }
}

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not do it (I/O, the database, a corrupt row).
    #[error("session store: {0}")]
    Failed(String),
    /// The thread's lease was taken over by another turn while this one ran (its lease
    /// connection died and another replica took the thread): this turn's save was refused.
    #[error(
        "session store: thread {thread_id}: the lease was taken over by another turn; this save was refused"
    )]
    LeaseLost { thread_id: String },
}

impl StoreError {
    /// What went wrong, without the `session store:` prefix.
    pub fn detail(&self) -> String {
        match self {
            StoreError::Failed(detail) => detail.clone(),
            StoreError::LeaseLost { .. } => {
                let text = self.to_string();
                text.trim_start_matches("session store: ").to_string()
            }
        }
    }
}

/// Where sessions live between answers.
pub trait SessionStore: Send + Sync {
    fn load(&self, thread_id: &str) -> Result<Option<Session>, StoreError>;
    fn save(&self, session: &Session) -> Result<(), StoreError>;

    /// The save the agent uses. A store that syncs to disk overrides it so that the caller's
    /// task yields while the write is made durable and concurrent saves can share one commit;
    /// the default is the blocking `save`.
    fn save_async<'a>(
        &'a self,
        session: &'a Session,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(std::future::ready(self.save(session)))
    }

    /// Saves without waiting for the save to be durable, where nothing depends on it yet: a
    /// later `save_async` returns only once this save is durable too (stores commit in order).
    /// A failure is logged; the later save carries the whole session anyway. The default is
    /// the blocking `save`.
    fn save_queued(&self, session: &Session) {
        if let Err(e) = self.save(session) {
            tracing::warn!(error = %e, thread = %session.thread_id, "could not save the session");
        }
    }
}

/// Sessions in memory: the default for the library and tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore for MemoryStore {
    fn load(&self, thread_id: &str) -> Result<Option<Session>, StoreError> {
        let sessions = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("the memory store's lock is poisoned".into()))?;
        Ok(sessions.get(thread_id).cloned())
    }

    fn save(&self, session: &Session) -> Result<(), StoreError> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("the memory store's lock is poisoned".into()))?;
        sessions.insert(session.thread_id.clone(), session.clone());
        Ok(())
    }
}
