//! Group commit on PostgreSQL: session saves queued by concurrent turns go out together, as
//! one `INSERT ... SELECT FROM unnest(...)` statement in its own transaction, so a batch costs
//! one round trip and one WAL flush. Each save carries its thread's fencing token (when the
//! thread is leased here): a save whose lease was taken over by another replica is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::pg_err;
use crate::agent::StoreError;
use crate::mirror::error_message;

/// The most saves one statement takes.
const MAX_BATCH: usize = 256;

/// One session save.
pub(super) struct Save {
    pub thread_id: String,
    pub text: String,
    /// The lease's fencing token, when the save happens under a lease.
    pub token: Option<i64>,
    /// Told the outcome once the batch is committed or failed.
    pub reply: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Run once the outcome is known (queued saves).
    pub done: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// How many saves were queued and how many statements committed them.
#[derive(Debug, Default)]
pub(super) struct CommitStats {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
}

/// The queue to the commit task; the task ends when this is dropped.
pub(super) struct GroupCommit {
    saves: mpsc::UnboundedSender<Save>,
    pub stats: Arc<CommitStats>,
}

impl GroupCommit {
    /// Starts the commit task on the current runtime; it ends when this is dropped.
    pub(super) fn start(pool: Pool) -> GroupCommit {
        let (saves, queue) = mpsc::unbounded_channel();
        let stats = Arc::new(CommitStats::default());
        tokio::spawn(commit_loop(pool, queue, stats.clone()));
        GroupCommit { saves, stats }
    }

    /// Queues a save; batches commit in queue order.
    pub(super) fn submit(&self, save: Save) -> Result<(), StoreError> {
        self.saves
            .send(save)
            .map_err(|_| StoreError::Failed("the PostgreSQL commit task has stopped".into()))?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues a save and waits until it is committed (durable) or failed.
    pub(super) async fn run(
        &self,
        thread_id: String,
        text: String,
        token: Option<i64>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Save {
            thread_id,
            text,
            token,
            reply: Some(reply),
            done: None,
        })?;
        answer.await.map_err(|_| {
            StoreError::Failed("the PostgreSQL commit task stopped before committing".into())
        })?
    }
}

async fn commit_loop(
    pool: Pool,
    mut queue: mpsc::UnboundedReceiver<Save>,
    stats: Arc<CommitStats>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let outcome = write_batch(&pool, &batch).await;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().store_commit(started.elapsed(), batch.len());
        for save in batch {
            let result = match &outcome {
                Err(e) => Err(e.clone()),
                Ok(written) if written.contains(&save.thread_id) => Ok(()),
                Ok(_) => Err(StoreError::LeaseLost {
                    thread_id: save.thread_id.clone(),
                }),
            };
            if let Err(e) = &result
                && save.reply.is_none()
            {
                tracing::warn!(error = %e, thread = %save.thread_id, "a queued session save was not saved");
            }
            if let Some(reply) = save.reply {
                // The caller may have gone away (its request was cancelled); the save stands.
                let _ = reply.send(result);
            }
            if let Some(done) = save.done {
                done();
            }
        }
    }
}

/// Writes the batch in one statement; the threads whose row was written. Of several saves of
/// one thread the last is written: each carries the whole session, the later the newer.
async fn write_batch(pool: &Pool, batch: &[Save]) -> Result<HashSet<String>, StoreError> {
    let mut last: HashMap<&str, &Save> = HashMap::new();
    for save in batch {
        last.insert(&save.thread_id, save);
    }
    let (mut threads, mut texts, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for save in last.values() {
        threads.push(save.thread_id.as_str());
        texts.push(save.text.as_str());
        tokens.push(save.token);
    }
    let client = pool
        .get()
        .await
        .map_err(|e| StoreError::Failed(format!("no PostgreSQL connection for a commit: {e}")))?;
    let statement = client
        .prepare_cached(
            "INSERT INTO altan_pay_sessions (thread_id, session, updated_at)
             SELECT t.thread_id, t.session, now()
             FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(thread_id, session, token)
             WHERE t.token IS NULL OR EXISTS (
                 SELECT 1 FROM altan_pay_thread_leases l
                 WHERE l.thread_id = t.thread_id AND l.token = t.token FOR SHARE)
             ON CONFLICT (thread_id) DO UPDATE
             SET session = excluded.session, updated_at = excluded.updated_at
             RETURNING thread_id",
        )
        .await
        .map_err(pg_err("preparing the session save"))?;
    let rows = client
        .query(&statement, &[&threads, &texts, &tokens])
        .await
        .map_err(|e| {
            StoreError::Failed(format!(
                "committing {} session saves: {}",
                batch.len(),
                error_message(&e)
            ))
        })?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}
