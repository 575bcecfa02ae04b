//! Received Stripe events and pending syncs on PostgreSQL: the same rules as the SQLite
//! [`crate::store::pending::SqlitePendingStore`], each call one transaction. The event id is
//! claimed first (`INSERT ... ON CONFLICT DO NOTHING`), so two replicas handed the same event
//! at once apply it once: the second waits for the first's commit and finds it done.

use deadpool_postgres::Pool;

use crate::agent::StoreError;
use crate::mirror::error_message;
use crate::store::pending::{Applied, EventRecord, PendingEntry, Versioned};

fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Failed(format!("{what}: {}", error_message(&e)))
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Failed(format!("no PostgreSQL connection: {e}")))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) async fn apply(
    pool: Pool,
    event: EventRecord,
    mutations: Vec<Versioned>,
) -> Result<Applied, StoreError> {
    let mut conn = client(&pool).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(pg("starting a transaction"))?;
    let received = now();
    let claimed = tx
        .execute(
            "INSERT INTO altan_pay_processed_events
             (event_id, event_type, account_id, created, received_at, queued)
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (event_id) DO NOTHING",
            &[
                &event.id,
                &event.event_type,
                &event.account_id,
                &event.created,
                &received,
            ],
        )
        .await
        .map_err(pg("recording an event"))?;
    if claimed == 0 {
        return Ok(Applied::Duplicate);
    }
    let (mut queued, mut stale) = (0usize, 0usize);
    for v in &mutations {
        let m = &v.mutation;
        let kind = m.kind.as_str();
        let last = tx
            .query_opt(
                "SELECT version FROM altan_pay_object_versions
                 WHERE account_id = $1 AND kind = $2 AND object_id = $3 FOR UPDATE",
                &[&event.account_id, &kind, &m.id],
            )
            .await
            .map_err(pg("reading an object version"))?
            .map(|r| r.get::<_, i64>(0));
        // Equal versions (same second) go to the later arrival.
        if last.is_some_and(|last| last > v.version) {
            stale += 1;
            continue;
        }
        tx.execute(
            "INSERT INTO altan_pay_object_versions (account_id, kind, object_id, version, event_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id, kind, object_id)
             DO UPDATE SET version = excluded.version, event_id = excluded.event_id",
            &[&event.account_id, &kind, &m.id, &v.version, &event.id],
        )
        .await
        .map_err(pg("saving an object version"))?;
        tx.execute(
            "DELETE FROM altan_pay_pending WHERE account_id = $1 AND kind = $2 AND object_id = $3",
            &[&event.account_id, &kind, &m.id],
        )
        .await
        .map_err(pg("replacing a pending entry"))?;
        let text = serde_json::to_string(m).map_err(|e| StoreError::Failed(e.to_string()))?;
        tx.execute(
            "INSERT INTO altan_pay_pending
             (account_id, kind, object_id, event_id, received_at, version, mutation)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &event.account_id,
                &kind,
                &m.id,
                &event.id,
                &received,
                &v.version,
                &text,
            ],
        )
        .await
        .map_err(pg("queueing a pending entry"))?;
        queued += 1;
    }
    tx.execute(
        "UPDATE altan_pay_processed_events SET queued = $2 WHERE event_id = $1",
        &[&event.id, &(queued as i64)],
    )
    .await
    .map_err(pg("recording an event"))?;
    tx.commit().await.map_err(pg("committing an event"))?;
    Ok(Applied::Applied { queued, stale })
}

pub(super) async fn is_processed(pool: Pool, event_id: String) -> Result<bool, StoreError> {
    let conn = client(&pool).await?;
    let row = conn
        .query_opt(
            "SELECT 1 FROM altan_pay_processed_events WHERE event_id = $1",
            &[&event_id],
        )
        .await
        .map_err(pg("reading an event"))?;
    Ok(row.is_some())
}

pub(super) async fn pending(
    pool: Pool,
    account_id: String,
) -> Result<Vec<PendingEntry>, StoreError> {
    let conn = client(&pool).await?;
    let rows = conn
        .query(
            "SELECT seq, event_id, received_at, version, mutation FROM altan_pay_pending
             WHERE account_id = $1 ORDER BY seq",
            &[&account_id],
        )
        .await
        .map_err(pg("reading pending entries"))?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let text: String = r.get(4);
            let mutation = serde_json::from_str(&text).map_err(|e| {
                StoreError::Failed(format!("pending entry {seq} is not a mutation: {e}"))
            })?;
            Ok(PendingEntry {
                seq,
                event_id: r.get(1),
                received_at: r.get(2),
                version: r.get(3),
                mutation,
            })
        })
        .collect()
}

pub(super) async fn remove(
    pool: Pool,
    account_id: String,
    seqs: Vec<i64>,
) -> Result<(), StoreError> {
    let conn = client(&pool).await?;
    conn.execute(
        "DELETE FROM altan_pay_pending WHERE account_id = $1 AND seq = ANY($2)",
        &[&account_id, &seqs],
    )
    .await
    .map_err(pg("removing pending entries"))?;
    Ok(())
}
