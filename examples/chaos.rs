//! The long chaos run: `cargo run --release --example chaos -- --conversations 10000 --seed 1`
//! with `ALTAN_PAY_TEST_DATABASE_URL` set (`bash scripts/with-postgres.sh cargo run ...`).
//! Prints the figures and exits 1 when the verdict fails.

#[path = "../tests/chaos_run/mod.rs"]
mod chaos_run;

use std::process::ExitCode;

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parse = |name: &str, default: &str| -> Result<f64, String> {
        flag(&args, name, default)
            .parse::<f64>()
            .map_err(|e| format!("{name}: {e}"))
    };
    let config = (|| -> Result<chaos_run::ChaosConfig, String> {
        Ok(chaos_run::ChaosConfig {
            seed: parse("--seed", "1")? as u64,
            conversations: parse("--conversations", "10000")? as usize,
            accounts: parse("--accounts", "8")? as usize,
            database_url: std::env::var("ALTAN_PAY_TEST_DATABASE_URL")
                .map_err(|_| "set ALTAN_PAY_TEST_DATABASE_URL (scripts/with-postgres.sh does)")?,
            fail_rate: parse("--fail-rate", "0.1")?,
            fault_rate: parse("--fault-rate", "0.03")?,
            schema_prefix: "chaos_example".into(),
        })
    })();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let report = chaos_run::run(config).await;
    println!("{}", report.summary());
    for v in report.violations.iter().take(20) {
        println!("violation: {v}");
    }
    for d in report.unexplained_drift().iter().take(20) {
        println!("unexplained drift: {d}");
        for line in report.drift_story.get(*d).into_iter().flatten() {
            println!("    {line}");
        }
    }
    let ok = report.violations.is_empty()
        && report.unexplained_drift().is_empty()
        && report.failed_unreported.is_empty()
        && report.events_failed == 0;
    println!("verdict: {}", if ok { "ok" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
