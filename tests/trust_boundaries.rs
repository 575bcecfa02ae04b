//! Trust boundaries through the real binaries, played as an attacker would: a token scoped to
//! one workspace reaching another workspace's Stripe through a Connect id it supplies, the
//! `gateway --backend stripe` refusing a Connect id that is not the account's, HEAD on the
//! pending-syncs listing without a token, a thread used without an account taken over by a
//! scoped token, and a token telling "another account's thread" from "no thread".

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/process.rs"]
mod process;
#[path = "support/openai_script.rs"]
mod script;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altan_pay::pay::{PayCall, PayClient, PayConfig, PayError, RouteTable};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use process::{free_port, port_guard, wait_up};
use script::{ScriptServer, native_body};
use serde_json::{Value, json};

/// The workspace the attacker's token is scoped to, and its Connect account.
const MINE: (&str, &str) = ("ws_1", "acct_1Mine");
/// The other workspace, and the Connect account the attacker tries to reach.
const THEIRS: (&str, &str) = ("ws_2", "acct_2Theirs");
const TOKEN_WS1: &str = "token-for-ws1-only";
const TOKEN_WS2: &str = "token-for-ws2-only";
const TOKEN_ALL: &str = "token-for-the-platform";

/// One request the stand-in Stripe received.
#[derive(Debug, Clone)]
struct StripeSeen {
    method: String,
    path: String,
    stripe_account: Option<String>,
}

/// A stand-in Stripe on loopback: records every request's method, path and `Stripe-Account`
/// and answers plausible Stripe JSON for products and customers.
#[derive(Clone)]
struct StandInStripe {
    base_url: String,
    seen: Arc<Mutex<Vec<StripeSeen>>>,
}

impl StandInStripe {
    async fn start() -> StandInStripe {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(stripe_answer)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        StandInStripe {
            base_url: format!("http://{addr}"),
            seen,
        }
    }

    fn seen(&self) -> Vec<StripeSeen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every request that carried `Stripe-Account: account`.
    fn with_account(&self, account: &str) -> Vec<StripeSeen> {
        self.seen()
            .into_iter()
            .filter(|s| s.stripe_account.as_deref() == Some(account))
            .collect()
    }
}

async fn stripe_answer(
    State(seen): State<Arc<Mutex<Vec<StripeSeen>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    seen.lock().unwrap().push(StripeSeen {
        method: method.to_string(),
        path: path.clone(),
        stripe_account: headers
            .get("stripe-account")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let product = |id: &str| {
        json!({"id": id, "object": "product", "name": "Old plan", "active": true,
               "created": 1_700_000_000, "livemode": false, "metadata": {}})
    };
    let body = match (method.as_str(), path.as_str()) {
        ("GET", "/v1/products") => json!({"object": "list", "url": "/v1/products",
            "has_more": false, "data": [product("prod_StandIn1")]}),
        ("GET", "/v1/customers") => json!({"object": "list", "url": "/v1/customers",
            "has_more": false, "data": [{"id": "cus_StandIn1", "object": "customer",
            "email": "someone@example.com", "created": 1_700_000_000, "livemode": false,
            "metadata": {}}]}),
        ("GET", p) if p.starts_with("/v1/products/") => product(&p["/v1/products/".len()..]),
        ("DELETE", p) if p.starts_with("/v1/products/") => {
            json!({"id": &p["/v1/products/".len()..], "object": "product", "deleted": true})
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"type": "invalid_request_error",
                    "message": format!("Unrecognized request URL ({method}: {path})")}})),
            )
                .into_response();
        }
    };
    axum::Json(body).into_response()
}

