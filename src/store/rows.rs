//! A session stored as rows: its small state as one JSON text (`Session::state_json`), its
//! (bounded) history one message per row, numbered by `seq`, and its provenance one row per
//! object, Stripe id and room word (`policy::Evidence`). A save writes the state, the
//! messages the stored rows lack or hold differently, the provenance entries the turn added
//! or changed, and deletes the rows that fell out of the bound; the rows of a thread are
//! `history_from .. history_from + history_len`.
//!
//! What is stored is known from a watermark per thread kept in memory (the `version` the save
//! wrote, the first `seq`, one fingerprint per stored message). Every save writes a new random
//! `version`, and the save checks, inside its transaction, that the stored version is the
//! watermark's: when it is not (another process wrote the thread, a save failed, the process
//! restarted, the watermark was evicted) the save rewrites every row instead. A watermark is
//! therefore only ever a shortcut, never a source of truth.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Mutex, OnceLock};

use crate::agent::{Session, StoreError};
use crate::model::{ChatMessage, Role};
use crate::policy::{EvidenceKind, EvidenceMark, Provenance};

use super::compact::{HistoryLimits, bound_history};

/// Threads whose watermark is kept; past it one is dropped (its next save rewrites it).
const MAX_WATERMARKS: usize = 10_000;

/// Threads whose provenance is kept after a save or a load, with the version it was stored
/// under: a load of one whose stored version is still that reads none of its provenance rows
/// (the copy shares every entry with the sessions, so it costs a reference per entry). A
/// thread of 1,000 turns holds about 1 MB of provenance: at most this many are kept.
const MAX_REMEMBERED: usize = 128;

/// What a thread's rows hold, as this process last wrote or read them.
#[derive(Debug, Clone)]
pub(super) struct Watermark {
    pub version: i64,
    pub from: i64,
    pub fingerprints: Vec<u64>,
    /// The provenance entries stored.
    pub evidence: EvidenceMark,
}

/// The watermarks of the threads this process saved or loaded lately.
#[derive(Debug, Default)]
pub(super) struct Watermarks {
    threads: Mutex<HashMap<String, Watermark>>,
    provenance: Mutex<HashMap<String, (i64, Provenance)>>,
}

impl Watermarks {
    /// Takes the thread's watermark out: a save that fails leaves none (its next save rewrites).
    pub fn take(&self, thread_id: &str) -> Option<Watermark> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(thread_id)
    }

    pub fn put(&self, thread_id: &str, mark: Watermark) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if threads.len() >= MAX_WATERMARKS
            && !threads.contains_key(thread_id)
            && let Some(evicted) = threads.keys().next().cloned()
        {
            threads.remove(&evicted);
        }
        threads.insert(thread_id.to_string(), mark);
    }

    /// Keeps the thread's provenance as stored under `version`.
    pub fn remember(&self, thread_id: &str, version: i64, provenance: Provenance) {
        let mut kept = self.provenance.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_REMEMBERED
            && !kept.contains_key(thread_id)
            && let Some(evicted) = kept.keys().next().cloned()
        {
            kept.remove(&evicted);
        }
        kept.insert(thread_id.to_string(), (version, provenance));
    }

    /// The thread's provenance as last stored by this process, with its version.
    pub fn remembered(&self, thread_id: &str) -> Option<(i64, Provenance)> {
        self.provenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread_id)
            .cloned()
    }
}

