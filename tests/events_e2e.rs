//! Stripe events end to end without the chat server: a checkout completed in the sandbox sends
//! a signed event, the events router verifies it, the pending store and a stand-in room get it.

use std::sync::Arc;
use std::time::Duration;

use altan_pay::events::{
    AccountMap, EventsConfig, EventsState, PendingStore, RoomConfig, RoomPoster,
    SqlitePendingStore, router, signature,
};
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::pay::{PayCall, PayClient, PayConfig, RouteTable};
use altan_pay::sync::{ObjectKind, Outcome, SyncMapping};
use serde_json::{Value, json};

#[path = "support/room.rs"]
mod room_api;
#[path = "support/wait.rs"]
mod wait;
use room_api::{assert_handoff, room_standin};

const SECRET: &str = "whsec_e2e";

fn seed() -> Value {
    json!({"accounts": {"ws_1": {
        "stripe_connect_id": "acct_test1",
        "products": [{"id": "prod_1", "name": "Pro"}],
        "prices": [{"id": "price_1", "product": "prod_1", "currency": "usd", "unit_amount": 2000,
            "recurring": {"interval": "month", "interval_count": 1}}]
    }}})
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn deliver(events_url: &str, body: &str, secret: &str, t: i64) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{events_url}/v1/stripe/events"))
        .header(
            "Stripe-Signature",
            signature::header(secret, t, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

struct World {
    events_url: String,
    state: Arc<EventsState>,
    store: Arc<SqlitePendingStore>,
    eventing: altan_pay::gateway::sandbox::EventingSandbox,
    pay: PayClient,
    _gateway: altan_pay::gateway::GatewayHandle,
}

impl World {
    /// A call for workspace `ws_1` through the gateway, owning what it needs so it can be
    /// spawned.
    fn call(
        &self,
        operation: &'static str,
        id: Option<String>,
        params: Value,
        key: String,
    ) -> impl Future<Output = Result<Value, altan_pay::pay::PayError>> + Send + 'static {
        let pay = self.pay.clone();
        async move {
            pay.call(PayCall {
                operation,
                account_id: "ws_1",
                stripe_connect_id: Some("acct_test1"),
                id: id.as_deref(),
                params,
                idempotency_key: Some(key),
            })
            .await
        }
    }
}

async fn world(room: Option<RoomConfig>) -> World {
    let store = Arc::new(SqlitePendingStore::in_memory().unwrap());
    let routes = RouteTable::embedded();
    // The events endpoint needs the gateway (checkout fetches) and the gateway's sink needs the
    // endpoint's URL: bind the endpoint first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let events_url = format!("http://{}", listener.local_addr().unwrap());
    let eventing = Sandbox::with_state(&seed())
        .unwrap()
        .with_event_sink(&format!("{events_url}/v1/stripe/events"), SECRET);
    let gateway = spawn(routes.clone(), Arc::new(eventing.clone()), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url))).unwrap();
    let config = EventsConfig::new(
        vec!["whsec_previous".into(), SECRET.into()],
        AccountMap::single("acct_test1", "ws_1"),
    );
    let dyn_store: Arc<dyn PendingStore> = store.clone();
    let mut state = EventsState::new(config, dyn_store.clone()).with_pay(pay.clone());
    if let Some(room) = room {
        state = state.with_room(RoomPoster::spawn(room, dyn_store, SyncMapping::default()));
    }
    let state = Arc::new(state);
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    World {
        events_url,
        state,
        store,
        eventing,
        pay,
        _gateway: gateway,
    }
}

