//! [`PgStore`]: everything `serve` keeps, on one PostgreSQL shared by several replicas. A
//! connection pool (deadpool-postgres) for the data, a second one for the per-thread leases
//! (`lease.rs`), versioned migrations at start-up (`schema.rs`), group commit of session saves
//! (`commit.rs`), optional TLS with rustls (`tls.rs`).
//!
//! Every call is async and runs on the caller's Tokio runtime: tokio-postgres and deadpool are
//! async already, so no thread waits for the database. Each call runs as a task of its own, so
//! a caller that goes away mid-call does not cut a statement or a transaction in half.

mod commit;
mod lease;
mod pending;
pub mod schema;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Runtime};
use serde_json::Value;

use super::in_flight::InFlight;
use super::pending::{Applied, EventRecord, PendingEntry, PendingStore, Versioned};
use super::serve::LocalLeases;
use super::{
    HistoryLimits, Lease, LeaseError, Reservation, ServeStore, StoreFuture, ThreadInfo,
    parse_session, parse_thread, reservation_of, rows,
};
use crate::agent::{Session, SessionStore, StoreError};
use crate::mirror::error_message;
use crate::model::openai::error_chain;
use crate::room::AgentContext;
use crate::tools::plan::PlanBackend;
pub use schema::{MIGRATIONS, Migration, migrate};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/db[?sslmode=require]`.
    pub url: String,
    /// Connections for reads and writes.
    pub pool_size: usize,
    /// Connections for thread leases: one per turn running in this process.
    pub lease_connections: usize,
    /// Extra root certificates (PEM) for TLS, for a server with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl PgOptions {
    /// Options for the server at `url` with the default pool sizes (16 connections, 32 for
    /// leases) and no extra certificates.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            lease_connections: 32,
            ca_file: None,
        }
    }
}

/// The advisory lock key of a thread's lease, as `pg_locks` shows it
/// (`(classid::bigint << 32) | objid::bigint` with `objsubid = 1`): to find who holds a thread.
pub fn lease_lock_key(thread_id: &str) -> i64 {
    lease::lock_key(thread_id)
}

fn pg_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Failed(format!("{what}: {}", error_message(&e)))
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "the database URL".to_string(),
    }
}

/// Everything `serve` keeps, in PostgreSQL.
pub struct PgStore {
    pool: Pool,
    lease_pool: Pool,
    commits: commit::GroupCommit,
    in_flight: Arc<InFlight>,
    leases: LocalLeases,
    fences: lease::Fences,
    /// Who holds a lease, as written in `altan_pay_thread_leases.holder`.
    holder: String,
    limits: HistoryLimits,
    tls: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("holder", &self.holder)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, checks the connection and brings the schema up to date. The store's commit
    /// task runs on the runtime this is awaited on.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, StoreError> {
        let shown = redacted(&options.url);
        let config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Failed(format!("--database-url: {e}")))?;
        let build = |size: usize| -> Result<(Pool, bool), StoreError> {
            let (manager, tls) = tls::manager(config.clone(), options.ca_file.as_deref())?;
            let pool = Pool::builder(manager)
                .max_size(size.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Failed(format!("connection pool: {e}")))?;
            Ok((pool, tls))
        };
        let (pool, tls) = build(options.pool_size)?;
        let (lease_pool, _) = build(options.lease_connections)?;
        let migrating = pool.clone();
        let applied = run(async move {
            let mut conn = migrating.get().await.map_err(|e| {
                StoreError::Failed(format!("cannot connect to {shown}: {}", error_chain(&e)))
            })?;
            migrate(&mut conn, MIGRATIONS).await
        })
        .await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "PostgreSQL schema migrated");
        }
        let commits = commit::GroupCommit::start(pool.clone());
        Ok(PgStore {
            pool,
            lease_pool,
            commits,
            in_flight: Arc::default(),
            leases: LocalLeases::default(),
            fences: Arc::default(),
            holder: format!(
                "pid {} ({})",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            limits: HistoryLimits::default(),
            tls,
        })
    }

    /// How much history each thread keeps.
    pub fn with_limits(mut self, limits: HistoryLimits) -> PgStore {
        self.limits = limits;
        self
    }

    /// Whether the connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    fn token(&self, thread_id: &str) -> Option<i64> {
        self.fences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(thread_id)
            .copied()
    }

    /// A connection of the data pool, for one call.
    async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| {
            StoreError::Failed(format!("no PostgreSQL connection: {}", error_chain(&e)))
        })
    }
}

/// Runs `work` as a task of its own on the caller's runtime and waits for it: a caller that
/// goes away leaves the call to finish.
async fn run<R, F>(work: F) -> Result<R, StoreError>
where
    F: Future<Output = Result<R, StoreError>> + Send + 'static,
    R: Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| StoreError::Failed(format!("a PostgreSQL call stopped: {e}")))?
}

impl SessionStore for PgStore {
    fn load<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            // Usually nothing to wait for: the turn that queued a save awaited its last one.
            self.in_flight
                .wait_for(thread_id, Duration::from_secs(10))
                .await;
            let (pool, thread) = (self.pool.clone(), thread_id.to_string());
            let marks = self.commits.marks.clone();
            run(async move {
                let conn = PgStore::client(&pool).await?;
                // One statement, one snapshot: the state row first (seq -2), the provenance
                // rows (seq -1: kind in the third column, key in the sixth), then the messages.
                let statement = conn
                    .prepare_cached(
                        "SELECT -2::int8, session, version, history_from, history_len, NULL::text
                         FROM altan_pay_session_state WHERE thread_id = $1
                         UNION ALL
                         SELECT -1, p.value, p.kind::int8, NULL, NULL, p.key
                         FROM altan_pay_session_provenance p
                         JOIN altan_pay_session_state s ON s.thread_id = p.thread_id
                         WHERE p.thread_id = $1 AND s.version IS DISTINCT FROM $2
                         UNION ALL
                         SELECT m.seq, m.message, NULL, NULL, NULL, NULL
                         FROM altan_pay_session_messages m
                         JOIN altan_pay_session_state s ON s.thread_id = m.thread_id
                         WHERE m.thread_id = $1 AND m.seq >= s.history_from
                           AND m.seq < s.history_from + s.history_len
                         ORDER BY 1",
                    )
                    .await
                    .map_err(pg_err("reading a session"))?;
                let remembered = marks.remembered(&thread);
                let remembered_version = remembered.as_ref().map(|(version, _)| *version);
                let found = conn
                    .query(&statement, &[&thread, &remembered_version])
                    .await
                    .map_err(pg_err("reading a session"))?;
                let Some((first, messages)) = found.split_first() else {
                    return Ok(None);
                };
                let text: String = first.get(1);
                let layout: (Option<i64>, Option<i64>, Option<i64>) =
                    (first.get(2), first.get(3), first.get(4));
                let (Some(version), Some(from), Some(len)) = layout else {
                    // Written before histories were rows: the whole session in one text.
                    return parse_session(&thread, Some(text));
                };
                let (evidence, messages): (Vec<_>, Vec<_>) =
                    messages.iter().partition(|r| r.get::<_, i64>(0) == -1);
                let evidence: Vec<(i64, String, String)> = evidence
                    .iter()
                    .map(|r| (r.get(2), r.get(5), r.get(1)))
                    .collect();
                let messages: Vec<String> = messages.iter().map(|r| r.get(1)).collect();
                let loaded = rows::Loaded {
                    version,
                    from,
                    state: text,
                    evidence,
                    messages,
                    history_len: len,
                };
                rows::assemble(&thread, loaded, remembered, &marks).map(Some)
            })
            .await
        })
    }

    fn save<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let rows = rows::SessionRows::new(session, self.limits)?;
            let token = self.token(&session.thread_id);
            let span = tracing::info_span!(
                "store_commit",
                otel.name = "store commit",
                db.system.name = "postgresql",
            );
            tracing::Instrument::instrument(
                self.commits.run(session.thread_id.clone(), rows, token),
                span,
            )
            .await
        })
    }

    fn save_queued(&self, session: &Session) {
        let thread = session.thread_id.clone();
        let queued = rows::SessionRows::new(session, self.limits).and_then(|rows| {
            self.in_flight.started(&thread);
            let in_flight = self.in_flight.clone();
            let done_thread = thread.clone();
            self.commits
                .submit(commit::Save {
                    thread_id: thread.clone(),
                    rows,
                    token: self.token(&thread),
                    reply: None,
                    done: Some(Box::new(move || in_flight.finished(&done_thread))),
                })
                .inspect_err(|_| self.in_flight.finished(&thread))
        });
        if let Err(e) = queued {
            tracing::warn!(error = %e, thread = %session.thread_id, "could not queue a session save");
        }
    }
}

impl ServeStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn thread_info<'a>(&'a self, thread_id: &'a str) -> StoreFuture<'a, Option<ThreadInfo>> {
        let (pool, thread) = (self.pool.clone(), thread_id.to_string());
        Box::pin(async move {
            let row = run(async move {
                let conn = PgStore::client(&pool).await?;
                let row = conn
                    .query_opt(
                        "SELECT account_id, context FROM altan_pay_threads WHERE thread_id = $1",
                        &[&thread],
                    )
                    .await
                    .map_err(pg_err("reading a thread"))?;
                Ok(row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, String>(1))))
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
        let pool = self.pool.clone();
        let thread = thread_id.to_string();
        let account = context.account_id.clone();
        Box::pin(async move {
            let text =
                serde_json::to_string(context).map_err(|e| StoreError::Failed(e.to_string()))?;
            run(async move {
                let conn = PgStore::client(&pool).await?;
                // One statement: the row is locked while the owner is checked. The owner is
                // the first context's account ("no account" included) and never changes.
                let claimed = conn
                    .query_opt(
                        "INSERT INTO altan_pay_threads (thread_id, account_id, context)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (thread_id) DO UPDATE SET context = excluded.context
                         WHERE altan_pay_threads.account_id IS NOT DISTINCT FROM excluded.account_id
                         RETURNING account_id",
                        &[&thread, &account, &text],
                    )
                    .await
                    .map_err(pg_err("claiming a thread"))?;
                if let Some(row) = claimed {
                    return Ok(row.get::<_, Option<String>>(0));
                }
                // Another account owns it: nothing was written.
                let owner = conn
                    .query_opt(
                        "SELECT account_id FROM altan_pay_threads WHERE thread_id = $1",
                        &[&thread],
                    )
                    .await
                    .map_err(pg_err("reading a thread's owner"))?;
                Ok(owner.and_then(|r| r.get::<_, Option<String>>(0)))
            })
            .await
        })
    }

    fn reserve<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        body_hash: &'a str,
    ) -> StoreFuture<'a, Reservation> {
        let pool = self.pool.clone();
        let (scope, key, hash) = (scope.to_string(), key.to_string(), body_hash.to_string());
        Box::pin(run(async move {
            let conn = PgStore::client(&pool).await?;
            // A key released between the insert and the read is tried again.
            for _ in 0..5 {
                let inserted = conn
                    .execute(
                        "INSERT INTO altan_pay_idempotency (scope, key, body_hash)
                         VALUES ($1, $2, $3) ON CONFLICT (scope, key) DO NOTHING",
                        &[&scope, &key, &hash],
                    )
                    .await
                    .map_err(pg_err("reserving an idempotency key"))?;
                if inserted == 1 {
                    return Ok(Reservation::Reserved);
                }
                let existing = conn
                    .query_opt(
                        "SELECT body_hash, response FROM altan_pay_idempotency
                         WHERE scope = $1 AND key = $2",
                        &[&scope, &key],
                    )
                    .await
                    .map_err(pg_err("reading an idempotency key"))?;
                if let Some(row) = existing {
                    return reservation_of(&key, &hash, &row.get::<_, String>(0), row.get(1));
                }
            }
            Err(StoreError::Failed(format!(
                "idempotency key {key} kept changing while it was reserved"
            )))
        }))
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        response: &'a Value,
    ) -> StoreFuture<'a, ()> {
        let pool = self.pool.clone();
        let (scope, key, text) = (scope.to_string(), key.to_string(), response.to_string());
        Box::pin(run(async move {
            let conn = PgStore::client(&pool).await?;
            conn.execute(
                "UPDATE altan_pay_idempotency SET response = $3 WHERE scope = $1 AND key = $2",
                &[&scope, &key, &text],
            )
            .await
            .map_err(pg_err("storing an idempotent answer"))?;
            Ok(())
        }))
    }

    fn release<'a>(&'a self, scope: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        let pool = self.pool.clone();
        let (scope, key) = (scope.to_string(), key.to_string());
        Box::pin(run(async move {
            let conn = PgStore::client(&pool).await?;
            conn.execute(
                "DELETE FROM altan_pay_idempotency
                 WHERE scope = $1 AND key = $2 AND response IS NULL",
                &[&scope, &key],
            )
            .await
            .map_err(pg_err("releasing an idempotency key"))?;
            Ok(())
        }))
    }

    /// The thread's lock in this process first (so one turn per process asks PostgreSQL),
    /// then the advisory lock across replicas, both within `wait`.
    fn lease<'a>(
        &'a self,
        thread_id: &'a str,
        wait: Duration,
    ) -> StoreFuture<'a, Lease, LeaseError> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let local = self.leases.take(thread_id, wait).await?;
            // Saves an earlier turn of the thread left queued (it ended early) commit under
            // that turn's token, before this turn's token replaces it.
            self.in_flight
                .wait_for(thread_id, Duration::from_secs(10))
                .await;
            let left = wait.saturating_sub(started.elapsed());
            // A task of its own: a lock taken after its caller went away is still released.
            let held = tokio::spawn(lease::acquire(
                self.lease_pool.clone(),
                thread_id.to_string(),
                left,
                self.holder.clone(),
                self.fences.clone(),
            ))
            .await
            .map_err(|e| StoreError::Failed(format!("taking a thread lease stopped: {e}")))?
            .map_err(|e| match e {
                LeaseError::Busy { thread_id, .. } => LeaseError::Busy {
                    thread_id,
                    waited: wait,
                },
                other => other,
            })?;
            let token = held.token();
            Ok(Lease::shared(local, Box::new(held), token))
        })
    }

    fn commit_stats(&self) -> (u64, u64) {
        let stats = &self.commits.stats;
        (
            stats.writes.load(std::sync::atomic::Ordering::Relaxed),
            stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl PendingStore for PgStore {
    fn apply<'a>(
        &'a self,
        event: &'a EventRecord,
        mutations: &'a [Versioned],
    ) -> StoreFuture<'a, Applied> {
        Box::pin(run(pending::apply(
            self.pool.clone(),
            event.clone(),
            mutations.to_vec(),
        )))
    }

    fn is_processed<'a>(&'a self, event_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(run(pending::is_processed(
            self.pool.clone(),
            event_id.to_string(),
        )))
    }

    fn pending<'a>(&'a self, account_id: &'a str) -> StoreFuture<'a, Vec<PendingEntry>> {
        Box::pin(run(pending::pending(
            self.pool.clone(),
            account_id.to_string(),
        )))
    }

    fn remove<'a>(&'a self, account_id: &'a str, seqs: &'a [i64]) -> StoreFuture<'a, ()> {
        Box::pin(run(pending::remove(
            self.pool.clone(),
            account_id.to_string(),
            seqs.to_vec(),
        )))
    }
}

impl PlanBackend for PgStore {
    fn read_plan<'a>(
        &'a self,
        account_id: &'a str,
    ) -> crate::tools::ToolFuture<'a, Result<Option<String>, String>> {
        let (pool, account) = (self.pool.clone(), account_id.to_string());
        Box::pin(async move {
            run(async move {
                let conn = PgStore::client(&pool).await?;
                Ok(conn
                    .query_opt(
                        "SELECT plan FROM altan_pay_plans WHERE account_id = $1",
                        &[&account],
                    )
                    .await
                    .map_err(pg_err("reading a plan"))?
                    .map(|r| r.get::<_, String>(0)))
            })
            .await
            .map_err(|e| e.to_string())
        })
    }

    fn write_plan<'a>(
        &'a self,
        account_id: &'a str,
        text: &'a str,
    ) -> crate::tools::ToolFuture<'a, Result<(), String>> {
        let (pool, account, text) = (self.pool.clone(), account_id.to_string(), text.to_string());
        Box::pin(async move {
            run(async move {
                let conn = PgStore::client(&pool).await?;
                conn.execute(
                    "INSERT INTO altan_pay_plans (account_id, plan) VALUES ($1, $2)
                     ON CONFLICT (account_id) DO UPDATE SET plan = excluded.plan, updated_at = now()",
                    &[&account, &text],
                )
                .await
                .map_err(pg_err("saving a plan"))?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
        })
    }
}
