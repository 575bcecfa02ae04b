//! Everything `altan-pay serve` keeps, behind one interface ([`ServeStore`], `serve.rs`) with two
//! implementations: [`SqliteStore`] here (sessions, thread owners, idempotency records and plans
//! in one SQLite file, WAL, synchronous=FULL; pending syncs in `pending.rs`) and [`PgStore`]
//! (`pg/`, several replicas on one PostgreSQL). Histories are bounded and old tool results
//! compacted (`compact.rs`). Async writes share commits (group commit, `commit.rs`): one fsync
//! covers every concurrent turn.

mod commit;
mod compact;
mod in_flight;
pub mod pending;
pub mod pg;
mod rows;
mod serve;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::agent::{Session, SessionStore, StoreError};
use crate::room::AgentContext;
pub use compact::{HistoryLimits, bound_history};
use in_flight::InFlight;
use pending::{Applied, EventRecord, PendingEntry, PendingStore, SqlitePendingStore, Versioned};
pub use pg::{PgOptions, PgStore};
use rows::{SessionRows, Watermarks};
pub use serve::{Lease, LeaseError, Reservation, ServeStore, StoreFuture, ThreadInfo};

/// A SQLite file holding every thread's session. Reads go through their own connection (WAL
/// lets them run while a commit is being synced) on Tokio's blocking threads; writes go through
/// one write connection, batched by the group-commit thread. No call blocks an async worker.
pub struct SqliteStore {
    /// Queued session saves not yet committed, by thread: a load waits for its thread's.
    in_flight: Arc<InFlight>,
    read: Arc<Mutex<Connection>>,
    /// The same connection as `read` for an in-memory database, which cannot be shared.
    write: Arc<Mutex<Connection>>,
    commits: commit::GroupCommit,
    limits: HistoryLimits,
    /// What each thread's rows hold, as this process last wrote or read them (`rows.rs`).
    marks: Arc<Watermarks>,
    /// Events received and pending syncs: in the same file unless [`SqliteStore::with_pending`].
    pending: SqlitePendingStore,
    leases: serve::LocalLeases,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    thread_id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    account_id TEXT,
    context TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    account_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS session_messages (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_provenance (
    thread_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (thread_id, kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    response TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
";

fn db_err(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Failed(format!("{what}: {e}"))
}

/// A panic elsewhere while holding the lock leaves SQLite itself consistent.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` on the connection on one of Tokio's blocking threads: waiting for the lock and
/// SQLite's own I/O never hold up an async worker.
async fn blocking<R, F>(conn: &Arc<Mutex<Connection>>, work: F) -> Result<R, StoreError>
where
    F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || work(&mut lock(&conn)))
        .await
        .map_err(|e| StoreError::Failed(format!("a SQLite call stopped: {e}")))?
}

/// WAL, full fsync on commit, a busy timeout, and the tables.
fn configure(conn: Connection) -> Result<Connection, StoreError> {
    // journal_mode answers with a row, so it is read rather than executed.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(db_err("enabling WAL"))?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")
        .map_err(db_err("pragmas"))?;
    conn.execute_batch(SCHEMA)
        .map_err(db_err("creating tables"))?;
    migrate_sessions(&conn)?;
    Ok(conn)
}

/// Sessions written before histories were stored as rows (`rows.rs`) have one JSON text in
/// `session`; the columns below are added to them, NULL, and such a row is still read whole.
/// Its next save rewrites it as rows.
fn migrate_sessions(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(db_err("migrating the sessions table"))?;
    let migrated = (|| {
        let has_version: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('sessions') WHERE name = 'version'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !has_version {
            conn.execute_batch(
                "ALTER TABLE sessions ADD COLUMN version INTEGER;
                 ALTER TABLE sessions ADD COLUMN history_from INTEGER;
                 ALTER TABLE sessions ADD COLUMN history_len INTEGER;",
            )?;
        }
        conn.execute_batch("COMMIT")
    })();
    if migrated.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    migrated.map_err(db_err("migrating the sessions table"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (or creates) the file, in WAL mode with full fsync on commit.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let open = || {
            Connection::open(path)
                .map_err(|e| StoreError::Failed(format!("cannot open {}: {e}", path.display())))
        };
        let write = configure(open()?)?;
        let read = configure(open()?)?;
        let pending = SqlitePendingStore::open(path)?;
        Self::assemble(read, Some(write), pending)
    }

    /// A private in-memory database, for tests and benchmarks.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(db_err("in-memory database"))?;
        let pending = SqlitePendingStore::in_memory()?;
        Self::assemble(configure(conn)?, None, pending)
    }

    /// Keeps received events and pending syncs in `pending` (serve's `--events-db`) instead.
    pub fn with_pending(mut self, pending: SqlitePendingStore) -> SqliteStore {
        self.pending = pending;
        self
    }

    /// How much history each thread keeps.
    pub fn with_limits(mut self, limits: HistoryLimits) -> SqliteStore {
        self.limits = limits;
        self
    }

    fn assemble(
        read: Connection,
        write: Option<Connection>,
        pending: SqlitePendingStore,
    ) -> Result<SqliteStore, StoreError> {
        let read = Arc::new(Mutex::new(read));
        let write = match write {
            Some(conn) => Arc::new(Mutex::new(conn)),
            None => read.clone(),
        };
        Ok(SqliteStore {
            in_flight: Arc::default(),
            commits: commit::GroupCommit::start(write.clone())?,
            read,
            write,
            limits: HistoryLimits::default(),
            marks: Arc::default(),
            pending,
            leases: serve::LocalLeases::default(),
        })
    }

    #[cfg(test)]
    fn write_conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.write)
    }

