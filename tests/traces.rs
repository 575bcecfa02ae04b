//! Traces of the `altan-pay serve` binary, exported over OTLP/HTTP to a stand-in collector (an
//! axum server on 127.0.0.1 in this test) and decoded with the official OpenTelemetry protobuf
//! definitions (`opentelemetry-proto`): the span tree of one turn, its GenAI attributes, and no
//! secret or customer e-mail anywhere in what was exported.

#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use script::{ScriptServer, native_body};
use serde_json::{Value, json};

const API_KEY: &str = "sk-trace-secret-key-1";
const SERVER_TOKEN: &str = "trace-server-token-1";
const EMAIL: &str = "ada.private@example.com";

#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    spans: Vec<Span>,
}

/// The stand-in collector: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn collector() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(r): axum::extract::State<Arc<Mutex<Received>>>,
                 body: axum::body::Bytes| async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                    };
                    let mut r = r.lock().unwrap();
                    r.bodies.push(body.to_vec());
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            r.spans.extend(scope.spans);
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (axum::http::StatusCode::OK, Vec::new())
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    Some(match value.value.as_ref()? {
        Any::StringValue(s) => json!(s),
        Any::IntValue(i) => json!(i),
        Any::BoolValue(b) => json!(b),
        Any::DoubleValue(d) => json!(d),
        other => json!(format!("{other:?}")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_is_one_span_tree_in_the_genai_conventions_without_secrets() {
    let (otlp, received) = collector().await;
    let script = ScriptServer::start().await;
    // One step with two tools (two Stripe writes), then the answer.
    script.push(Box::new(|_| {
        Ok(json!({"content": null, "tool_calls": [
            {"id": "call_cust", "type": "function", "function": {"name": "create_customer",
             "arguments": json!({"name": "Ada", "email": EMAIL}).to_string()}},
            {"id": "call_prod", "type": "function", "function": {"name": "create_product",
             "arguments": json!({"name": "Pro"}).to_string()}}
        ]}))
    }));
    script.text("Created Ada and Pro.");
    let guard = process::port_guard().await;
    let port = process::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args([
            "serve",
            "--sandbox",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(dir.path().join("s.db"))
        .env("OPENAI_BASE_URL", &script.base_url)
        .env("OPENAI_API_KEY", API_KEY)
        .env("ALTAN_PAY_MODEL", "scripted-model")
        .env("ALTAN_PAY_SERVER_TOKENS", format!("{SERVER_TOKEN}=ws_1"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    process::wait_up(&base).await;
    drop(guard);
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("{base}/v1/threads/t-otel/messages"))
        .bearer_auth(SERVER_TOKEN)
        .json(&native_body(&format!(
            "Add customer Ada ({EMAIL}) and a product Pro"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(
        answer["sync_plan"]["operations"].as_array().unwrap().len(),
        2
    );

    // SIGTERM: the exporter flushes what is left before the process exits.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.try_wait();
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "exit: {:?}", output.status);

    let received = received.lock().unwrap();
    let spans = &received.spans;
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let named = |name: String| spans.iter().filter(move |s| s.name == name);
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{} {:02x?}", s.name, &s.trace_id[..2]))
        .collect();

    // The turn, under the HTTP request that started it.
    let turns: Vec<&Span> = named("invoke_agent Altan Pay".into()).collect();
    assert_eq!(turns.len(), 1, "{names:?}");
    let turn = turns[0];
    assert_eq!(
        attr(turn, "gen_ai.operation.name"),
        Some(json!("invoke_agent"))
    );
    assert_eq!(attr(turn, "gen_ai.conversation.id"), Some(json!("t-otel")));
    assert_eq!(attr(turn, "gen_ai.usage.input_tokens"), Some(json!(20)));
    assert_eq!(attr(turn, "gen_ai.usage.output_tokens"), Some(json!(10)));
    let http = by_id[turn.parent_span_id.as_slice()];
    assert_eq!(http.name, "POST /v1/threads/{thread_id}/messages");
    assert_eq!(attr(http, "http.response.status_code"), Some(json!(200)));
    // Everything but the readiness probes belongs to the turn's trace.
    assert!(
        spans
            .iter()
            .filter(|s| s.name != "GET /healthz")
            .all(|s| s.trace_id == turn.trace_id),
        "{names:?}"
    );

    // Whether `span` sits under `ancestor`.
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

    // Two model calls, children of the turn.
    let chats: Vec<&Span> = named("chat scripted-model".into()).collect();
    assert_eq!(chats.len(), 2, "{names:?}");
    for chat in &chats {
        assert_eq!(chat.parent_span_id, turn.span_id);
        assert_eq!(attr(chat, "gen_ai.operation.name"), Some(json!("chat")));
        assert_eq!(
            attr(chat, "gen_ai.request.model"),
            Some(json!("scripted-model"))
        );
        assert_eq!(attr(chat, "gen_ai.usage.input_tokens"), Some(json!(10)));
        assert_eq!(attr(chat, "gen_ai.usage.output_tokens"), Some(json!(5)));
    }
    let mut reasons: Vec<Value> = chats
        .iter()
        .map(|c| attr(c, "gen_ai.response.finish_reasons").unwrap())
        .collect();
    reasons.sort_by_key(|v| v.to_string());
    assert_eq!(reasons, [json!("stop"), json!("tool_calls")]);

    // Two tool calls with the model's ids, each with its Altan Pay request under it.
    for (tool, call_id) in [
        ("create_customer", "call_cust"),
        ("create_product", "call_prod"),
    ] {
        let found: Vec<&Span> = named(format!("execute_tool {tool}")).collect();
        assert_eq!(found.len(), 1, "{names:?}");
        let span = found[0];
        assert_eq!(span.parent_span_id, turn.span_id);
        assert_eq!(
            attr(span, "gen_ai.operation.name"),
            Some(json!("execute_tool"))
        );
        assert_eq!(attr(span, "gen_ai.tool.name"), Some(json!(tool)));
        assert_eq!(attr(span, "gen_ai.tool.call.id"), Some(json!(call_id)));
        let object = tool.trim_start_matches("create_");
        let pay: Vec<&Span> = named(format!("POST {object}s.create"))
            .filter(|p| under(p, span))
            .collect();
        assert_eq!(pay.len(), 1, "{names:?}");
        assert_eq!(attr(pay[0], "http.response.status_code"), Some(json!(200)));
        assert_eq!(attr(pay[0], "http.request.method"), Some(json!("POST")));
    }

    // The store's commits the turn waited for: the writes recorded before they were sent, and
    // the answer.
    let commits = named("store commit".into())
        .filter(|c| under(c, turn))
        .count();
    assert!(commits >= 2, "{commits} commits: {names:?}");

    // Nothing secret in anything exported: API key, server token, the customer's e-mail.
    let everything: Vec<u8> = received.bodies.concat();
    for secret in [API_KEY, SERVER_TOKEN, EMAIL] {
        assert!(
            !everything
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "`{secret}` was exported"
        );
    }
}