/// A fingerprint of one message: equal messages, equal fingerprints; a differing one is
/// rewritten (a collision would keep a stale row, with odds of 2^-64 per message). Keyed at
/// random per process (fingerprints never leave it), so room text cannot be made to collide.
pub(super) fn fingerprint(message: &ChatMessage) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    let role: u8 = match message.role {
        Role::System => 0,
        Role::User => 1,
        Role::Assistant => 2,
        Role::Tool => 3,
    };
    role.hash(&mut h);
    message.content.hash(&mut h);
    message.name.hash(&mut h);
    message.tool_call_id.hash(&mut h);
    message.tool_calls.len().hash(&mut h);
    for call in &message.tool_calls {
        (&call.id, &call.name, &call.arguments).hash(&mut h);
    }
    match &message.reasoning {
        None => 0u8.hash(&mut h),
        Some(items) => {
            1u8.hash(&mut h);
            for item in items {
                item.to_string().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// One save, ready for the transaction: the state's text and the bounded history.
pub(super) struct SessionRows {
    pub thread_id: String,
    pub state: String,
    pub history: Vec<ChatMessage>,
    pub fingerprints: Vec<u64>,
    /// The session's provenance (entries shared with the session, not copied).
    pub provenance: Provenance,
}

impl SessionRows {
    pub fn new(session: &Session, limits: HistoryLimits) -> Result<SessionRows, StoreError> {
        let mut history = session.history.clone();
        bound_history(&mut history, limits);
        let fingerprints = history.iter().map(fingerprint).collect();
        Ok(SessionRows {
            thread_id: session.thread_id.clone(),
            state: session
                .state_json()
                .map_err(|e| StoreError::Failed(format!("session {}: {e}", session.thread_id)))?,
            history,
            fingerprints,
            provenance: session.provenance.clone(),
        })
    }

    /// The text of the message at `index`.
    pub fn message_text(&self, index: usize) -> Result<String, StoreError> {
        serde_json::to_string(&self.history[index])
            .map_err(|e| StoreError::Failed(format!("session {}: {e}", self.thread_id)))
    }

    /// What to write, given the stored version (`None`: no row, or one of the old layout)
    /// and this process's watermark of the thread.
    pub fn plan(&self, stored: Option<i64>, known: Option<Watermark>) -> Plan {
        let version = rand::random::<i64>();
        let known = known.filter(|k| Some(k.version) == stored);
        let Some(known) = known else {
            let written = self.provenance.evidence().map(row).collect();
            return Plan {
                version,
                full: true,
                from: 0,
                writes: (0..self.history.len()).collect(),
                evidence: EvidenceWrites {
                    written,
                    removed: Vec::new(),
                },
                mark: self.provenance.mark(),
            };
        };
        let mut mark = known.evidence;
        let changes = self.provenance.changes_since(&mark);
        let evidence = EvidenceWrites {
            written: changes.written.iter().copied().map(row).collect(),
            removed: changes
                .removed
                .iter()
                .map(|(kind, key)| (kind.code(), key.to_string()))
                .collect(),
        };
        self.provenance.advance(&mut mark, &changes);
        let offset = best_offset(&known.fingerprints, &self.fingerprints);
        let stored_len = known.fingerprints.len();
        let writes = (0..self.history.len())
            .filter(|&i| {
                known
                    .fingerprints
                    .get(offset + i)
                    .is_none_or(|f| *f != self.fingerprints[i])
            })
            .collect();
        debug_assert!(offset <= stored_len);
        Plan {
            version,
            full: false,
            from: known.from + offset as i64,
            writes,
            evidence,
            mark,
        }
    }

    /// The watermark once `plan` is written.
    pub fn watermark(&self, plan: Plan) -> Watermark {
        Watermark {
            version: plan.version,
            from: plan.from,
            fingerprints: self.fingerprints.clone(),
            evidence: plan.mark,
        }
    }
}

/// One provenance row: kind, key, value.
fn row(entry: crate::policy::Evidence<'_>) -> (i16, String, String) {
    (entry.kind.code(), entry.key.to_string(), entry.text())
}

/// The provenance rows of one save. On a full rewrite every stored row of the thread is
/// deleted first (as with the messages) and `written` holds every entry.
#[derive(Debug, Default)]
pub(super) struct EvidenceWrites {
    /// Rows to insert or replace: kind, key, value.
    pub written: Vec<(i16, String, String)>,
    /// Rows to delete: kind, key.
    pub removed: Vec<(i16, String)>,
}

/// The writes of one save.
#[derive(Debug)]
pub(super) struct Plan {
    /// The version the save writes.
    pub version: i64,
    /// Every row of the thread is deleted first.
    pub full: bool,
    /// The `seq` of the first message; rows outside `from .. from + len` are deleted.
    pub from: i64,
    /// Indexes into the history of the messages to write (insert or replace).
    pub writes: Vec<usize>,
    /// The provenance rows to write and delete.
    pub evidence: EvidenceWrites,
    /// The provenance stored once the plan is written.
    pub mark: EvidenceMark,
}

/// Where the new history starts within the stored one: the offset whose overlap has the most
/// equal messages (the history only loses a prefix, some old tool results are compacted, and
/// messages are added at the end). With nothing in common, past the stored rows.
fn best_offset(stored: &[u64], new: &[u64]) -> usize {
    let Some(first) = new.first() else {
        return stored.len();
    };
    let mut best = (0usize, stored.len());
    for (offset, _) in stored.iter().enumerate().filter(|(_, f)| *f == first) {
        let equal = stored[offset..]
            .iter()
            .zip(new)
            .filter(|(a, b)| a == b)
            .count();
        if equal > best.0 {
            best = (equal, offset);
        }
    }
    best.1
}

/// What a load read of a thread stored as rows: the state row's columns, then its provenance
/// rows (kind, key, value; none when the stored version is the one this process remembers the
/// provenance of) and its messages in order.
pub(super) struct Loaded {
    pub version: i64,
    pub from: i64,
    pub state: String,
    pub evidence: Vec<(i64, String, String)>,
    pub messages: Vec<String>,
    /// How many history rows the state says there are; fewer read is an error.
    pub history_len: i64,
}

/// Reassembles a session stored as rows, and leaves its watermark and provenance in `marks`.
/// `remembered` is what `marks` held when the rows were read (`Watermarks::remembered`).
pub(super) fn assemble(
    thread_id: &str,
    loaded: Loaded,
    remembered: Option<(i64, Provenance)>,
    marks: &Watermarks,
) -> Result<Session, StoreError> {
    let unreadable = |e: serde_json::Error| {
        StoreError::Failed(format!("session {thread_id} is unreadable: {e}"))
    };
    if loaded.messages.len() as i64 != loaded.history_len {
        return Err(StoreError::Failed(format!(
            "session {thread_id}: {} of its {} history rows are stored",
            loaded.messages.len(),
            loaded.history_len
        )));
    }
    let mut session: Session = serde_json::from_str(&loaded.state).map_err(unreadable)?;
    // A state written before provenance rows holds the provenance itself: none of it is in
    // rows yet, so the mark is empty and the next save writes every entry.
    let in_state = session.provenance != Provenance::default();
    let reused = match remembered {
        Some((version, provenance)) if version == loaded.version && !in_state => {
            session.provenance = provenance;
            true
        }
        _ => false,
    };
    for (kind, key, value) in &loaded.evidence {
        let kind = EvidenceKind::from_code(*kind).ok_or_else(|| {
            StoreError::Failed(format!(
                "session {thread_id} is unreadable: a provenance row of unknown kind {kind}"
            ))
        })?;
        session
            .provenance
            .restore(kind, key, value)
            .map_err(unreadable)?;
    }
    session.history = loaded
        .messages
        .iter()
        .map(|m| serde_json::from_str(m))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    let fingerprints = session.history.iter().map(fingerprint).collect();
    let known = marks
        .take(thread_id)
        .filter(|w| reused && w.version == loaded.version);
    let evidence = match known {
        Some(known) => known.evidence,
        None if in_state => EvidenceMark::default(),
        None => session.provenance.mark(),
    };
    marks.put(
        thread_id,
        Watermark {
            version: loaded.version,
            from: loaded.from,
            fingerprints,
            evidence,
        },
    );
    marks.remember(thread_id, loaded.version, session.provenance.clone());
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(texts: &[&str]) -> SessionRows {
        let mut session = Session::new("t");
        session.history = texts.iter().map(|t| ChatMessage::user(*t)).collect();
        SessionRows::new(&session, HistoryLimits::default()).unwrap()
    }

    #[test]
    fn an_extended_history_writes_only_its_new_messages() {
        let before = rows(&["a", "b"]);
        let mark = before.watermark(before.plan(None, None));
        let after = rows(&["a", "b", "c", "d"]);
        let plan = after.plan(Some(mark.version), Some(mark.clone()));
        assert!(!plan.full);
        assert!(plan.evidence.written.is_empty());
        assert_eq!((plan.from, plan.writes), (0, vec![2, 3]));
    }

    #[test]
    fn a_history_that_lost_its_start_keeps_its_numbers() {
        let before = rows(&["a", "b", "c"]);
        let mark = before.watermark(before.plan(None, None));
        let after = rows(&["b", "c", "d"]);
        let plan = after.plan(Some(mark.version), Some(mark));
        assert_eq!((plan.full, plan.from, plan.writes), (false, 1, vec![2]));
    }

    #[test]
    fn a_save_writes_the_provenance_its_turn_added_and_a_full_rewrite_writes_all() {
        let mut session = Session::new("t");
        session
            .provenance
            .observe_result(&serde_json::json!({"id": "prod_1", "object": "product"}));
        let first = SessionRows::new(&session, HistoryLimits::default()).unwrap();
        let plan = first.plan(None, None);
        assert_eq!(plan.evidence.written.len(), 2, "the object and its id");
        let mark = first.watermark(plan);
        session.provenance.observe_room_text("hi");
        let next = SessionRows::new(&session, HistoryLimits::default()).unwrap();
        let plan = next.plan(Some(mark.version), Some(mark));
        assert_eq!(
            plan.evidence.written,
            vec![(2, "hi".to_string(), String::new())]
        );
        assert!(plan.evidence.removed.is_empty());
    }

    #[test]
    fn another_version_on_disk_means_a_full_rewrite() {
        let before = rows(&["a"]);
        let mark = before.watermark(before.plan(None, None));
        let plan = rows(&["a", "b"]).plan(Some(mark.version ^ 1), Some(mark));
        assert!(plan.full);
        assert_eq!(plan.writes, vec![0, 1]);
    }
}
