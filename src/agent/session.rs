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
    /// The id a person approves or declines it by ([`Agent::decide_approval`](super::Agent::decide_approval)).
    pub approval_id: String,
    /// The call exactly as the model made it; approved, it runs as it is.
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
    /// The thread this is the memory of.
    pub thread_id: String,
    /// The conversation as the model saw it, without the system prompt and context message.
    /// (Absent from [`Session::state_json`]: the stores keep it as rows of its own.)
    #[serde(default)]
    pub history: Vec<ChatMessage>,
    /// Ids and objects seen in this thread: the evidence for the id rules.
    // Absent from `state_json` too: the stores keep it as rows (store/rows.rs).
    #[serde(default)]
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
    /// An empty session for a thread that has not been answered yet.
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

    /// Everything but the history, as JSON (the stores keep the history as rows of its own):
    /// read back as a `Session` with an empty history. Nothing is cloned.
    // The provenance is left out as well: the stores keep it one row per entry, so a save
    // writes what a turn added (`policy::Evidence`); read back, it is empty.
    pub fn state_json(&self) -> serde_json::Result<String> {
        // Destructured without `..`: a new field fails to compile until it is stored here.
        let Session {
            thread_id,
            history: _,
            provenance: _,
            unsynced,
            trail,
            approvals,
            uncertain,
            syncs,
            answers,
            opened_tools,
        } = self;
        serde_json::to_string(&SessionState {
            thread_id,
            unsynced,
            trail,
            approvals,
            uncertain,
            syncs,
            answers: *answers,
            opened_tools,
        })
    }
}

/// [`Session`] without its history, borrowed, for [`Session::state_json`]; same field names.
#[derive(Serialize)]
struct SessionState<'a> {
    thread_id: &'a str,
    unsynced: &'a [Mutation],
    trail: &'a [RoomMessage],
    approvals: &'a [PendingApproval],
    uncertain: &'a [UncertainWrite],
    syncs: &'a PendingSyncs,
    answers: u64,
    opened_tools: &'a [String],
}

/// Why the store failed: one error for every store (sessions, leases, idempotency records,
/// pending syncs, plans), SQLite or PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not do it (I/O, the database, a corrupt row).
    #[error("store: {0}")]
    Failed(String),
    /// The thread's lease was taken over by another turn while this one ran (its lease
    /// connection died and another replica took the thread): this turn's save was refused.
    #[error(
        "store: thread {thread_id}: the lease was taken over by another turn; this save was refused"
    )]
    LeaseLost {
        /// The thread whose save was refused.
        thread_id: String,
    },
}

impl StoreError {
    /// What went wrong, without the `store:` prefix.
    pub fn detail(&self) -> String {
        match self {
            StoreError::Failed(detail) => detail.clone(),
            StoreError::LeaseLost { .. } => {
                let text = self.to_string();
                text.trim_start_matches("store: ").to_string()
            }
        }
    }
}

/// What every store call returns: a future of its result, boxed so the store traits can be
/// used as `dyn` objects. A call never blocks its caller's thread; it is done when awaited.
/// (`E` is [`StoreError`] but for the lease, whose "busy" is an answer, not a failure.)
pub type StoreFuture<'a, T, E = StoreError> =
    Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Where sessions live between answers.
pub trait SessionStore: Send + Sync {
    /// The thread's session, `None` for a thread never saved. Waits for saves of the thread
    /// still queued ([`SessionStore::save_queued`]).
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Saves the session; durable when the future resolves. Concurrent saves may share one
    /// commit.
    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()>;

    /// Queues a save without waiting for it, where nothing depends on it yet: a later `save`
    /// returns only once this save is durable too (stores commit in order). A failure is
    /// logged; the later save carries the whole session anyway.
    fn save_queued(&self, session: &Session);
}

/// Sessions in memory: the default for the library and tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl MemoryStore {
    fn put(&self, session: &Session) -> Result<(), StoreError> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("the memory store's lock is poisoned".into()))?;
        sessions.insert(session.thread_id.clone(), session.clone());
        Ok(())
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>> {
        let found = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Failed("the memory store's lock is poisoned".into()))
            .map(|sessions| sessions.get(thread_id).cloned());
        Box::pin(std::future::ready(found))
    }

    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.put(session)))
    }

    fn save_queued(&self, session: &Session) {
        if let Err(e) = self.put(session) {
            tracing::warn!(error = %e, thread = %session.thread_id, "could not save the session");
        }
    }
}
