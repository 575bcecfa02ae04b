//! Signed Stripe events for the sandbox's own changes: a wrapper [`Backend`] that emits one
//! event per successful mutation to a configured URL, and completing a checkout session.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::state::Changes;
use super::util::random_id;
use super::{Sandbox, Tx, billing, connect_id_for, params, subscriptions};
use crate::gateway::error::GatewayRefusal;
use crate::gateway::{Backend, PayRequest, PayResponse};
use crate::retry::{Attempt, RetryPolicy};

/// The Stripe event type a successful operation causes; `None` for reads and checkout creation.
pub(crate) fn event_type_for(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "products.create" => "product.created",
        "products.update" => "product.updated",
        "products.delete" => "product.deleted",
        "prices.create" => "price.created",
        "prices.update" => "price.updated",
        "customers.create" => "customer.created",
        "customers.update" => "customer.updated",
        "customers.delete" => "customer.deleted",
        "subscriptions.create" => "customer.subscription.created",
        "subscriptions.update" => "customer.subscription.updated",
        // Stripe reports a canceled subscription as deleted.
        "subscriptions.cancel" => "customer.subscription.deleted",
        "coupons.create" => "coupon.created",
        "coupons.update" => "coupon.updated",
        "coupons.delete" => "coupon.deleted",
        "promotion_codes.create" => "promotion_code.created",
        "promotion_codes.update" => "promotion_code.updated",
        _ => return None,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Stripe event object for a Connect account.
pub(crate) fn stripe_event(
    event_type: &str,
    connect_id: &str,
    object: &Value,
    created: i64,
) -> Value {
    json!({
        "id": random_id("evt_", 24),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": event_type,
        "created": created,
        "account": connect_id,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object},
    })
}

/// Where events go and how hard to try; `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct EventSinkConfig {
    /// The webhook endpoint every event is POSTed to.
    pub url: String,
    /// The endpoint secret that signs every delivery.
    pub secret: secrecy::SecretString,
    /// Tries per event, the first included, before the sink gives it up (5 by default).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles on each further one, up to 10 s (200 ms
    /// by default).
    pub base_delay: Duration,
    /// Per-delivery HTTP timeout (10 s by default).
    pub timeout: Duration,
}

impl EventSinkConfig {
    /// Deliveries to `url` signed with `secret`, with the default retries and timeout.
    pub fn new(url: &str, secret: &str) -> EventSinkConfig {
        EventSinkConfig {
            url: url.to_owned(),
            secret: secret.into(),
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
        }
    }
}

enum SinkMessage {
    Event(Value),
    Flush(oneshot::Sender<()>),
}

/// Counts of what the sink did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    /// Events the endpoint acknowledged with a 2xx.
    pub delivered: u64,
    /// Events given up after the last try or a refusal that is not retried.
    pub failed: u64,
}

/// Delivers events in order, one at a time, signed like Stripe, retrying 429, 5xx and
/// connection errors with exponential backoff. Needs a Tokio runtime.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<SinkMessage>,
    stats: Arc<Mutex<SinkStats>>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EventSink {
    /// Starts the delivery task on the current Tokio runtime.
    pub fn spawn(config: EventSinkConfig) -> EventSink {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        tokio::spawn(deliver_all(config, rx, stats.clone()));
        EventSink { tx, stats }
    }

    /// Queues one event for delivery.
    pub fn send(&self, event: Value) {
        let _ = self.tx.send(SinkMessage::Event(event));
    }

    /// Waits until every event queued before this call was delivered or given up.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(SinkMessage::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// What the sink delivered and gave up so far.
    pub fn stats(&self) -> SinkStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

async fn deliver_all(
    config: EventSinkConfig,
    mut rx: mpsc::UnboundedReceiver<SinkMessage>,
    stats: Arc<Mutex<SinkStats>>,
) {
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!("event sink disabled: cannot build the HTTP client: {e}");
            return;
        }
    };
    while let Some(message) = rx.recv().await {
        match message {
            SinkMessage::Flush(done) => {
                let _ = done.send(());
            }
            SinkMessage::Event(event) => {
                let ok = deliver(&config, &http, &event).await;
                if let Ok(mut s) = stats.lock() {
                    if ok {
                        s.delivered += 1;
                    } else {
                        s.failed += 1;
                    }
                }
            }
        }
    }
}

