//! Recorded transcripts: the format, recording (model and Altan Pay HTTP), replay through the
//! real OpenAI client against a local server, the bundled demo and the live eval.

pub mod check;
pub mod cli;
pub mod demo;
pub mod eval;
pub mod format;
pub mod outcome;
pub mod record;
pub mod redact;
pub mod run;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

pub use check::{Finding, Stage};
pub use format::{
    AnswerExpect, Expect, ModelCall, NoPlan, OpExpect, PayExchange, PlanExpect, RecordedFault,
    RecordedTurn, RecordingInfo, Rule, Transcript, TurnInput,
};
pub use outcome::{RunOutput, TurnRun};
pub use record::{PayRecorder, RecordingModel, spawn_pay_recorder};
pub use run::RunConfig;
pub use server::ReplayServer;

use crate::agent::AgentEvent;
use crate::model::{ChatModel, ModelApi, OpenAiConfig, OpenAiModel, RetryPolicy};

/// Why a transcript could not be read or run at all (a divergence is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file could not be read or written.
    #[error("{file}: {reason}")]
    Io {
        /// The transcript file.
        file: String,
        /// The operating system's error.
        reason: String,
    },
    /// The file is not a valid transcript: names the field at fault.
    #[error("{file}: {field}: {reason}")]
    Invalid {
        /// The transcript file.
        file: String,
        /// The JSON path of the field at fault, e.g. `turns[2].expect`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No transcript file was found where the command looked (a directory holds its `*.json`).
    #[error("no transcripts (*.json) in {}", given.join(", "))]
    NoTranscripts {
        /// The paths given.
        given: Vec<String>,
    },
    /// What a run needs could not be set up: the replay server, the sandbox, the model.
    #[error("{0}")]
    Setup(String),
}

/// The result of replaying one transcript.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The transcript's name.
    pub name: String,
    /// Every divergence, in the order things happen.
    pub findings: Vec<Finding>,
    /// Turns replayed.
    pub turns: usize,
    /// Model calls the transcript recorded.
    pub model_calls: usize,
    /// Altan Pay requests the transcript recorded.
    pub pay_requests: usize,
}

impl ReplayReport {
    /// Whether the replay matched the recording in every respect (no findings).
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Replays a transcript: recorded responses served over HTTP to the real OpenAI client, tools
/// against a fresh deterministic sandbox, then requests, Pay exchanges and outcomes compared.
pub async fn replay(transcript: &Transcript) -> Result<ReplayReport, TranscriptError> {
    Ok(replay_with_events(transcript, None).await?.0)
}

/// [`replay`] with the model driven over `api` (the replay server answers both
/// `/chat/completions` and `/responses` from the same chat recording).
pub async fn replay_on(
    transcript: &Transcript,
    api: ModelApi,
) -> Result<ReplayReport, TranscriptError> {
    Ok(replay_with_events_on(transcript, None, api).await?.0)
}

/// [`replay`] passing every agent event on (the demo prints them).
pub(crate) async fn replay_with_events(
    transcript: &Transcript,
    events: Option<UnboundedSender<(usize, AgentEvent)>>,
) -> Result<(ReplayReport, RunOutput), TranscriptError> {
    replay_with_events_on(transcript, events, ModelApi::ChatCompletions).await
}

/// [`replay_with_events`] over the wire `api`.
pub(crate) async fn replay_with_events_on(
    transcript: &Transcript,
    events: Option<UnboundedSender<(usize, AgentEvent)>>,
    api: ModelApi,
) -> Result<(ReplayReport, RunOutput), TranscriptError> {
    let server = ReplayServer::spawn(transcript)
        .await
        .map_err(|e| TranscriptError::Setup(format!("cannot start the replay server: {e}")))?;
    let recorded_model = transcript
        .recording
        .as_ref()
        .map(|r| r.model.clone())
        .unwrap_or_else(|| crate::model::DEFAULT_MODEL.to_string());
    let config = OpenAiConfig {
        base_url: server.base_url.clone(),
        api_key: None,
        model: recorded_model,
        timeout: Duration::from_secs(30),
        retry: RetryPolicy::default(),
        temperature: None,
        stream: transcript.streamed(),
        api,
        ..OpenAiConfig::default()
    };
    let model = OpenAiModel::new(config)
        .map_err(|e| TranscriptError::Setup(format!("replay model: {e}")))?;
    let output = run::run(
        transcript,
        RunConfig {
            model: Arc::new(model),
            temperature: None,
            stream: transcript.streamed(),
            replay: Some(server.state.clone()),
            events,
        },
    )
    .await?;
    let mut findings = server.state.findings();
    for (t, (turn, ran)) in transcript.turns.iter().zip(&output.turns).enumerate() {
        findings.extend(check::compare_pay(t, &turn.pay_exchanges, &ran.pay));
        for (field, expected, got) in check::judge(&turn.expect, ran, check::Ids::Exact) {
            findings.push(Finding::diff(t, Stage::Outcome, field, expected, got));
        }
    }
    findings.sort_by_key(Finding::order);
    let report = ReplayReport {
        name: transcript.name.clone(),
        findings,
        turns: transcript.turns.len(),
        model_calls: transcript.turns.iter().map(|t| t.model_calls.len()).sum(),
        pay_requests: transcript.turns.iter().map(|t| t.pay_exchanges.len()).sum(),
    };
    Ok((report, output))
}

/// How a recording is made.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Stream the model calls (the recording keeps the chunks).
    pub stream: bool,
    /// The sampling temperature sent to the model; the model's default when `None`.
    pub temperature: Option<f32>,
    /// `live` or `generator`.
    pub source: String,
}

