//! Runs the sandbox gateway as its own process and prints `listening on http://ADDR`, so the
//! kill -9 test (and anyone without the CLI) can start, kill and restart it.

use std::io::Write;
use std::sync::Arc;

use altan_pay::gateway::{self, GatewayArgs};
use altan_pay::pay::RouteTable;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: GatewayArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let routes = match &cli.args.routes {
        Some(path) => RouteTable::from_file(path)?,
        None => RouteTable::embedded(),
    };
    let sandbox = gateway::open_sandbox(&cli.args)?;
    let backend = gateway::faults::FaultyBackend::wrap_from_file(
        Arc::new(sandbox),
        cli.args.faults.as_deref(),
    )?;
    let listener = tokio::net::TcpListener::bind(&cli.args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    gateway::serve(listener, routes, backend, cli.args.token).await?;
    Ok(())
}
