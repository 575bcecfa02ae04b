#!/usr/bin/env bash
# A crate outside this package that depends on it the way a Rust service would:
# `default-features = false, features = ["scripted"]`. It builds an `Agent`, runs one scripted
# turn, and its dependency tree must hold none of the crates the library-only build leaves out.
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

# Not a member of any workspace above it.
[workspace]
TOML

cat >"$dir/src/main.rs" <<'RUST'
//! A service embedding the Altan Pay agent: one turn on a scripted model.

use std::sync::Arc;

use altan_pay::{
    Agent, AgentBuilder, AgentContext, MemberKind, PayClient, PayConfig, RoomMessage, RouteTable,
    ScriptedModel, Step,
};

/// What this service adds to the agent; its own tools go here.
fn with_own_parts(builder: AgentBuilder) -> AgentBuilder {
    builder
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Arc::new(ScriptedModel::new(vec![Step::text("Nothing to change.")]));
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
        text: "Do we have products?".into(),
    };
    let answer = agent.respond("thread-1", &context, &[said]).await?;
    if !answer.text.contains("Nothing to change.") || model.remaining() != 0 {
        return Err(format!("unexpected turn: {:?}", answer.text).into());
    }
    println!("consumer turn: {}", answer.text);
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