async fn open_checkout(w: &World) -> String {
    let session = w
        .pay
        .call(PayCall {
            operation: "checkout_sessions.create",
            account_id: "ws_1",
            stripe_connect_id: Some("acct_test1"),
            id: None,
            params: json!({"mode": "subscription", "customer_email": "ada@example.com",
                "success_url": "https://example.com/ok",
                "line_items": [{"price": "price_1", "quantity": 1}]}),
            idempotency_key: Some("checkout-1".into()),
        })
        .await
        .unwrap();
    session["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_completed_reaches_the_store_and_one_batched_room_post() {
    let (room_url, room_log) = room_standin().await;
    let mut room = RoomConfig::new(&room_url, "agent_pay");
    room.threads.insert("ws_1".into(), "thread_ws_1".into());
    room.altan_member_id = Some("mem_altan".into());
    room.window = Duration::from_millis(1500);
    room.base_delay = Duration::from_millis(50);
    let w = world(Some(room)).await;

    let session_id = open_checkout(&w).await;
    let done = w
        .eventing
        .complete_checkout("ws_1", &session_id)
        .await
        .unwrap();
    let customer = done.created_customer.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let subscription = done.subscription.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.eventing.sink().flush().await;
    assert_eq!(
        w.eventing.sink().stats().delivered,
        3,
        "customer, subscription, checkout events"
    );

    // Within the batching window: the store holds one entry per object.
    let pending = w.store.pending("ws_1").await.unwrap();
    let mut got: Vec<(ObjectKind, String)> = pending
        .iter()
        .map(|e| (e.mutation.kind, e.mutation.id.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (ObjectKind::Customer, customer.clone()),
            (ObjectKind::Subscription, subscription.clone())
        ]
    );
    let listed: Value = reqwest::get(format!("{}/v1/accounts/ws_1/pending-syncs", w.events_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["pending"].as_array().unwrap().len(), 2);
    assert_eq!(
        listed["sync_plan"]["operations"].as_array().unwrap().len(),
        2
    );

    // One batched handoff, after one failed attempt.
    wait::until(Duration::from_secs(10), || {
        !room_log.lock().unwrap().posts.is_empty()
    })
    .await;
    {
        let log = room_log.lock().unwrap();
        assert_eq!(log.posts.len(), 1);
        assert_eq!(log.attempts, 2);
        let (thread, agent, text) = &log.posts[0];
        assert_eq!(thread, "thread_ws_1");
        assert_eq!(agent, "agent_pay");
        assert_handoff(text, &customer, &subscription);
    }
    // The poster forgets the entries once the room has answered, just after the stand-in
    // logged the post.
    let mut waited = 0;
    while !w.store.pending("ws_1").await.unwrap().is_empty() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(
        w.store.pending("ws_1").await.unwrap().is_empty(),
        "handed over"
    );

    // The same event again changes nothing.
    let completed = done
        .events
        .iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .unwrap()
        .to_string();
    let (status, body) = deliver(&w.events_url, &completed, SECRET, now()).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "duplicate");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(w.store.pending("ws_1").await.unwrap().is_empty());
    assert_eq!(room_log.lock().unwrap().posts.len(), 1);
}

/// Deleting a customer cancels its subscriptions: the sandbox announces each one
/// (`customer.subscription.deleted`, status canceled) before `customer.deleted`, so the pending
/// syncs cover both tables, as Stripe's own events would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_announces_its_canceled_subscriptions() {
    let w = world(None).await;
    let call = |operation: &'static str, id: Option<String>, params: Value, key: &str| {
        let call = w.call(operation, id, params, key.to_owned());
        async move { call.await.unwrap() }
    };
    let customer = call(
        "customers.create",
        None,
        json!({"email": "bo@example.com"}),
        "c1",
    )
    .await;
    let customer = customer["id"].as_str().unwrap().to_owned();
    let sub = call(
        "subscriptions.create",
        None,
        json!({"customer": customer, "items": [{"price": "price_1"}]}),
        "s1",
    )
    .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    call("customers.delete", Some(customer.clone()), json!({}), "d1").await;
    w.eventing.sink().flush().await;

    let pending = w.store.pending("ws_1").await.unwrap();
    let subscription = pending
        .iter()
        .find(|e| e.mutation.kind == ObjectKind::Subscription && e.mutation.id == sub)
        .expect("the canceled subscription is pending");
    assert_eq!(
        subscription.mutation.operation,
        "customer.subscription.deleted"
    );
    match &subscription.mutation.outcome {
        Outcome::Exists { object } => assert_eq!(object["status"], "canceled"),
        other => panic!("{other:?}"),
    }
    let gone = pending
        .iter()
        .find(|e| e.mutation.kind == ObjectKind::Customer && e.mutation.id == customer)
        .expect("the deleted customer is pending");
    assert_eq!(gone.mutation.outcome, Outcome::Deleted);
}

