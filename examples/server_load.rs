//! Load benchmark of `altan-pay serve` (not a test): concurrent threads post turns to the
//! native endpoint over loopback HTTP; prints turns/s, p50/p99 latency and memory per idle session.
//!
//! The model is in-process (`Instant`, answering at once, no tools), so the figures are the
//! server's own cost: HTTP, JSON, the agent's turn, and SQLite (WAL, synchronous=FULL) on a
//! temporary file. `cargo run --release --example server_load -- [--turns-per-thread 20]
//! [--idle 2000]`

use std::sync::Arc;
use std::time::{Duration, Instant as Clock};

use altan_pay::agent::Agent;
use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError,
    ModelFuture, Usage,
};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::server::{ServerConfig, ServerState, Tokens};
use altan_pay::store::{ServeStore, SqliteStore};
use clap::Parser;
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Parser)]
struct Args {
    /// Turns each thread posts, one after the other, at every concurrency level.
    #[arg(long, default_value_t = 20)]
    turns_per_thread: usize,
    /// Idle sessions created for the memory figure.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
}

/// A model that answers every call at once with a short text.
struct Instant;

impl ChatModel for Instant {
    fn name(&self) -> &str {
        "instant"
    }

    fn complete<'a>(
        &'a self,
        _request: &'a ChatRequest,
        _deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async {
            Ok(ChatResponse {
                message: ChatMessage::assistant("Nothing to change in Stripe."),
                finish_reason: Some(FinishReason::Stop),
                usage: Usage::default(),
            })
        })
    }
}

fn body(text: &str) -> serde_json::Value {
    json!({"messages": [{"member_id": "u-1", "name": "Ada", "kind": "user", "text": text}],
           "context": {"account_id": "ws_1"}})
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// `threads` clients, each posting `turns` turns to its own thread; returns all latencies.
async fn level(
    client: &reqwest::Client,
    base: &str,
    tag: &str,
    threads: usize,
    turns: usize,
) -> Result<(Vec<Duration>, Duration), Box<dyn std::error::Error>> {
    let start = Clock::now();
    let mut tasks = Vec::new();
    for t in 0..threads {
        let client = client.clone();
        let url = format!("{base}/v1/threads/{tag}-{t}/messages");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(turns);
            for n in 0..turns {
                let sent = Clock::now();
                let r = client
                    .post(&url)
                    .json(&body(&format!("turn {n}")))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("HTTP {}", r.status()).into());
                }
                r.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed();
    all.sort();
    Ok((all, elapsed))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);
    let pay = PayClient::new(PayConfig::new(RouteTable::embedded()))?;
    let builder = Agent::builder().model(Arc::new(Instant)).pay(pay);
    let state = ServerState::new(
        builder,
        store.clone(),
        Tokens::default(),
        ServerConfig::default(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = altan_pay::server::spawn(listener, state)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;

    println!("| concurrent threads | turns | turns/s | p50 ms | p99 ms | writes per commit |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for threads in [1usize, 16, 256] {
        let (writes_before, commits_before) = store.commit_stats();
        let (lat, elapsed) = level(
            &client,
            &server.base_url,
            &format!("c{threads}"),
            threads,
            args.turns_per_thread,
        )
        .await?;
        let (writes, commits) = store.commit_stats();
        println!(
            "| {threads} | {} | {:.0} | {:.2} | {:.2} | {:.1} |",
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.50).as_secs_f64() * 1000.0,
            percentile(&lat, 0.99).as_secs_f64() * 1000.0,
            (writes - writes_before) as f64 / (commits - commits_before).max(1) as f64,
        );
    }

    // Idle sessions: one answered turn each, then nothing. Warm up first so allocator and
    // connection pools are already grown.
    level(&client, &server.base_url, "warm", 16, 1).await?;
    let before = rss_kib();
    let per_client = args.idle.div_ceil(16);
    let mut made = 0;
    for chunk in 0..per_client {
        let (lat, _) = level(&client, &server.base_url, &format!("idle{chunk}"), 16, 1).await?;
        made += lat.len();
    }
    let after = rss_kib();
    println!(
        "\nidle sessions: {made}, RSS {before} KiB -> {after} KiB, {:.2} KiB per idle session",
        (after.saturating_sub(before)) as f64 / made.max(1) as f64
    );
    server.shutdown().await?;
    Ok(())
}
