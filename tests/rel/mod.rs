//! Shared pieces of the reliability tests: an agent with a scripted model over a real
//! `PayClient` and the sandbox gateway, optionally behind injected faults. The fixture itself is
//! the shared one in `tests/support/world.rs`; these are its reliability-test shorthands.

#![allow(dead_code)]

#[path = "../support/wait.rs"]
mod wait;
#[path = "../support/world.rs"]
mod world;

use std::time::Duration;

use altan_pay::gateway::faults::FaultPlan;
use altan_pay::model::scripted::ScriptedStep;
use altan_pay::policy::PolicyConfig;
use serde_json::Value;

#[allow(unused_imports)]
pub use wait::until;
pub use world::*;

/// An agent over the sandbox gateway with `plan`'s faults in front of the sandbox.
pub async fn world(steps: Vec<ScriptedStep>, plan: FaultPlan, timeout: Duration) -> World {
    World::builder(steps)
        .faults(plan)
        .timeout(timeout)
        .build()
        .await
}

pub async fn world_with(
    steps: Vec<ScriptedStep>,
    plan: FaultPlan,
    timeout: Duration,
    policy: PolicyConfig,
    seed: Value,
) -> World {
    World::builder(steps)
        .faults(plan)
        .timeout(timeout)
        .policy(policy)
        .seed(seed)
        .build()
        .await
}