    /// The session as stored: its state and its bounded history, with the watermarks the
    /// write compares them with.
    fn session_rows(&self, session: &Session) -> Result<SessionWrite, StoreError> {
        Ok(SessionWrite {
            rows: SessionRows::new(session, self.limits)?,
            marks: self.marks.clone(),
        })
    }
}

/// A session stored whole (before histories were rows) read back; `None` stays `None`.
fn parse_session(thread_id: &str, text: Option<String>) -> Result<Option<Session>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Failed(format!("session {thread_id} is unreadable: {e}")))
    })
    .transpose()
}

/// A stored thread row read back.
fn parse_thread(
    thread_id: &str,
    row: Option<(Option<String>, String)>,
) -> Result<Option<ThreadInfo>, StoreError> {
    row.map(|(account_id, context)| {
        let context = serde_json::from_str(&context)
            .map_err(|e| StoreError::Failed(format!("thread {thread_id}: stored context: {e}")))?;
        Ok(ThreadInfo {
            account_id,
            context,
        })
    })
    .transpose()
}

/// A stored idempotency record (body hash, answer) and what it means for `body_hash`.
fn reservation_of(
    key: &str,
    body_hash: &str,
    stored_hash: &str,
    response: Option<String>,
) -> Result<Reservation, StoreError> {
    match response {
        _ if stored_hash != body_hash => Ok(Reservation::Conflict),
        None => Ok(Reservation::InProgress),
        Some(text) => serde_json::from_str(&text)
            .map(Reservation::Done)
            .map_err(|e| StoreError::Failed(format!("stored answer for key {key}: {e}"))),
    }
}

/// One `threads` row, ready to write.
struct ThreadRow {
    thread_id: String,
    account_id: Option<String>,
    context: String,
}

impl ThreadRow {
    fn new(thread_id: &str, context: &AgentContext) -> Result<ThreadRow, StoreError> {
        Ok(ThreadRow {
            thread_id: thread_id.to_string(),
            account_id: context.account_id.clone(),
            context: serde_json::to_string(context)
                .map_err(|e| StoreError::Failed(e.to_string()))?,
        })
    }

    /// The owner after the claim: set once, by the thread's first context, "no account"
    /// included. A context of another owner writes nothing.
    fn claim(&self, conn: &Connection) -> Result<Option<String>, StoreError> {
        let owner: Option<Option<String>> = conn
            .query_row(
                "SELECT account_id FROM threads WHERE thread_id = ?1",
                [&self.thread_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("reading a thread's owner"))?;
        match owner {
            Some(owner) if owner != self.account_id => Ok(owner),
            _ => {
                self.write(conn)?;
                Ok(self.account_id.clone())
            }
        }
    }

    /// Inserts the thread or updates its context; the owner never changes.
    fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO threads (thread_id, account_id, context) VALUES (?1, ?2, ?3)
             ON CONFLICT(thread_id) DO UPDATE SET context = excluded.context",
            params![self.thread_id, self.account_id, self.context],
        )
        .map_err(db_err("saving a thread"))?;
        Ok(())
    }
}

