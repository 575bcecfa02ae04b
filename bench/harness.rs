//! Shared by the Rust runners of the side-by-side benchmark (`bench/run.sh`): arguments, the
//! measured rounds and the one-line JSON result. Included with `#[path]`, not a module of
//! the crate.

use std::future::Future;
use std::time::Instant;

/// What every runner is told.
#[derive(Debug, Clone)]
pub struct Args {
    /// OpenAI-compatible base URL, up to and including `/v1`.
    pub model_url: String,
    /// The gateway's base URL (`http://127.0.0.1:PORT`).
    pub gateway: String,
    pub account: String,
    pub connect: String,
    /// The system prompt file and the OpenAI tool definitions file (`altan-pay tools --json`).
    pub prompt: String,
    pub tools: String,
    pub conc: usize,
    pub rounds: usize,
    pub warmup: usize,
}

pub fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model_url: "http://127.0.0.1:8790/v1".into(),
        gateway: "http://127.0.0.1:8787".into(),
        account: "ws_bench".into(),
        connect: String::new(),
        prompt: String::new(),
        tools: String::new(),
        conc: 1,
        rounds: 10,
        warmup: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model-url" => a.model_url = value()?,
            "--gateway" => a.gateway = value()?,
            "--account" => a.account = value()?,
            "--connect" => a.connect = value()?,
            "--prompt" => a.prompt = value()?,
            "--tools" => a.tools = value()?,
            "--conc" => a.conc = value()?.parse().map_err(|e| format!("--conc: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Runs `warmup` unmeasured rounds, then `rounds` rounds of `conc` concurrent conversations;
/// prints `{"runner","conc","rounds","conv_ms":[...],"wall_ms"}` on one line.
pub async fn measure<F, Fut>(runner: &str, args: &Args, conversation: F) -> Result<(), String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut n = 0usize;
    let round = |n: &mut usize| {
        let futs: Vec<_> = (0..args.conc)
            .map(|_| {
                *n += 1;
                let id = format!("{runner}-{}-{n}", std::process::id());
                let fut = conversation(id);
                async move {
                    let t = Instant::now();
                    fut.await.map(|()| t.elapsed().as_secs_f64() * 1e3)
                }
            })
            .collect();
        futures::future::join_all(futs)
    };
    for _ in 0..args.warmup {
        for r in round(&mut n).await {
            r?;
        }
    }
    let mut conv_ms = Vec::new();
    let start = Instant::now();
    for _ in 0..args.rounds {
        for r in round(&mut n).await {
            conv_ms.push(r?);
        }
    }
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({"runner": runner, "conc": args.conc, "rounds": args.rounds, "conv_ms": conv_ms, "wall_ms": wall_ms})
    );
    Ok(())
}
