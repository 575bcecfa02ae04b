//! The contract of `store::ServeStore`, one suite run against both backends: every case in
//! `cases` is written once and instantiated for SQLite (a temporary file) and for PostgreSQL
//! (`ALTAN_PAY_TEST_DATABASE_URL`, set by scripts/with-postgres.sh; without it the PostgreSQL
//! instances fail, naming how to run them). `postgres_only` holds what only the
//! shared database has: migrations, leases across replicas, fencing of a lost lease.

#[path = "support/postgres.rs"]
mod test_pg;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use altan_pay::agent::{Session, SessionStore, StoreError};
use altan_pay::model::ChatMessage;
use altan_pay::room::AgentContext;
use altan_pay::store::pending::{Applied, EventRecord, Versioned};
use altan_pay::store::{
    HistoryLimits, LeaseError, PgOptions, PgStore, Reservation, ServeStore, SqliteStore,
    bound_history,
};
use altan_pay::sync::{Mutation, MutationSource, ObjectKind, Outcome};
use serde_json::json;
use test_pg::{database_url, fresh_database};

/// Opens handles on one database: a second handle stands for a restarted process (SQLite) or
/// another replica (PostgreSQL).
struct Backend {
    open: Box<dyn Fn() -> Opening + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
}

/// A handle being opened.
type Opening = Pin<Box<dyn Future<Output = Arc<dyn ServeStore>> + Send>>;

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serve.db");
    Backend {
        open: Box::new(move || {
            let store: Arc<dyn ServeStore> = Arc::new(SqliteStore::open(&path).unwrap());
            Box::pin(std::future::ready(store))
        }),
        _dir: Some(dir),
    }
}

fn postgres() -> Backend {
    let url = database_url();
    Backend {
        open: Box::new(move || {
            let options = PgOptions::new(url.clone());
            Box::pin(async move {
                let store: Arc<dyn ServeStore> =
                    Arc::new(PgStore::connect(&options).await.unwrap());
                store
            })
        }),
        _dir: None,
    }
}

/// Ids of one test run, so cases sharing a PostgreSQL database never meet.
fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn context(account: Option<&str>, name: &str) -> AgentContext {
    AgentContext {
        account_id: account.map(str::to_string),
        agent_name: Some(name.to_string()),
        ..AgentContext::default()
    }
}

fn product(event: &str, name: &str, version: i64) -> Versioned {
    Versioned {
        mutation: Mutation {
            source: MutationSource::StripeEvent {
                event_id: event.into(),
            },
            operation: "product.updated".into(),
            kind: ObjectKind::Product,
            id: "prod_1".into(),
            outcome: Outcome::Exists {
                object: json!({"id": "prod_1", "object": "product", "name": name}),
            },
        },
        version,
    }
}

/// The `n`th message of a generated history: turns of a user message, a tool call, a tool
/// result big enough to be compacted later, and an answer. Some user messages repeat.
fn message(n: usize) -> ChatMessage {
    match n % 4 {
        0 if n.is_multiple_of(3) => ChatMessage::user("the same request again"),
        0 => ChatMessage::user(format!("request {n}")),
        1 => {
            let mut asks = ChatMessage::assistant("");
            asks.content = None;
            asks.tool_calls = vec![altan_pay::model::ToolCall {
                id: format!("call_{n}"),
                name: "create_product".into(),
                arguments: json!({"name": format!("P{n}")}).to_string(),
            }];
            asks
        }
        2 => ChatMessage::tool_result(
            format!("call_{}", n - 1),
            json!({"id": format!("prod_{n:010}"), "object": "product", "description": "x".repeat(300)})
                .to_string(),
        ),
        _ => ChatMessage::assistant(format!("answer {n}")),
    }
}

/// What a load must give back for `session`: its history bounded as the store bounds it.
fn as_stored(session: &Session) -> Session {
    let mut stored = session.clone();
    bound_history(&mut stored.history, HistoryLimits::default());
    stored
}

