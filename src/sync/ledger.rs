//! The ledger of Stripe mutations of a turn and the [`SyncPlan`] built from it: one table
//! operation per row, the last state winning, so Altan writes exactly what happened in Stripe.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::mapping::{ObjectKind, SyncMapping};
use super::signing::{PlanSigningKey, SIGNATURE_FIELD, canonical_json};
use crate::pay::RouteKind;
use crate::stripe::StripeObject;

/// Where a mutation was learned: the agent's own tool call, or a Stripe event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MutationSource {
    /// The agent's own tool call made the change.
    ToolCall {
        /// The model's id of the tool call.
        tool_call_id: String,
    },
    /// A Stripe webhook event reported the change.
    StripeEvent {
        /// Stripe's id of the event, `evt_...`.
        event_id: String,
    },
}

/// What Stripe says the object is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The object exists; this is Stripe's JSON of it.
    Exists {
        /// Stripe's JSON of the object after the change.
        object: Value,
    },
    /// The object is gone from Stripe.
    Deleted,
}

/// One change of one Stripe object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mutation {
    /// Whether a tool call or a Stripe event made it known.
    pub source: MutationSource,
    /// The route operation (`prices.update`) or the event type (`product.deleted`).
    pub operation: String,
    /// The Stripe object kind, which picks the table.
    pub kind: ObjectKind,
    /// Stripe's id of the object (`prod_...`, `price_...`).
    pub id: String,
    /// The object's state after the change, or that it is gone.
    pub outcome: Outcome,
}

/// Why a Stripe change has no row to write; the engine logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSynced {
    /// The changed object is of a kind the mapping has no table for (a checkout session).
    #[error("{operation} returned a `{object}`, which has no database table")]
    NoTable {
        /// The route operation or event type.
        operation: String,
        /// Stripe's `object` value of what came back.
        object: String,
    },
    /// The returned object has no string `id`.
    #[error("{operation} returned an object without an id")]
    NoId {
        /// The route operation or event type.
        operation: String,
    },
    /// The route only reads; nothing changed.
    #[error("{operation} is a read, not a change")]
    NotAMutation {
        /// The route operation.
        operation: String,
    },
    /// The event lacks its `id`, `type` or `data.object`, or they have the wrong shape.
    #[error("the Stripe event is malformed: {problem}")]
    BadEvent {
        /// What is missing or wrong.
        problem: String,
    },
}

/// A Stripe change made by a tool call: what the sync plan is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// The route the call went through (`prices.update`): one the tool declares, fixed when
    /// the crate is built, never text from a request or an event (event types are only ever
    /// a [`Mutation::operation`]).
    pub operation: &'static str,
    /// What the route does (create, update, delete); a read is never synced.
    pub kind: RouteKind,
    /// The Altan account the call acted for.
    pub account_id: String,
    /// The account's Stripe Connect id (`acct_...`) the call used, when one was resolved.
    pub stripe_connect_id: Option<String>,
    /// Stripe's answer: the object after the change, or the deleted tombstone.
    pub object: Value,
}

impl Mutation {
    /// The mutation a tool call made, from Stripe's answer in its [`Effect`].
    pub fn from_effect(effect: &Effect, tool_call_id: &str) -> Result<Mutation, NotSynced> {
        if !effect.kind.is_mutation() {
            return Err(NotSynced::NotAMutation {
                operation: effect.operation.to_owned(),
            });
        }
        let source = MutationSource::ToolCall {
            tool_call_id: tool_call_id.to_owned(),
        };
        Mutation::from_object(source, effect.operation, &effect.object)
    }

    /// The mutation a Stripe event reports (`{"id": "evt_..", "type": "..", "data": {"object": ..}}`).
    /// A `*.deleted` event carries the object as it was, so its type decides; a deleted
    /// subscription is a canceled one and stays a row.
    pub fn from_stripe_event(event: &Value) -> Result<Mutation, NotSynced> {
        let bad = |problem: &str| NotSynced::BadEvent {
            problem: problem.to_owned(),
        };
        let event_id = event
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no string `id`"))?;
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no string `type`"))?;
        let object = event
            .pointer("/data/object")
            .ok_or_else(|| bad("no `data.object`"))?;
        let source = MutationSource::StripeEvent {
            event_id: event_id.to_owned(),
        };
        let mut mutation = Mutation::from_object(source, event_type, object)?;
        if event_type.ends_with(".deleted") && mutation.kind != ObjectKind::Subscription {
            mutation.outcome = Outcome::Deleted;
        }
        Ok(mutation)
    }

