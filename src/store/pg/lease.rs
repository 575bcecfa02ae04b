//! The per-thread lease across replicas: a session-level PostgreSQL advisory lock on the
//! thread, held on a pooled connection of its own for the whole turn. PostgreSQL releases it
//! when the turn ends (`pg_advisory_unlock`) or when the connection dies with its replica, so
//! a killed replica never blocks a thread. Each lease also bumps the thread's fencing token in
//! `altan_pay_thread_leases`: the saves of a turn carry it, and a save whose token is no
//! longer the thread's is refused (a replica that lost its lock without knowing it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

use crate::agent::StoreError;
use crate::store::LeaseError;

/// The fencing tokens of the leases this process holds, by thread.
pub(super) type Fences = Arc<Mutex<HashMap<String, i64>>>;

/// The advisory lock key of a thread: 64 bits of a hash. Two threads sharing a key only
/// serialise each other's turns.
pub(super) fn lock_key(thread_id: &str) -> i64 {
    let digest = Sha256::digest(format!("altan-pay thread lease\0{thread_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A held lease: its connection, returned to the pool unlocked when dropped.
pub(super) struct Held {
    conn: Option<Object>,
    key: i64,
    thread_id: String,
    token: i64,
    fences: Fences,
    runtime: tokio::runtime::Handle,
}

impl Drop for Held {
    fn drop(&mut self) {
        {
            let mut fences = self.fences.lock().unwrap_or_else(|e| e.into_inner());
            if fences.get(&self.thread_id) == Some(&self.token) {
                fences.remove(&self.thread_id);
            }
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        self.runtime.spawn(async move {
            match conn
                .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map(|r| r.get::<_, bool>(0))
            {
                // Unlocked: the connection goes back to the pool.
                Ok(true) => drop(conn),
                // Not unlocked: closing the connection releases whatever it holds.
                _ => drop(Object::take(conn)),
            }
        });
    }
}

/// Takes the thread's advisory lock on a connection of `pool` within `wait`, then its next
/// fencing token.
pub(super) async fn acquire(
    pool: Pool,
    thread_id: String,
    wait: Duration,
    holder: String,
    fences: Fences,
) -> Result<Held, LeaseError> {
    let started = Instant::now();
    let busy = || LeaseError::Busy {
        thread_id: thread_id.clone(),
        waited: wait,
    };
    let conn = match tokio::time::timeout(wait, pool.get()).await {
        Err(_) => return Err(busy()),
        Ok(conn) => conn.map_err(|e| {
            LeaseError::Store(StoreError::Failed(format!(
                "no PostgreSQL connection for a thread lease: {e}"
            )))
        })?,
    };
    let left = wait
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let key = lock_key(&thread_id);
    let store_err = |what: &'static str| {
        move |e: tokio_postgres::Error| LeaseError::Store(super::pg_err(what)(e))
    };
    conn.execute(
        "SELECT set_config('lock_timeout', $1, false)",
        &[&format!("{}ms", left.as_millis())],
    )
    .await
    .map_err(store_err("setting the lease wait"))?;
    if let Err(e) = conn.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            return Err(busy());
        }
        // Whatever state the connection is in, it is not kept.
        drop(Object::take(conn));
        return Err(store_err("taking a thread lease")(e));
    }
    let token = conn
        .query_one(
            "INSERT INTO altan_pay_thread_leases (thread_id, token, holder) VALUES ($1, 1, $2)
             ON CONFLICT (thread_id) DO UPDATE
             SET token = altan_pay_thread_leases.token + 1, holder = excluded.holder,
                 taken_at = now()
             RETURNING token",
            &[&thread_id, &holder],
        )
        .await
        .map(|r| r.get::<_, i64>(0));
    let token = match token {
        Ok(token) => token,
        Err(e) => {
            // Closing the connection releases the lock just taken.
            drop(Object::take(conn));
            return Err(if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                busy()
            } else {
                store_err("taking a fencing token")(e)
            });
        }
    };
    fences
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(thread_id.clone(), token);
    Ok(Held {
        conn: Some(conn),
        key,
        thread_id,
        token,
        fences,
        runtime: tokio::runtime::Handle::current(),
    })
}

impl Held {
    pub(super) fn token(&self) -> i64 {
        self.token
    }
}
