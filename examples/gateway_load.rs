//! Load benchmark of the sandbox gateway (not a test): N concurrent HTTP clients drive a
//! create/list mix against an in-process gateway and it prints requests/s and p50/p99 latency.
//!
//! `cargo run --release --example gateway_load -- [--clients 16] [--requests 20000]
//!  [--list-share 25] [--data FILE]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use altan_pay::gateway::{self, Sandbox, sandbox::derived_connect_id};
use altan_pay::pay::{RouteTable, RouteValues};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Total requests across all clients.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Percentage of requests that are `products.list` (limit 10); the rest create products.
    #[arg(long, default_value_t = 25)]
    list_share: usize,
    /// SQLite file for the sandbox (in memory when absent).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sandbox = match &args.data {
        Some(path) => Sandbox::open(path)?,
        None => Sandbox::in_memory(),
    };
    let routes = RouteTable::embedded();
    let handle = gateway::spawn(routes.clone(), Arc::new(sandbox), None).await?;
    let connect = derived_connect_id("acc_load");
    let url = |op: &str| -> Result<String, Box<dyn std::error::Error>> {
        let values = RouteValues {
            account_id: Some("acc_load"),
            id: None,
            stripe_connect_id: Some(&connect),
        };
        let route = routes.get(op).ok_or("missing route")?;
        Ok(format!("{}{}", handle.base_url, route.expand(&values)?))
    };
    let create = Arc::new(url("products.create")?);
    let list = Arc::new(format!("{}&limit=10", url("products.list")?));
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (http, next, create, list) = (http.clone(), next.clone(), create.clone(), list.clone());
        let (total, share) = (args.requests, args.list_share);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                let request = if i % 100 < share {
                    http.get(list.as_str())
                } else {
                    http.post(create.as_str())
                        .json(&json!({"payload": {"name": format!("load {i}"), "metadata": {"i": i.to_string()}}}))
                };
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => failures += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, failures)
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(args.requests);
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        all.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "backend={} clients={} requests={} list_share={}% failures={} elapsed={:.2}s rps={:.0} p50={:.2}ms p99={:.2}ms",
        if args.data.is_some() {
            "sqlite"
        } else {
            "memory"
        },
        args.clients,
        all.len(),
        args.list_share,
        failures,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    handle.shutdown().await?;
    Ok(())
}