/// A child process killed when the test ends, whatever the outcome.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to 10 s until something listens on `port`.
async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// `altan-pay gateway --backend stripe` in front of the stand-in, each workspace bound to its
/// own Connect account. Returns the process and its base URL.
async fn stripe_gateway(stripe: &StandInStripe) -> (Running, String) {
    let guard = port_guard().await;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args([
            "gateway",
            "--backend",
            "stripe",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--stripe-base-url",
            &stripe.base_url,
            "--connect-account",
            &format!("{}={},{}={}", MINE.0, MINE.1, THEIRS.0, THEIRS.1),
        ])
        .env("STRIPE_API_KEY", "sk_test_standin")
        .env_remove("ALTAN_PAY_TOKEN")
        .env_remove("STRIPE_BASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Running(child);
    wait_listening(port).await;
    drop(guard);
    (child, format!("http://127.0.0.1:{port}"))
}

/// `altan-pay serve` on its own port and database, the model scripted, with the three tokens
/// and `extra` flags.
async fn serve(
    dir: &std::path::Path,
    model: &ScriptServer,
    pay: &[&str],
    extra: &[&str],
) -> (Running, String) {
    let guard = port_guard().await;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .arg("serve")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(pay)
        .arg("--db")
        .arg(dir.join("sessions.db"))
        .arg("--events-db")
        .arg(dir.join("events.db"))
        .args(extra)
        .env("OPENAI_BASE_URL", &model.base_url)
        .env_remove("OPENAI_API_KEY")
        .env(
            "ALTAN_PAY_SERVER_TOKENS",
            format!("{TOKEN_WS1}=ws_1;{TOKEN_WS2}=ws_2;{TOKEN_ALL}=*"),
        )
        .env_remove("ALTAN_PAY_BASE_URL")
        .env_remove("ALTAN_PAY_DATABASE_URL")
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&base).await;
    drop(guard);
    (child, base)
}

/// What the model does when it gets a turn: lists products and customers, deletes the one
/// product it saw, and answers.
fn script_list_and_delete(model: &ScriptServer) {
    model.tool_call("c1", "get_products", json!({}));
    model.tool_call("c2", "get_customers", json!({}));
    model.tool_call("c3", "delete_product", json!({"id": "prod_StandIn1"}));
    model.text("Done.");
}

async fn status_and_body(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_token_for_one_workspace_cannot_reach_another_workspaces_stripe_with_a_connect_id_it_sends()
 {
    let stripe = StandInStripe::start().await;
    let (_gateway, gateway_url) = stripe_gateway(&stripe).await;
    let model = ScriptServer::start().await;
    script_list_and_delete(&model);
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = serve(dir.path(), &model, &["--pay-base-url", &gateway_url], &[]).await;
    let client = reqwest::Client::new();
    let ask = "List my products and customers, then delete the product Old plan.";

    // 1. In the body's trusted context.
    let mut body = native_body(ask);
    body["context"]["stripe_connect_id"] = json!(THEIRS.1);
    let r = client
        .post(format!("{base}/v1/threads/t_body/messages"))
        .bearer_auth(TOKEN_WS1)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 403, "a foreign Connect id in the body: {text}");
    assert!(
        text.contains(THEIRS.1) && text.contains(MINE.0),
        "the refusal names the mismatch: {text}"
    );

    // 2. In the X-Altan-Stripe-Connect-Id header.
    let r = client
        .post(format!("{base}/v1/threads/t_header/messages"))
        .bearer_auth(TOKEN_WS1)
        .header("x-altan-stripe-connect-id", THEIRS.1)
        .json(&native_body(ask))
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 403, "a foreign Connect id in the header: {text}");

    // 3. In the OpenAI-compatible endpoint's metadata.
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(TOKEN_WS1)
        .json(&json!({
            "model": "altan-pay",
            "messages": [{"role": "user", "content": ask}],
            "metadata": {"account_id": MINE.0, "stripe_connect_id": THEIRS.1},
        }))
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 403, "a foreign Connect id in metadata: {text}");

    assert_eq!(model.calls(), 0, "no refused request reached the model");
    assert!(
        stripe.with_account(THEIRS.1).is_empty(),
        "the stand-in Stripe received requests for the other workspace: {:?}",
        stripe.seen()
    );

    // The same token with its own Connect id (or none) runs, on its own Connect account only:
    // the refusals above were about the id, not a server that does not work.
    let mut body = native_body(ask);
    body["context"]["stripe_connect_id"] = json!(MINE.1);
    let r = client
        .post(format!("{base}/v1/threads/t_mine/messages"))
        .bearer_auth(TOKEN_WS1)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 200, "{text}");
    let seen = stripe.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.path == "/v1/products"),
        "the allowed turn listed products: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.stripe_account.as_deref() == Some(MINE.1)),
        "every Stripe request of ws_1's turn carried ws_1's Connect account: {seen:?}"
    );
}

