//! Load client of the replica benchmark (`bench/replicas/run.sh`, BENCHMARKS.md "Replicas"):
//! `--clients` concurrent clients post turns to the `serve` processes given with `--base`,
//! round robin, until `--turns` turns are answered; each turn is the create-a-product-with-two-
//! prices conversation of the scripted model (`bench/scripted_openai`) on a thread of its own.
//! Prints one JSON line: turns/s, p50 and p99 latency, failures.
//!
//! `cargo run --release --example bench_replicas -- --base http://127.0.0.1:PORT
//! [--base ...] --clients 16 --turns 400 --connect-id acct_...`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// A `serve` replica; repeat for several.
    #[arg(long, required = true)]
    base: Vec<String>,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 400)]
    turns: usize,
    /// Turns before the measured ones (not counted).
    #[arg(long, default_value_t = 32)]
    warmup: usize,
    /// The Stripe Connect id of account `ws_bench` on the gateway.
    #[arg(long)]
    connect_id: String,
    /// Prefix of this run's thread ids.
    #[arg(long, default_value = "bench")]
    run: String,
}

fn body(connect_id: &str) -> serde_json::Value {
    json!({
        "messages": [{"member_id": "u-1", "name": "Ada", "member_type": "user",
                      "text": "Create a product Pro with a monthly and a yearly price"}],
        "context": {"account_id": "ws_bench", "stripe_connect_id": connect_id,
                    "agent_member_id": "pay-1",
                    "members": [{"member_id": "u-1", "name": "Ada", "kind": "user"},
                                {"member_id": "altan-1", "name": "Altan", "kind": "agent"},
                                {"member_id": "pay-1", "name": "Altan Pay", "kind": "agent"}]}
    })
}

/// Posts `count` turns with `clients` at once; the latency of each answered one, and failures.
async fn drive(
    client: &reqwest::Client,
    args: &Arc<Args>,
    label: &str,
    count: usize,
) -> (Vec<Duration>, usize, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, args, next) = (client.clone(), args.clone(), next.clone());
        let label = label.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0usize);
            let body = body(&args.connect_id);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let base = &args.base[i % args.base.len()];
                let url = format!("{base}/v1/threads/{}-{label}-{i}/messages", args.run);
                let sent = Instant::now();
                let ok = match client.post(&url).json(&body).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let (mut all, mut failures) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((l, f)) = task.await {
            all.extend(l);
            failures += f;
        }
    }
    (all, failures, started.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()?;
    drive(&client, &args, "warmup", args.warmup).await;
    let (mut latencies, failures, elapsed) = drive(&client, &args, "run", args.turns).await;
    latencies.sort();
    let pick = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        json!({
            "replicas": args.base.len(),
            "clients": args.clients,
            "turns": latencies.len(),
            "failures": failures,
            "elapsed_s": elapsed.as_secs_f64(),
            "turns_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
        })
    );
    Ok(())
}
