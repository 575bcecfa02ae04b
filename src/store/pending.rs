//! The durable side of event intake: processed event ids, the last applied version of each
//! object, and the per-account queue of pending mutations ([`PendingStore`]; SQLite here, and
//! PostgreSQL in `pg/pending.rs`). `tests/store_contract.rs` holds the tests of both.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::agent::{StoreError, StoreFuture};
use crate::sync::Mutation;

/// A failing store: the event is then not acknowledged, so Stripe delivers it again.
fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// The event being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Stripe's event id, `evt_...`: the key that makes a redelivery a duplicate.
    pub id: String,
    /// Stripe's event type, e.g. `price.updated`.
    pub event_type: String,
    /// The workspace account the event belongs to.
    pub account_id: String,
    /// The event's `created`.
    pub created: i64,
}

/// A mutation and the version it carries (the object's `updated`, else the event's `created`):
/// an older version than the last applied one of the same object is stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The row change the event asks for.
    pub mutation: Mutation,
    /// The object's version (unix seconds): its `updated`, else the event's `created`.
    pub version: i64,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Applied {
    /// The event id was applied before: nothing changed.
    Duplicate,
    /// Recorded for the first time.
    Applied {
        /// Mutations newer than what was applied, now waiting for the next answer.
        queued: usize,
        /// Mutations older than what was applied, dropped.
        stale: usize,
    },
}

/// One mutation waiting for the next answer (or room post) of its account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEntry {
    /// Position in the store's queue: entries are handed over in this order.
    pub seq: i64,
    /// The event the mutation came from.
    pub event_id: String,
    /// When the event was accepted (unix seconds).
    pub received_at: i64,
    /// The object's version this mutation carries; an older one never replaces it.
    pub version: i64,
    /// The row change waiting to be handed to Altan.
    pub mutation: Mutation,
}

/// Where accepted events and pending mutations live; every method is atomic.
pub trait PendingStore: Send + Sync {
    /// Records the event id (once) and queues each mutation not older than the last applied
    /// version of its object, replacing that object's older pending entry.
    fn apply<'a>(
        &'a self,
        event: &'a EventRecord,
        mutations: &'a [Versioned],
    ) -> StoreFuture<'a, Applied>;
    /// Whether an event id was applied.
    fn is_processed<'a>(&'a self, event_id: &'a str) -> StoreFuture<'a, bool>;
    /// The account's queue, oldest first, without removing it.
    fn pending<'a>(&'a self, account_id: &'a str) -> StoreFuture<'a, Vec<PendingEntry>>;
    /// Removes these entries (once they reached Altan).
    fn remove<'a>(&'a self, account_id: &'a str, seqs: &'a [i64]) -> StoreFuture<'a, ()>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS processed_events (
    event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, account_id TEXT NOT NULL,
    created INTEGER NOT NULL, received_at INTEGER NOT NULL, queued INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS object_versions (
    account_id TEXT NOT NULL, kind TEXT NOT NULL, object_id TEXT NOT NULL,
    version INTEGER NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, object_id));
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL, kind TEXT NOT NULL,
    object_id TEXT NOT NULL, event_id TEXT NOT NULL, received_at INTEGER NOT NULL,
    version INTEGER NOT NULL, mutation TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_account ON pending (account_id, seq);
";

/// [`PendingStore`] in one SQLite file (or in memory for tests). Its calls run on Tokio's
/// blocking threads.
pub struct SqlitePendingStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqlitePendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlitePendingStore")
    }
}

impl SqlitePendingStore {
    /// Opens (or creates) the file; WAL, and every acknowledged event is on disk.
    pub fn open(path: &Path) -> Result<SqlitePendingStore, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Failed(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        Self::init(conn)
    }