/// One session save, ready to write: what it adds is found against the thread's watermark
/// inside the transaction (`rows.rs`).
struct SessionWrite {
    rows: SessionRows,
    marks: Arc<Watermarks>,
}

impl SessionWrite {
    fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        let rows = &self.rows;
        let thread = rows.thread_id.as_str();
        let failed = db_err("saving a session");
        let known = self.marks.take(thread);
        let stored: Option<i64> = conn
            .prepare_cached("SELECT version FROM sessions WHERE thread_id = ?1")
            .and_then(|mut st| st.query_row([thread], |r| r.get(0)).optional())
            .map_err(&failed)?
            .flatten();
        let plan = rows.plan(stored, known);
        let end = plan.from + rows.history.len() as i64;
        if plan.full {
            conn.prepare_cached("DELETE FROM session_messages WHERE thread_id = ?1")
                .and_then(|mut st| st.execute([thread]))
                .map_err(&failed)?;
            conn.prepare_cached("DELETE FROM session_provenance WHERE thread_id = ?1")
                .and_then(|mut st| st.execute([thread]))
                .map_err(&failed)?;
        } else {
            conn.prepare_cached(
                "DELETE FROM session_messages WHERE thread_id = ?1 AND (seq < ?2 OR seq >= ?3)",
            )
            .and_then(|mut st| st.execute(params![thread, plan.from, end]))
            .map_err(&failed)?;
        }
        let mut insert = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO session_messages (thread_id, seq, message)
                 VALUES (?1, ?2, ?3)",
            )
            .map_err(&failed)?;
        for &index in &plan.writes {
            let text = rows.message_text(index)?;
            insert
                .execute(params![thread, plan.from + index as i64, text])
                .map_err(&failed)?;
        }
        let mut remove = conn
            .prepare_cached(
                "DELETE FROM session_provenance WHERE thread_id = ?1 AND kind = ?2 AND key = ?3",
            )
            .map_err(&failed)?;
        for (kind, key) in &plan.evidence.removed {
            remove
                .execute(params![thread, kind, key])
                .map_err(&failed)?;
        }
        let mut evidence = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO session_provenance (thread_id, kind, key, value)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(&failed)?;
        for (kind, key, value) in &plan.evidence.written {
            evidence
                .execute(params![thread, kind, key, value])
                .map_err(&failed)?;
        }
        conn.prepare_cached(
            "INSERT INTO sessions (thread_id, session, updated_at, version, history_from, history_len)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(thread_id) DO UPDATE SET session = excluded.session,
             updated_at = excluded.updated_at, version = excluded.version,
             history_from = excluded.history_from, history_len = excluded.history_len",
        )
        .and_then(|mut st| {
            st.execute(params![
                thread,
                rows.state,
                now(),
                plan.version,
                plan.from,
                rows.history.len() as i64
            ])
        })
        .map_err(&failed)?;
        // Should the batch's commit fail, the stored version stays the older one and the
        // thread's next save, seeing another version than this, rewrites every row.
        self.marks
            .remember(thread, plan.version, rows.provenance.clone());
        self.marks.put(thread, rows.watermark(plan));
        Ok(())
    }
}