/// Signs and posts one event; `true` once the endpoint answered 2xx.
pub async fn deliver(config: &EventSinkConfig, http: &reqwest::Client, event: &Value) -> bool {
    let body = event.to_string();
    let id = event.get("id").and_then(Value::as_str).unwrap_or("?");
    RetryPolicy::doubling(
        config.max_attempts,
        config.base_delay,
        Duration::from_secs(10),
    )
    .run(|attempt| {
        // Signed at each attempt, like Stripe: a retry carries a fresh timestamp.
        let header = crate::stripe::signature::header(
            secrecy::ExposeSecret::expose_secret(&config.secret),
            unix_now(),
            body.as_bytes(),
        );
        let sent = http
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", header)
            .body(body.clone())
            .send();
        async move {
            match sent.await {
                Ok(r) if r.status().is_success() => {
                    debug!(event = id, "event delivered");
                    Attempt::Done(true)
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    warn!(event = id, status = %r.status(), "event refused by the endpoint");
                    Attempt::Done(false)
                }
                Ok(r) => {
                    warn!(event = id, attempt, status = %r.status(), "event delivery failed");
                    Attempt::Again
                }
                Err(e) => {
                    warn!(event = id, attempt, "event delivery failed: {e}");
                    Attempt::Again
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// What completing a checkout session made, and the events Stripe would send for it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutCompletion {
    /// The checkout session, now `complete`.
    pub session: Value,
    /// The customer, when checkout created one.
    pub created_customer: Option<Value>,
    /// The subscription, for a `subscription` mode session.
    pub subscription: Option<Value>,
    /// `customer.created`, `customer.subscription.created`, `checkout.session.completed`.
    pub events: Vec<Value>,
}

impl Sandbox {
    /// Wraps this sandbox so every successful mutation sends a signed event to `url`.
    pub fn with_event_sink(self, url: &str, secret: &str) -> EventingSandbox {
        EventingSandbox::new(self, EventSink::spawn(EventSinkConfig::new(url, secret)))
    }

    /// Completes an open checkout session as if the customer paid: creates the customer
    /// (unless the session named one) and, in subscription mode, the subscription, atomically.
    pub fn complete_checkout(
        &self,
        account: &str,
        session_id: &str,
    ) -> Result<CheckoutCompletion, GatewayRefusal> {
        let mut state = self.lock();
        let connect_id = connect_id_for(&state, account);
        let mut tx = Tx::new(&state, account);
        let now = tx.now;
        let mut session = tx
            .get("checkout.session", session_id)
            .ok_or_else(|| GatewayRefusal::missing("checkout.session", session_id))?;
        if session["status"] != json!("open") {
            return Err(GatewayRefusal::invalid(format!(
                "The checkout session '{session_id}' is not open (status {}).",
                session["status"]
            )));
        }
        let mode = session["mode"].as_str().unwrap_or("payment").to_owned();
        let mut created_customer = None;
        let customer_id = match session["customer"].as_str() {
            Some(id) => billing::live_customer(&tx, id)?["id"].clone(),
            None => {
                let mut p = Map::new();
                let email = session["customer_email"]
                    .as_str()
                    .or_else(|| session["customer_details"]["email"].as_str());
                if let Some(email) = email {
                    p.insert("email".into(), json!(email));
                }
                let fields = params::accepted("customers.create")
                    .ok_or_else(|| GatewayRefusal::internal("no customers.create parameters"))?;
                let p = params::validate(fields, &p)?;
                let customer = billing::create_customer(&mut tx, &p)?;
                let id = customer["id"].clone();
                created_customer = Some(customer);
                id
            }
        };
        let mut subscription = None;
        if mode == "subscription" {
            let stored = tx.get("checkout.line_items", session_id);
            let items = stored
                .as_ref()
                .and_then(|s| s["data"].as_array())
                .or_else(|| session["line_items"]["data"].as_array())
                .or_else(|| session["line_items"].as_array())
                .cloned()
                .ok_or_else(|| {
                    GatewayRefusal::invalid(format!(
                        "The checkout session '{session_id}' has no line items to subscribe to."
                    ))
                })?;
            let items: Vec<Value> = items
                .iter()
                .map(|i| json!({"price": i["price"], "quantity": i["quantity"].as_i64().unwrap_or(1)}))
                .collect();
            let mut p = Map::new();
            p.insert("customer".into(), customer_id.clone());
            p.insert("items".into(), Value::Array(items));
            if let Some(coupon) = session["discounts"][0]["coupon"].as_str() {
                p.insert("discounts".into(), json!([{"coupon": coupon}]));
            }
            let fields = params::accepted("subscriptions.create")
                .ok_or_else(|| GatewayRefusal::internal("no subscriptions.create parameters"))?;
            let p = params::validate(fields, &p)?;
            subscription = Some(subscriptions::create(&mut tx, &p)?);
        }
        session["status"] = json!("complete");
        session["payment_status"] = json!(if mode == "setup" {
            "no_payment_required"
        } else {
            "paid"
        });
        session["customer"] = customer_id;
        session["subscription"] = subscription
            .as_ref()
            .map(|s| s["id"].clone())
            .unwrap_or(Value::Null);
        tx.put("checkout.session", session.clone());
        let writes = std::mem::take(&mut tx.writes);
        let changes = Changes {
            objects: writes,
            ..Changes::default()
        };
        state.commit(account, changes).map_err(|e| {
            GatewayRefusal::internal(format!("the sandbox could not save the change: {e}"))
        })?;
        let mut events = Vec::new();
        if let Some(c) = &created_customer {
            events.push(stripe_event("customer.created", &connect_id, c, now));
        }
        if let Some(s) = &subscription {
            events.push(stripe_event(
                "customer.subscription.created",
                &connect_id,
                s,
                now,
            ));
        }
        events.push(stripe_event(
            "checkout.session.completed",
            &connect_id,
            &session,
            now,
        ));
        Ok(CheckoutCompletion {
            session,
            created_customer,
            subscription,
            events,
        })
    }
}

/// The sandbox behind the gateway, sending a signed event after each successful mutation.
#[derive(Clone)]
pub struct EventingSandbox {
    sandbox: Sandbox,
    sink: EventSink,
    /// (account, idempotency key) already announced: a replayed request sends nothing, as in Stripe.
    announced: Arc<Mutex<HashSet<(String, String)>>>,
    /// Held from a mutation's commit to its events' queueing, so events leave in commit order
    /// even for parallel writes to one object (their versions may tie within a second).
    order: Arc<tokio::sync::Mutex<()>>,
}

impl EventingSandbox {
    /// Sends the events of `sandbox`'s successful mutations to `sink`.
    pub fn new(sandbox: Sandbox, sink: EventSink) -> EventingSandbox {
        EventingSandbox {
            sandbox,
            sink,
            announced: Arc::default(),
            order: Arc::default(),
        }
    }

    /// The wrapped sandbox (changes made through it directly send no events).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The sink the events go to.
    pub fn sink(&self) -> &EventSink {
        &self.sink
    }

    /// [`Sandbox::complete_checkout`], then its events to the sink.
    pub async fn complete_checkout(
        &self,
        account: &str,
        session_id: &str,
    ) -> Result<CheckoutCompletion, GatewayRefusal> {
        let _in_order = self.order.lock().await;
        let sandbox = self.sandbox.clone();
        let (account, session_id) = (account.to_owned(), session_id.to_owned());
        let done =
            tokio::task::spawn_blocking(move || sandbox.complete_checkout(&account, &session_id))
                .await
                .map_err(|e| GatewayRefusal::internal(format!("sandbox task failed: {e}")))??;
        for event in &done.events {
            self.sink.send(event.clone());
        }
        Ok(done)
    }

    /// The ids of a customer's subscriptions that have not ended, read just before a delete.
    async fn live_subscriptions(&self, like: &PayRequest, customer: &str) -> Vec<String> {
        let mut params = Map::new();
        params.insert("customer".into(), json!(customer));
        params.insert("limit".into(), json!("100"));
        let list = Backend::handle(
            &self.sandbox,
            PayRequest {
                operation: "subscriptions.list".into(),
                id: None,
                params,
                idempotency_key: None,
                ..like.clone()
            },
        )
        .await;
        list.body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                !matches!(
                    s["status"].as_str(),
                    Some("canceled" | "incomplete_expired")
                )
            })
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// A subscription as it is now.
    async fn subscription(&self, like: &PayRequest, id: &str) -> Option<Value> {
        let found = Backend::handle(
            &self.sandbox,
            PayRequest {
                operation: "subscriptions.retrieve".into(),
                id: Some(id.to_owned()),
                params: Map::new(),
                idempotency_key: None,
                ..like.clone()
            },
        )
        .await;
        (found.status == 200).then_some(found.body)
    }

    /// Whether a successful request is new (not an idempotent replay of an announced one).
    fn first_time(&self, account: &str, key: Option<String>) -> bool {
        let Some(key) = key else {
            return true;
        };
        match self.announced.lock() {
            Ok(mut seen) => seen.insert((account.to_owned(), key)),
            Err(_) => true,
        }
    }
}

impl Backend for EventingSandbox {
    fn handle(
        &self,
        request: PayRequest,
    ) -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>> {
        Box::pin(async move {
            let event_type = event_type_for(&request.operation);
            let connect_id = request.stripe_connect_id.clone();
            let key = request.idempotency_key.clone();
            let account = request.account_id.clone();
            let _in_order = match event_type {
                Some(_) => Some(self.order.lock().await),
                None => None,
            };
            // Deleting a customer cancels its subscriptions; Stripe announces each of them.
            // Read under the order lock: a subscription created by a parallel call is either
            // in this list or created after the delete (and refused), never canceled unseen.
            let cascade = match (request.operation.as_str(), &request.id) {
                ("customers.delete", Some(customer)) => {
                    self.live_subscriptions(&request, customer).await
                }
                _ => Vec::new(),
            };
            let response = Backend::handle(&self.sandbox, request.clone()).await;
            if let (Some(event_type), Some(connect_id), 200) =
                (event_type, connect_id, response.status)
                && self.first_time(&account, key)
            {
                let now = unix_now();
                for id in cascade {
                    if let Some(canceled) = self.subscription(&request, &id).await {
                        self.sink.send(stripe_event(
                            "customer.subscription.deleted",
                            &connect_id,
                            &canceled,
                            now,
                        ));
                    }
                }
                self.sink
                    .send(stripe_event(event_type, &connect_id, &response.body, now));
            }
            response
        })
    }
}