mod cases {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Random sequences of saves (appends of turns, an earlier message changed, the start
    /// dropped, the whole history replaced, the state changed; awaited or queued) read back
    /// from the saving handle and from a fresh one (which knows nothing of earlier saves)
    /// exactly as a store that rewrites the whole session would give them.
    pub async fn saves_that_append_read_back_as_full_rewrites_would(backend: Backend) {
        let store = (backend.open)().await;
        for seed in 0..3u64 {
            let mut rng = StdRng::seed_from_u64(24 + seed);
            let thread = unique("p");
            let mut session = Session::new(&thread);
            let mut n = 0usize;
            for step in 0..70 {
                match rng.random_range(0..20) {
                    0 => {
                        session.history = (0..rng.random_range(0..6))
                            .map(|_| {
                                n += 1;
                                message(n * 4)
                            })
                            .collect();
                    }
                    1 if !session.history.is_empty() => {
                        let i = rng.random_range(0..session.history.len());
                        session.history[i].content = Some(format!("edited at {step}"));
                    }
                    2 => {
                        let k = rng.random_range(0..=session.history.len());
                        session.history.drain(..k);
                    }
                    3 => session = store.load(&thread).await.unwrap().unwrap_or(session),
                    _ => {
                        for _ in 0..rng.random_range(1..4) * 4 {
                            session.history.push(message(n));
                            n += 1;
                        }
                    }
                }
                session.answers += 1;
                session.opened_tools = vec![format!("tools of step {step}")];
                if rng.random_bool(0.3) {
                    store.save_queued(&session);
                } else {
                    store.save(&session).await.unwrap();
                }
                let expected = as_stored(&session);
                assert_eq!(
                    store.load(&thread).await.unwrap().as_ref(),
                    Some(&expected),
                    "seed {seed}, step {step}"
                );
                if step % 10 == 9 {
                    let fresh = (backend.open)().await;
                    assert_eq!(
                        fresh.load(&thread).await.unwrap(),
                        Some(expected),
                        "seed {seed}, step {step}, another handle"
                    );
                }
            }
            assert!(
                n > 250,
                "the histories reached the bound ({n} messages made)"
            );
        }
    }

    /// A saved session reads back whole from another handle; an unknown thread is `None`.
    pub async fn sessions_survive_another_handle(backend: Backend) {
        let store = (backend.open)().await;
        let thread = unique("t");
        let mut session = Session::new(&thread);
        session.history.push(ChatMessage::user("hello"));
        store.save(&session).await.unwrap();
        session.history.push(ChatMessage::assistant("hi"));
        store.save(&session).await.unwrap();
        let again = (backend.open)().await;
        assert_eq!(again.load(&thread).await.unwrap(), Some(session));
        assert_eq!(again.load(&unique("none")).await.unwrap(), None);
    }

    /// Saves from many tasks at once are all durable once answered, and share commits.
    pub async fn concurrent_saves_all_land_and_share_commits(backend: Backend) {
        let store = (backend.open)().await;
        let prefix = unique("c");
        let (writes_before, commits_before) = store.commit_stats();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            let thread = format!("{prefix}-{i}");
            tasks.push(tokio::spawn(async move {
                let mut session = Session::new(&thread);
                session.history.push(ChatMessage::user(format!("m{i}")));
                store.save(&session).await.map(|()| session)
            }));
        }
        let mut saved = Vec::new();
        for task in tasks {
            saved.push(task.await.unwrap().unwrap());
        }
        let (writes, commits) = store.commit_stats();
        assert_eq!(writes - writes_before, 64);
        assert!((1..=64).contains(&(commits - commits_before)), "{commits}");
        let again = (backend.open)().await;
        for session in saved {
            assert_eq!(again.load(&session.thread_id).await.unwrap(), Some(session));
        }
    }