    fn from_object(
        source: MutationSource,
        operation: &str,
        object: &Value,
    ) -> Result<Mutation, NotSynced> {
        let parsed = StripeObject::from_value(object);
        let name = parsed.object_name();
        let kind = match ObjectKind::from_object_name(name) {
            Some(kind) => kind,
            None if name == "unknown" => {
                ObjectKind::from_operation(operation).ok_or_else(|| NotSynced::NoTable {
                    operation: operation.to_owned(),
                    object: name.to_owned(),
                })?
            }
            None => {
                return Err(NotSynced::NoTable {
                    operation: operation.to_owned(),
                    object: name.to_owned(),
                });
            }
        };
        let id = parsed
            .id()
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| NotSynced::NoId {
                operation: operation.to_owned(),
            })?
            .to_owned();
        let deleted = object.get("deleted").and_then(Value::as_bool) == Some(true);
        let outcome = match deleted {
            true => Outcome::Deleted,
            false => Outcome::Exists {
                object: object.clone(),
            },
        };
        Ok(Mutation {
            source,
            operation: operation.to_owned(),
            kind,
            id,
            outcome,
        })
    }
}

/// What the session knows about objects it did not change: the prices of a product (to
/// delete their rows with it) and the subscriptions of a customer (canceled with it).
pub trait RelatedObjects {
    /// The ids of the prices of the product (`price_...`).
    fn prices_of_product(&self, product_id: &str) -> Vec<String>;
    /// Stripe's JSON of each subscription of the customer.
    fn subscriptions_of_customer(&self, customer_id: &str) -> Vec<Value>;
}

/// Knows nothing: deletes cascade to nothing.
impl RelatedObjects for () {
    fn prices_of_product(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn subscriptions_of_customer(&self, _: &str) -> Vec<Value> {
        Vec::new()
    }
}

/// An index the engine feeds with every tool result it sees (objects and lists), so the plan
/// can cover a deleted product's prices and a deleted customer's subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnownObjects {
    /// Price id → product id.
    price_product: BTreeMap<String, String>,
    /// Subscription id → its latest JSON.
    subscriptions: BTreeMap<String, Value>,
}

impl KnownObjects {
    /// An empty index.
    pub fn new() -> KnownObjects {
        KnownObjects::default()
    }

