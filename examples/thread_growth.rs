//! What one turn costs the store against the thread's length: one thread, `--turns` turns
//! (1,000 by default) of the benchmark scenario (a product with a monthly and a yearly price)
//! driven through `SessionStore` exactly as a served turn uses it: load; the room message
//! taken in (queued save); per Stripe write a write-ahead save (awaited) and the result
//! (queued save); the answer (awaited save). No model, no HTTP: only the session's changes.
//!
//! Prints, for turns 1–10, 91–100 and 991–1000 (and the whole run), the process's CPU per turn
//! (utime + stime from `getrusage`, every thread: the commit thread and the blocking pool
//! included) and the bytes written per turn: on SQLite the bytes the process passed to
//! `write`/`pwrite` (`wchar` in `/proc/self/io`: WAL frames and checkpoints), on PostgreSQL the
//! server's WAL growth (`pg_current_wal_lsn()` difference; the CPU figure is then this process's
//! only, the server's is not counted).
//!
//! `cargo run --release --example thread_growth -- [--turns N] [--db FILE] [--pg URL]`
//! (`bench/session/thread.sh` runs both backends.)

use std::time::{SystemTime, UNIX_EPOCH};

use altan_pay::agent::{Session, SessionStore};
use altan_pay::model::{ChatMessage, ToolCall};
use altan_pay::room::{MemberKind, RoomMessage};
use altan_pay::store::{PgOptions, PgStore, SqliteStore};
use serde_json::json;

/// `struct rusage` on Linux: two `timeval`s then fourteen `long`s.
#[repr(C)]
struct RUsage {
    utime: [i64; 2],
    stime: [i64; 2],
    _rest: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut RUsage) -> i32;
}

/// CPU seconds of the whole process so far.
fn cpu_seconds() -> f64 {
    let mut usage = RUsage {
        utime: [0; 2],
        stime: [0; 2],
        _rest: [0; 14],
    };
    // SAFETY: `usage` is a valid, writable `struct rusage`; RUSAGE_SELF is 0.
    if unsafe { getrusage(0, &mut usage) } != 0 {
        return f64::NAN;
    }
    let tv = |t: [i64; 2]| t[0] as f64 + t[1] as f64 / 1e6;
    tv(usage.utime) + tv(usage.stime)
}

/// Bytes this process passed to write calls so far.
fn written_by_process() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

enum Backend {
    Sqlite(SqliteStore),
    Pg(PgStore, tokio_postgres::Client),
}

impl Backend {
    fn store(&self) -> &dyn SessionStore {
        match self {
            Backend::Sqlite(s) => s,
            Backend::Pg(s, _) => s,
        }
    }

    /// Bytes written so far by whoever writes the store.
    async fn written(&self) -> Result<u64, String> {
        match self {
            Backend::Sqlite(_) => Ok(written_by_process()),
            Backend::Pg(_, client) => {
                let row = client
                    .query_one(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
                        &[],
                    )
                    .await
                    .map_err(|e| format!("reading the WAL position: {e}"))?;
                Ok(row.get::<_, f64>(0) as u64)
            }
        }
    }
}

/// A product or price as Stripe returns it, about the size of the real ones.
fn stripe_object(kind: &str, id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut object = json!({
        "id": id, "object": kind, "active": true, "created": 1_765_000_000,
        "livemode": false, "metadata": {}, "currency": "usd",
        "description": null, "tax_code": null, "updated": 1_765_000_000,
        "url": null, "statement_descriptor": null, "unit_label": null,
    });
    if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    object
}

fn call(id: String, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id,
        name: name.into(),
        arguments: arguments.to_string(),
    }
}

