//! Sandbox state: Stripe objects per account and collection, ordered by a creation sequence,
//! mirrored to SQLite (WAL, synchronous=FULL) in one transaction per acknowledged request.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::Value;

/// Why the state file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SandboxStoreError {
    /// SQLite failed to open, read or write the file.
    #[error("sandbox database {path}: {source}")]
    Sqlite {
        /// The state file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row cannot be read back (bad JSON, a wrong type).
    #[error("sandbox database {path}: row {row}: {reason}")]
    Corrupt {
        /// The state file.
        path: String,
        /// Which row: `account/collection/id`, or `idempotency account/key`.
        row: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A stored idempotent response: what was asked (fingerprint) and what was answered.
#[derive(Debug, Clone)]
pub struct IdemRecord {
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
struct Collection {
    by_id: HashMap<String, (u64, Value)>,
    order: BTreeMap<u64, String>,
}

#[derive(Default)]
struct Account {
    connect_id: Option<String>,
    collections: HashMap<String, Collection>,
    idempotency: HashMap<String, IdemRecord>,
}

/// Everything one request changes, written atomically by [`State::commit`].
#[derive(Default, Debug)]
pub struct Changes {
    /// (collection, id, new body or `None` to remove), in the order they were made.
    pub objects: Vec<(String, String, Option<Value>)>,
    pub idempotency: Option<(String, IdemRecord)>,
    pub connect_id: Option<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.idempotency.is_none() && self.connect_id.is_none()
    }
}

/// The whole sandbox, in memory, with an optional SQLite file behind it.
pub struct State {
    accounts: HashMap<String, Account>,
    next_seq: u64,
    db: Option<(Connection, String)>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    account_id TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL,
    seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account_id, collection, id));
CREATE TABLE IF NOT EXISTS idempotency (
    account_id TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account_id, key));
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY, stripe_connect_id TEXT NOT NULL);
";

impl State {
    pub fn in_memory() -> State {
        State {
            accounts: HashMap::new(),
            next_seq: 1,
            db: None,
        }
    }

    /// Opens (or creates) the state file and loads it into memory.
    pub fn open(path: &Path) -> Result<State, SandboxStoreError> {
        let name = path.display().to_string();
        let sql = |source| SandboxStoreError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let mut state = State::in_memory();
        state.load(&conn, &name)?;
        state.db = Some((conn, name));
        Ok(state)
    }