/// Runs a scenario (a transcript without recordings) with `model` and writes down what
/// happened. Hand-written expectations are kept and checked (their failures are returned);
/// the exact answer text, the outcome of every tool call, the sync plan and the final Stripe
/// state are filled in from the run where the scenario left them out.
pub async fn record(
    scenario: &Transcript,
    model: Arc<dyn ChatModel>,
    options: &RecordOptions,
) -> Result<(Transcript, Vec<Finding>), TranscriptError> {
    let scenario = scenario.scenario();
    let output = run::run(
        &scenario,
        RunConfig {
            model: model.clone(),
            temperature: options.temperature,
            stream: options.stream,
            replay: None,
            events: None,
        },
    )
    .await?;
    let mut transcript = scenario;
    transcript.recording = Some(RecordingInfo {
        model: model.name().to_string(),
        source: options.source.clone(),
        stream: options.stream,
    });
    let mut problems = Vec::new();
    let last = transcript.turns.len().saturating_sub(1);
    for (t, (turn, ran)) in transcript.turns.iter_mut().zip(&output.turns).enumerate() {
        for (field, expected, got) in check::judge(&turn.expect, ran, check::Ids::Exact) {
            problems.push(Finding::diff(t, Stage::Outcome, field, expected, got));
        }
        turn.model_calls = ran.model_calls.clone();
        turn.pay_exchanges = ran.pay.clone();
        let expect = &mut turn.expect;
        if let Some(answer) = &ran.answer {
            if expect.answer.text.is_none() {
                expect.answer.text = Some(answer.text.clone());
            }
            if expect.answer.end.is_none() {
                expect.answer.end = serde_json::to_value(&answer.end)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
            }
            for call in &answer.tool_calls {
                let code = match call.error {
                    None => "ok".to_string(),
                    Some(code) => serde_json::to_value(code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                };
                expect.tool_errors.entry(call.id.clone()).or_insert(code);
            }
            if expect.sync_plan.is_none() {
                expect.sync_plan = Some(match &answer.sync_plan {
                    None => PlanExpect::None(NoPlan::None),
                    Some(plan) => PlanExpect::Plan {
                        operations: plan
                            .operations()
                            .iter()
                            .map(|o| OpExpect {
                                table: o.table.clone(),
                                op: o.op().as_str().to_string(),
                                id: o.id.clone(),
                                row: None,
                            })
                            .collect(),
                    },
                });
            }
        }
        if t == last && expect.stripe.is_none() {
            expect.stripe = Some(state_expectation(&ran.state));
        }
    }
    Ok((transcript, problems))
}

/// The fields recorded per object kind (dotted paths); absent or null ones are left out.
const FIELDS: &[(&str, &[&str])] = &[
    ("products", &["name", "active", "description"]),
    (
        "prices",
        &[
            "product",
            "unit_amount",
            "currency",
            "active",
            "recurring.interval",
            "nickname",
        ],
    ),
    (
        "customers",
        &[
            "email",
            "name",
            "discount.coupon.id",
            "discount.promotion_code",
        ],
    ),
    (
        "subscriptions",
        &[
            "customer",
            "status",
            "items.data.0.price.id",
            "cancel_at_period_end",
            "discount.coupon.id",
        ],
    ),
    (
        "coupons",
        &[
            "percent_off",
            "amount_off",
            "currency",
            "duration",
            "duration_in_months",
            "name",
            "valid",
        ],
    ),
    (
        "promotion_codes",
        &[
            "code",
            "active",
            "customer",
            "coupon.id",
            "promotion.coupon",
        ],
    ),
];

/// The final state as an expectation: every object of every non-empty kind.
pub(crate) fn state_expectation(
    state: &BTreeMap<String, Vec<Value>>,
) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut out = BTreeMap::new();
    for (kind, objects) in state {
        if objects.is_empty() {
            continue;
        }
        let fields = FIELDS
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(&[][..], |(_, f)| *f);
        let list = objects
            .iter()
            .map(|obj| {
                let mut m = Map::new();
                m.insert("id".into(), obj.get("id").cloned().unwrap_or(Value::Null));
                for field in fields {
                    if let Some(v) = check::field_at(obj, field).filter(|v| !v.is_null()) {
                        m.insert((*field).to_string(), v.clone());
                    }
                }
                m
            })
            .collect();
        out.insert(kind.clone(), list);
    }
    out
}

/// A live model from the environment, or an error saying what to set.
pub fn live_model() -> Result<(OpenAiModel, OpenAiConfig), TranscriptError> {
    crate::config::live_model().map_err(|e| TranscriptError::Setup(e.to_string()))
}
