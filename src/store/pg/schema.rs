//! The PostgreSQL schema as numbered migrations, applied in order at start-up and recorded in
//! `altan_pay_migrations`. Replicas starting together take an advisory lock, so each
//! migration runs once; a database migrated by a newer binary is refused, not guessed at.

use tokio_postgres::Client;

use super::pg_err;
use crate::agent::StoreError;
use crate::mirror::error_message;

/// One step of the schema. Versions only grow; a released step is never edited.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The step's number, one more than the step before; recorded once applied.
    pub version: i32,
    /// What the step does, in a few words (recorded beside the version).
    pub name: &'static str,
    /// The statements, run in one transaction.
    pub sql: &'static str,
}

/// The advisory lock migrations run under (any fixed number of this program's own).
const MIGRATION_LOCK: i64 = 0x616c_7461_6e70_6179;

/// The schema of this binary.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "serve state: sessions, threads, leases, idempotency, plans, events, pending syncs",
        sql: "
CREATE TABLE altan_pay_sessions (
    thread_id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE altan_pay_threads (
    thread_id TEXT PRIMARY KEY,
    account_id TEXT,
    context TEXT NOT NULL
);
CREATE TABLE altan_pay_thread_leases (
    thread_id TEXT PRIMARY KEY,
    token BIGINT NOT NULL,
    holder TEXT NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE altan_pay_idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    response TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE TABLE altan_pay_plans (
    account_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE altan_pay_processed_events (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    queued BIGINT NOT NULL
);
CREATE TABLE altan_pay_object_versions (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, object_id)
);
CREATE TABLE altan_pay_pending (
    seq BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    mutation TEXT NOT NULL
);
CREATE INDEX altan_pay_pending_account ON altan_pay_pending (account_id, seq);
",
    },
    Migration {
        version: 2,
        name: "sessions as rows: the state in altan_pay_session_state, the history one message per row",
        // Rows of version 1 keep their whole session in `session` (version and history NULL) and
        // are read as such; their next save writes them as rows. `altan_pay_sessions` stays, as
        // a view of whole sessions, for whoever reads the database.
        sql: "
ALTER TABLE altan_pay_sessions RENAME TO altan_pay_session_state;
ALTER TABLE altan_pay_session_state
    ADD COLUMN version BIGINT,
    ADD COLUMN history_from BIGINT,
    ADD COLUMN history_len BIGINT;
CREATE TABLE altan_pay_session_messages (
    thread_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
CREATE VIEW altan_pay_sessions AS
SELECT s.thread_id,
       CASE WHEN s.history_len IS NULL THEN s.session
       ELSE jsonb_set(s.session::jsonb, '{history}', COALESCE((
           SELECT jsonb_agg(m.message::jsonb ORDER BY m.seq)
           FROM altan_pay_session_messages m
           WHERE m.thread_id = s.thread_id AND m.seq >= s.history_from
             AND m.seq < s.history_from + s.history_len), '[]'::jsonb))::text
       END AS session,
       s.updated_at
FROM altan_pay_session_state s;
",
    },
    Migration {
        version: 3,
        name: "provenance as rows: one row per object, Stripe id and room word of a thread",
        // A state row written before keeps its provenance in `session` (and has no provenance
        // rows); its next save moves it to rows. The view shows the provenance either way.
        sql: "
CREATE TABLE altan_pay_session_provenance (
    thread_id TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (thread_id, kind, key)
);
CREATE OR REPLACE VIEW altan_pay_sessions AS
SELECT s.thread_id,
       CASE WHEN s.history_len IS NULL THEN s.session
       ELSE (jsonb_set(s.session::jsonb, '{history}', COALESCE((
           SELECT jsonb_agg(m.message::jsonb ORDER BY m.seq)
           FROM altan_pay_session_messages m
           WHERE m.thread_id = s.thread_id AND m.seq >= s.history_from
             AND m.seq < s.history_from + s.history_len), '[]'::jsonb))
           || CASE WHEN s.session::jsonb ? 'provenance' THEN '{}'::jsonb
              ELSE jsonb_build_object('provenance', jsonb_build_object(
                  'objects', COALESCE((SELECT jsonb_object_agg(p.key, p.value::jsonb)
                      FROM altan_pay_session_provenance p
                      WHERE p.thread_id = s.thread_id AND p.kind = 0), '{}'::jsonb),
                  'stripe_ids', COALESCE((SELECT jsonb_agg(p.key)
                      FROM altan_pay_session_provenance p
                      WHERE p.thread_id = s.thread_id AND p.kind = 1), '[]'::jsonb),
                  'room_words', COALESCE((SELECT jsonb_agg(p.key)
                      FROM altan_pay_session_provenance p
                      WHERE p.thread_id = s.thread_id AND p.kind = 2), '[]'::jsonb)))
              END)::text
       END AS session,
       s.updated_at
FROM altan_pay_session_state s;
",
    },
];

/// Applies the migrations `client`'s database lacks, each in its own transaction with its
/// record; returns the versions applied now (empty when it was up to date).
pub async fn migrate(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<i32>, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err("taking the migration lock"))?;
    let outcome = apply(client, migrations).await;
    // Closing the connection would release it too; an error here is reported only if the
    // migrations themselves went well.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err("releasing the migration lock"));
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut Client, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS altan_pay_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_err("creating the migrations table"))?;
    let done: Vec<i32> = client
        .query(
            "SELECT version FROM altan_pay_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_err("reading the applied migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = done.iter().copied().filter(|v| *v > known).max() {
        return Err(StoreError::Failed(format!(
            "the database schema is at version {newer}, newer than this binary knows ({known}): run the newer altan-pay, or a database of this version"
        )));
    }
    let mut applied = Vec::new();
    let mut ordered = migrations.to_vec();
    ordered.sort_by_key(|m| m.version);
    for migration in ordered.iter().filter(|m| !done.contains(&m.version)) {
        let what = format!("migration {} ({})", migration.version, migration.name);
        let tx = client
            .transaction()
            .await
            .map_err(pg_err("starting a migration"))?;
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| StoreError::Failed(format!("{what}: {}", error_message(&e))))?;
        tx.execute(
            "INSERT INTO altan_pay_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(pg_err("recording a migration"))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::Failed(format!("{what}: commit: {}", error_message(&e))))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "database migrated"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}
