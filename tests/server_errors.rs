//! Auth, scoping and malformed requests over real HTTP: every refusal is a JSON error that
//! names the problem, and the model is never called.

#[path = "support/openai_script.rs"]
mod script;

use script::{Options, ScriptServer, gateway, native_body, serve};
use serde_json::{Value, json};

const TOKENS: &str = "token-ws1-only=ws_1;token-for-all=*";

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "status {status}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    (
        status,
        body["error"]["type"].as_str().unwrap().to_string(),
        body["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn tokens_are_required_and_scoped_and_a_refusal_runs_nothing() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        tokens: Some(TOKENS),
        ..Options::default()
    };
    let server = serve(&script, &gw, &dir.path().join("s.db"), options).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/threads/t1/messages", server.base_url);
    let body = native_body("Create a product");

    let (status, kind, _) = error_of(client.post(&url).json(&body).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (401, "unauthorized"));
    let r = client
        .post(&url)
        .bearer_auth("wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_of(r).await.0, 401);

    let mut other = body.clone();
    other["context"]["account_id"] = json!("ws_2");
    let r = client
        .post(&url)
        .bearer_auth("token-ws1-only")
        .json(&other)
        .send()
        .await
        .unwrap();
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (403, "forbidden"));
    assert!(message.contains("ws_2"), "{message}");

    // A scoped token must name an account: the agent would otherwise take one from the chat.
    let mut none = body.clone();
    none["context"]["account_id"] = Value::Null;
    let r = client
        .post(&url)
        .bearer_auth("token-ws1-only")
        .json(&none)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 403);

    // The OpenAI-compatible endpoint is scoped by the same tokens.
    let r = client
        .post(format!("{}/v1/chat/completions", server.base_url))
        .bearer_auth("token-ws1-only")
        .header("x-altan-account-id", "ws_9")
        .json(&json!({"model": "altan-pay", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 403);
    assert_eq!(script.calls(), 0, "no refused request reached the model");

    // An allowed request runs; then the thread belongs to ws_1.
    script.text("Hello.");
    let r = client
        .post(&url)
        .bearer_auth("token-ws1-only")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(script.calls(), 1);
    let r = client
        .post(&url)
        .bearer_auth("token-for-all")
        .json(&other)
        .send()
        .await
        .unwrap();
    // Another account's thread answers as a missing one: 404, naming no thread.
    let (status, kind, message) = error_of(r).await;
    assert_eq!((status, kind.as_str()), (404, "thread_not_found"));
    assert!(!message.contains("t1"), "{message}");
    assert_eq!(script.calls(), 1);
    let r = client
        .get(format!("{}/v1/threads/t1", server.base_url))
        .bearer_auth("token-for-all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/v1/models", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);
    // Health needs no token.
    let r = client
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_requests_get_json_errors_that_name_the_problem() {
    let script = ScriptServer::start().await;
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_body_bytes: 4096,
        ..Options::default()
    };
    let server = serve(&script, &gw, &dir.path().join("s.db"), options).await;
    let base = server.base_url.clone();
    let client = reqwest::Client::new();
    let messages = format!("{base}/v1/threads/t1/messages");
    let raw = |url: String, body: Vec<u8>| {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let check = |got: (u16, String, String), status: u16, kind: &str, needle: &str| {
        assert_eq!(got.0, status, "{got:?}");
        assert_eq!(got.1, kind, "{got:?}");
        assert!(
            got.2.contains(needle),
            "`{}` should mention `{needle}`",
            got.2
        );
    };

    check(
        error_of(
            raw(messages.clone(), b"{\"messages\": [".to_vec())
                .await
                .unwrap(),
        )
        .await,
        400,
        "invalid_json",
        "not valid JSON",
    );
    check(
        error_of(raw(messages.clone(), Vec::new()).await.unwrap()).await,
        400,
        "invalid_json",
        "empty",
    );
    check(
        error_of(raw(messages.clone(), b"{}".to_vec()).await.unwrap()).await,
        422,
        "invalid_request",
        "messages",
    );
    check(
        error_of(
            raw(messages.clone(), br#"{"messages": "hi"}"#.to_vec())
                .await
                .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "messages",
    );
    let bad_kind =
        json!({"messages": [{"member_id": "u", "name": "A", "kind": "robot", "text": "x"}]});
    check(
        error_of(
            raw(messages.clone(), bad_kind.to_string().into_bytes())
                .await
                .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "messages[0].kind",
    );
    let no_text = json!({"messages": [{"member_id": "u", "name": "A", "kind": "user"}]});
    check(
        error_of(
            raw(messages.clone(), no_text.to_string().into_bytes())
                .await
                .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "text",
    );
    check(
        error_of(
            raw(messages.clone(), br#"{"messages": []}"#.to_vec())
                .await
                .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "empty",
    );
    check(
        error_of(
            raw(messages.clone(), b"{\"messages\": \"\xff\xfe\"}".to_vec())
                .await
                .unwrap(),
        )
        .await,
        400,
        "invalid_utf8",
        "UTF-8",
    );
    let big = json!({"messages": [{"member_id": "u", "name": "A", "kind": "user", "text": "x".repeat(10_000)}]});
    check(
        error_of(
            raw(messages.clone(), big.to_string().into_bytes())
                .await
                .unwrap(),
        )
        .await,
        413,
        "body_too_large",
        "4096",
    );
    let r = client
        .post(&messages)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    check(error_of(r).await, 415, "unsupported_media_type", "JSON");
    let r = raw(
        format!("{base}/v1/threads/bad%20id/messages"),
        native_body("x").to_string().into_bytes(),
    )
    .await
    .unwrap();
    check(error_of(r).await, 400, "invalid_thread_id", "thread id");

    check(
        error_of(
            client
                .get(format!("{base}/v1/threads/nobody"))
                .send()
                .await
                .unwrap(),
        )
        .await,
        404,
        "thread_not_found",
        "no thread",
    );
    check(
        error_of(
            client
                .get(format!("{base}/v1/nothing-here"))
                .send()
                .await
                .unwrap(),
        )
        .await,
        404,
        "not_found",
        "endpoint",
    );
    check(
        error_of(client.get(&messages).send().await.unwrap()).await,
        405,
        "method_not_allowed",
        "method",
    );
    let approvals = format!("{base}/v1/threads/nobody/approvals/appr_1");
    check(
        error_of(
            raw(approvals.clone(), br#"{"approve": true}"#.to_vec())
                .await
                .unwrap(),
        )
        .await,
        404,
        "thread_not_found",
        "no thread",
    );

    let chat = format!("{base}/v1/chat/completions");
    let chat_body = |v: Value| v.to_string().into_bytes();
    check(
        error_of(
            raw(chat.clone(), chat_body(json!({"messages": []})))
                .await
                .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "model",
    );
    check(
        error_of(
            raw(
                chat.clone(),
                chat_body(
                    json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
                ),
            )
            .await
            .unwrap(),
        )
        .await,
        404,
        "model_not_found",
        "gpt-4",
    );
    check(error_of(raw(chat.clone(), chat_body(json!({"model": "altan-pay", "messages": [{"role": "system", "content": "hi"}]}))).await.unwrap()).await, 422, "invalid_request", "no user message");
    check(error_of(raw(chat.clone(), chat_body(json!({"model": "altan-pay", "messages": [{"role": "wizard", "content": "hi"}]}))).await.unwrap()).await, 422, "invalid_request", "messages[0].role");
    check(
        error_of(
            raw(
                chat.clone(),
                chat_body(
                    json!({"model": "altan-pay", "messages": [{"role": "user", "content": 5}]}),
                ),
            )
            .await
            .unwrap(),
        )
        .await,
        422,
        "invalid_request",
        "messages[0].content",
    );
    check(error_of(raw(chat.clone(), chat_body(json!({"model": "altan-pay", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}))).await.unwrap()).await, 422, "invalid_request", "stream");
    check(error_of(raw(chat.clone(), chat_body(json!({"model": "altan-pay", "metadata": {"thread_id": 7}, "messages": [{"role": "user", "content": "x"}]}))).await.unwrap()).await, 422, "invalid_request", "metadata.thread_id");
    let r = client
        .post(&messages)
        .header("idempotency-key", "")
        .json(&native_body("x"))
        .send()
        .await
        .unwrap();
    check(
        error_of(r).await,
        400,
        "invalid_idempotency_key",
        "Idempotency-Key",
    );

    assert_eq!(script.calls(), 0, "no malformed request reached the model");
}

#[test]
fn serve_without_tokens_refuses_a_public_address() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["serve", "--addr", "0.0.0.0:0", "--sandbox", "--db"])
        .arg(tempfile::tempdir().unwrap().path().join("s.db"))
        .env_remove("ALTAN_PAY_SERVER_TOKENS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
}

/// Two first requests for one new thread from two accounts, at the same time: one account
/// gets the thread, the other a 403, however they interleave (the claim is one step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_racing_for_a_new_thread_cannot_both_get_it() {
    let script = ScriptServer::start().await;
    for _ in 0..40 {
        script.text("Hello.");
    }
    let (gw, _sandbox) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        tokens: Some(TOKENS),
        ..Options::default()
    };
    let server = serve(&script, &gw, &dir.path().join("s.db"), options).await;
    let client = reqwest::Client::new();
    for round in 0..20 {
        let url = format!("{}/v1/threads/race-{round}/messages", server.base_url);
        let mut bodies = [native_body("hi"), native_body("hi")];
        bodies[1]["context"]["account_id"] = json!("ws_2");
        let send = |body: Value| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .post(url)
                    .bearer_auth("token-for-all")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let [a, b] = bodies;
        let (a, b) = tokio::join!(tokio::spawn(send(a)), tokio::spawn(send(b)));
        let mut statuses = [a.unwrap(), b.unwrap()];
        statuses.sort();
        assert_eq!(statuses, [200, 404], "round {round}");
    }
}