/// The model sends calls in parallel: a subscription created while its customer is being
/// deleted is either refused or canceled by the delete, and then announced like any other.
/// (The sandbox once listed the customer's subscriptions before waiting its turn, so one
/// created in between was canceled without an event and its mirror row never got Stripe's
/// `canceled_at`: the chaos run's last unexplained drift.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_created_during_its_customers_delete_is_announced() {
    let w = world(None).await;
    let call = |operation: &'static str, id: Option<String>, params: Value, key: String| {
        w.call(operation, id, params, key)
    };
    let mut created = Vec::new();
    for n in 0..40 {
        let customer = call(
            "customers.create",
            None,
            json!({"email": format!("c{n}@example.com")}),
            format!("c{n}"),
        )
        .await
        .unwrap();
        let customer = customer["id"].as_str().unwrap().to_owned();
        let create = tokio::spawn(call(
            "subscriptions.create",
            None,
            json!({"customer": customer, "items": [{"price": "price_1"}]}),
            format!("s{n}"),
        ));
        let delete = tokio::spawn(call(
            "customers.delete",
            Some(customer.clone()),
            json!({}),
            format!("d{n}"),
        ));
        delete.await.unwrap().unwrap();
        if let Ok(sub) = create.await.unwrap() {
            created.push(sub["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        !created.is_empty(),
        "no subscription was created before its delete"
    );
    w.eventing.sink().flush().await;
    let pending = w.store.pending("ws_1").await.unwrap();
    for sub in &created {
        let now = call(
            "subscriptions.retrieve",
            Some(sub.clone()),
            json!({}),
            format!("r-{sub}"),
        )
        .await
        .unwrap();
        assert_eq!(now["status"], "canceled", "the delete canceled {sub}");
        let entry = pending
            .iter()
            .find(|e| e.mutation.id == *sub)
            .unwrap_or_else(|| panic!("{sub} was canceled without an event"));
        match &entry.mutation.outcome {
            Outcome::Exists { object } => {
                assert_eq!(object["status"], "canceled", "{sub}");
                assert_eq!(object["canceled_at"], now["canceled_at"], "{sub}");
            }
            other => panic!("{sub}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_room_the_next_answer_carries_the_pending_syncs() {
    let w = world(None).await;
    let session_id = open_checkout(&w).await;
    let done = w
        .eventing
        .complete_checkout("ws_1", &session_id)
        .await
        .unwrap();
    w.eventing.sink().flush().await;
    let customer = done.created_customer.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The agent reads them, hands them over in its answer, and only then are they removed.
    let answer = agent_answer(&w, Arc::new(altan_pay::agent::MemoryStore::default()))
        .await
        .unwrap();
    let plan = answer
        .sync_plan
        .expect("the answer carries the pending syncs");
    let rows: Vec<String> = plan
        .operations()
        .iter()
        .map(|op| format!("{} {}", op.table, op.id))
        .collect();
    assert!(rows.contains(&format!("customers {customer}")), "{rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(answer.text.contains("ada@example.com"), "{}", answer.text);
    assert!(
        w.store.pending("ws_1").await.unwrap().is_empty(),
        "handed over once"
    );
}

/// An answer that cannot be saved does not count as handed over: the pending syncs stay for
/// the next answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_syncs_stay_when_the_answer_is_not_saved() {
    let w = world(None).await;
    let session_id = open_checkout(&w).await;
    w.eventing
        .complete_checkout("ws_1", &session_id)
        .await
        .unwrap();
    w.eventing.sink().flush().await;
    let failed = agent_answer(&w, Arc::new(Unsaveable)).await;
    assert!(failed.is_err());
    assert_eq!(
        w.store.pending("ws_1").await.unwrap().len(),
        2,
        "kept for the next answer"
    );
}

struct Unsaveable;

impl altan_pay::agent::SessionStore for Unsaveable {
    fn load<'a>(
        &'a self,
        _: &'a str,
    ) -> altan_pay::agent::StoreFuture<'a, Option<altan_pay::agent::Session>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn save<'a>(
        &'a self,
        _: &'a altan_pay::agent::Session,
    ) -> altan_pay::agent::StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Err(
            altan_pay::agent::StoreError::Failed("disk full".into()),
        )))
    }

    fn save_queued(&self, _: &altan_pay::agent::Session) {}
}

/// One answer of an agent whose pending source is the events part, with `store`.
async fn agent_answer(
    w: &World,
    store: Arc<dyn altan_pay::agent::SessionStore>,
) -> Result<altan_pay::agent::Answer, altan_pay::agent::AgentError> {
    let model = altan_pay::model::ScriptedModel::new(vec![altan_pay::model::ScriptedStep::text(
        "Here is what changed.",
    )]);
    let agent = altan_pay::agent::Agent::builder()
        .model(Arc::new(model))
        .pay(w.pay.clone())
        .store(store)
        .pending_source(w.state.clone())
        .build()
        .unwrap();
    let context = altan_pay::room::AgentContext {
        account_id: Some("ws_1".into()),
        ..Default::default()
    };
    let said = altan_pay::room::RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: altan_pay::room::MemberKind::User,
        text: "What changed?".into(),
    };
    agent.respond("t", &context, &[said]).await
}