/// A session read back from its rows: the `sessions` row first (seq -2), its provenance rows
/// (seq -1: kind in the third column, key in the sixth), then its messages.
fn read_session(
    conn: &Connection,
    thread_id: &str,
    marks: &Watermarks,
) -> Result<Option<Session>, StoreError> {
    let failed = db_err("reading a session");
    let mut statement = conn
        .prepare_cached(
            "SELECT -2, session, version, history_from, history_len, NULL FROM sessions
             WHERE thread_id = ?1
             UNION ALL
             SELECT -1, p.value, p.kind, NULL, NULL, p.key
             FROM session_provenance p JOIN sessions s ON s.thread_id = p.thread_id
             WHERE p.thread_id = ?1 AND s.version IS NOT ?2
             UNION ALL
             SELECT m.seq, m.message, NULL, NULL, NULL, NULL
             FROM session_messages m JOIN sessions s ON s.thread_id = m.thread_id
             WHERE m.thread_id = ?1 AND m.seq >= s.history_from
               AND m.seq < s.history_from + s.history_len
             ORDER BY 1",
        )
        .map_err(&failed)?;
    let remembered = marks.remembered(thread_id);
    let remembered_version = remembered.as_ref().map(|(version, _)| *version);
    let mut found = statement
        .query(params![thread_id, remembered_version])
        .map_err(&failed)?;
    let Some(first) = found.next().map_err(&failed)? else {
        return Ok(None);
    };
    let text: String = first.get(1).map_err(&failed)?;
    let layout: (Option<i64>, Option<i64>, Option<i64>) = (
        first.get(2).map_err(&failed)?,
        first.get(3).map_err(&failed)?,
        first.get(4).map_err(&failed)?,
    );
    let (Some(version), Some(from), Some(len)) = layout else {
        // Written before histories were rows: the whole session in one text.
        return parse_session(thread_id, Some(text));
    };
    let mut messages = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut evidence = Vec::new();
    while let Some(row) = found.next().map_err(&failed)? {
        let text = row.get::<_, String>(1).map_err(&failed)?;
        if row.get::<_, i64>(0).map_err(&failed)? == -1 {
            let kind = row.get::<_, i64>(2).map_err(&failed)?;
            evidence.push((kind, row.get::<_, String>(5).map_err(&failed)?, text));
        } else {
            messages.push(text);
        }
    }
    let loaded = rows::Loaded {
        version,
        from,
        state: text,
        evidence,
        messages,
        history_len: len,
    };
    rows::assemble(thread_id, loaded, remembered, marks).map(Some)
}

fn reserve_key(
    conn: &Connection,
    scope: &str,
    key: &str,
    body_hash: &str,
) -> Result<Reservation, StoreError> {
    let existing: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT body_hash, response FROM idempotency WHERE scope = ?1 AND key = ?2",
            [scope, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err("reading an idempotency key"))?;
    match existing {
        Some((hash, response)) => reservation_of(key, body_hash, &hash, response),
        None => {
            conn.execute(
                "INSERT INTO idempotency (scope, key, body_hash, response, created_at)
                 VALUES (?1, ?2, ?3, NULL, ?4)",
                params![scope, key, body_hash, now()],
            )
            .map_err(db_err("reserving an idempotency key"))?;
            Ok(Reservation::Reserved)
        }
    }
}

fn complete_key(conn: &Connection, scope: &str, key: &str, text: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE idempotency SET response = ?3 WHERE scope = ?1 AND key = ?2",
        params![scope, key, text],
    )
    .map_err(db_err("storing an idempotent answer"))?;
    Ok(())
}

fn release_key(conn: &Connection, scope: &str, key: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND response IS NULL",
        [scope, key],
    )
    .map_err(db_err("releasing an idempotency key"))?;
    Ok(())
}

impl SessionStore for SqliteStore {
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            // Usually nothing to wait for: the turn that queued a save awaited its last one.
            self.in_flight
                .wait_for(thread_id, std::time::Duration::from_secs(10))
                .await;
            let (thread, marks) = (thread_id.to_string(), self.marks.clone());
            blocking(&self.read, move |conn| read_session(conn, &thread, &marks)).await
        })
    }

    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let write = self.session_rows(session)?;
            self.commits.run(move |conn| write.write(conn)).await
        })
    }

    fn save_queued(&self, session: &Session) {
        let thread = session.thread_id.clone();
        let in_flight = self.in_flight.clone();
        let done = Box::new(move || in_flight.finished(&thread));
        let queued = self.session_rows(session).and_then(|write| {
            self.in_flight.started(&session.thread_id);
            self.commits
                .queue(move |conn| write.write(conn), done)
                .inspect_err(|_| {
                    self.in_flight.finished(&session.thread_id);
                })
        });
        if let Err(e) = queued {
            tracing::warn!(error = %e, thread = %session.thread_id, "could not queue a session save");
        }
    }
}

