//! Event intake as a library: signature, parsing, account resolution, the mutations an event
//! stands for (checkout sessions fetch their customer and subscription), and the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::pending_syncs::{
    Applied, EventRecord, PendingEntry, PendingStore, StoreError, Versioned,
};
use super::poster::RoomPoster;
use crate::pay::{PayCall, PayClient};
use crate::stripe::signature::{self, DEFAULT_TOLERANCE_SECS, WebhookSignatureError};
use crate::sync::{
    Mutation, MutationSource, ObjectKind, Outcome, SyncLedger, SyncMapping, SyncPlan,
};

/// Which Altan accounts this endpoint serves, and how an event finds its account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountMap {
    /// Stripe Connect id (`acct_...`, the event's `account`) → Altan account id.
    pub connect: HashMap<String, String>,
    /// The account of events without `account` (a direct, non-Connect endpoint).
    pub fixed: Option<String>,
}

impl AccountMap {
    /// One account, reached by its Connect id.
    pub fn single(connect_id: &str, account_id: &str) -> AccountMap {
        AccountMap {
            connect: HashMap::from([(connect_id.to_owned(), account_id.to_owned())]),
            fixed: None,
        }
    }

    /// The Altan account of an event; `None` means this endpoint does not serve it.
    pub fn resolve(&self, connect_id: Option<&str>) -> Option<&str> {
        match connect_id {
            Some(id) => self.connect.get(id).map(String::as_str),
            None => self.fixed.as_deref(),
        }
    }

    /// Whether an Altan account is served here.
    pub fn serves(&self, account_id: &str) -> bool {
        self.fixed.as_deref() == Some(account_id) || self.connect.values().any(|a| a == account_id)
    }

    /// The Connect id of a served account, when the map knows it.
    pub(crate) fn connect_id_of(&self, account_id: &str) -> Option<&str> {
        self.connect
            .iter()
            .find(|(_, a)| a.as_str() == account_id)
            .map(|(c, _)| c.as_str())
    }
}

/// Settings of the events endpoint; `Debug` shows no secret (they are [`SecretString`]s).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Endpoint secrets (`whsec_...`); several during a rotation, any one may sign.
    pub secrets: Vec<SecretString>,
    /// How far a signature's timestamp may be from now (Stripe: 5 minutes).
    pub tolerance: Duration,
    /// Which accounts are served here, and how an event finds its account.
    pub accounts: AccountMap,
    /// The database tables and columns the pending syncs are written for.
    pub mapping: SyncMapping,
    /// The key the pending-syncs plan is signed with (`serve --plan-signing-key`).
    pub plan_key: Option<crate::sync::PlanSigningKey>,
}

impl EventsConfig {
    /// An endpoint for `accounts` signed by any of `secrets`, with Stripe's 5-minute
    /// tolerance, the default mapping and unsigned plans.
    pub fn new(secrets: Vec<SecretString>, accounts: AccountMap) -> EventsConfig {
        EventsConfig {
            secrets,
            tolerance: Duration::from_secs(DEFAULT_TOLERANCE_SECS as u64),
            accounts,
            mapping: SyncMapping::default(),
            plan_key: None,
        }
    }
}

/// The event types that become mutations; others are acknowledged and ignored.
pub const HANDLED_EVENT_TYPES: &[&str] = &[
    "product.created",
    "product.updated",
    "product.deleted",
    "price.created",
    "price.updated",
    "price.deleted",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
    "promotion_code.created",
    "promotion_code.updated",
    "promotion_code.deleted",
    "checkout.session.completed",
];