fn event(id: &str, kind: &str, account: Option<&str>, object: Value, created: i64) -> String {
    let mut e = json!({"id": id, "object": "event", "type": kind, "created": created,
        "data": {"object": object}});
    if let Some(a) = account {
        e["account"] = json!(a);
    }
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let w = world(None).await;
    let url = &w.events_url;
    let t = now();
    let product = |name: &str, updated: i64| {
        json!({"id": "prod_9", "object": "product", "name": name, "active": true,
            "created": 1, "updated": updated, "metadata": {}})
    };
    let newer = event(
        "evt_new",
        "product.updated",
        Some("acct_test1"),
        product("New", t),
        t,
    );
    let older = event(
        "evt_old",
        "product.updated",
        Some("acct_test1"),
        product("Old", t - 60),
        t - 60,
    );

    // Wrong secret, stale timestamp, no header: 400, nothing stored.
    assert_eq!(deliver(url, &newer, "whsec_wrong", t).await.0, 400);
    assert_eq!(deliver(url, &newer, SECRET, t - 301).await.0, 400);
    let unsigned = reqwest::Client::new()
        .post(format!("{url}/v1/stripe/events"))
        .body(newer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 400);
    assert!(!w.store.is_processed("evt_new").await.unwrap());
    assert!(w.store.pending("ws_1").await.unwrap().is_empty());

    // Rotation: the previous secret still verifies.
    let (status, body) = deliver(url, &newer, "whsec_previous", t).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")));
    // Out of order: the older update arrives later and loses.
    let (status, body) = deliver(url, &older, SECRET, t).await;
    assert_eq!(
        (status, body["status"].as_str(), body["stale"].as_u64()),
        (200, Some("applied"), Some(1))
    );
    let pending = w.store.pending("ws_1").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, "evt_new");

    // Malformed (signed) bodies.
    for bad in [
        "not json",
        "{}",
        r#"{"id":"evt_x","object":"event","type":"product.updated","created":1}"#,
    ] {
        let (status, body) = deliver(url, bad, SECRET, t).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "event_malformed");
    }
    // Unknown type: acknowledged and ignored.
    let unknown = event(
        "evt_u",
        "invoice.paid",
        Some("acct_test1"),
        json!({"id": "in_1", "object": "invoice"}),
        t,
    );
    let (status, body) = deliver(url, &unknown, SECRET, t).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    // An account this endpoint does not serve, or no account at all: refused.
    let foreign = event(
        "evt_f",
        "product.updated",
        Some("acct_other"),
        product("X", t),
        t,
    );
    let (status, body) = deliver(url, &foreign, SECRET, t).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("account_not_served"))
    );
    let direct = event("evt_d", "product.updated", None, product("X", t), t);
    assert_eq!(deliver(url, &direct, SECRET, t).await.0, 403);
    assert_eq!(w.store.pending("ws_1").await.unwrap().len(), 1);
    let resp = reqwest::get(format!("{url}/v1/accounts/ws_other/pending-syncs"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