impl ServeStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn thread_info<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<ThreadInfo>> {
        Box::pin(async move {
            let thread = thread_id.to_string();
            let row = blocking(&self.read, move |conn| {
                conn.query_row(
                    "SELECT account_id, context FROM threads WHERE thread_id = ?1",
                    [thread],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err("reading a thread"))
            })
            .await?;
            parse_thread(thread_id, row)
        })
    }

    fn claim_thread<'a>(
        &'a self,
        thread_id: &'a str,
        context: &'a AgentContext,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let row = ThreadRow::new(thread_id, context)?;
            // Answered before its fsync: the owner is decided once the row is written (the
            // commit thread runs claims one after the other), and the turn's own awaited
            // writes, queued after it, make it durable before any answer goes out.
            self.commits.run_applied(move |conn| row.claim(conn)).await
        })
    }

    fn reserve<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        body_hash: &'a str,
    ) -> StoreFuture<'a, Reservation> {
        // The check and the insert stay one step: a batch runs its writes one after the other.
        let (scope, key, hash) = (scope.to_string(), key.to_string(), body_hash.to_string());
        Box::pin(
            self.commits
                .run(move |conn| reserve_key(conn, &scope, &key, &hash)),
        )
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        response: &'a Value,
    ) -> StoreFuture<'a, ()> {
        let (scope, key, text) = (scope.to_string(), key.to_string(), response.to_string());
        Box::pin(
            self.commits
                .run(move |conn| complete_key(conn, &scope, &key, &text)),
        )
    }

    fn release<'a>(&'a self, scope: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        let (scope, key) = (scope.to_string(), key.to_string());
        Box::pin(
            self.commits
                .run(move |conn| release_key(conn, &scope, &key)),
        )
    }

    /// One process: the thread's lock in this process is the whole lease.
    fn lease<'a>(
        &'a self,
        thread_id: &'a str,
        wait: std::time::Duration,
    ) -> StoreFuture<'a, Lease, LeaseError> {
        Box::pin(async move { Ok(Lease::local(self.leases.take(thread_id, wait).await?)) })
    }

    fn commit_stats(&self) -> (u64, u64) {
        let stats = self.commits.stats();
        (
            stats.writes.load(std::sync::atomic::Ordering::Relaxed),
            stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl PendingStore for SqliteStore {
    fn apply<'a>(
        &'a self,
        event: &'a EventRecord,
        mutations: &'a [Versioned],
    ) -> StoreFuture<'a, Applied> {
        self.pending.apply(event, mutations)
    }

    fn is_processed<'a>(&'a self, event_id: &'a str) -> StoreFuture<'a, bool> {
        self.pending.is_processed(event_id)
    }

    fn pending<'a>(&'a self, account_id: &'a str) -> StoreFuture<'a, Vec<PendingEntry>> {
        self.pending.pending(account_id)
    }

    fn remove<'a>(&'a self, account_id: &'a str, seqs: &'a [i64]) -> StoreFuture<'a, ()> {
        self.pending.remove(account_id, seqs)
    }
}