    /// A queued save is durable once a later awaited save returns: commits keep their order.
    pub async fn a_queued_save_is_durable_when_a_later_save_returns(backend: Backend) {
        let store = (backend.open)().await;
        let thread = unique("q");
        let mut first = Session::new(&thread);
        first.history.push(ChatMessage::user("before the answer"));
        store.save_queued(&first);
        store.save(&Session::new(&unique("a"))).await.unwrap();
        assert_eq!(
            (backend.open)().await.load(&thread).await.unwrap(),
            Some(first)
        );
    }

    pub async fn idempotency_keys_replay_and_conflict(backend: Backend) {
        let store = (backend.open)().await;
        let (s, s2) = (unique("s"), unique("s2"));
        assert_eq!(
            store.reserve(&s, "k", "h1").await.unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            store.reserve(&s, "k", "h1").await.unwrap(),
            Reservation::InProgress
        );
        assert_eq!(
            store.reserve(&s, "k", "h2").await.unwrap(),
            Reservation::Conflict
        );
        store.complete(&s, "k", &json!({"a": 1})).await.unwrap();
        // Another handle (a restart, another replica) replays the stored answer.
        let other = (backend.open)().await;
        assert_eq!(
            other.reserve(&s, "k", "h1").await.unwrap(),
            Reservation::Done(json!({"a": 1}))
        );
        assert_eq!(
            store.reserve(&s2, "k", "h2").await.unwrap(),
            Reservation::Reserved
        );
        store.release(&s2, "k").await.unwrap();
        assert_eq!(
            store.reserve(&s2, "k", "h3").await.unwrap(),
            Reservation::Reserved
        );
        // A completed key is not released.
        store.release(&s, "k").await.unwrap();
        assert!(matches!(
            store.reserve(&s, "k", "h1").await.unwrap(),
            Reservation::Done(_)
        ));
    }

    /// Of many first requests from different accounts at once, exactly one owns the thread.
    pub async fn a_thread_is_claimed_once(backend: Backend) {
        let store = (backend.open)().await;
        let thread = unique("t");
        let first = context(Some("a1"), "first");
        assert_eq!(
            store
                .claim_thread(&thread, &first)
                .await
                .unwrap()
                .as_deref(),
            Some("a1")
        );
        let intruder = context(Some("a2"), "intruder");
        assert_eq!(
            store
                .claim_thread(&thread, &intruder)
                .await
                .unwrap()
                .as_deref(),
            Some("a1")
        );
        // A claim's answer is final at once; its row may become visible to reads only with
        // the turn's next awaited write (SQLite answers claims before their commit).
        let flush = || async { store.save(&Session::new(&unique("flush"))).await.unwrap() };
        flush().await;
        assert_eq!(
            store.thread_info(&thread).await.unwrap().unwrap().context,
            first
        );
        // A context naming no account is not the owner's: nothing is written.
        let nameless = context(None, "nameless");
        assert_eq!(
            store
                .claim_thread(&thread, &nameless)
                .await
                .unwrap()
                .as_deref(),
            Some("a1")
        );
        let later = context(Some("a1"), "later");
        assert_eq!(
            store
                .claim_thread(&thread, &later)
                .await
                .unwrap()
                .as_deref(),
            Some("a1")
        );
        flush().await;
        let info = store.thread_info(&thread).await.unwrap().unwrap();
        assert_eq!(
            (info.account_id.as_deref(), info.context),
            (Some("a1"), later)
        );
        // A thread first used without an account stays without one: no account takes it.
        let unowned = unique("unowned");
        let open = context(None, "open");
        assert_eq!(store.claim_thread(&unowned, &open).await.unwrap(), None);
        assert_eq!(
            store
                .claim_thread(&unowned, &context(Some("a2"), "taker"))
                .await
                .unwrap(),
            None
        );
        flush().await;
        let info = store.thread_info(&unowned).await.unwrap().unwrap();
        assert_eq!((info.account_id, info.context), (None, open));
        assert_eq!(store.thread_info(&unique("none")).await.unwrap(), None);

        let race = unique("race");
        let mut claims = Vec::new();
        for i in 0..8 {
            let store = (backend.open)().await;
            let race = race.clone();
            claims.push(tokio::spawn(async move {
                let mine = format!("acct{i}");
                let owner = store
                    .claim_thread(&race, &context(Some(&mine), "racer"))
                    .await
                    .unwrap();
                (mine, owner)
            }));
        }
        let mut owners = std::collections::BTreeSet::new();
        let mut won = 0;
        for claim in claims {
            let (mine, owner) = claim.await.unwrap();
            won += usize::from(owner.as_deref() == Some(mine.as_str()));
            owners.insert(owner);
        }
        assert_eq!((won, owners.len()), (1, 1), "{owners:?}");
    }