    /// Learns from any Stripe JSON: a price, a subscription (and its items' prices), a list of them.
    pub fn observe(&mut self, value: &Value) {
        let Some(map) = value.as_object() else {
            return;
        };
        if map.get("deleted").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let id = map.get("id").and_then(Value::as_str);
        match (map.get("object").and_then(Value::as_str), id) {
            (Some("list" | "search_result"), _) => {
                for item in map
                    .get("data")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.observe(item);
                }
            }
            (Some("price"), Some(id)) => {
                let product = map.get("product").and_then(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    other => other.get("id").and_then(Value::as_str),
                });
                if let Some(product) = product {
                    self.price_product.insert(id.to_owned(), product.to_owned());
                }
            }
            (Some("subscription"), Some(id)) => {
                self.subscriptions.insert(id.to_owned(), value.clone());
                if let Some(items) = map.get("items") {
                    let prices = items.get("data").and_then(Value::as_array);
                    for item in prices.into_iter().flatten() {
                        if let Some(price) = item.get("price") {
                            self.observe(price);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl RelatedObjects for KnownObjects {
    fn prices_of_product(&self, product_id: &str) -> Vec<String> {
        self.price_product
            .iter()
            .filter(|(_, p)| p.as_str() == product_id)
            .map(|(price, _)| price.clone())
            .collect()
    }

    fn subscriptions_of_customer(&self, customer_id: &str) -> Vec<Value> {
        self.subscriptions
            .values()
            .filter(|s| {
                let customer = s.get("customer");
                let id = customer
                    .and_then(Value::as_str)
                    .or_else(|| customer.and_then(|c| c.get("id")).and_then(Value::as_str));
                id == Some(customer_id)
            })
            .cloned()
            .collect()
    }
}

/// What to do with a row. An upsert always carries its row; a delete never does.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    /// Insert the row or replace its values.
    Upsert {
        /// Every mapped column of the table, by column name.
        row: Map<String, Value>,
    },
    /// Delete the row with the operation's key.
    Delete,
}

impl RowChange {
    /// The operation, without the row.
    pub fn op(&self) -> Op {
        match self {
            RowChange::Upsert { .. } => Op::Upsert,
            RowChange::Delete => Op::Delete,
        }
    }
}

/// The table operation, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Insert or replace a row.
    Upsert,
    /// Delete a row.
    Delete,
}

impl Op {
    /// The word a plan's JSON carries in `op`: `upsert` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

/// Why an operation is in the plan: a recorded mutation, or a consequence of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOrigin {
    /// The last recorded mutation of this object.
    Recorded {
        /// The mutation's route operation or event type.
        operation: String,
        /// The tool call or event it came from.
        source: MutationSource,
    },
    /// Implied by deleting another object (a product's prices, a customer's subscriptions).
    Cascade {
        /// The kind of the deleted object.
        kind: ObjectKind,
        /// Stripe's id of the deleted object.
        id: String,
    },
}

/// One row to write or delete.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOperation {
    /// The mirror table, as the mapping names it.
    pub table: String,
    /// The Stripe object kind the row holds.
    pub kind: ObjectKind,
    /// The key column's name (`id` by default); its value is the Stripe id.
    pub key_column: String,
    /// Stripe's id of the object, the row's key.
    pub id: String,
    /// Upsert with the row, or delete.
    pub change: RowChange,
    /// A few words for people (`Pro Plan`, `20.00 USD/month`); not part of the JSON.
    pub label: Option<String>,
    /// Why the operation is in the plan.
    pub origin: OpOrigin,
}

impl SyncOperation {
    /// Upsert or delete.
    pub fn op(&self) -> Op {
        self.change.op()
    }

    /// `{"table", "op", "key": {"id": ..}, "row": {..}}`; `row` only for upserts.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("table".into(), json!(self.table));
        out.insert("op".into(), json!(self.op().as_str()));
        out.insert("key".into(), json!({ self.key_column.clone(): self.id }));
        if let RowChange::Upsert { row } = &self.change {
            out.insert("row".into(), Value::Object(row.clone()));
        }
        Value::Object(out)
    }

    /// `upsert products prod_123 (Pro Plan)`.
    pub fn summary(&self) -> String {
        let base = format!("{} {} {}", self.op().as_str(), self.table, self.id);
        match &self.label {
            Some(label) => format!("{base} ({label})"),
            None => base,
        }
    }
}

impl Serialize for SyncOperation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// What Altan receives: every row to write or delete, under an id that acknowledgements name.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPlan {
    sync_id: String,
    operations: Vec<SyncOperation>,
    /// `hmac-sha256:<hex>` over the plan's canonical JSON, once signed ([`SyncPlan::sign`]).
    signature: Option<String>,
}

impl SyncPlan {
    /// Builds a plan (and its id) from operations; `None` when there are none.
    pub fn new(operations: Vec<SyncOperation>) -> Option<SyncPlan> {
        if operations.is_empty() {
            return None;
        }
        let ops = Value::Array(operations.iter().map(SyncOperation::to_json).collect());
        let digest = Sha256::digest(canonical_json(&ops).as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Some(SyncPlan {
            sync_id: format!("sync_{hex}"),
            operations,
            signature: None,
        })
    }

    /// `sync_` and 12 hex digits of the SHA-256 of the operations' canonical JSON: the same
    /// operations always get the same id.
    pub fn sync_id(&self) -> &str {
        &self.sync_id
    }

    /// Never empty.
    pub fn operations(&self) -> &[SyncOperation] {
        &self.operations
    }

    /// `{"sync_id": .., "operations": [..]}`, and `"signature"` once signed.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "sync_id": self.sync_id,
            "operations": self.operations.iter().map(SyncOperation::to_json).collect::<Vec<_>>(),
        });
        if let (Some(signature), Some(map)) = (&self.signature, out.as_object_mut()) {
            map.insert(SIGNATURE_FIELD.into(), json!(signature));
        }
        out
    }

    /// Signs the plan with the key the applier checks it against (replacing any signature).
    pub fn sign(&mut self, key: &PlanSigningKey) {
        self.signature = None;
        self.signature = Some(key.sign(&self.to_json()));
    }

    /// The signature, once signed.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }
}

