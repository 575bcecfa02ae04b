//! Benchmark (not a test): Stripe events verified and applied per second, over HTTP and in
//! process, and reconcile time for 10,000 products per side (snapshot against the sandbox).
//!
//! `cargo run --release --example events_load [EVENTS]`

use std::sync::Arc;
use std::time::Instant;

use altan_pay::events::reconcile::{DbWins, Mirror, diff, list_stripe};
use altan_pay::events::{
    AccountMap, EventsConfig, EventsState, SqlitePendingStore, router, signature,
};
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::sync::{ObjectKind, SyncMapping};
use serde_json::{Value, json};

const SECRET: &str = "whsec_bench";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn event(i: usize, prefix: &str) -> String {
    json!({"id": format!("evt_{prefix}_{i}"), "object": "event", "type": "product.updated",
        "created": now(), "account": "acct_bench",
        "data": {"object": {"id": format!("prod_{}", i % 500), "object": "product",
            "name": format!("Product {i}"), "active": true, "created": 1, "updated": now(),
            "metadata": {}}}})
    .to_string()
}

fn state(
    dir: &std::path::Path,
    name: &str,
) -> Result<Arc<EventsState>, Box<dyn std::error::Error>> {
    let store = Arc::new(SqlitePendingStore::open(&dir.join(name))?);
    let config = EventsConfig::new(
        vec![SECRET.into()],
        AccountMap::single("acct_bench", "ws_bench"),
    );
    Ok(Arc::new(EventsState::new(config, store)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir()?;

    // 1. In process: signature check + parse + SQLite transaction (synchronous=FULL).
    let st = state(dir.path(), "inproc.db")?;
    let bodies: Vec<String> = (0..n).map(|i| event(i, "a")).collect();
    let start = Instant::now();
    for body in &bodies {
        let header = signature::header(SECRET, now(), body.as_bytes());
        st.receive(Some(&header), body.as_bytes()).await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "in process: {n} events in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );

    // 2. Over HTTP on loopback, 8 concurrent senders.
    let st = state(dir.path(), "http.db")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/stripe/events", listener.local_addr()?);
    let app = router(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let bodies = Arc::new((0..n).map(|i| event(i, "h")).collect::<Vec<_>>());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (http, url, bodies) = (http.clone(), url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for body in bodies.iter().skip(worker).step_by(8) {
                let header = signature::header(SECRET, now(), body.as_bytes());
                let sent = http
                    .post(&url)
                    .header("Stripe-Signature", header)
                    .body(body.clone())
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "over HTTP:  {ok}/{n} events in {secs:.2} s = {:.0} events/s",
        ok as f64 / secs
    );

    // 3. Reconcile, 10,000 products per side, 1% drifted, snapshot file against the sandbox.
    let count = 10_000;
    let products: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("prod_{i:05}"), "name": format!("Product {i}"), "metadata": {"i": i.to_string()}}))
        .collect();
    let sandbox = Sandbox::with_state(&json!({"accounts": {"ws_bench": {
        "stripe_connect_id": "acct_bench", "products": products}}}))?;
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(sandbox), None).await?;
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url)))?;
    let mapping = SyncMapping::default();
    let side = list_stripe(&pay, "ws_bench", "acct_bench").await?;
    let table = mapping.table(ObjectKind::Product);
    let mut rows: Vec<Value> = side[&ObjectKind::Product]
        .values()
        .map(|o| Value::Object(table.row(o)))
        .collect();
    for (i, row) in rows.iter_mut().enumerate().filter(|(i, _)| i % 100 == 0) {
        row["name"] = json!(format!("Renamed {i}"));
    }
    let mut doc = json!({});
    for kind in ObjectKind::ALL {
        doc[mapping.table(kind).table.as_str()] = json!([]);
    }
    doc["products"] = Value::Array(rows);
    let path = dir.path().join("snapshot.json");
    std::fs::write(&path, doc.to_string())?;

    let start = Instant::now();
    let mirror = Mirror::read_snapshot(&path, &mapping)?;
    let read = start.elapsed().as_secs_f64();
    let side = list_stripe(&pay, "ws_bench", "acct_bench").await?;
    let listed = start.elapsed().as_secs_f64() - read;
    let report = diff("ws_bench", &mapping, &mirror, &side, &DbWins::default());
    let total = start.elapsed().as_secs_f64();
    println!(
        "reconcile:  {count} products per side, {} drift, {} updates: {total:.2} s (snapshot read {read:.2} s, Stripe listing {listed:.2} s, diff {:.2} s)",
        report.drift.len(),
        report.stripe_updates.len(),
        total - read - listed
    );
    Ok(())
}