/// Why an event was refused; [`IntakeError::status`] is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The `Stripe-Signature` header is missing, malformed, too old or signed by no known
    /// secret (400).
    #[error("bad signature: {0}")]
    Signature(#[from] WebhookSignatureError),
    /// The body is not a Stripe event this endpoint can read (400).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The event's account is not served here; names it (403).
    #[error("this endpoint does not serve {0}")]
    NotServed(String),
    /// A completed checkout session's objects could not be fetched (502; a redelivery may
    /// succeed).
    #[error("cannot fetch the checkout session's objects through the Altan Pay API: {0}")]
    Fetch(String),
    /// The pending-sync store failed (500; nothing was recorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntakeError {
    /// 400 for what the sender must fix, 403 for an account not served here, 5xx for what a
    /// redelivery can fix (Stripe retries non-2xx answers).
    pub fn status(&self) -> u16 {
        match self {
            IntakeError::Signature(_) | IntakeError::Malformed(_) => 400,
            IntakeError::NotServed(_) => 403,
            IntakeError::Fetch(_) => 502,
            IntakeError::Store(_) => 500,
        }
    }

    /// The machine-readable `code` of the error body, e.g. `signature_invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::Signature(_) => "signature_invalid",
            IntakeError::Malformed(_) => "event_malformed",
            IntakeError::NotServed(_) => "account_not_served",
            IntakeError::Fetch(_) => "pay_api_unavailable",
            IntakeError::Store(_) => "store_failed",
        }
    }
}

/// What happened to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Stripe's event id, `evt_...`.
    pub event_id: String,
    /// Stripe's event type, e.g. `product.updated`.
    pub event_type: String,
    /// The Altan account the event was resolved to.
    pub account_id: String,
    /// `applied`, `duplicate` or `ignored` (a type this endpoint does not handle, or a
    /// checkout session whose objects Stripe does not have).
    pub status: &'static str,
    /// Mutations queued as pending syncs (newer than what was applied before).
    pub queued: usize,
    /// Mutations dropped as older than what was already applied for their object.
    pub stale: usize,
    /// Why an event was ignored or applied only in part: the objects it named that Stripe
    /// does not have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything the router needs; the server shares it behind an `Arc`.
