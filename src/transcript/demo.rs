//! `altan-pay demo`: the bundled scenario end to end on the embedded sandbox, printed as a
//! conversation. Replayed from its recording unless a live model is configured.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc::unbounded_channel;

use super::format::{Transcript, TurnInput};
use super::{TranscriptError, live_model, run};
use crate::agent::{AgentEvent, Answer};
use crate::room::MemberKind;

/// The bundled scenario's name (its file is `fixtures/transcripts/<name>.json`).
pub const DEMO_NAME: &str = "demo-create-product-pro";

/// Embedded so `altan-pay demo` works from any directory.
const DEMO_JSON: &str = include_str!("../../fixtures/transcripts/demo-create-product-pro.json");

/// The bundled demo recording, parsed from the copy embedded in the binary.
pub fn demo_transcript() -> Result<Transcript, TranscriptError> {
    Transcript::from_json(
        DEMO_JSON,
        &format!("fixtures/transcripts/{DEMO_NAME}.json (embedded)"),
    )
}

/// Runs the demo and prints it; `Ok(false)` when a replay diverged from its recording.
pub async fn demo() -> Result<bool, TranscriptError> {
    let transcript = demo_transcript()?;
    let live = crate::model::OpenAiConfig::live_from_env().is_some();
    println!("Altan Pay demo: {}", transcript.description);
    println!(
        "Stripe: the embedded sandbox (deterministic), account {}.",
        transcript.context.account_id.as_deref().unwrap_or("(none)")
    );
    let (tx, mut rx) = unbounded_channel::<(usize, AgentEvent)>();
    let printer = {
        let transcript = transcript.clone();
        tokio::spawn(async move {
            while let Some((turn, event)) = rx.recv().await {
                print!("{}", render_event(&transcript, turn, &event));
            }
        })
    };
    let ok = if live {
        let (model, config) = live_model()?;
        println!(
            "Model: live, {} at {} (OPENAI_* is set).\n",
            config.model, config.base_url
        );
        let output = run::run(
            &transcript.scenario(),
            run::RunConfig {
                model: Arc::new(model),
                temperature: config.temperature,
                stream: true,
                replay: None,
                events: Some(tx),
            },
        )
        .await?;
        let _ = printer.await;
        output.turns.iter().all(|t| t.answer.is_some())
    } else {
        println!(
            "Model: model turns replayed from fixtures/transcripts/{DEMO_NAME}.json \
             (set OPENAI_API_KEY or OPENAI_BASE_URL to run live).\n"
        );
        let (report, _) = super::replay_with_events(&transcript, Some(tx)).await?;
        let _ = printer.await;
        if report.passed() {
            println!(
                "\nReplay check: {} model calls and {} Altan Pay requests matched the recording.",
                report.model_calls, report.pay_requests
            );
            true
        } else {
            println!("\nReplay check: the run diverged from the recording:");
            for finding in &report.findings {
                println!("  {finding}");
            }
            false
        }
    };
    Ok(ok)
}

/// One event as the demo shows it.
pub(crate) fn render_event(transcript: &Transcript, turn: usize, event: &AgentEvent) -> String {
    let mut out = String::new();
    match event {
        AgentEvent::Started { .. } => {
            if transcript.turns.len() > 1 {
                let _ = writeln!(out, "── turn {} ──", turn + 1);
            }
            match transcript.turns.get(turn).map(|t| &t.input) {
                Some(TurnInput::Messages(messages)) => {
                    for m in messages {
                        let kind = match m.kind {
                            MemberKind::User => "user",
                            MemberKind::Agent => "agent",
                        };
                        let _ = writeln!(out, "{} ({kind}): {}", m.name, m.text);
                    }
                }
                Some(TurnInput::Approval { approve, .. }) => {
                    let _ = writeln!(
                        out,
                        "(a person {} the held call)",
                        if *approve { "approves" } else { "declines" }
                    );
                }
                None => {}
            }
            let _ = writeln!(out);
        }
        AgentEvent::ToolCallStarted {
            name, arguments, ..
        } => {
            let _ = writeln!(out, "  → {name} {}", compact_arguments(arguments));
        }
        AgentEvent::ToolCallFinished {
            name,
            result,
            error,
            ..
        } => {
            let summary = match error {
                Some(_) => format!("refused: {}", error_text(result)),
                None => summarize(result),
            };
            let _ = writeln!(out, "  ← {name}: {summary}");
        }
        AgentEvent::TextDelta { .. } => {}
        AgentEvent::Completed { answer } => out.push_str(&render_answer(answer)),
    }
    out
}

