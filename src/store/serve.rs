//! The one interface to everything `altan-pay serve` keeps: sessions (with the write-ahead
//! records of writes in flight and uncertain writes they carry), thread owners, request
//! idempotency records, pending syncs from Stripe events and their dedup, the plans, and the
//! per-thread lease that keeps one turn per thread across replicas. Two implementations:
//! [`super::SqliteStore`] (one process) and [`super::PgStore`] (several replicas on one
//! PostgreSQL). `tests/store_contract.rs` runs the same tests against both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::pending::PendingStore;
pub use crate::agent::StoreFuture;
use crate::agent::{SessionStore, StoreError};
use crate::room::AgentContext;
use crate::tools::plan::PlanBackend;

/// What an `Idempotency-Key` already stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// The key is new and now reserved for this request.
    Reserved,
    /// A request with the key and the same body is still running.
    InProgress,
    /// The same key and body finished; here is the stored answer.
    Done(Value),
    /// The key was used with another body.
    Conflict,
}

/// The thread's owner account and the latest trusted context the platform sent for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadInfo {
    /// The owner: the account of the thread's first request; `None` when that request named
    /// none, and then for good.
    pub account_id: Option<String>,
    /// The room's context as the platform last sent it for this thread.
    pub context: AgentContext,
}

/// Everything the server keeps, behind one interface: every call is async and returns a
/// [`StoreFuture`] with [`StoreError`] (the lease: [`LeaseError`]), on either backend.
pub trait ServeStore: SessionStore + PendingStore + PlanBackend {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// The owner and context of a thread, if any request created it.
    fn thread_info<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<ThreadInfo>>;

    /// Claims the thread for the context's account (set once, by the thread's first context,
    /// "no account" included: a thread used without an account is never taken by one) and
    /// records the context, atomically: of two first requests from different accounts only
    /// one owns it. Returns the owner afterwards; when it is not the context's account,
    /// nothing was written.
    fn claim_thread<'a>(
        &'a self,
        thread_id: &'a str,
        context: &'a AgentContext,
    ) -> StoreFuture<'a, Option<String>>;

    /// Reserves an idempotency key for a body hash, or says what it already stands for; the
    /// check and the insert are one atomic step.
    fn reserve<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        body_hash: &'a str,
    ) -> StoreFuture<'a, Reservation>;

    /// Stores the answer for a reserved key (durable when this returns).
    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        response: &'a Value,
    ) -> StoreFuture<'a, ()>;

    /// Frees a reserved key whose request never produced an answer, so it can be retried.
    fn release<'a>(&'a self, scope: &'a str, key: &'a str) -> StoreFuture<'a, ()>;

    /// Takes the thread's lease for one turn, waiting at most `wait` for the turn holding it.
    /// Dropping the [`Lease`] releases it; so does the death of the process holding it.
    fn lease<'a>(
        &'a self,
        thread_id: &'a str,
        wait: Duration,
    ) -> StoreFuture<'a, Lease, LeaseError>;

    /// Writes queued for group commit so far, and the commits (round trips) that made them.
    fn commit_stats(&self) -> (u64, u64);
}

/// A turn's hold on its thread: while it lives no other turn of the thread runs, in this
/// process or (PostgreSQL) in any replica. Released when dropped.
pub struct Lease {
    /// The backend's part (the PostgreSQL advisory lock and its connection), released first
    /// (fields drop in order).
    _shared: Option<Box<dyn Send + Sync>>,
    _local: tokio::sync::OwnedMutexGuard<()>,
    /// The fencing token of a shared lease: it grows with every turn of the thread.
    pub token: Option<i64>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("token", &self.token).finish()
    }
}

impl Lease {
    pub(super) fn local(local: tokio::sync::OwnedMutexGuard<()>) -> Lease {
        Lease {
            _local: local,
            _shared: None,
            token: None,
        }
    }

    pub(super) fn shared(
        local: tokio::sync::OwnedMutexGuard<()>,
        shared: Box<dyn Send + Sync>,
        token: i64,
    ) -> Lease {
        Lease {
            _local: local,
            _shared: Some(shared),
            token: Some(token),
        }
    }
}

/// Why no lease was had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another turn of the thread held it for the whole wait.
    #[error("another turn of thread `{thread_id}` is running (waited {waited:?})")]
    Busy {
        /// The thread whose turn is running.
        thread_id: String,
        /// How long this request waited for it.
        waited: Duration,
    },
    /// The store failed while waiting for or taking the lease.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Locks kept before the idle ones are dropped.
const LOCKS_BEFORE_PRUNING: usize = 1024;

/// The per-thread locks of this process: turns of one thread queue here first, so at most one
/// of them per process asks the database for the thread's lease.
#[derive(Debug, Default)]
pub(super) struct LocalLeases {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalLeases {
    /// The thread's local lock, waiting at most `wait`.
    pub(super) async fn take(
        &self,
        thread_id: &str,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, LeaseError> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            if locks.len() >= LOCKS_BEFORE_PRUNING {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            locks.entry(thread_id.to_string()).or_default().clone()
        };
        tokio::time::timeout(wait, lock.lock_owned())
            .await
            .map_err(|_| LeaseError::Busy {
                thread_id: thread_id.to_string(),
                waited: wait,
            })
    }
}