impl crate::tools::plan::PlanBackend for SqliteStore {
    fn read_plan<'a>(
        &'a self,
        account_id: &'a str,
    ) -> crate::tools::ToolFuture<'a, Result<Option<String>, String>> {
        let account = account_id.to_string();
        Box::pin(async move {
            blocking(&self.read, move |conn| {
                conn.query_row(
                    "SELECT plan FROM plans WHERE account_id = ?1",
                    [&account],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| StoreError::Failed(format!("reading the plan of {account}: {e}")))
            })
            .await
            .map_err(|e| e.detail())
        })
    }

    fn write_plan<'a>(
        &'a self,
        account_id: &'a str,
        text: &'a str,
    ) -> crate::tools::ToolFuture<'a, Result<(), String>> {
        let (account, text) = (account_id.to_string(), text.to_string());
        Box::pin(async move {
            blocking(&self.write, move |conn| {
                conn.execute(
                    "INSERT INTO plans (account_id, plan, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(account_id) DO UPDATE SET plan = excluded.plan,
                     updated_at = excluded.updated_at",
                    params![account, text, now()],
                )
                .map(|_| ())
                .map_err(|e| StoreError::Failed(format!("saving the plan of {account}: {e}")))
            })
            .await
            .map_err(|e| e.detail())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatMessage;

    #[tokio::test]
    async fn sessions_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut session = Session::new("t1");
        session.history.push(ChatMessage::user("hello"));
        SqliteStore::open(&path)
            .unwrap()
            .save(&session)
            .await
            .unwrap();
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.load("t1").await.unwrap(), Some(session));
        assert_eq!(again.load("t2").await.unwrap(), None);
        let mode: String = lock(&again.read)
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// A thread's provenance is stored one row per entry: a save after a turn inserts the
    /// entries that turn added and rewrites none of the others; a second process reads it back
    /// whole.
    #[tokio::test]
    async fn a_save_writes_only_the_provenance_its_turn_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        lock(&store.write)
            .execute_batch(
                "CREATE TABLE provenance_writes (n INTEGER);
                 CREATE TRIGGER count_inserts AFTER INSERT ON session_provenance
                 BEGIN INSERT INTO provenance_writes VALUES (1); END;",
            )
            .unwrap();
        let writes = || -> i64 {
            lock(&store.write)
                .query_row("SELECT count(*) FROM provenance_writes", [], |r| r.get(0))
                .unwrap()
        };
        let mut session = Session::new("t");
        for i in 0..50 {
            session.provenance.observe_result(&serde_json::json!(
                {"id": format!("prod_{i}"), "object": "product", "name": "Pro"}
            ));
        }
        store.save(&session).await.unwrap();
        assert_eq!(writes(), 100, "50 objects and their 50 ids");
        session.provenance.observe_result(
            &serde_json::json!({"id": "price_1", "object": "price", "product": "prod_3"}),
        );
        session.provenance.observe_room_text("thanks");
        store.save(&session).await.unwrap();
        assert_eq!(writes(), 103, "the new price, its id and the room word");
        let state: String = lock(&store.read)
            .query_row(
                "SELECT session FROM sessions WHERE thread_id = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !state.contains("prod_3"),
            "the state row holds no provenance: {state}"
        );
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.load("t").await.unwrap(), Some(session));
    }

    /// The provenance a process remembers of a thread is used only while the stored version
    /// is the one it wrote: a save by another process is read from the rows.
    #[tokio::test]
    async fn a_thread_saved_by_another_process_loads_with_that_processs_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (one, two) = (
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        );
        let mut session = Session::new("t");
        session
            .provenance
            .observe_result(&serde_json::json!({"id": "prod_1", "object": "product"}));
        one.save(&session).await.unwrap();
        let mut other = two.load("t").await.unwrap().unwrap();
        other
            .provenance
            .observe_result(&serde_json::json!({"id": "prod_2", "object": "product"}));
        two.save(&other).await.unwrap();
        let back = one.load("t").await.unwrap().unwrap();
        assert_eq!(back, other);
        assert!(back.provenance.object("prod_2").is_some());
        // And the thread's next save from the first process keeps both.
        one.save(&back).await.unwrap();
        assert_eq!(two.load("t").await.unwrap(), Some(other));
    }

    /// A turn dropped mid-way leaves its last save queued: the thread's next load waits for
    /// it instead of reading the older session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_waits_for_its_threads_queued_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
        let mut session = Session::new("t");
        store.save(&session).await.unwrap();
        session
            .history
            .push(ChatMessage::user("after a Stripe change"));
        let held = store.clone();
        let (locked, unlock) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        // Holds the write connection, as a slow commit would, until told to let go.
        let slow_commit = tokio::task::spawn_blocking({
            let (locked, unlock) = (locked.clone(), unlock.clone());
            move || {
                let _conn = held.write_conn();
                locked.notify_one();
                tokio::runtime::Handle::current().block_on(unlock.notified());
            }
        });
        locked.notified().await;
        store.save_queued(&session);
        let loader = {
            let store = store.clone();
            tokio::spawn(async move { store.load("t").await.unwrap() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !loader.is_finished(),
            "the load did not wait for the queued save"
        );
        // Another thread's load does not wait.
        assert_eq!(store.load("other").await.unwrap(), None);
        unlock.notify_one();
        slow_commit.await.unwrap();
        assert_eq!(loader.await.unwrap(), Some(session));
    }
}
