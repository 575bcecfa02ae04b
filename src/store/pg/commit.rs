//! Group commit on PostgreSQL: session saves queued by concurrent turns go out together in one
//! transaction (a few `unnest(...)` statements for the whole batch), so a batch costs one WAL
//! flush. Each save writes what its session added (`store::rows`): the state row, the new or
//! changed history rows, and deletes the rows that fell out of the bound. Each save carries its
//! thread's fencing token (when the thread is leased here): a save whose lease was taken over
//! by another replica is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::pg_err;
use crate::agent::StoreError;
use crate::mirror::error_message;
use crate::store::rows::{SessionRows, Watermarks};

/// The most saves one statement takes.
const MAX_BATCH: usize = 256;

/// One session save.
pub(super) struct Save {
    pub thread_id: String,
    pub rows: SessionRows,
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
    /// What each thread's rows hold, as this process last wrote or read them.
    pub marks: Arc<Watermarks>,
}

impl GroupCommit {
    /// Starts the commit task on the current runtime; it ends when this is dropped.
    pub(super) fn start(pool: Pool) -> GroupCommit {
        let (saves, queue) = mpsc::unbounded_channel();
        let stats = Arc::new(CommitStats::default());
        let marks = Arc::new(Watermarks::default());
        tokio::spawn(commit_loop(pool, queue, stats.clone(), marks.clone()));
        GroupCommit {
            saves,
            stats,
            marks,
        }
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
        rows: SessionRows,
        token: Option<i64>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Save {
            thread_id,
            rows,
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
    marks: Arc<Watermarks>,
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
        let outcome = write_batch(&pool, &batch, &marks).await;
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

/// Writes the batch in one transaction; the threads whose rows were written. Of several saves
/// of one thread the last is written: each carries the whole session, the later the newer.
async fn write_batch(
    pool: &Pool,
    batch: &[Save],
    marks: &Watermarks,
) -> Result<HashSet<String>, StoreError> {
    let mut last: HashMap<&str, &Save> = HashMap::new();
    for save in batch {
        last.insert(&save.thread_id, save);
    }
    let (mut threads, mut tokens) = (Vec::new(), Vec::new());
    for save in last.values() {
        threads.push(save.thread_id.as_str());
        tokens.push(save.token);
    }
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::Failed(format!("no PostgreSQL connection for a commit: {e}")))?;
    let failed = |e: tokio_postgres::Error| {
        StoreError::Failed(format!(
            "committing {} session saves: {}",
            batch.len(),
            error_message(&e)
        ))
    };
    let tx = client
        .transaction()
        .await
        .map_err(pg_err("starting a session commit"))?;
    // Nobody waits for a batch of queued saves to be durable: it commits without waiting
    // for its WAL flush, and the next awaited save's commit flushes the WAL up to itself,
    // these records included (as with SQLite, `store/commit.rs`).
    if batch.iter().all(|save| save.reply.is_none()) {
        tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
            .await
            .map_err(pg_err("starting a session commit"))?;
    }
    // The threads whose lease is still this save's; the lease rows stay locked (shared) to the
    // commit, so no takeover slips in between.
    let fenced = tx
        .prepare_cached(
            "SELECT t.thread_id
             FROM unnest($1::text[], $2::int8[]) AS t(thread_id, token)
             WHERE t.token IS NULL OR EXISTS (
                 SELECT 1 FROM altan_pay_thread_leases l
                 WHERE l.thread_id = t.thread_id AND l.token = t.token FOR SHARE)",
        )
        .await
        .map_err(pg_err("preparing the session save"))?;
    let allowed: Vec<String> = tx
        .query(&fenced, &[&threads, &tokens])
        .await
        .map_err(failed)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The stored versions, rows locked: a concurrent writer of a thread waits, then sees ours.
    let versions = tx
        .prepare_cached(
            "SELECT thread_id, version FROM altan_pay_session_state
             WHERE thread_id = ANY($1) ORDER BY thread_id FOR UPDATE",
        )
        .await
        .map_err(pg_err("preparing the session save"))?;
    let stored: HashMap<String, Option<i64>> = tx
        .query(&versions, &[&allowed])
        .await
        .map_err(failed)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut state = StateColumns::default();
    let (mut kept, mut keep_from, mut keep_end) = (Vec::new(), Vec::new(), Vec::<i64>::new());
    let (mut written, mut seqs, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    let mut cleared = Vec::new();
    let mut gone = (Vec::new(), Vec::new(), Vec::new());
    let mut evidence = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut plans = Vec::new();
    for thread in &allowed {
        let Some(save) = last.get(thread.as_str()) else {
            continue;
        };
        let rows = &save.rows;
        let plan = rows.plan(stored.get(thread).copied().flatten(), marks.take(thread));
        let len = rows.history.len() as i64;
        kept.push(thread.as_str());
        // A full rewrite keeps no row: every seq is outside 0..0.
        let (from, end) = if plan.full {
            (0, 0)
        } else {
            (plan.from, plan.from + len)
        };
        keep_from.push(from);
        keep_end.push(end);
        for &index in &plan.writes {
            written.push(thread.as_str());
            seqs.push(plan.from + index as i64);
            texts.push(rows.message_text(index)?);
        }
        state.push(thread, rows, &plan);
        plans.push((thread.as_str(), rows, plan));
    }
    // The provenance rows, borrowed from the plans (kept until the commit for their marks).
    for (thread, _, plan) in &plans {
        if plan.full {
            cleared.push(*thread);
        }
        for (kind, key) in &plan.evidence.removed {
            gone.0.push(*thread);
            gone.1.push(*kind);
            gone.2.push(key.as_str());
        }
        for (kind, key, value) in &plan.evidence.written {
            evidence.0.push(*thread);
            evidence.1.push(*kind);
            evidence.2.push(key.as_str());
            evidence.3.push(value.as_str());
        }
    }
    let statements = [
        "DELETE FROM altan_pay_session_messages m
         USING unnest($1::text[], $2::int8[], $3::int8[]) AS d(thread_id, keep_from, keep_end)
         WHERE m.thread_id = d.thread_id AND (m.seq < d.keep_from OR m.seq >= d.keep_end)",
        "INSERT INTO altan_pay_session_messages (thread_id, seq, message)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])
         ON CONFLICT (thread_id, seq) DO UPDATE SET message = excluded.message",
        "INSERT INTO altan_pay_session_state
             (thread_id, session, updated_at, version, history_from, history_len)
         SELECT t.thread_id, t.session, now(), t.version, t.history_from, t.history_len
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
             AS t(thread_id, session, version, history_from, history_len)
         ON CONFLICT (thread_id) DO UPDATE
         SET session = excluded.session, updated_at = excluded.updated_at,
             version = excluded.version, history_from = excluded.history_from,
             history_len = excluded.history_len",
        "DELETE FROM altan_pay_session_provenance p USING unnest($1::text[]) AS d(thread_id)
         WHERE p.thread_id = d.thread_id",
        "DELETE FROM altan_pay_session_provenance p
         USING unnest($1::text[], $2::int2[], $3::text[]) AS d(thread_id, kind, key)
         WHERE p.thread_id = d.thread_id AND p.kind = d.kind AND p.key = d.key",
        "INSERT INTO altan_pay_session_provenance (thread_id, kind, key, value)
         SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::text[])
         ON CONFLICT (thread_id, kind, key) DO UPDATE SET value = excluded.value",
    ];
    let mut prepared = Vec::new();
    for sql in statements {
        prepared.push(
            tx.prepare_cached(sql)
                .await
                .map_err(pg_err("preparing the session save"))?,
        );
    }
    tx.execute(&prepared[0], &[&kept, &keep_from, &keep_end])
        .await
        .map_err(failed)?;
    tx.execute(&prepared[1], &[&written, &seqs, &texts])
        .await
        .map_err(failed)?;
    tx.execute(
        &prepared[2],
        &[
            &state.threads,
            &state.texts,
            &state.versions,
            &state.froms,
            &state.lens,
        ],
    )
    .await
    .map_err(failed)?;
    tx.execute(&prepared[3], &[&cleared])
        .await
        .map_err(failed)?;
    tx.execute(&prepared[4], &[&gone.0, &gone.1, &gone.2])
        .await
        .map_err(failed)?;
    tx.execute(
        &prepared[5],
        &[&evidence.0, &evidence.1, &evidence.2, &evidence.3],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    for (thread, rows, plan) in plans {
        marks.remember(thread, plan.version, rows.provenance.clone());
        marks.put(thread, rows.watermark(plan));
    }
    Ok(allowed.into_iter().collect())
}

/// The `altan_pay_session_state` rows of a batch, column by column.
#[derive(Default)]
struct StateColumns<'a> {
    threads: Vec<&'a str>,
    texts: Vec<&'a str>,
    versions: Vec<i64>,
    froms: Vec<i64>,
    lens: Vec<i64>,
}

impl<'a> StateColumns<'a> {
    fn push(&mut self, thread: &'a str, rows: &'a SessionRows, plan: &crate::store::rows::Plan) {
        self.threads.push(thread);
        self.texts.push(&rows.state);
        self.versions.push(plan.version);
        self.froms.push(plan.from);
        self.lens.push(rows.history.len() as i64);
    }
}