/// One turn, as the agent changes the session and calls the store.
async fn turn(store: &dyn SessionStore, thread: &str, n: usize) -> Result<(), String> {
    let mut session = store
        .load(thread)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| Session::new(thread));
    let text = format!("Create Pro {n} at $20/month and $200/year");
    session.provenance.observe_room_text(&text);
    session.trail.push(RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.clone(),
    });
    if session.trail.len() > 20 {
        session.trail.remove(0);
    }
    let mut user = ChatMessage::user(text);
    user.name = Some("Ada".into());
    session.history.push(user);
    store.save_queued(&session);

    let product = format!("prod_{n:014}");
    let writes = [
        (
            call(
                format!("call_{n}_p"),
                "create_product",
                json!({"name": format!("Pro {n}")}),
            ),
            stripe_object(
                "product",
                &product,
                json!({"name": format!("Pro {n}"), "default_price": null}),
            ),
        ),
        (
            call(
                format!("call_{n}_m"),
                "create_price",
                json!({"product": product, "unit_amount": 2000, "recurring": {"interval": "month"}}),
            ),
            stripe_object(
                "price",
                &format!("price_{n:014}m"),
                json!({"product": product, "unit_amount": 2000, "recurring": {"interval": "month", "interval_count": 1}, "type": "recurring"}),
            ),
        ),
        (
            call(
                format!("call_{n}_y"),
                "create_price",
                json!({"product": product, "unit_amount": 20000, "recurring": {"interval": "year"}}),
            ),
            stripe_object(
                "price",
                &format!("price_{n:014}y"),
                json!({"product": product, "unit_amount": 20000, "recurring": {"interval": "year", "interval_count": 1}, "type": "recurring"}),
            ),
        ),
    ];
    for (i, (call, result)) in writes.into_iter().enumerate() {
        if i != 2 {
            let mut asks = ChatMessage::assistant("");
            asks.content = None;
            asks.tool_calls = vec![call.clone()];
            session.history.push(asks);
        } else if let Some(last) = session
            .history
            .iter_mut()
            .rev()
            .find(|m| !m.tool_calls.is_empty())
        {
            last.tool_calls.push(call.clone());
        }
        // Write-ahead: durable before the write is sent.
        session.record_uncertain(&call, &call.id);
        store.save(&session).await.map_err(|e| e.to_string())?;
        session.settle_uncertain(&call.id);
        session.provenance.observe_result(&result);
        session.history.push(ChatMessage::tool_result(
            call.id.clone(),
            result.to_string(),
        ));
        store.save_queued(&session);
    }
    let answer =
        format!("Created Pro {n} with a monthly and a yearly price. [@Altan](/member/altan)");
    session.history.push(ChatMessage::assistant(answer.clone()));
    session.answers += 1;
    session.trail.push(RoomMessage {
        member_id: "agent".into(),
        name: "Altan Pay".into(),
        kind: MemberKind::Agent,
        text: answer,
    });
    store.save(&session).await.map_err(|e| e.to_string())
}

struct Window {
    from: usize,
    to: usize,
    cpu: f64,
    bytes: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut turns, mut db, mut pg) = (1000usize, None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--turns" => turns = value()?.parse().map_err(|e| format!("--turns: {e}"))?,
            "--db" => db = Some(value()?),
            "--pg" => pg = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let dir = tempfile_dir()?;
    let backend = match &pg {
        Some(url) => {
            let store = PgStore::connect(&PgOptions::new(url.clone()))
                .await
                .map_err(|e| e.to_string())?;
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connecting to {url}: {e}"))?;
            tokio::spawn(connection);
            Backend::Pg(store, client)
        }
        None => {
            let path = db.clone().unwrap_or_else(|| format!("{dir}/thread.db"));
            Backend::Sqlite(SqliteStore::open(&path).map_err(|e| e.to_string())?)
        }
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let thread = format!("growth-{nanos}");
    let marks = [(1, 10), (91, 100), (991, 1000), (1, turns)];
    let mut windows = Vec::new();
    let (start_cpu, start_bytes) = (cpu_seconds(), backend.written().await?);
    let (mut cpu0, mut bytes0) = (start_cpu, start_bytes);
    for n in 1..=turns {
        if marks.iter().any(|(from, _)| *from == n) {
            (cpu0, bytes0) = (cpu_seconds(), backend.written().await?);
        }
        turn(backend.store(), &thread, n).await?;
        for (from, to) in marks.iter().filter(|(_, to)| *to == n) {
            let (cpu, bytes) = (cpu_seconds(), backend.written().await?);
            let (c0, b0) = if *from == 1 {
                (start_cpu, start_bytes)
            } else {
                (cpu0, bytes0)
            };
            windows.push(Window {
                from: *from,
                to: *to,
                cpu: cpu - c0,
                bytes: bytes - b0,
            });
        }
    }
    let stored = backend
        .store()
        .load(&thread)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the thread was not stored")?;
    let name = if pg.is_some() { "postgres" } else { "sqlite" };
    println!("backend {name}, {turns} turns of one thread (7 messages, 3 writes, 7 saves each)");
    println!("turns      | CPU ms/turn | bytes written/turn");
    for w in &windows {
        let count = (w.to - w.from + 1) as f64;
        println!(
            "{:>4}–{:<5} | {:>11.3} | {:>18.0}",
            w.from,
            w.to,
            w.cpu * 1e3 / count,
            w.bytes as f64 / count
        );
    }
    println!(
        "session at the end: {} history messages, {} bytes as JSON",
        stored.history.len(),
        serde_json::to_string(&stored).map(|s| s.len()).unwrap_or(0)
    );
    if db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A directory for the database that outlives the run only when `--db` names one.
fn tempfile_dir() -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("thread-growth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.display().to_string())
}