fn render_answer(answer: &Answer) -> String {
    let mut out = String::from("\nAltan Pay answers:\n");
    for line in answer.text.lines() {
        let _ = writeln!(out, "  │ {line}");
    }
    match &answer.sync_plan {
        Some(plan) => {
            let _ = writeln!(
                out,
                "\nSync plan {} ({} operation(s) for Altan to apply):",
                plan.sync_id(),
                plan.operations().len()
            );
            for op in plan.operations() {
                let _ = writeln!(out, "  - {}", op.summary());
            }
        }
        None => out.push_str("\nSync plan: none (Stripe did not change).\n"),
    }
    match &answer.mention {
        Some(m) => {
            let _ = writeln!(out, "Handoff: one mention, {}, at the end.", m.markup());
        }
        None => out.push_str("Handoff: no mention.\n"),
    }
    let usage = answer.total_usage();
    let _ = writeln!(
        out,
        "({} model call(s), {} tool call(s), {} tokens, {} of them cached)",
        answer.usage.len(),
        answer.tool_calls.len(),
        usage.total_tokens,
        usage.cached_tokens
    );
    out
}

/// Arguments without nulls, on one line, cut short.
fn compact_arguments(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => {
            let kept: serde_json::Map<String, Value> =
                map.into_iter().filter(|(_, v)| !v.is_null()).collect();
            short(&Value::Object(kept).to_string(), 140)
        }
        _ => short(arguments, 140),
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn error_text(result: &Value) -> String {
    let e = &result["error"];
    short(
        &format!(
            "{} — {}",
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("")
        ),
        160,
    )
}

/// A Stripe object or list in a few words.
pub(crate) fn summarize(result: &Value) -> String {
    if result.get("error").is_some() {
        return error_text(result);
    }
    if result["object"] == "list" {
        let items = result["data"].as_array().cloned().unwrap_or_default();
        let shown: Vec<String> = items.iter().take(4).map(one_object).collect();
        let more = if items.len() > 4 {
            format!(", +{}", items.len() - 4)
        } else {
            String::new()
        };
        return format!("{} item(s): {}{more}", items.len(), shown.join(", "));
    }
    one_object(result)
}

fn one_object(v: &Value) -> String {
    let id = v["id"].as_str().unwrap_or("?");
    let object = v["object"].as_str().unwrap_or("object");
    if v["deleted"] == true {
        return format!("{object} {id} deleted");
    }
    let detail = match object {
        "product" => format!(
            "\"{}\"{}",
            v["name"].as_str().unwrap_or(""),
            if v["active"] == false {
                " (archived)"
            } else {
                ""
            }
        ),
        "price" => {
            let amount = v["unit_amount"].as_i64().unwrap_or(0);
            let per = v["recurring"]["interval"]
                .as_str()
                .map(|i| format!("/{i}"))
                .unwrap_or_else(|| " one-time".into());
            format!(
                "{}.{:02} {}{per} of {}{}",
                amount / 100,
                amount % 100,
                v["currency"].as_str().unwrap_or("").to_uppercase(),
                v["product"].as_str().unwrap_or("?"),
                if v["active"] == false {
                    " (inactive)"
                } else {
                    ""
                }
            )
        }
        "customer" => v["email"].as_str().unwrap_or("").to_string(),
        "subscription" => format!(
            "{} for {}",
            v["status"].as_str().unwrap_or(""),
            v["customer"].as_str().unwrap_or("")
        ),
        "coupon" => match v["percent_off"].as_f64() {
            Some(p) => format!("{p}% off, {}", v["duration"].as_str().unwrap_or("")),
            None => format!("{} off", v["amount_off"]),
        },
        "promotion_code" => format!("code {}", v["code"].as_str().unwrap_or("")),
        "checkout.session" => v["url"].as_str().unwrap_or("").to_string(),
        "stripe_connect_id" => v["stripe_connect_id"].as_str().unwrap_or("").to_string(),
        _ => String::new(),
    };
    if object == "stripe_connect_id" {
        return detail;
    }
    format!("{object} {id} {detail}").trim_end().to_string()
}
