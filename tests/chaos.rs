//! The chaos run in CI: 300 conversations of a seeded random model through `serve`, with
//! gateway faults, sandbox events and a stand-in Altan writing every handoff to PostgreSQL
//! (`scripts/with-postgres.sh`); the mirror must end equal to Stripe except what was reported.

#[path = "chaos_run/mod.rs"]
mod chaos_run;
#[path = "support/postgres.rs"]
mod test_pg;

use chaos_run::{ChaosConfig, PAY_TOOLS, run};
use test_pg::database_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_chaotic_conversations_end_with_no_unexplained_drift() {
    let report = run(ChaosConfig {
        seed: 15,
        conversations: 300,
        accounts: 6,
        database_url: database_url(),
        fail_rate: 0.1,
        fault_rate: 0.03,
        schema_prefix: "chaos_ci".into(),
    })
    .await;
    println!("{}", report.summary());
    for d in &report.drift {
        println!("drift: {d}");
    }
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(
        report.unexplained_drift().is_empty(),
        "drift no reported inconsistency explains: {:#?}",
        report
            .unexplained_drift()
            .iter()
            .map(|d| (d, report.drift_story.get(*d)))
            .collect::<Vec<_>>()
    );
    assert!(
        report.failed_unreported.is_empty(),
        "failed syncs the agent never reported: {:?}",
        report.failed_unreported
    );
    // The run really exercised what it claims.
    let unused: Vec<&str> = PAY_TOOLS
        .iter()
        .copied()
        .filter(|t| !report.tools_used.contains(*t))
        .collect();
    assert!(unused.is_empty(), "tools never called: {unused:?}");
    assert!(
        report.turns >= 300 && report.writes > 100,
        "{}",
        report.summary()
    );
    assert!(report.plans_failed_on_purpose > 0 && report.plans_applied > 100);
    assert!(report.faults.errors > 0 && report.faults.rate_limits > 0 && report.faults.drops > 0);
    assert!(report.events_delivered > 100 && report.events_failed == 0);
    assert!(report.checkouts_completed > 0);
}
