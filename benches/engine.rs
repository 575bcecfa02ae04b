//! Runtime overhead of the agent loop (bench/run.sh reports it in BENCHMARKS.md).
//!
//! - `turn_state_machine`: the engine's `Turn` alone over the 3-iteration scenario (canned
//!   model answers and tool results, no I/O).
//! - `agent_scenario`: `Agent::respond` for the whole scenario (create a product, two prices,
//!   the answer with the sync plan and handoff) with a zero-latency in-process model and the
//!   sandbox gateway in the same process on 127.0.0.1.
//! - `pay_floor`: the same three Pay calls made with a bare reqwest client against the same
//!   gateway (one, then two concurrent): the time the agent spends waiting on Pay.
//!
//! Runtime overhead per scenario = agent_scenario − pay_floor; per loop iteration = that / 3
//! (three model calls per scenario).

#[path = "../bench/instant_model.rs"]
mod instant_model;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use altan_pay::agent::{Agent, ToolExposure};
use altan_pay::engine::{Limits, Step, Turn};
use altan_pay::gateway::sandbox::derived_connect_id;
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::model::{ChatMessage, ToolDefs};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::prompt::PromptLibrary;
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use altan_pay::tools::{ToolOutput, ToolSet, ToolSuccess};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const ACCOUNT: &str = "ws_bench";

fn product() -> Value {
    json!({"id": "prod_Bench1", "object": "product", "name": "Pro", "active": true})
}

fn turn_state_machine(c: &mut Criterion) {
    let prompt = PromptLibrary::embedded()
        .render_default()
        .unwrap_or_default();
    // Built once, as the agent does: the definitions are serialised when the agent is built.
    let tools = ToolDefs::new(match ToolSet::altan_pay().to_openai_json() {
        Value::Array(t) => t,
        _ => Vec::new(),
    });
    let exposure = Arc::new(ToolExposure::new(ToolSet::altan_pay(), false, false));
    c.bench_function("turn_state_machine", |b| {
        b.iter(|| {
            let messages = vec![
                ChatMessage::system(prompt.clone()),
                ChatMessage::user("Ada (user, member u-1): Create Pro at $20/month and $200/year"),
            ];
            let mut turn = Turn::new(messages, tools.clone(), Limits::default())
                .with_history(exposure.clone());
            let mut step = turn.start();
            loop {
                step = match step {
                    Step::CallModel(request) => match instant_model::answer(&request) {
                        Ok(r) => turn.model_response(r),
                        Err(_) => break,
                    },
                    Step::CallTools(calls) => {
                        let results: HashMap<String, ToolOutput> = calls
                            .iter()
                            .map(|c| (c.id.clone(), Ok(ToolSuccess::new(product(), None))))
                            .collect();
                        turn.tool_results(results)
                    }
                    Step::Done(end) => {
                        std::hint::black_box(end);
                        break;
                    }
                };
            }
        })
    });
}

fn agent_and_floor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let routes = RouteTable::embedded();
    let gateway = rt
        .block_on(spawn(routes.clone(), Arc::new(Sandbox::in_memory()), None))
        .expect("gateway");
    let base = gateway.base_url.clone();
    let connect = derived_connect_id(ACCOUNT);
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&base))).expect("pay client");
    let agent = Agent::builder()
        .model(Arc::new(instant_model::InstantModel))
        .pay(pay)
        .build()
        .expect("agent");
    let context = AgentContext {
        account_id: Some(ACCOUNT.into()),
        stripe_connect_id: Some(connect.clone()),
        ..Default::default()
    };
    let said = [RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create Pro at $20/month and $200/year".into(),
    }];
    let n = AtomicU64::new(0);
    c.bench_function("agent_scenario", |b| {
        b.to_async(&rt).iter(|| async {
            let thread = format!("t{}", n.fetch_add(1, Ordering::Relaxed));
            let answer = agent.respond(&thread, &context, &said).await;
            assert!(
                matches!(&answer, Ok(a) if a.tool_calls.len() == 3),
                "{answer:?}"
            );
        })
    });
    let http = reqwest::Client::new();
    let product_url =
        format!("{base}/v2/connect/products/{ACCOUNT}/create_product?stripe_connect_id={connect}");
    let price_url =
        format!("{base}/v2/connect/prices/{ACCOUNT}/create_price?stripe_connect_id={connect}");
    c.bench_function("pay_floor", |b| {
        b.to_async(&rt).iter(|| async {
            let p: Value = http
                .post(&product_url)
                .json(&json!({"payload": {"name": "Pro"}}))
                .send()
                .await
                .expect("product")
                .json()
                .await
                .expect("json");
            let id = p["id"].as_str().unwrap_or_default().to_string();
            let price = |amount: u32, interval: &str| {
                http.post(&price_url)
                    .json(&json!({"payload": {"product": id, "unit_amount": amount, "currency": "usd", "recurring": {"interval": interval}}}))
                    .send()
            };
            let (a, b) = futures::join!(price(2000, "month"), price(20000, "year"));
            let _ = (a.expect("price").text().await, b.expect("price").text().await);
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = engine;
    config = config();
    targets = turn_state_machine, agent_and_floor
}
criterion_main!(engine);
