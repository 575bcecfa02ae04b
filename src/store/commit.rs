//! Group commit: writes submitted by async callers queue up for one thread, which runs all the
//! queued writes in one transaction and syncs the file once; each caller gets its own result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::agent::StoreError;

/// The most writes one transaction takes, so a long queue is committed in steps.
const MAX_BATCH: usize = 256;

/// One queued write.
trait Write: Send {
    /// Runs inside the batch's transaction; false when it failed (its changes are undone).
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Reports the outcome once the commit is known: the write's own error, or the commit's.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
    /// Whether its caller was told it succeeded before the commit (see [`GroupCommit::run_applied`]).
    fn answered_early(&self) -> bool {
        false
    }
    /// Whether someone waits for it to be durable. A batch in which nobody does is committed
    /// without its fsync: the writes are still atomic and visible, and the next batch that
    /// is synced makes them durable with it (the WAL is one file, synced as a whole).
    fn needs_sync(&self) -> bool {
        true
    }
}

struct Pending<F, R> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: Option<oneshot::Sender<Result<R, StoreError>>>,
    /// Answer as soon as the write is applied, not after the commit.
    early: bool,
    answered_early: bool,
}

impl<F, R> Write for Pending<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        if self.early
            && let Some(reply) = self.reply.take()
        {
            self.answered_early = ok;
            let _ = reply.send(result);
        } else {
            self.result = Some(result);
        }
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let Some(reply) = self.reply else {
            return;
        };
        let outcome = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Failed("the write was never run".into())),
        };
        // The caller may have gone away (its request was cancelled); the write stands.
        let _ = reply.send(outcome);
    }

    fn answered_early(&self) -> bool {
        self.answered_early
    }

    fn needs_sync(&self) -> bool {
        !self.early
    }
}

/// A write nobody waits for: its failure is logged.
struct Detached<F> {
    work: Option<F>,
    failed: Option<StoreError>,
    /// Called once the write is committed or failed.
    done: Option<Box<dyn FnOnce() + Send>>,
}

impl<F> Write for Detached<F>
where
    F: FnOnce(&Connection) -> Result<(), StoreError> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        match work(conn) {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    fn needs_sync(&self) -> bool {
        false
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        if let Some(e) = self.failed.or(commit.err()) {
            tracing::warn!(error = %e, "a queued write was not saved");
        }
        if let Some(done) = self.done {
            done();
        }
    }
}

/// How many writes were queued and how many transactions committed them.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
    /// A write answered before its commit was lost with a failed commit: its caller acted on
    /// something that is not on disk, so no later write is taken (fail closed).
    pub lost_early_write: std::sync::atomic::AtomicBool,
}

/// The queue to the commit thread. The thread ends when this is dropped.
pub(super) struct GroupCommit {
    writes: mpsc::Sender<Box<dyn Write>>,
    stats: Arc<CommitStats>,
}

impl GroupCommit {
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> Result<GroupCommit, StoreError> {
        let (sender, writes) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let counted = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-group-commit".into())
            .spawn(move || commit_loop(&conn, &writes, &counted))
            .map_err(|e| StoreError::Failed(format!("cannot start the commit thread: {e}")))?;
        Ok(GroupCommit {
            writes: sender,
            stats,
        })
    }

    pub(super) fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Runs `work` on the write connection in the next batch, and answers once that batch is
    /// committed (durable) or failed.
    pub(super) async fn run<F, R>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.submit_pending(work, false).await
    }

    /// Like [`GroupCommit::run`], but answers as soon as `work` has run inside the batch's
    /// transaction, before the commit's fsync. For a write whose caller only needs to know its
    /// outcome (a thread's owner) and whose durability any later awaited write brings along:
    /// batches commit in queue order. Should that commit fail, every later write is refused.
    pub(super) async fn run_applied<F, R>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.submit_pending(work, true).await
    }

    async fn submit_pending<F, R>(&self, work: F, early: bool) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            work: Some(work),
            result: None,
            reply: Some(reply),
            early,
            answered_early: false,
        };
        self.submit(Box::new(pending))?;
        // The caller's wait for the commit that makes its write durable.
        let span = tracing::info_span!(
            "store_commit",
            otel.name = "store commit",
            db.system.name = "sqlite",
        );
        answer
            .instrument(span)
            .await
            .map_err(|_| StoreError::Failed("the commit thread stopped before committing".into()))?
    }

    /// Queues `work` for the next batch without waiting for it. Writes are committed in the
    /// order they were queued, so a write awaited later is durable only once this one is.
    /// `done` runs on the commit thread once the write is committed or failed.
    pub(super) fn queue<F>(&self, work: F, done: Box<dyn FnOnce() + Send>) -> Result<(), StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        let write = Detached {
            work: Some(work),
            failed: None,
            done: Some(done),
        };
        self.submit(Box::new(write))
    }

    fn submit(&self, write: Box<dyn Write>) -> Result<(), StoreError> {
        if self.stats.lost_early_write.load(Ordering::Acquire) {
            return Err(StoreError::Failed(
                "a commit failed after its write was acted upon; restart the server (the store refuses further writes)".into(),
            ));
        }
        self.writes
            .send(write)
            .map_err(|_| StoreError::Failed("the commit thread has stopped".into()))?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn commit_loop(
    conn: &Mutex<Connection>,
    writes: &mpsc::Receiver<Box<dyn Write>>,
    stats: &CommitStats,
) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit_batch(&super::lock(conn), batch, stats);
    }
}