pub struct EventsState {
    config: EventsConfig,
    store: Arc<dyn PendingStore>,
    pay: Option<PayClient>,
    room: Option<RoomPoster>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for EventsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsState")
            .field(
                "secrets",
                &format!("<{} redacted>", self.config.secrets.len()),
            )
            .field("accounts", &self.config.accounts)
            .finish()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl EventsState {
    /// The endpoint's state over `store`, without a Pay client or a room poster.
    pub fn new(config: EventsConfig, store: Arc<dyn PendingStore>) -> EventsState {
        EventsState {
            config,
            store,
            pay: None,
            room: None,
            clock: Arc::new(unix_now),
        }
    }

    /// The Altan Pay client that fetches a completed checkout session's objects.
    pub fn with_pay(mut self, pay: PayClient) -> Self {
        self.pay = Some(pay);
        self
    }

    /// Posts each account's new pending syncs to its room thread.
    pub fn with_room(mut self, room: RoomPoster) -> Self {
        self.room = Some(room);
        self
    }

    /// The settings it was built with.
    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// The pending-sync store events are recorded in.
    pub fn store(&self) -> &Arc<dyn PendingStore> {
        &self.store
    }

    /// Queues Stripe changes the runtime made outside a chat answer (an MCP tool call) as the
    /// account's pending syncs, under `record` (its id makes a repeat a duplicate), and wakes the
    /// room poster for the account as a Stripe event does: the database hears of them even when
    /// no chat answer follows.
    pub async fn queue_changes(
        &self,
        record: &EventRecord,
        changes: &[Versioned],
    ) -> Result<Applied, StoreError> {
        let applied = self.store.apply(record, changes).await?;
        if let Applied::Applied { queued, .. } = applied
            && queued > 0
            && let Some(room) = &self.room
        {
            room.notify(&record.account_id);
        }
        Ok(applied)
    }

    /// Verifies, parses and applies one delivery; nothing changes unless it is `Ok`.
    pub async fn receive(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<Receipt, IntakeError> {
        let outcome = self.verify_and_apply(signature_header, body).await;
        crate::metrics::global().stripe_event(match &outcome {
            Ok(receipt) => receipt.status,
            Err(_) => "rejected",
        });
        outcome
    }

    async fn verify_and_apply(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<Receipt, IntakeError> {
        let tolerance = i64::try_from(self.config.tolerance.as_secs()).unwrap_or(i64::MAX);
        let secrets: Vec<&str> = self
            .config
            .secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        signature::verify(signature_header, body, &secrets, (self.clock)(), tolerance)?;
        let event: Value = serde_json::from_slice(body)
            .map_err(|e| IntakeError::Malformed(format!("the body is not JSON: {e}")))?;
        let field = |name: &str| {
            event
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| IntakeError::Malformed(format!("no string `{name}`")))
        };
        let event_id = field("id")?.to_owned();
        let event_type = field("type")?.to_owned();
        if event.get("object").and_then(Value::as_str) != Some("event") {
            return Err(IntakeError::Malformed("`object` is not \"event\"".into()));
        }
        let created = event
            .get("created")
            .and_then(Value::as_i64)
            .ok_or_else(|| IntakeError::Malformed("no integer `created`".into()))?;
        if !event.pointer("/data/object").is_some_and(Value::is_object) {
            return Err(IntakeError::Malformed("no object `data.object`".into()));
        }
        let connect = match event.get("account") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(IntakeError::Malformed("`account` is not a string".into())),
        };
        let account_id = self
            .config
            .accounts
            .resolve(connect)
            .ok_or_else(|| {
                IntakeError::NotServed(match connect {
                    Some(c) => format!("the Stripe account {c}"),
                    None => "events without a Connect `account`".to_owned(),
                })
            })?
            .to_owned();
        let record = EventRecord {
            id: event_id.clone(),
            event_type: event_type.clone(),
            account_id: account_id.clone(),
            created,
        };
        let receipt = |status, queued, stale| Receipt {
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            account_id: account_id.clone(),
            status,
            queued,
            stale,
            reason: None,
        };
        if !HANDLED_EVENT_TYPES.contains(&event_type.as_str()) {
            info!(
                event_id,
                event_type, "Stripe event type not handled; acknowledged and ignored"
            );
            return Ok(receipt("ignored", 0, 0));
        }
        if self.store.is_processed(&event_id).await? {
            return Ok(receipt("duplicate", 0, 0));
        }
        let mut missing = Vec::new();
        let mutations = if event_type == "checkout.session.completed" {
            let found = self
                .checkout_mutations(&event, &event_id, &account_id, connect, created)
                .await?;
            missing = found.missing;
            found.mutations
        } else {
            let mutation = Mutation::from_stripe_event(&event)
                .map_err(|e| IntakeError::Malformed(e.to_string()))?;
            let version = match &mutation.outcome {
                Outcome::Exists { object } => version_of(object, created),
                Outcome::Deleted => created,
            };
            vec![Versioned { mutation, version }]
        };
        let applied = self.store.apply(&record, &mutations).await?;
        // Stripe has none of the objects the event names: a redelivery cannot change that, so
        // the event is acknowledged (Stripe would otherwise redeliver it for days) and logged.
        if !missing.is_empty() {
            let reason = format!("Stripe has no {}", missing.join(" and no "));
            let status = if mutations.is_empty() {
                warn!(event_id, event_type, reason, "Stripe event ignored");
                "ignored"
            } else {
                warn!(event_id, event_type, reason, "Stripe event applied in part");
                "applied"
            };
            let (queued, stale) = match applied {
                Applied::Duplicate => (0, 0),
                Applied::Applied { queued, stale } => (queued, stale),
            };
            if queued > 0
                && let Some(room) = &self.room
            {
                room.notify(&account_id);
            }
            return Ok(Receipt {
                reason: Some(reason),
                ..receipt(status, queued, stale)
            });
        }
        match applied {
            Applied::Duplicate => Ok(receipt("duplicate", 0, 0)),
            Applied::Applied { queued, stale } => {
                if stale > 0 {
                    info!(event_id, stale, "older than what was applied; not queued");
                }
                if queued > 0
                    && let Some(room) = &self.room
                {
                    room.notify(&account_id);
                }
                Ok(receipt("applied", queued, stale))
            }
        }
    }

    async fn checkout_mutations(
        &self,
        event: &Value,
        event_id: &str,
        account_id: &str,
        connect: Option<&str>,
        created: i64,
    ) -> Result<CheckoutObjects, IntakeError> {
        let session = event
            .pointer("/data/object")
            .filter(|o| o.get("object").and_then(Value::as_str) == Some("checkout.session"))
            .ok_or_else(|| IntakeError::Malformed("no checkout session in `data.object`".into()))?;
        let id_of = |name: &str| match session.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let wanted = [
            (
                "customers.retrieve",
                ObjectKind::Customer,
                id_of("customer"),
            ),
            (
                "subscriptions.retrieve",
                ObjectKind::Subscription,
                id_of("subscription"),
            ),
        ];
        let mut found = CheckoutObjects::default();
        if wanted.iter().all(|(_, _, id)| id.is_none()) {
            return Ok(found);
        }
        let pay = self.pay.as_ref().ok_or_else(|| {
            IntakeError::Fetch("no Altan Pay API is configured for checkout sessions".into())
        })?;
        let connect_id = match connect.map(str::to_owned).or_else(|| {
            self.config
                .accounts
                .connect_id_of(account_id)
                .map(str::to_owned)
        }) {
            Some(c) => c,
            None => pay
                .stripe_connect_id(account_id)
                .await
                .map_err(|e| IntakeError::Fetch(e.to_string()))?,
        };
        for (operation, kind, id) in wanted {
            let Some(id) = id else { continue };
            let fetched = pay
                .call(PayCall {
                    operation,
                    account_id,
                    stripe_connect_id: Some(&connect_id),
                    id: Some(&id),
                    params: json!({}),
                    idempotency_key: None,
                })
                .await;
            let object = match fetched {
                Ok(object) => object,
                Err(e) if e.is_not_found() => {
                    found.missing.push(format!("{} {id}", kind.as_str()));
                    continue;
                }
                Err(e) => return Err(IntakeError::Fetch(format!("{operation} {id}: {e}"))),
            };
            let deleted = object.get("deleted").and_then(Value::as_bool) == Some(true);
            let version = version_of(&object, created);
            found.mutations.push(Versioned {
                mutation: Mutation {
                    source: MutationSource::StripeEvent {
                        event_id: event_id.to_owned(),
                    },
                    operation: "checkout.session.completed".to_owned(),
                    kind,
                    id,
                    outcome: if deleted {
                        Outcome::Deleted
                    } else {
                        Outcome::Exists { object }
                    },
                },
                version,
            });
        }
        Ok(found)
    }

    /// The account's pending entries, oldest first (for `GET .../pending-syncs`).
    pub async fn pending(&self, account_id: &str) -> Result<Vec<PendingEntry>, StoreError> {
        self.store.pending(account_id).await
    }

    /// The plan the pending entries make, without taking them.
    pub(crate) fn pending_plan(&self, entries: &[PendingEntry]) -> Option<SyncPlan> {
        let mut ledger = SyncLedger::new();
        for e in entries {
            ledger.record(e.mutation.clone());
        }
        let mut plan = ledger.plan(&self.config.mapping, &())?;
        if let Some(key) = &self.config.plan_key {
            plan.sign(key);
        }
        Some(plan)
    }
}

/// What a completed checkout session's objects are in Stripe.
#[derive(Default)]
struct CheckoutObjects {
    /// The objects found, as mutations.
    mutations: Vec<Versioned>,
    /// The objects Stripe answered 404 for (`customer cus_...`).
    missing: Vec<String>,
}

/// The object's `updated` when Stripe gives one, else the event's `created`.
fn version_of(object: &Value, created: i64) -> i64 {
    object
        .get("updated")
        .and_then(Value::as_i64)
        .unwrap_or(created)
}

/// The agent reads an account's pending syncs before it composes an answer and removes them
/// once the answer is saved.
impl crate::agent::PendingSource for EventsState {
    fn pending<'a>(
        &'a self,
        account_id: &'a str,
    ) -> crate::agent::StoreFuture<'a, Vec<(i64, Mutation)>> {
        Box::pin(async move {
            let entries = EventsState::pending(self, account_id).await?;
            Ok(entries.into_iter().map(|e| (e.seq, e.mutation)).collect())
        })
    }

    fn handed_over<'a>(
        &'a self,
        account_id: &'a str,
        receipts: &'a [i64],
    ) -> crate::agent::StoreFuture<'a, ()> {
        self.store.remove(account_id, receipts)
    }
}