    /// Each event id is applied once; an older version arriving late changes nothing.
    pub async fn events_apply_once_and_newer_wins(backend: Backend) {
        let store = (backend.open)().await;
        let account = unique("ws");
        let (e1, e2) = (unique("evt"), unique("evt"));
        let record = |id: &str| EventRecord {
            id: id.into(),
            event_type: "product.updated".into(),
            account_id: account.clone(),
            created: 0,
        };
        assert_eq!(
            store
                .apply(&record(&e2), &[product(&e2, "New", 20)])
                .await
                .unwrap(),
            Applied::Applied {
                queued: 1,
                stale: 0
            }
        );
        let other = (backend.open)().await;
        assert_eq!(
            other
                .apply(&record(&e2), &[product(&e2, "New", 20)])
                .await
                .unwrap(),
            Applied::Duplicate
        );
        assert_eq!(
            store
                .apply(&record(&e1), &[product(&e1, "Old", 10)])
                .await
                .unwrap(),
            Applied::Applied {
                queued: 0,
                stale: 1
            }
        );
        assert!(other.is_processed(&e1).await.unwrap());
        assert!(!other.is_processed(&unique("evt")).await.unwrap());
        let pending = other.pending(&account).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event_id, e2);
        assert!(other.pending(&unique("ws")).await.unwrap().is_empty());
        store.remove(&account, &[pending[0].seq]).await.unwrap();
        assert!(other.pending(&account).await.unwrap().is_empty());
    }

    pub async fn plans_are_shared(backend: Backend) {
        let store = (backend.open)().await;
        let account = unique("ws");
        assert_eq!(store.read_plan(&account).await.unwrap(), None);
        store.write_plan(&account, "- [ ] one").await.unwrap();
        store.write_plan(&account, "- [x] one").await.unwrap();
        assert_eq!(
            (backend.open)()
                .await
                .read_plan(&account)
                .await
                .unwrap()
                .as_deref(),
            Some("- [x] one")
        );
    }

    /// While a turn holds the thread's lease another waits, then gets `Busy`; other threads
    /// are not held up; once released the lease is had at once.
    pub async fn a_leased_thread_is_busy_until_released(backend: Backend) {
        let store = (backend.open)().await;
        let thread = unique("t");
        let held = store.lease(&thread, Duration::from_secs(5)).await.unwrap();
        let second = store.lease(&thread, Duration::from_millis(200)).await;
        assert!(
            matches!(&second, Err(LeaseError::Busy { thread_id, .. }) if *thread_id == thread),
            "{second:?}"
        );
        let other = store.lease(&unique("other"), Duration::from_secs(5)).await;
        assert!(other.is_ok(), "{other:?}");
        let waiting = {
            let store = store.clone();
            let thread = thread.clone();
            tokio::spawn(async move { store.lease(&thread, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the waiter did not wait");
        let token = held.token;
        drop(held);
        let next = waiting.await.unwrap().unwrap();
        // A shared lease's fencing token grows with each turn.
        if let (Some(before), Some(after)) = (token, next.token) {
            assert!(after > before, "{before} then {after}");
        }
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::postgres();
                    super::cases::$case(backend).await;
                }
            )*
        }
    };
}

contract!(
    sessions_survive_another_handle,
    saves_that_append_read_back_as_full_rewrites_would,
    concurrent_saves_all_land_and_share_commits,
    a_queued_save_is_durable_when_a_later_save_returns,
    idempotency_keys_replay_and_conflict,
    a_thread_is_claimed_once,
    events_apply_once_and_newer_wins,
    plans_are_shared,
    a_leased_thread_is_busy_until_released,
);

