//! `altan-pay eval`: the scenarios' room messages against a live model, scored on the final
//! Stripe state, the sync plan and the rule checks (ids Stripe makes anew match any new id).

use std::fmt::Write as _;
use std::sync::Arc;

use super::check::{self, Ids};
use super::format::Transcript;
use super::run::{self, RunConfig};
use crate::model::ChatModel;

/// One scenario's score.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// The scenario's name.
    pub name: String,
    /// Whether the final Stripe state matched; `None` when the scenario does not check it.
    pub state: Option<bool>,
    /// Whether the sync plan matched; `None` when the scenario does not check it.
    pub plan: Option<bool>,
    /// The rule checks and the answer checks (contains, mentions, ends_with, end).
    pub rules: Option<bool>,
    /// Model calls over the whole run.
    pub model_calls: usize,
    /// Tool calls over the whole run.
    pub tool_calls: usize,
    /// Tokens the model reported (prompt and completion), over the whole run.
    pub tokens: u64,
    /// What failed, `turn n: field: expected .., got ..`.
    pub failures: Vec<String>,
}

impl EvalRow {
    /// Whether nothing failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one scenario with `model` and scores it.
pub async fn evaluate(transcript: &Transcript, model: Arc<dyn ChatModel>) -> EvalRow {
    let mut row = EvalRow {
        name: transcript.name.clone(),
        state: None,
        plan: None,
        rules: None,
        model_calls: 0,
        tool_calls: 0,
        tokens: 0,
        failures: Vec::new(),
    };
    let scenario = transcript.scenario();
    let output = match run::run(
        &scenario,
        RunConfig {
            model,
            temperature: None,
            stream: false,
            replay: None,
            events: None,
        },
    )
    .await
    {
        Ok(output) => output,
        Err(e) => {
            row.failures.push(e.to_string());
            return row;
        }
    };
    let ids = Ids::NewAreAny(&output.seeded_ids);
    for (t, (turn, ran)) in scenario.turns.iter().zip(&output.turns).enumerate() {
        if let Some(answer) = &ran.answer {
            row.model_calls += answer.usage.len();
            row.tool_calls += answer.tool_calls.len();
            row.tokens += answer.usage.iter().map(|u| u.total_tokens).sum::<u64>();
        }
        let expect = &turn.expect;
        if expect.stripe.is_some() {
            row.state.get_or_insert(true);
        }
        if expect.sync_plan.is_some() {
            row.plan.get_or_insert(true);
        }
        if !expect.rules.is_empty() || !expect.answer.is_empty() {
            row.rules.get_or_insert(true);
        }
        for (field, expected, got) in check::judge(expect, ran, ids) {
            let part = if field.starts_with("stripe") {
                &mut row.state
            } else if field.starts_with("sync_plan") {
                &mut row.plan
            } else {
                &mut row.rules
            };
            *part = Some(false);
            row.failures.push(format!(
                "turn {}: {field}: expected {expected}, got {got}",
                t + 1
            ));
        }
    }
    row
}

fn mark(v: Option<bool>) -> &'static str {
    match v {
        None => "-",
        Some(true) => "ok",
        Some(false) => "FAIL",
    }
}

/// The table and the summary, as printed.
pub fn report(rows: &[EvalRow]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(8).max(8);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>5}  {:>5}  {:>5}  {:>6}  {:>5}  {:>8}",
        "scenario", "state", "plan", "rules", "model", "tools", "tokens"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:>5}  {:>5}  {:>5}  {:>6}  {:>5}  {:>8}",
            r.name,
            mark(r.state),
            mark(r.plan),
            mark(r.rules),
            r.model_calls,
            r.tool_calls,
            r.tokens
        );
    }
    let failed: Vec<&EvalRow> = rows.iter().filter(|r| !r.passed()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for r in &failed {
            for f in &r.failures {
                let _ = writeln!(out, "  {}: {f}", r.name);
            }
        }
    }
    let passed = rows.len() - failed.len();
    let rate = if rows.is_empty() {
        0.0
    } else {
        100.0 * passed as f64 / rows.len() as f64
    };
    let _ = writeln!(
        out,
        "\nsuccess rate {rate:.0}% ({passed}/{}), {} model calls, {} tool calls, {} tokens",
        rows.len(),
        rows.iter().map(|r| r.model_calls).sum::<usize>(),
        rows.iter().map(|r| r.tool_calls).sum::<usize>(),
        rows.iter().map(|r| r.tokens).sum::<u64>()
    );
    out
}

/// A scripted model answering with a transcript's recorded responses, in order: scores the
/// scoring without a network, and replays a recording in-process.
pub fn recorded_model(
    transcript: &Transcript,
) -> Result<crate::model::ScriptedModel, super::TranscriptError> {
    use crate::model::scripted::ScriptedStep;
    use crate::model::wire::{StreamAssembler, parse_response};
    let mut steps = Vec::new();
    for (t, turn) in transcript.turns.iter().enumerate() {
        for (k, call) in turn.model_calls.iter().enumerate() {
            let bad = |reason: String| super::TranscriptError::Invalid {
                file: transcript.name.clone(),
                field: format!("turns[{t}].model_calls[{k}]"),
                reason,
            };
            let response = match (&call.response, &call.chunks) {
                (Some(whole), _) => parse_response(whole).map_err(|e| bad(e.to_string()))?,
                (None, Some(chunks)) => {
                    let mut assembler = StreamAssembler::new();
                    for chunk in chunks {
                        assembler.push(chunk).map_err(|e| bad(e.to_string()))?;
                    }
                    assembler.finish().map_err(|e| bad(e.to_string()))?
                }
                (None, None) => return Err(bad("no response".into())),
            };
            steps.push(ScriptedStep::response(response));
        }
    }
    Ok(crate::model::ScriptedModel::new(steps))
}