/// One transaction for the whole batch, each write inside its own savepoint so a failed write
/// is undone alone; one commit (one fsync) for all.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Write>>, stats: &CommitStats) {
    let count = batch.len();
    let started = std::time::Instant::now();
    // Nobody waits for a batch of queued saves (and claims answered early) to be durable: it
    // is committed without its fsync (WAL, synchronous=NORMAL), and the next awaited write's
    // commit syncs the WAL, these frames included. A crash of the process loses none of it;
    // a crash of the machine may lose such a batch, as it may lose a queued write not yet
    // committed, and nothing was acted upon that depended on it.
    let sync = batch.iter().any(|w| w.needs_sync());
    let mut run = || -> Result<(), rusqlite::Error> {
        conn.execute_batch(if sync {
            "PRAGMA synchronous=FULL"
        } else {
            "PRAGMA synchronous=NORMAL"
        })?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for write in batch.iter_mut() {
            conn.execute_batch("SAVEPOINT one_write")?;
            if write.apply(conn) {
                conn.execute_batch("RELEASE one_write")?;
            } else {
                conn.execute_batch("ROLLBACK TO one_write; RELEASE one_write")?;
            }
        }
        conn.execute_batch("COMMIT")
    };
    let outcome = run().map_err(|e| StoreError::Failed(format!("committing {count} writes: {e}")));
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if outcome.is_err() && batch.iter().any(|w| w.answered_early()) {
        tracing::error!(
            "a failed commit lost a write that was already answered; refusing further writes"
        );
        stats.lost_early_write.store(true, Ordering::Release);
    }
    // Counted before anyone hears back, so a caller never sees its write without its commit.
    stats.commits.fetch_add(1, Ordering::Relaxed);
    crate::metrics::global().store_commit(started.elapsed(), count);
    for write in batch {
        write.finish(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PRAGMA synchronous` as a write of the batch sees it (1: NORMAL, 2: FULL).
    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_nobody_waits_for_is_committed_without_an_fsync_and_an_awaited_one_with_it() {
        let (_dir, conn) = table();
        conn.lock()
            .unwrap()
            .execute_batch("PRAGMA synchronous=FULL")
            .unwrap();
        let commits = GroupCommit::start(conn.clone()).unwrap();
        let (seen, queued_level) = std::sync::mpsc::channel();
        commits
            .queue(
                move |c| {
                    let _ = seen.send(synchronous(c));
                    Ok(())
                },
                Box::new(|| {}),
            )
            .unwrap();
        assert_eq!(
            queued_level.recv().unwrap(),
            1,
            "a queued save alone: no fsync"
        );
        let awaited = commits.run(|c| Ok(synchronous(c))).await.unwrap();
        assert_eq!(awaited, 2, "an awaited save: synced");
    }

    fn table() -> (tempfile::TempDir, Arc<Mutex<Connection>>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("c.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (v TEXT PRIMARY KEY);")
            .unwrap();
        (dir, Arc::new(Mutex::new(conn)))
    }

    /// `table()` plus a deferred foreign key: a violating write passes, and its COMMIT fails.
    fn table_failing_at_commit() -> (tempfile::TempDir, Arc<Mutex<Connection>>) {
        let (dir, conn) = table();
        conn.lock()
            .unwrap()
            .execute_batch(
                "PRAGMA foreign_keys=ON;
                 CREATE TABLE child (p TEXT REFERENCES t(v) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        (dir, conn)
    }

    fn insert(v: &'static str) -> impl FnOnce(&Connection) -> Result<usize, StoreError> {
        move |c: &Connection| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map_err(|e| StoreError::Failed(e.to_string()))
        }
    }

    /// Writes queued while a commit is under way go out together in the next one; a failing
    /// write is undone alone and reported to its caller only.
    // Holding the connection's lock across awaits is the point: it stands for a slow commit.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_share_one_commit_and_fail_alone() {
        let (_dir, conn) = table();
        let commits = Arc::new(GroupCommit::start(conn.clone()).unwrap());
        let held = conn.lock().unwrap();
        let mut tasks = Vec::new();
        for v in ["a", "b", "a", "c", "d"] {
            let commits = commits.clone();
            tasks.push(tokio::spawn(async move { commits.run(insert(v)).await }));
        }
        while commits.stats().writes.load(Ordering::Relaxed) < 5 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
        assert_eq!(failed.len(), 1, "{results:?}");
        assert!(format!("{:?}", failed[0]).contains("UNIQUE"), "{failed:?}");
        let rows: Vec<String> = {
            let c = conn.lock().unwrap();
            let mut st = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(rows, ["a", "b", "c", "d"]);
        // The first write may have been taken alone before the lock was released.
        let made = commits.stats().commits.load(Ordering::Relaxed);
        assert!((1..=2).contains(&made), "{made} commits for 5 writes");
    }

    /// A commit that fails reports its error to every write of the batch, and nothing of the
    /// batch is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_write_of_the_batch() {
        let (_dir, conn) = table_failing_at_commit();
        let commits = Arc::new(GroupCommit::start(conn.clone()).unwrap());
        // A first write that holds its batch open until the next two are queued, so that
        // those two are certain to be committed together.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let commits = commits.clone();
            async move {
                commits
                    .run(move |_: &Connection| {
                        let _ = started_tx.send(());
                        let _ = go_rx.recv();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        let orphan = tokio::spawn({
            let commits = commits.clone();
            async move {
                commits
                    .run(|c: &Connection| {
                        c.execute("INSERT INTO child (p) VALUES ('nobody')", [])
                            .map_err(|e| StoreError::Failed(e.to_string()))
                    })
                    .await
            }
        });
        let fine = tokio::spawn({
            let commits = commits.clone();
            async move { commits.run(insert("x")).await }
        });
        while commits.stats().writes.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let (orphan, fine) = (orphan.await.unwrap(), fine.await.unwrap());
        assert!(orphan.is_err() && fine.is_err(), "{orphan:?} {fine:?}");
        assert!(format!("{fine:?}").contains("FOREIGN KEY"), "{fine:?}");
        let count: i64 = conn
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    /// A write that waits inside its batch until `go` is sent; the first `started` says it runs.
    fn gate(
        commits: &Arc<GroupCommit>,
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let commits = commits.clone();
        let task = tokio::spawn(async move {
            commits
                .run(move |_: &Connection| {
                    let _ = started_tx.send(());
                    let _ = go_rx.recv();
                    Ok(())
                })
                .await
        });
        (task, started, go)
    }

    /// An early write is answered while its batch is still open, before the commit; the
    /// batch still commits it with the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_applied_write_is_answered_before_its_commit() {
        let (_dir, conn) = table();
        let commits = Arc::new(GroupCommit::start(conn.clone()).unwrap());
        // A first batch held open while the next two queue up, so they share one batch.
        let (first, first_started, first_go) = gate(&commits);
        tokio::task::spawn_blocking(move || first_started.recv().unwrap())
            .await
            .unwrap();
        let early = tokio::spawn({
            let commits = commits.clone();
            async move { commits.run_applied(insert("e")).await }
        });
        while commits.stats().writes.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        let (blocker, _, go) = gate(&commits);
        while commits.stats().writes.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        first_go.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(early.await.unwrap().unwrap(), 1);
        // Answered while its batch (held by the blocker) is not committed yet.
        assert_eq!(commits.stats().commits.load(Ordering::Relaxed), 1);
        go.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert_eq!(commits.stats().commits.load(Ordering::Relaxed), 2);
        let count: i64 = conn
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM t WHERE v = 'e'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    /// When the commit of an early-answered write fails, the store takes no further write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_early_write_stops_every_later_write() {
        let (_dir, conn) = table_failing_at_commit();
        let commits = Arc::new(GroupCommit::start(conn.clone()).unwrap());
        let (first, first_started, first_go) = gate(&commits);
        tokio::task::spawn_blocking(move || first_started.recv().unwrap())
            .await
            .unwrap();
        let early = tokio::spawn({
            let commits = commits.clone();
            async move { commits.run_applied(insert("e")).await }
        });
        let orphan = tokio::spawn({
            let commits = commits.clone();
            async move {
                commits
                    .run(|c: &Connection| {
                        c.execute("INSERT INTO child (p) VALUES ('nobody')", [])
                            .map_err(|e| StoreError::Failed(e.to_string()))
                    })
                    .await
            }
        });
        while commits.stats().writes.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        first_go.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert!(early.await.unwrap().is_ok());
        assert!(orphan.await.unwrap().is_err());
        let later = commits.run(insert("z")).await;
        assert!(
            later
                .as_ref()
                .is_err_and(|e| e.detail().contains("refuses further writes")),
            "{later:?}"
        );
    }
}