mod postgres_only {
    use super::*;
    use altan_pay::store::pg::{MIGRATIONS, Migration, lease_lock_key, migrate};
    use altan_pay::tools::plan::PlanBackend;

    /// Migrations run once, in order, recorded; a second run applies nothing; a database a
    /// newer binary migrated is refused with a message that says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_are_applied_once_and_recorded() {
        let url = database_url();
        let url = fresh_database(&url).await;
        let mut client = test_pg::client(&url).await;
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(migrate(&mut client, MIGRATIONS).await.unwrap(), all);
        assert!(migrate(&mut client, MIGRATIONS).await.unwrap().is_empty());
        let next = Migration {
            version: 1000,
            name: "a later step",
            sql: "ALTER TABLE altan_pay_plans ADD COLUMN note TEXT",
        };
        let newer: Vec<Migration> = MIGRATIONS.iter().copied().chain([next]).collect();
        assert_eq!(migrate(&mut client, &newer).await.unwrap(), vec![1000]);
        let recorded: Vec<i32> = client
            .query(
                "SELECT version FROM altan_pay_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(recorded, [all.clone(), vec![1000]].concat());
        let refused = migrate(&mut client, MIGRATIONS).await.unwrap_err();
        assert!(
            refused.detail().contains("newer than this binary"),
            "{refused}"
        );
        // A failing step leaves no record and no half of itself.
        let broken = Migration {
            version: 1001,
            name: "broken",
            sql: "CREATE TABLE altan_pay_half (x INT); SELECT no_such_function();",
        };
        let with_broken: Vec<Migration> = newer.iter().copied().chain([broken]).collect();
        let failed = migrate(&mut client, &with_broken).await.unwrap_err();
        assert!(failed.detail().contains("migration 1001"), "{failed}");
        let half = client
            .query_opt("SELECT to_regclass('altan_pay_half')::text", &[])
            .await
            .unwrap()
            .and_then(|r| r.get::<_, Option<String>>(0));
        assert_eq!(half, None);
        // Several replicas starting at once on an empty database: each step runs once.
        let url2 = fresh_database(&database_url()).await;
        let mut starts = Vec::new();
        for _ in 0..3 {
            let url2 = url2.clone();
            starts.push(tokio::spawn(async move {
                PgStore::connect(&PgOptions::new(url2)).await.map(|_| ())
            }));
        }
        for start in starts {
            start.await.unwrap().unwrap();
        }
    }

    /// `sslmode=require` with the server's CA file: the connection is TLS (rustls) and the
    /// store works over it; without the CA the certificate is refused, so it was verified; a
    /// CA file that is not there is a clear error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_verifies_the_servers_certificate() {
        let url = database_url();
        let ca = std::env::var_os("ALTAN_PAY_TEST_DATABASE_CA").expect(
            "ALTAN_PAY_TEST_DATABASE_CA is not set: scripts/with-postgres.sh exports it with the CA of the TLS certificate it gives its server",
        );
        let tls_url = format!("{url}?sslmode=require");
        let with_ca = PgOptions {
            ca_file: Some(ca.into()),
            ..PgOptions::new(&tls_url)
        };
        let store = PgStore::connect(&with_ca).await.unwrap();
        assert!(store.uses_tls());
        let account = unique("ws");
        store.write_plan(&account, "over TLS").await.unwrap();
        assert_eq!(
            store.read_plan(&account).await.unwrap().as_deref(),
            Some("over TLS")
        );
        drop(store);

