//! No store call blocks the thread it is awaited on. On a current-thread runtime (one thread
//! for every task) a load waits for its thread's queued save while that save's commit is held
//! up by another connection; meanwhile a whole agent turn runs and answers on the same thread.
//! A store that waited on a condition variable, a channel or SQLite itself would stop the only
//! thread, and the turn with it. Run against SQLite and PostgreSQL
//! (`ALTAN_PAY_TEST_DATABASE_URL`, set by scripts/with-postgres.sh).

#[path = "support/postgres.rs"]
mod test_pg;

use std::sync::Arc;
use std::time::Duration;

use altan_pay::agent::{Agent, Session};
use altan_pay::model::ChatMessage;
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use altan_pay::store::{PgOptions, PgStore, ServeStore, SqliteStore};

/// How long the other turn may take: far longer than it needs, far shorter than the store's
/// own waits (SQLite's busy timeout, the load's wait for a queued save).
const TURN_LIMIT: Duration = Duration::from_secs(2);

/// Holds up every session commit of the store until it is released.
enum CommitBlocker {
    /// A SQLite connection holding the file's write lock.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL transaction holding the sessions table against writes.
    Postgres(tokio_postgres::Client),
}

impl CommitBlocker {
    async fn release(self) {
        match self {
            CommitBlocker::Sqlite(conn) => {
                tokio::task::spawn_blocking(move || conn.execute_batch("COMMIT").unwrap())
                    .await
                    .unwrap()
            }
            CommitBlocker::Postgres(client) => client.batch_execute("COMMIT").await.unwrap(),
        }
    }
}

/// An agent turn on its own memory store: text only, nothing leaves the process.
async fn another_turn() -> String {
    let pay = PayClient::new(PayConfig::new(RouteTable::embedded())).unwrap();
    let model = Arc::new(ScriptedModel::new(vec![ScriptedStep::text(
        "Nothing to change.",
    )]));
    let agent = Agent::builder().model(model).pay(pay).build().unwrap();
    let context = AgentContext {
        account_id: Some("ws_1".into()),
        ..Default::default()
    };
    let said = RoomMessage {
        member_id: "u1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Do we have products?".into(),
    };
    agent
        .respond("other-thread", &context, &[said])
        .await
        .unwrap()
        .text
}

async fn a_turn_completes_while_a_load_waits_for_a_held_commit(
    store: Arc<dyn ServeStore>,
    blocker: CommitBlocker,
) {
    let thread = format!("t-{}", uuid::Uuid::new_v4().simple());
    let mut session = Session::new(&thread);
    session
        .history
        .push(ChatMessage::user("after a Stripe change"));
    store.save_queued(&session);
    // Set before the load starts: a load that stopped the thread uses up the turn's time.
    let deadline = tokio::time::Instant::now() + TURN_LIMIT;
    let load = tokio::spawn({
        let (store, thread) = (store.clone(), thread.clone());
        async move { store.load(&thread).await }
    });
    // The load goes first and is left waiting.
    tokio::task::yield_now().await;
    let turn = tokio::time::timeout_at(deadline, tokio::spawn(another_turn())).await;
    assert!(
        turn.is_ok_and(|answer| answer.unwrap().contains("Nothing to change.")),
        "no other turn ran while the store call was in flight"
    );
    assert!(
        !load.is_finished(),
        "the load did not wait for the queued save (or stopped the runtime until it was done)"
    );
    blocker.release().await;
    let loaded = tokio::time::timeout(Duration::from_secs(20), load)
        .await
        .expect("the load never finished")
        .unwrap()
        .unwrap();
    assert_eq!(loaded, Some(session));
}

#[tokio::test(flavor = "current_thread")]
async fn a_sqlite_store_call_in_flight_holds_up_no_other_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serve.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    a_turn_completes_while_a_load_waits_for_a_held_commit(store, CommitBlocker::Sqlite(blocker))
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_postgres_store_call_in_flight_holds_up_no_other_turn() {
    let url = test_pg::fresh_database(&test_pg::database_url()).await;
    let store = Arc::new(
        PgStore::connect(&PgOptions::new(url.clone()))
            .await
            .unwrap(),
    );
    let blocker = test_pg::client(&url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE altan_pay_session_state IN EXCLUSIVE MODE")
        .await
        .unwrap();
    a_turn_completes_while_a_load_waits_for_a_held_commit(store, CommitBlocker::Postgres(blocker))
        .await;
}
