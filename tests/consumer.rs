//! A crate outside this package, depending on it with `default-features = false` (plus the
//! scripted model), builds an agent with a tool of its own and runs a turn in which the model calls it, without compiling the servers, stores,
//! sandbox or OTLP exporter: `scripts/consumer-check.sh`, run here so the suite checks it.

use std::process::Command;

#[test]
fn a_crate_using_the_library_without_default_features_runs_a_turn_without_server_crates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/consumer-check.sh"))
        .current_dir(root)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "consumer check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("consumer turn: own tool loyalty_tier -> gold; Ada is a gold customer."),
        "{stdout}"
    );
}
