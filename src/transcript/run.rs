//! Running a transcript's turns through the real agent: a fresh deterministic sandbox behind
//! the gateway, the recording Pay proxy in front of it, and any model (replayed or live).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::TranscriptError;
use super::format::{Transcript, TurnInput};
use super::outcome::{RunOutput, TurnRun};
use super::record::{RecordingModel, spawn_pay_recorder};
use super::server::ReplayState;
use crate::agent::{Agent, AgentEvent, TurnOptions};
use crate::gateway::sandbox::DETERMINISTIC_CLOCK;
use crate::gateway::{PayRequest, Sandbox, spawn};
use crate::model::ChatModel;
use crate::pay::{PayClient, PayConfig, RouteTable};

/// The object kinds whose final state a transcript can check, with their list operation.
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("products", "products.list"),
    ("prices", "prices.list"),
    ("customers", "customers.list"),
    ("subscriptions", "subscriptions.list"),
    ("coupons", "coupons.list"),
    ("promotion_codes", "promotion_codes.list"),
];

/// How to run.
pub struct RunConfig {
    /// The model the agent talks to: live, recording, or the replay server's client.
    pub model: Arc<dyn ChatModel>,
    /// What the model sends as temperature, so recorded requests match.
    pub temperature: Option<f32>,
    /// Ask the model to stream (the engine then passes deltas).
    pub stream: bool,
    /// Marks turn boundaries on the replay server.
    pub replay: Option<Arc<ReplayState>>,
    /// Every agent event, with its turn index (the demo prints them).
    pub events: Option<UnboundedSender<(usize, AgentEvent)>>,
}

/// The initial state with `created` fixed, so seeded objects read the same in every run.
pub(crate) fn prepared_state(transcript: &Transcript) -> (Value, BTreeSet<String>) {
    let mut ids = BTreeSet::new();
    let Some(mut state) = transcript.sandbox.state.clone() else {
        return (json!({"accounts": {}}), ids);
    };
    if let Some(accounts) = state.get_mut("accounts").and_then(Value::as_object_mut) {
        for body in accounts.values_mut() {
            let Some(body) = body.as_object_mut() else {
                continue;
            };
            for (_, list) in body.iter_mut() {
                for item in list.as_array_mut().into_iter().flatten() {
                    if let Some(obj) = item.as_object_mut() {
                        obj.entry("created").or_insert(json!(DETERMINISTIC_CLOCK));
                        if let Some(id) = obj.get("id").and_then(Value::as_str) {
                            ids.insert(id.to_string());
                        }
                    }
                }
            }
        }
    }
    (state, ids)
}

/// Runs every turn; a turn the agent cannot answer is recorded with its error and the run
/// goes on, so the report shows all of it.
pub async fn run(transcript: &Transcript, config: RunConfig) -> Result<RunOutput, TranscriptError> {
    let setup = |reason: String| TranscriptError::Setup(format!("{}: {reason}", transcript.name));
    let (state, seeded_ids) = prepared_state(transcript);
    let sandbox = Sandbox::with_state(&state)
        .map_err(|e| setup(format!("sandbox.state: {e}")))?
        .deterministic(transcript.sandbox.seed);
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(sandbox.clone()), None)
        .await
        .map_err(|e| setup(format!("cannot start the sandbox gateway: {e}")))?;
    let model = Arc::new(RecordingModel::new(
        config.model.clone(),
        config.temperature,
    ));
    let counter = model.counter();
    let proxy = spawn_pay_recorder(
        &gateway.base_url,
        transcript.faults.clone(),
        counter.clone(),
    )
    .await
    .map_err(|e| setup(format!("cannot start the Pay recorder: {e}")))?;
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&proxy.base_url)))
        .map_err(|e| setup(e.to_string()))?;
    let agent = Agent::builder()
        .model(model.clone())
        .pay(pay)
        .policy(transcript.policy.config())
        .build()
        .map_err(|e| setup(e.to_string()))?;
    let thread = transcript.thread();
    let account = transcript.account_id();
    let mut turns: Vec<TurnRun> = Vec::new();
    for (t, turn) in transcript.turns.iter().enumerate() {
        if let Some(replay) = &config.replay {
            replay.begin_turn(t);
        }
        let base = counter.load(Ordering::SeqCst);
        let options = turn_options(t, &config);
        let result = match &turn.input {
            TurnInput::Messages(messages) => agent
                .respond_with(&thread, &transcript.context, messages, options)
                .await
                .map_err(|e| e.to_string()),
            TurnInput::Approval { approve, index } => {
                let held = turns
                    .last()
                    .and_then(|r| r.answer.as_ref())
                    .and_then(|a| a.approvals.get(*index))
                    .map(|a| a.approval_id.clone());
                match held {
                    Some(id) => agent
                        .decide_approval(&thread, &transcript.context, &id, *approve, options)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!(
                        "the previous answer held no call #{index} for approval"
                    )),
                }
            }
        };
        if let Some(replay) = &config.replay {
            replay.end_turn(t);
        }
        let pay = proxy
            .recorder
            .take()
            .into_iter()
            .map(|(at, mut ex)| {
                ex.model_call = at.saturating_sub(base);
                ex
            })
            .collect();
        let (answer, error) = match result {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        turns.push(TurnRun {
            answer,
            error,
            model_calls: model.take(),
            pay,
            state: account
                .as_deref()
                .map(|a| snapshot(&sandbox, a))
                .unwrap_or_default(),
        });
    }
    drop(proxy);
    let _ = gateway.shutdown().await;
    Ok(RunOutput { turns, seeded_ids })
}

fn turn_options(turn: usize, config: &RunConfig) -> TurnOptions {
    if !config.stream && config.events.is_none() {
        return TurnOptions::default();
    }
    let (tx, mut rx) = unbounded_channel::<AgentEvent>();
    let outer = config.events.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(outer) = &outer {
                let _ = outer.send((turn, event));
            }
        }
    });
    TurnOptions {
        events: Some(tx),
        cancel: None,
    }
}

/// Every object of every kind in the account, read straight from the sandbox.
pub fn snapshot(sandbox: &Sandbox, account: &str) -> BTreeMap<String, Vec<Value>> {
    let ask = |operation: &str, connect: Option<String>, params: Map<String, Value>| {
        sandbox.handle_now(&PayRequest {
            operation: operation.into(),
            account_id: account.into(),
            stripe_connect_id: connect,
            id: None,
            params,
            idempotency_key: None,
        })
    };
    let connect = ask("account.stripe_connect_id", None, Map::new()).body["stripe_connect_id"]
        .as_str()
        .map(str::to_string);
    let mut out = BTreeMap::new();
    for (kind, operation) in KINDS {
        let mut params = Map::from_iter([("limit".to_string(), json!("100"))]);
        if *kind == "subscriptions" {
            params.insert("status".into(), json!("all"));
        }
        let response = ask(operation, connect.clone(), params);
        let mut items = response.body["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        items.reverse();
        out.insert(kind.to_string(), items);
    }
    out
}
