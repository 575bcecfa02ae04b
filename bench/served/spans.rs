//! The span collector of the served-path benchmark (`bench/served/run.sh`): an OTLP/HTTP
//! receiver on 127.0.0.1 that `altan-pay serve` exports to, and `GET /report`, the per-stage
//! breakdown of each `POST /v1/chat/completions` trace (median over the traces, in ms) as JSON.
//! `POST /reset` forgets what was received.
//!
//! Usage: `cargo run --release --example served_spans -- --addr 127.0.0.1:PORT`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Map, Value, json};

type Spans = Arc<Mutex<Vec<Span>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> axum::http::StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let mut all = spans.lock().unwrap_or_else(|e| e.into_inner());
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            all.extend(scope.spans);
        }
    }
    axum::http::StatusCode::OK
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn took(s: &Span) -> u64 {
    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)
}

/// The length of the union of the spans' intervals: concurrent tool calls count once.
fn union(spans: &[&Span]) -> u64 {
    let mut iv: Vec<(u64, u64)> = spans
        .iter()
        .map(|s| (s.start_time_unix_nano, s.end_time_unix_nano))
        .collect();
    iv.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (a, b) in iv {
        current = match current {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// One conversation's stages, in ms.
fn stages(http: &Span, trace: &[&Span]) -> Option<Map<String, Value>> {
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
    let under = |span: &Span, ancestor: &Span| {
        let mut at = span;
        while let Some(parent) = by_id.get(at.parent_span_id.as_slice()) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = parent;
        }
        false
    };
    let turn = trace.iter().find(|s| s.name.starts_with("invoke_agent"))?;
    let named = |prefix: &str, within: &Span| -> Vec<&Span> {
        trace
            .iter()
            .copied()
            .filter(|s| s.name.starts_with(prefix) && under(s, within))
            .collect()
    };
    let sum = |v: &[&Span]| v.iter().map(|s| took(s)).sum::<u64>();
    let model = named("chat ", turn);
    let tools = named("execute_tool ", turn);
    let pay: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.attributes.iter().any(|a| a.key == "altan_pay.operation") && under(s, turn))
        .collect();
    let commits_in_turn = named("store commit", turn);
    let commits_before: Vec<&Span> = named("store commit", http)
        .into_iter()
        .filter(|s| !under(s, turn))
        .collect();
    let load = named("session_load", turn);
    let compose = named("compose", turn);
    let accounted =
        sum(&load) + sum(&model) + union(&tools) + sum(&commits_in_turn) + sum(&compose);
    let mut out = Map::new();
    let mut put = |k: &str, v: u64| {
        out.insert(k.into(), json!(ms(v)));
    };
    put("http_span", took(http));
    put(
        "http_in_before_turn",
        turn.start_time_unix_nano
            .saturating_sub(http.start_time_unix_nano),
    );
    put("commits_before_turn", sum(&commits_before));
    put("turn", took(turn));
    put("session_load", sum(&load));
    put("model_calls", sum(&model));
    put("tool_steps", union(&tools));
    put("pay_requests", sum(&pay));
    put("store_commits_in_turn", sum(&commits_in_turn));
    put("compose", sum(&compose));
    put("turn_rest", took(turn).saturating_sub(accounted));
    put(
        "http_out_after_turn",
        http.end_time_unix_nano
            .saturating_sub(turn.end_time_unix_nano),
    );
    out.insert("model_call_count".into(), json!(model.len()));
    out.insert("tool_call_count".into(), json!(tools.len()));
    out.insert("store_commit_count".into(), json!(commits_in_turn.len()));
    Some(out)
}

async fn report(State(spans): State<Spans>) -> axum::Json<Value> {
    let all = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut traces: HashMap<Vec<u8>, Vec<&Span>> = HashMap::new();
    for s in &all {
        traces.entry(s.trace_id.clone()).or_default().push(s);
    }
    let mut rows = Vec::new();
    for trace in traces.values() {
        if let Some(http) = trace.iter().find(|s| s.name == "POST /v1/chat/completions")
            && let Some(row) = stages(http, trace)
        {
            rows.push(row);
        }
    }
    let mut medians = Map::new();
    if let Some(first) = rows.first() {
        for key in first.keys() {
            let mut v: Vec<f64> = rows.iter().filter_map(|r| r[key].as_f64()).collect();
            v.sort_by(f64::total_cmp);
            medians.insert(key.clone(), json!(v[v.len() / 2]));
        }
    }
    axum::Json(json!({"conversations": rows.len(), "median_ms": medians}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:4318".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let spans: Spans = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .route("/report", get(report))
        .route(
            "/reset",
            post(|State(s): State<Spans>| async move {
                s.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }),
        )
        .with_state(spans);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("span collector on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
