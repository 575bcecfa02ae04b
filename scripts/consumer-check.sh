#!/usr/bin/env bash
# A crate outside this package that depends on it the way a Rust service would:
# `default-features = false, features = ["scripted"]`. It builds an `Agent` with a tool of its
# own (`.tool(..)`), runs one scripted turn in which the model calls it, and its dependency
# tree must hold none of the crates the library-only build leaves out.
#
#   bash scripts/consumer-check.sh            # in target/consumer-check (kept between runs)
#   CONSUMER_DIR=/tmp/c bash scripts/consumer-check.sh
#
# Exit 0 when the turn ran and the tree is clean; 1 naming the crate found or the step failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CONSUMER_DIR:-$root/target/consumer-check}
# Crates a library-only user must not compile.
forbidden=(axum rusqlite tokio-postgres deadpool-postgres opentelemetry-otlp)

mkdir -p "$dir/src"
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "altan-pay-consumer"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
altan-pay = { path = "$root", default-features = false, features = ["scripted"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
schemars = "1.2"

# Not a member of any workspace above it.
[workspace]
TOML

cat >"$dir/src/main.rs" <<'RUST'
//! A service embedding the Altan Pay agent with a tool of its own: one scripted turn in which
//! the model calls that tool.

use std::sync::Arc;

use altan_pay::{
    Agent, AgentBuilder, AgentContext, AgentTool, Facts, MemberKind, OwnCall, PayClient,
    PayConfig, RoomMessage, RouteTable, ScriptedModel, ScriptedStep, ToolError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Looks up a customer's loyalty tier in this service's CRM.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct TierArgs {
    /// The customer's e-mail.
    email: String,
}

/// The service's own tool: a read, so no sync plan and no idempotency key.
struct LoyaltyTier;

impl AgentTool for LoyaltyTier {
    const NAME: &'static str = "loyalty_tier";
    type Args = TierArgs;
    type Output = Value;
    type Error = ToolError;
    const FACTS: Facts<TierArgs> = Facts::read(&[]).starter();
    async fn call(&self, args: TierArgs, _call: &OwnCall) -> Result<Value, ToolError> {
        let tier = if args.email.ends_with("@example.com") { "gold" } else { "none" };
        Ok(json!({ "email": args.email, "tier": tier }))
    }
}

/// What this service adds to the agent.
fn with_own_parts(builder: AgentBuilder) -> AgentBuilder {
    builder.tool(LoyaltyTier)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Arc::new(ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "loyalty_tier", json!({ "email": "ada@example.com" }))]),
        ScriptedStep::text("Ada is a gold customer.").expect_tool_result_containing("gold"),
    ]));
    let pay = PayClient::new(PayConfig::new(RouteTable::embedded()))?;
    let agent: Agent = with_own_parts(Agent::builder().model(model.clone()).pay(pay)).build()?;
    let context = AgentContext {
        account_id: Some("ws_1".into()),
        ..Default::default()
    };
    let said = RoomMessage {
        member_id: "u1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "What is my loyalty tier? I am ada@example.com".into(),
    };
    let answer = agent.respond("thread-1", &context, &[said]).await?;
    let called = answer.tool_calls.first().map(|c| (c.name.as_str(), c.result["tier"].clone()));
    if called != Some(("loyalty_tier", json!("gold"))) || model.remaining() != 0 {
        return Err(format!("the own tool was not called as scripted: {:?}", answer.tool_calls).into());
    }
    if !answer.text.starts_with("Ada is a gold customer.") {
        return Err(format!("unexpected answer: {:?}", answer.text).into());
    }
    println!("consumer turn: own tool loyalty_tier -> gold; {}", answer.text);
    Ok(())
}
RUST

# The consumer resolves to the versions this package is tested with.
[ -f "$dir/Cargo.lock" ] || cp "$root/Cargo.lock" "$dir/Cargo.lock"

tree=$(cargo tree --manifest-path "$dir/Cargo.toml" -e normal --prefix none)
for crate in "${forbidden[@]}"; do
  if grep -q "^$crate v" <<<"$tree"; then
    echo "consumer-check: the library-only build depends on $crate:" >&2
    cargo tree --manifest-path "$dir/Cargo.toml" -e normal -i "$crate" >&2 || true
    exit 1
  fi
done

cargo run --quiet --manifest-path "$dir/Cargo.toml"
echo "consumer-check: ok (none of ${forbidden[*]} in the tree)"
