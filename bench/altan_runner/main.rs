//! This runtime in the side-by-side benchmark: `altan_pay::Agent` with `OpenAiModel` pointed at
//! the scripted model server and `PayClient` pointed at the sandbox gateway. One thread per
//! conversation. `BENCH_COMPACT=1` turns on the opt-in compact tool definitions;
//! `BENCH_STORE=sqlite` keeps sessions in the durable SQLite store (a temporary file, WAL,
//! `synchronous=FULL`, group commit) instead of in memory.
//! See `bench/run.sh`.

#[path = "../harness.rs"]
mod harness;

use std::sync::Arc;

use altan_pay::agent::{Agent, AnswerEnd};
use altan_pay::model::{OpenAiConfig, OpenAiModel};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use altan_pay::store::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = harness::parse_args()?;
    let model = OpenAiModel::new(OpenAiConfig {
        base_url: args.model_url.clone(),
        model: "scripted".into(),
        ..OpenAiConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let pay = PayClient::new(PayConfig::new(
        RouteTable::embedded().with_base_url(&args.gateway),
    ))
    .map_err(|e| e.to_string())?;
    let durable = std::env::var("BENCH_STORE").is_ok_and(|v| v == "sqlite");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut builder = Agent::builder()
        .model(Arc::new(model))
        .pay(pay)
        .compact_tools(std::env::var("BENCH_COMPACT").is_ok_and(|v| v == "1"));
    if durable {
        let store = SqliteStore::open(dir.path().join("sessions.db")).map_err(|e| e.to_string())?;
        builder = builder.store(Arc::new(store));
    }
    let agent = builder.build().map_err(|e| e.to_string())?;
    let context = AgentContext {
        account_id: Some(args.account.clone()),
        stripe_connect_id: Some(args.connect.clone()),
        ..Default::default()
    };
    let said = [RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create Pro at $20/month and $200/year".into(),
    }];
    let name = if durable {
        "altan_sqlite"
    } else if std::env::var("BENCH_COMPACT").is_ok_and(|v| v == "1") {
        "altan_compact"
    } else {
        "altan"
    };
    harness::measure(name, &args, |thread| {
        let agent = agent.clone();
        let context = &context;
        let said = &said;
        async move {
            let answer = agent
                .respond(&thread, context, said)
                .await
                .map_err(|e| e.to_string())?;
            if answer.end != AnswerEnd::Completed || answer.tool_calls.len() != 3 {
                return Err(format!(
                    "unexpected answer: {:?} {}",
                    answer.end, answer.text
                ));
            }
            Ok(())
        }
    })
    .await
}