impl SyncPlan {
    /// The JSON Altan reads: `sync_id` first, one operation per line, keys of each row sorted.
    pub fn to_json_text(&self) -> String {
        let mut out = format!(
            "{{\"sync_id\":{},\"operations\":[",
            Value::String(self.sync_id.clone())
        );
        for (i, op) in self.operations.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n  {\"table\":");
            out.push_str(&Value::String(op.table.clone()).to_string());
            out.push_str(",\"op\":");
            out.push_str(&Value::String(op.op().as_str().to_owned()).to_string());
            out.push_str(",\"key\":");
            out.push_str(&canonical_json(&json!({ op.key_column.clone(): op.id })));
            if let RowChange::Upsert { row } = &op.change {
                out.push_str(",\"row\":");
                out.push_str(&canonical_json(&Value::Object(row.clone())));
            }
            out.push('}');
        }
        out.push_str("\n]");
        if let Some(signature) = &self.signature {
            out.push_str(&format!(
                ",\n\"{SIGNATURE_FIELD}\":{}",
                Value::String(signature.clone())
            ));
        }
        out.push('}');
        out
    }
}

impl Serialize for SyncPlan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Every Stripe mutation of a turn (or since the last plan), in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncLedger {
    mutations: Vec<Mutation>,
}

impl SyncLedger {
    /// An empty ledger.
    pub fn new() -> SyncLedger {
        SyncLedger::default()
    }

    /// Appends a mutation; a later one of the same object wins in the plan.
    pub fn record(&mut self, mutation: Mutation) {
        self.mutations.push(mutation);
    }

    /// Records a tool call's effect; a change without a table (a checkout session) is refused
    /// with the reason, for the log.
    pub fn record_effect(&mut self, effect: &Effect, tool_call_id: &str) -> Result<(), NotSynced> {
        self.record(Mutation::from_effect(effect, tool_call_id)?);
        Ok(())
    }

    /// What was recorded, in order.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// Whether nothing was recorded since the ledger was made or last taken.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }

    /// Empties the ledger, returning what it held (once the plan is sent).
    pub fn take(&mut self) -> Vec<Mutation> {
        std::mem::take(&mut self.mutations)
    }