        let without_ca = PgOptions::new(&tls_url);
        let refused = PgStore::connect(&without_ca).await.unwrap_err();
        assert!(
            refused.detail().contains("certificate") || refused.detail().contains("UnknownIssuer"),
            "{refused}"
        );
        let missing = PgOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..PgOptions::new(&tls_url)
        };
        let refused = PgStore::connect(&missing).await.unwrap_err();
        assert!(
            refused
                .detail()
                .contains("--database-ca-file /nonexistent/ca.pem"),
            "{refused}"
        );
    }

    /// Two replicas: a thread leased on one is busy on the other; when the holder's
    /// connection dies (its process killed), the other replica takes the lease at once, and a
    /// save the dead holder's turn still makes is refused (fenced), not written over the new
    /// turn's session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_dies_with_its_connection_and_fences_its_saves() {
        let backend = postgres();
        let url = database_url();
        let (a, b) = ((backend.open)().await, (backend.open)().await);
        let thread = unique("t");
        let held = a.lease(&thread, Duration::from_secs(5)).await.unwrap();
        let busy = b.lease(&thread, Duration::from_millis(300)).await;
        assert!(matches!(busy, Err(LeaseError::Busy { .. })), "{busy:?}");

        // The holder's connection is cut, as when its replica is killed.
        let admin = test_pg::client(&url).await;
        let cut = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks
                 WHERE locktype = 'advisory' AND objsubid = 1 AND granted
                 AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&lease_lock_key(&thread)],
            )
            .await
            .unwrap();
        assert_eq!(cut, 1, "one backend held the thread's lock");
        let taken = b.lease(&thread, Duration::from_secs(10)).await.unwrap();
        assert!(taken.token > held.token, "{taken:?} after {held:?}");
        let mut fresh = Session::new(&thread);
        fresh.history.push(ChatMessage::user("the new turn"));
        b.save(&fresh).await.unwrap();
        // The old turn, unaware, saves under its old token: refused.
        let mut stale = Session::new(&thread);
        stale.history.push(ChatMessage::user("the dead turn"));
        let refused = a.save(&stale).await;
        assert!(
            refused.as_ref().is_err_and(
                |e| matches!(e, StoreError::LeaseLost { thread_id } if *thread_id == thread)
            ),
            "{refused:?}"
        );
        assert_eq!(b.load(&thread).await.unwrap(), Some(fresh));
        drop(held);
        drop(taken);
    }
}

/// A save that fails half-way (a trigger refuses its last history row, after its other rows
/// and deletes ran) changes nothing: both handles read the previous session whole, and the
/// next save, whatever the saving handle believed was stored, is read back exactly.
async fn a_save_that_fails_half_way_changes_nothing(
    store: Arc<dyn ServeStore>,
    fresh: Arc<dyn ServeStore>,
) {
    let thread = unique("f");
    let mut session = Session::new(&thread);
    session.history = (0..230).map(message).collect();
    store.save(&session).await.unwrap();
    let saved = as_stored(&session);

    let mut failing = saved.clone();
    failing.history.extend((230..234).map(message));
    failing.history[3].content = Some("changed in the failing save".into());
    failing.history.push(ChatMessage::user("poison"));
    failing.answers = 99;
    let refused = store.save(&failing).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.load(&thread).await.unwrap().as_ref(), Some(&saved));
    assert_eq!(fresh.load(&thread).await.unwrap().as_ref(), Some(&saved));

    let mut next = saved.clone();
    next.history.extend((230..238).map(message));
    next.answers = 7;
    store.save(&next).await.unwrap();
    assert_eq!(fresh.load(&thread).await.unwrap(), Some(as_stored(&next)));
    // A queued save that fails, then an awaited one: the same.
    let mut poisoned = as_stored(&next);
    poisoned.history.push(ChatMessage::user("poison again"));
    store.save_queued(&poisoned);
    let mut last = as_stored(&next);
    last.history
        .push(ChatMessage::user("after the failed queued save"));
    store.save(&last).await.unwrap();
    assert_eq!(store.load(&thread).await.unwrap(), Some(as_stored(&last)));
    assert_eq!(fresh.load(&thread).await.unwrap(), Some(as_stored(&last)));
}

/// A session as the code before rows stored it: one JSON text, history included.
fn old_layout_session(thread: &str) -> Session {
    let mut session = Session::new(thread);
    session.history = (0..12).map(message).collect();
    session.answers = 3;
    session
}