    /// A store that lives as long as the process.
    pub fn in_memory() -> Result<SqlitePendingStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql)?)
    }

    fn init(conn: Connection) -> Result<SqlitePendingStore, StoreError> {
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(SqlitePendingStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn read_entries(conn: &Connection, account_id: &str) -> Result<Vec<PendingEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, event_id, received_at, version, mutation FROM pending
             WHERE account_id = ?1 ORDER BY seq",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![account_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(sql)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, event_id, received_at, version, text) = row.map_err(sql)?;
        let mutation: Mutation = serde_json::from_str(&text).map_err(|e| {
            StoreError::Failed(format!("pending entry {seq} is not a mutation: {e}"))
        })?;
        out.push(PendingEntry {
            seq,
            event_id,
            received_at,
            version,
            mutation,
        });
    }
    Ok(out)
}

fn apply(
    conn: &mut Connection,
    event: &EventRecord,
    mutations: &[Versioned],
) -> Result<Applied, StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    let seen: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM processed_events WHERE event_id = ?1",
            params![event.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    if seen.is_some() {
        return Ok(Applied::Duplicate);
    }
    let received = now();
    let (mut queued, mut stale) = (0, 0);
    for v in mutations {
        let m = &v.mutation;
        let kind = m.kind.as_str();
        let last: Option<i64> = tx
            .query_row(
                "SELECT version FROM object_versions
                     WHERE account_id = ?1 AND kind = ?2 AND object_id = ?3",
                params![event.account_id, kind, m.id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        // Equal versions (same second) go to the later arrival.
        if last.is_some_and(|last| last > v.version) {
            stale += 1;
            continue;
        }
        tx.execute(
            "INSERT INTO object_versions (account_id, kind, object_id, version, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, kind, object_id)
                 DO UPDATE SET version = excluded.version, event_id = excluded.event_id",
            params![event.account_id, kind, m.id, v.version, event.id],
        )
        .map_err(sql)?;
        tx.execute(
            "DELETE FROM pending WHERE account_id = ?1 AND kind = ?2 AND object_id = ?3",
            params![event.account_id, kind, m.id],
        )
        .map_err(sql)?;
        let text = serde_json::to_string(m).map_err(|e| StoreError::Failed(e.to_string()))?;
        tx.execute(
                "INSERT INTO pending (account_id, kind, object_id, event_id, received_at, version, mutation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![event.account_id, kind, m.id, event.id, received, v.version, text],
            )
            .map_err(sql)?;
        queued += 1;
    }
    tx.execute(
            "INSERT INTO processed_events (event_id, event_type, account_id, created, received_at, queued)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![event.id, event.event_type, event.account_id, event.created, received, queued as i64],
        )
        .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(Applied::Applied { queued, stale })
}

fn is_processed(conn: &Connection, event_id: &str) -> Result<bool, StoreError> {
    let seen: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM processed_events WHERE event_id = ?1",
            params![event_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(seen.is_some())
}

fn remove(conn: &mut Connection, account_id: &str, seqs: &[i64]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql)?;
    for seq in seqs {
        tx.execute(
            "DELETE FROM pending WHERE account_id = ?1 AND seq = ?2",
            params![account_id, seq],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

impl PendingStore for SqlitePendingStore {
    fn apply<'a>(
        &'a self,
        event: &'a EventRecord,
        mutations: &'a [Versioned],
    ) -> StoreFuture<'a, Applied> {
        let (event, mutations) = (event.clone(), mutations.to_vec());
        Box::pin(super::blocking(&self.conn, move |conn| {
            apply(conn, &event, &mutations)
        }))
    }

    fn is_processed<'a>(&'a self, event_id: &'a str) -> StoreFuture<'a, bool> {
        let event_id = event_id.to_string();
        Box::pin(super::blocking(&self.conn, move |conn| {
            is_processed(conn, &event_id)
        }))
    }

    fn pending<'a>(&'a self, account_id: &'a str) -> StoreFuture<'a, Vec<PendingEntry>> {
        let account_id = account_id.to_string();
        Box::pin(super::blocking(&self.conn, move |conn| {
            read_entries(conn, &account_id)
        }))
    }

    fn remove<'a>(&'a self, account_id: &'a str, seqs: &'a [i64]) -> StoreFuture<'a, ()> {
        let (account_id, seqs) = (account_id.to_string(), seqs.to_vec());
        Box::pin(super::blocking(&self.conn, move |conn| {
            remove(conn, &account_id, &seqs)
        }))
    }
}