    /// The plan for everything recorded; `None` when nothing was. `related` tells which
    /// prices and subscriptions a product or customer delete takes along; objects the ledger
    /// itself recorded are known too.
    pub fn plan(&self, mapping: &SyncMapping, related: &dyn RelatedObjects) -> Option<SyncPlan> {
        let mut builder = PlanBuilder {
            mapping,
            operations: Vec::new(),
            positions: HashMap::new(),
        };
        let mut seen = KnownObjects::new();
        for m in &self.mutations {
            let origin = OpOrigin::Recorded {
                operation: m.operation.clone(),
                source: m.source.clone(),
            };
            match &m.outcome {
                Outcome::Exists { object } => {
                    seen.observe(object);
                    builder.upsert(m.kind, &m.id, object, origin);
                }
                Outcome::Deleted => {
                    builder.delete(m.kind, &m.id, None, origin);
                    let cascade = OpOrigin::Cascade {
                        kind: m.kind,
                        id: m.id.clone(),
                    };
                    match m.kind {
                        ObjectKind::Product => {
                            let mut prices = related.prices_of_product(&m.id);
                            prices.extend(seen.prices_of_product(&m.id));
                            prices.sort();
                            prices.dedup();
                            let label = format!("price of deleted product {}", m.id);
                            for price in prices {
                                builder.delete(
                                    ObjectKind::Price,
                                    &price,
                                    Some(label.clone()),
                                    cascade.clone(),
                                );
                            }
                        }
                        ObjectKind::Customer => {
                            let mut subs: BTreeMap<String, Value> = BTreeMap::new();
                            let all = related
                                .subscriptions_of_customer(&m.id)
                                .into_iter()
                                .chain(seen.subscriptions_of_customer(&m.id));
                            for sub in all {
                                if let Some(id) = sub.get("id").and_then(Value::as_str) {
                                    subs.insert(id.to_owned(), sub);
                                }
                            }
                            for (id, mut sub) in subs {
                                let status = sub.get("status").and_then(Value::as_str);
                                if matches!(status, Some("canceled" | "incomplete_expired")) {
                                    continue;
                                }
                                if let Some(map) = sub.as_object_mut() {
                                    map.insert("status".into(), json!("canceled"));
                                }
                                seen.observe(&sub);
                                builder.upsert(
                                    ObjectKind::Subscription,
                                    &id,
                                    &sub,
                                    cascade.clone(),
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        SyncPlan::new(builder.operations)
    }
}

struct PlanBuilder<'a> {
    mapping: &'a SyncMapping,
    operations: Vec<SyncOperation>,
    /// (table, id) → index in `operations`, so a later state replaces an earlier one in place.
    positions: HashMap<(String, String), usize>,
}

impl PlanBuilder<'_> {
    fn upsert(&mut self, kind: ObjectKind, id: &str, object: &Value, origin: OpOrigin) {
        let table = self.mapping.table(kind);
        let change = RowChange::Upsert {
            row: table.row(object),
        };
        self.put(kind, id, change, label_for(kind, object), origin);
    }

    fn delete(&mut self, kind: ObjectKind, id: &str, label: Option<String>, origin: OpOrigin) {
        self.put(kind, id, RowChange::Delete, label, origin);
    }

    fn put(
        &mut self,
        kind: ObjectKind,
        id: &str,
        change: RowChange,
        label: Option<String>,
        origin: OpOrigin,
    ) {
        let table = self.mapping.table(kind);
        let operation = SyncOperation {
            table: table.table.clone(),
            kind,
            key_column: table.key_column.clone(),
            id: id.to_owned(),
            change,
            label,
            origin,
        };
        let key = (table.table.clone(), id.to_owned());
        match self.positions.get(&key) {
            Some(&i) => {
                if let Some(slot) = self.operations.get_mut(i) {
                    *slot = operation;
                }
            }
            None => {
                self.positions.insert(key, self.operations.len());
                self.operations.push(operation);
            }
        }
    }
}

/// Currencies Stripe counts in whole units (no cents).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

fn money(amount: i64, currency: &str) -> String {
    let code = currency.to_uppercase();
    if ZERO_DECIMAL.contains(&currency.to_lowercase().as_str()) {
        return format!("{amount} {code}");
    }
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02} {code}", abs / 100, abs % 100)
}

/// A few words that tell people which object a row is.
fn label_for(kind: ObjectKind, object: &Value) -> Option<String> {
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    let mut label = match kind {
        ObjectKind::Product => text("name"),
        ObjectKind::Price => text("nickname").or_else(|| {
            let amount = object.get("unit_amount").and_then(Value::as_i64)?;
            let currency = object.get("currency").and_then(Value::as_str)?;
            let every = object
                .pointer("/recurring/interval")
                .and_then(Value::as_str);
            Some(match every {
                Some(every) => format!("{}/{every}", money(amount, currency)),
                None => money(amount, currency),
            })
        }),
        ObjectKind::Customer => text("email").or_else(|| text("name")),
        ObjectKind::Subscription => text("status"),
        ObjectKind::Coupon => text("name").or_else(|| {
            let percent = object.get("percent_off").and_then(Value::as_f64)?;
            Some(format!("{percent}% off"))
        }),
        ObjectKind::PromotionCode => text("code"),
    };
    if object.get("active").and_then(Value::as_bool) == Some(false) {
        label = Some(match label {
            Some(l) => format!("{l}, inactive"),
            None => "inactive".to_owned(),
        });
    }
    label
}
