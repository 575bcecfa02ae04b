//! Runs the sandbox gateway as its own process and prints `listening on http://ADDR`, so the
//! kill -9 test (and anyone without the CLI) can start, kill and restart it.

use std::io::Write;
use std::sync::Arc;

use altan_pay::gateway::{self, GatewayOptions};
use altan_pay::pay::RouteTable;
use clap::Parser;

/// The binary's own flags of `altan-pay gateway`.
#[allow(dead_code)]
#[path = "../src/cli/flags.rs"]
mod flags;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: flags::GatewayArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: GatewayOptions = Cli::parse().args.into();
    let routes = match &args.routes {
        Some(path) => RouteTable::from_file(path)?,
        None => RouteTable::embedded(),
    };
    let sandbox = Arc::new(gateway::open_sandbox(&args)?);
    let faults = match &args.faults {
        Some(path) => Some(Arc::new(gateway::faults::FaultyBackend::new(
            sandbox.clone(),
            gateway::faults::FaultPlan::load(path)?,
        ))),
        None => None,
    };
    let backend: Arc<dyn gateway::Backend> = match &faults {
        Some(f) => f.clone(),
        None => sandbox,
    };
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    gateway::serve_with_shutdown(listener, routes, backend, args.token, stop).await?;
    // On Ctrl-C (SIGINT), say how many faults fired: the soak reads this line.
    if let Some(f) = faults {
        let c = f.counts();
        println!(
            "faults injected: {} (errors {}, 429s {}, late answers {}, dropped connections {})",
            c.total(),
            c.errors,
            c.rate_limits,
            c.delays,
            c.drops
        );
    }
    Ok(())
}