    fn load(&mut self, conn: &Connection, name: &str) -> Result<(), SandboxStoreError> {
        let sql = |source| SandboxStoreError::Sqlite {
            path: name.to_string(),
            source,
        };
        let corrupt = |row: String, reason: String| SandboxStoreError::Corrupt {
            path: name.to_string(),
            row,
            reason,
        };
        let mut stmt = conn
            .prepare("SELECT account_id, collection, id, seq, body FROM objects ORDER BY seq")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (account, collection, id, seq, body) = row.map_err(sql)?;
            let body: Value = serde_json::from_str(&body)
                .map_err(|e| corrupt(format!("{account}/{collection}/{id}"), e.to_string()))?;
            let seq = u64::try_from(seq).unwrap_or(0);
            self.next_seq = self.next_seq.max(seq + 1);
            self.apply_object(&account, &collection, &id, Some(body), seq);
        }
        let mut stmt = conn
            .prepare("SELECT account_id, key, fingerprint, status, body FROM idempotency")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (account, key, fingerprint, status, body) = row.map_err(sql)?;
            let body: Value = serde_json::from_str(&body)
                .map_err(|e| corrupt(format!("idempotency {account}/{key}"), e.to_string()))?;
            let status = u16::try_from(status).unwrap_or(500);
            let record = IdemRecord {
                fingerprint,
                status,
                body,
            };
            self.account_mut(&account).idempotency.insert(key, record);
        }
        let mut stmt = conn
            .prepare("SELECT account_id, stripe_connect_id FROM accounts")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql)?;
        for row in rows {
            let (account, connect_id) = row.map_err(sql)?;
            self.account_mut(&account).connect_id = Some(connect_id);
        }
        Ok(())
    }

    fn account_mut(&mut self, account: &str) -> &mut Account {
        self.accounts.entry(account.to_string()).or_default()
    }

    /// The Connect id bound to this account (by an initial state or its first use), if any.
    pub fn connect_id(&self, account: &str) -> Option<&str> {
        self.accounts.get(account)?.connect_id.as_deref()
    }

    /// Every account the sandbox holds anything for.
    pub fn account_ids(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    pub fn get(&self, account: &str, collection: &str, id: &str) -> Option<&Value> {
        let coll = self.accounts.get(account)?.collections.get(collection)?;
        coll.by_id.get(id).map(|(_, v)| v)
    }

    pub fn seq(&self, account: &str, collection: &str, id: &str) -> Option<u64> {
        let coll = self.accounts.get(account)?.collections.get(collection)?;
        coll.by_id.get(id).map(|(s, _)| *s)
    }

    fn collection(&self, account: &str, collection: &str) -> Option<&Collection> {
        self.accounts.get(account)?.collections.get(collection)
    }

    /// Objects created before sequence `below`, newest first, lazily (lists stop early).
    pub fn newest_below<'s>(
        &'s self,
        account: &str,
        collection: &str,
        below: u64,
    ) -> impl Iterator<Item = (u64, &'s Value)> + 's {
        self.collection(account, collection)
            .into_iter()
            .flat_map(move |coll| {
                coll.order
                    .range(..below)
                    .rev()
                    .filter_map(|(seq, id)| coll.by_id.get(id).map(|(_, v)| (*seq, v)))
            })
    }

    /// Objects created after sequence `above`, oldest first, lazily.
    pub fn oldest_above<'s>(
        &'s self,
        account: &str,
        collection: &str,
        above: u64,
    ) -> impl Iterator<Item = (u64, &'s Value)> + 's {
        self.collection(account, collection)
            .into_iter()
            .flat_map(move |coll| {
                coll.order
                    .range(above.saturating_add(1)..)
                    .filter_map(|(seq, id)| coll.by_id.get(id).map(|(_, v)| (*seq, v)))
            })
    }

    /// All objects of a collection, newest first, with their sequence numbers.
    pub fn newest_first(&self, account: &str, collection: &str) -> Vec<(u64, &Value)> {
        self.newest_below(account, collection, u64::MAX).collect()
    }

    pub fn idempotency(&self, account: &str, key: &str) -> Option<&IdemRecord> {
        self.accounts.get(account)?.idempotency.get(key)
    }

    /// Writes the changes to the file (one transaction, durable before returning), then to
    /// memory. On a storage error nothing changes, so the caller can refuse the request.
    pub fn commit(&mut self, account: &str, changes: Changes) -> Result<(), String> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut planned = Vec::with_capacity(changes.objects.len());
        let mut next = self.next_seq;
        for (collection, id, body) in changes.objects {
            let seq = match self.seq(account, &collection, &id) {
                Some(seq) => seq,
                None => {
                    next += 1;
                    next - 1
                }
            };
            planned.push((collection, id, body, seq));
        }
        if let Some((conn, name)) = &mut self.db {
            write(
                conn,
                account,
                &planned,
                &changes.idempotency,
                &changes.connect_id,
            )
            .map_err(|e| format!("sandbox database {name}: {e}"))?;
        }
        self.next_seq = next;
        for (collection, id, body, seq) in planned {
            self.apply_object(account, &collection, &id, body, seq);
        }
        if let Some((key, record)) = changes.idempotency {
            self.account_mut(account).idempotency.insert(key, record);
        }
        if let Some(connect_id) = changes.connect_id {
            self.account_mut(account).connect_id = Some(connect_id);
        }
        Ok(())
    }

    fn apply_object(
        &mut self,
        account: &str,
        collection: &str,
        id: &str,
        body: Option<Value>,
        seq: u64,
    ) {
        let coll = self
            .account_mut(account)
            .collections
            .entry(collection.to_string())
            .or_default();
        match body {
            Some(body) => {
                coll.order.insert(seq, id.to_string());
                coll.by_id.insert(id.to_string(), (seq, body));
            }
            None => {
                if let Some((seq, _)) = coll.by_id.remove(id) {
                    coll.order.remove(&seq);
                }
            }
        }
    }
}

type Planned = (String, String, Option<Value>, u64);

fn write(
    conn: &mut Connection,
    account: &str,
    objects: &[Planned],
    idempotency: &Option<(String, IdemRecord)>,
    connect_id: &Option<String>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (collection, id, body, seq) in objects {
        match body {
            Some(body) => tx.execute(
                "INSERT INTO objects (account_id, collection, id, seq, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, collection, id) DO UPDATE SET body = excluded.body",
                params![account, collection, id, *seq as i64, body.to_string()],
            )?,
            None => tx.execute(
                "DELETE FROM objects WHERE account_id = ?1 AND collection = ?2 AND id = ?3",
                params![account, collection, id],
            )?,
        };
    }
    if let Some((key, record)) = idempotency {
        tx.execute(
            "INSERT OR REPLACE INTO idempotency (account_id, key, fingerprint, status, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                account,
                key,
                record.fingerprint,
                record.status,
                record.body.to_string()
            ],
        )?;
    }
    if let Some(connect_id) = connect_id {
        tx.execute(
            "INSERT OR REPLACE INTO accounts (account_id, stripe_connect_id) VALUES (?1, ?2)",
            params![account, connect_id],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn survives_reopen_and_keeps_order() {
        let dir = std::env::temp_dir().join(format!("altan-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        {
            let mut s = State::open(&path).unwrap();
            let mut c = Changes::default();
            c.objects.push((
                "product".into(),
                "prod_a".into(),
                Some(json!({"id": "prod_a"})),
            ));
            c.objects.push((
                "product".into(),
                "prod_b".into(),
                Some(json!({"id": "prod_b"})),
            ));
            s.commit("acc", c).unwrap();
        }
        let s = State::open(&path).unwrap();
        let ids: Vec<_> = s
            .newest_first("acc", "product")
            .iter()
            .map(|(_, v)| v["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("prod_b"), json!("prod_a")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