mod sqlite_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_save_that_fails_half_way_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.db");
        let store: Arc<dyn ServeStore> = Arc::new(SqliteStore::open(&path).unwrap());
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON session_messages
                 WHEN NEW.message LIKE '%poison%'
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
            )
            .unwrap();
        let fresh: Arc<dyn ServeStore> = Arc::new(SqliteStore::open(&path).unwrap());
        a_save_that_fails_half_way_changes_nothing(store, fresh).await;
    }

    /// A file written before histories were rows (one JSON text per session, no row
    /// columns) opens, its sessions load whole, and a save stores them as rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_file_of_the_old_layout_loads_and_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = old_layout_session("old");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE sessions (
                    thread_id TEXT PRIMARY KEY,
                    session TEXT NOT NULL,
                    updated_at INTEGER NOT NULL
                );",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO sessions (thread_id, session, updated_at) VALUES ('old', ?1, 0)",
                [serde_json::to_string(&old).unwrap()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load("old").await.unwrap().as_ref(), Some(&old));
        let mut next = old.clone();
        next.history.push(ChatMessage::user("after the upgrade"));
        store.save(&next).await.unwrap();
        drop(store);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.load("old").await.unwrap(), Some(next.clone()));
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (text, rows): (String, i64) = conn
            .query_row(
                "SELECT session, (SELECT count(*) FROM session_messages WHERE thread_id = 'old')
                 FROM sessions WHERE thread_id = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(!text.contains("\"history\""), "{text}");
        assert_eq!(rows, next.history.len() as i64);
    }
}

mod postgres_rows {
    use super::*;
    use altan_pay::store::pg::{MIGRATIONS, migrate};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_save_that_fails_half_way_changes_nothing() {
        let url = fresh_database(&database_url()).await;
        let store: Arc<dyn ServeStore> =
            Arc::new(PgStore::connect(&PgOptions::new(&url)).await.unwrap());
        test_pg::client(&url)
            .await
            .batch_execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.message LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned row'; END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON altan_pay_session_messages
                 FOR EACH ROW EXECUTE FUNCTION poison();",
            )
            .await
            .unwrap();
        let fresh: Arc<dyn ServeStore> =
            Arc::new(PgStore::connect(&PgOptions::new(&url)).await.unwrap());
        a_save_that_fails_half_way_changes_nothing(store, fresh).await;
    }

    /// A database at schema version 1 (one JSON text per session) is migrated, its sessions
    /// load whole, a save stores them as rows, and `altan_pay_sessions` still shows whole
    /// sessions to whoever reads the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_database_of_the_old_layout_loads_and_saves() {
        let url = fresh_database(&database_url()).await;
        let mut client = test_pg::client(&url).await;
        assert_eq!(migrate(&mut client, &MIGRATIONS[..1]).await.unwrap(), [1]);
        let old = old_layout_session("old");
        client
            .execute(
                "INSERT INTO altan_pay_sessions (thread_id, session) VALUES ('old', $1)",
                &[&serde_json::to_string(&old).unwrap()],
            )
            .await
            .unwrap();
        let store = PgStore::connect(&PgOptions::new(&url)).await.unwrap();
        assert_eq!(store.load("old").await.unwrap().as_ref(), Some(&old));
        let mut next = old.clone();
        next.history.push(ChatMessage::user("after the upgrade"));
        store.save(&next).await.unwrap();
        let another = PgStore::connect(&PgOptions::new(&url)).await.unwrap();
        assert_eq!(another.load("old").await.unwrap(), Some(next.clone()));
        let rows: i64 = client
            .query_one(
                "SELECT count(*) FROM altan_pay_session_messages WHERE thread_id = 'old'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, next.history.len() as i64);
        let whole: String = client
            .query_one(
                "SELECT session FROM altan_pay_sessions WHERE thread_id = 'old'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let whole: Session = serde_json::from_str(&whole).unwrap();
        assert_eq!(whole, next);
    }
}