#[tokio::test]
async fn the_stripe_gateway_refuses_a_connect_id_that_is_not_the_accounts_own() {
    let stripe = StandInStripe::start().await;
    let (_gateway, gateway_url) = stripe_gateway(&stripe).await;
    let routes = RouteTable::embedded().with_base_url(&gateway_url);
    let pay = PayClient::new(PayConfig::new(routes)).unwrap();
    // The route's query carries the Connect id: the client always names one.
    let list = |account: &'static str, connect: &'static str| {
        let pay = pay.clone();
        async move {
            pay.call(PayCall {
                operation: "products.list",
                account_id: account,
                stripe_connect_id: Some(connect),
                id: None,
                params: json!({}),
                idempotency_key: None,
            })
            .await
        }
    };
    let status_of = |result: Result<Value, PayError>| match result {
        Ok(v) => panic!("the gateway answered {v}"),
        Err(PayError::Stripe { status, error, .. }) => (status, error.message.clone()),
        Err(e) => panic!("not a Stripe-shaped refusal: {e}"),
    };
    // ws_1 naming ws_2's Connect account.
    let (status, message) = status_of(list(MINE.0, THEIRS.1).await);
    assert_eq!(status, 403, "{message:?}");
    // An account the gateway has no binding for, whatever Connect id it names.
    let (status, _) = status_of(list("ws_unbound", THEIRS.1).await);
    assert_eq!(status, 403);
    let (status, _) = status_of(list("ws_unbound", "acct_Unbound").await);
    assert_eq!(status, 403);
    assert!(
        stripe.seen().is_empty(),
        "nothing reached Stripe: {:?}",
        stripe.seen()
    );
    // The account's own Connect id goes through, with that account.
    list(MINE.0, MINE.1).await.unwrap();
    let seen = stripe.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.stripe_account.as_deref() == Some(MINE.1)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn head_on_the_pending_syncs_listing_needs_the_same_token_as_get() {
    let model = ScriptServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = serve(
        dir.path(),
        &model,
        &["--sandbox"],
        &[
            "--stripe-webhook-secret",
            "whsec_trust_boundaries",
            "--stripe-account-map",
            "acct_1Mine=ws_1",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/accounts/ws_1/pending-syncs");
    for method in [Method::HEAD, Method::GET] {
        let anonymous = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{method} without a token");
        let other = client
            .request(method.clone(), &url)
            .bearer_auth(TOKEN_WS2)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 403, "{method} with another account's token");
        let unknown = client
            .request(
                method.clone(),
                format!("{base}/v1/accounts/ws_none/pending-syncs"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            unknown.status(),
            401,
            "{method} of another account without a token"
        );
        let own = client
            .request(method.clone(), &url)
            .bearer_auth(TOKEN_WS1)
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200, "{method} with the account's own token");
    }
    // Every other route checks its token for HEAD as for GET.
    for path in ["/metrics", "/v1/threads/t_any", "/v1/models"] {
        let r = client.head(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "HEAD {path} without a token");
    }
}

#[tokio::test]
async fn a_thread_first_used_without_an_account_cannot_be_taken_by_a_scoped_token() {
    thread_used_without_an_account_stays_so(&[]).await;
}

#[tokio::test]
async fn a_thread_first_used_without_an_account_cannot_be_taken_on_postgresql_either() {
    let url = postgres::fresh_database(&postgres::database_url()).await;
    thread_used_without_an_account_stays_so(&["--database-url", &url]).await;
}

/// The platform uses a thread without an account; a scoped token then names its account on
/// it, and reads it: both 404, and the platform still uses it. `store` picks the database.
async fn thread_used_without_an_account_stays_so(store: &[&str]) {
    let model = ScriptServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = serve(dir.path(), &model, &["--sandbox"], store).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/threads/t_unscoped/messages");
    // The platform uses the thread without naming an account.
    model.text("Noted: the secret plan is called Falcon.");
    let mut body = native_body("Our secret plan is called Falcon.");
    body["context"]["account_id"] = Value::Null;
    let r = client
        .post(&url)
        .bearer_auth(TOKEN_ALL)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 200, "{text}");

    // A token scoped to ws_1 names its account on that thread, then reads it.
    model.text("Sure.");
    let r = client
        .post(&url)
        .bearer_auth(TOKEN_WS1)
        .json(&native_body("What was said before?"))
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 404, "the scoped token took the thread over: {text}");
    let r = client
        .get(format!("{base}/v1/threads/t_unscoped"))
        .bearer_auth(TOKEN_WS1)
        .send()
        .await
        .unwrap();
    let (status, text) = status_and_body(r).await;
    assert_eq!(status, 404, "{text}");
    assert!(!text.contains("Falcon"), "the history leaked: {text}");
    assert_eq!(
        model.calls(),
        1,
        "only the platform's turn reached the model"
    );

    // The platform still uses it, without an account.
    model.text("Still here.");
    let r = client
        .post(&url)
        .bearer_auth(TOKEN_ALL)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn another_accounts_thread_and_a_missing_thread_get_the_same_404() {
    let model = ScriptServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = serve(dir.path(), &model, &["--sandbox"], &[]).await;
    let client = reqwest::Client::new();
    model.text("Hello.");
    let r = client
        .post(format!("{base}/v1/threads/t_ws1/messages"))
        .bearer_auth(TOKEN_WS1)
        .json(&native_body("Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let get = |thread: &'static str| {
        client
            .get(format!("{base}/v1/threads/{thread}"))
            .bearer_auth(TOKEN_WS2)
            .send()
    };
    let theirs = status_and_body(get("t_ws1").await.unwrap()).await;
    let missing = status_and_body(get("t_none").await.unwrap()).await;
    assert_eq!(theirs.0, 404, "{}", theirs.1);
    assert_eq!(
        theirs, missing,
        "GET tells another account's thread from none"
    );

    let approve = |thread: &'static str| {
        client
            .post(format!("{base}/v1/threads/{thread}/approvals/appr_1"))
            .bearer_auth(TOKEN_WS2)
            .json(&json!({"approve": true}))
            .send()
    };
    let theirs = status_and_body(approve("t_ws1").await.unwrap()).await;
    let missing = status_and_body(approve("t_none").await.unwrap()).await;
    assert_eq!(theirs.0, 404, "{}", theirs.1);
    assert_eq!(
        theirs, missing,
        "an approval tells another account's thread from none"
    );

    // Posting to another account's thread is the same 404 as reading a missing one.
    let mut body = native_body("Hi");
    body["context"]["account_id"] = json!("ws_2");
    let r = client
        .post(format!("{base}/v1/threads/t_ws1/messages"))
        .bearer_auth(TOKEN_WS2)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_body(r).await, missing);
    // Naming no account on another account's thread answers what naming none always does.
    body["context"]["account_id"] = Value::Null;
    let on_theirs = client
        .post(format!("{base}/v1/threads/t_ws1/messages"))
        .bearer_auth(TOKEN_WS2)
        .json(&body)
        .send()
        .await
        .unwrap();
    let on_none = client
        .post(format!("{base}/v1/threads/t_none2/messages"))
        .bearer_auth(TOKEN_WS2)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_body(on_theirs).await,
        status_and_body(on_none).await
    );
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn the_stripe_gateway_without_account_bindings_refuses_to_start() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_altan-pay"))
        .args(["gateway", "--backend", "stripe", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--stripe-base-url", "http://127.0.0.1:9"])
        .env("STRIPE_API_KEY", "sk_test_standin")
        .env_remove("ALTAN_PAY_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the gateway started without any account binding");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--connect-account"), "{stderr}");
}
