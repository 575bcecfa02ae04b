//! The embedded sandbox backend: a stateful Stripe emulator, isolated per account id and
//! Stripe Connect id, in memory or in a SQLite file that survives restarts and kill -9.

mod billing;
mod catalog;
mod checkout;
pub mod events;
mod list;
mod params;
mod seed;
mod state;
mod subscriptions;
mod util;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};

use super::error::GatewayRefusal;
use super::{Backend, PayRequest, PayResponse};
use state::{Changes, IdemRecord, State};

pub use events::{CheckoutCompletion, EventSink, EventSinkConfig, EventingSandbox};
pub use seed::SeedError;
pub use state::SandboxStoreError;

/// The sandbox. Cloning shares the same state.
#[derive(Clone)]
pub struct Sandbox {
    state: Arc<Mutex<State>>,
    /// Set for replays and the demo: ids and timestamps repeat from run to run.
    seed: Option<u64>,
}

/// Why a sandbox could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The SQLite file could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] SandboxStoreError),
    /// The initial-state document was refused.
    #[error(transparent)]
    Seed(#[from] SeedError),
}

impl Sandbox {
    /// Empty state that lives as long as the process.
    pub fn in_memory() -> Sandbox {
        Sandbox::from_state(State::in_memory())
    }

    /// State kept in a SQLite file (created if missing); every acknowledged write is durable.
    pub fn open(path: &Path) -> Result<Sandbox, SandboxError> {
        Ok(Sandbox::from_state(State::open(path)?))
    }

    /// In-memory state seeded from an initial-state document (format in `sandbox/seed.rs`).
    pub fn with_state(state: &Value) -> Result<Sandbox, SandboxError> {
        let sandbox = Sandbox::in_memory();
        sandbox.seed(state)?;
        Ok(sandbox)
    }

    /// Adds the objects of an initial-state document to this sandbox (memory or file).
    pub fn seed(&self, state: &Value) -> Result<(), SeedError> {
        let mut guard = self.lock();
        seed::apply(&mut guard, state)
    }

    fn from_state(state: State) -> Sandbox {
        Sandbox {
            state: Arc::new(Mutex::new(state)),
            seed: None,
        }
    }

    /// Makes ids and timestamps reproducible: each request's ids come from the seed and the
    /// request itself (its idempotency key, else its account, operation and parameters), not
    /// from arrival order, so parallel calls get the same ids on every run. `created` is fixed.
    pub fn deterministic(mut self, seed: u64) -> Sandbox {
        self.seed = Some(seed);
        self
    }

    /// The lock is only poisoned if a handler panicked; the state is still consistent
    /// because memory is changed only after a successful commit, so carry on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves one request synchronously (the gateway runs it on a blocking thread).
    pub fn handle_now(&self, request: &PayRequest) -> PayResponse {
        let mut state = self.lock();
        match self.seed {
            None => handle(&mut state, request),
            Some(seed) => {
                let d = util::Deterministic {
                    rng: request_rng(seed, request),
                    clock: DETERMINISTIC_CLOCK,
                };
                util::with_determinism(d, || handle(&mut state, request))
            }
        }
    }
}

impl Backend for Sandbox {
    fn handle(
        &self,
        request: PayRequest,
    ) -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>> {
        let sandbox = self.clone();
        Box::pin(async move {
            // SQLite fsyncs on every write: keep that off the async workers.
            tokio::task::spawn_blocking(move || sandbox.handle_now(&request))
                .await
                .unwrap_or_else(|e| {
                    GatewayRefusal::internal(format!("sandbox task failed: {e}")).into_response()
                })
        })
    }
}

/// 2026-01-01T00:00:00Z: the `created` of every object in a deterministic sandbox.
pub const DETERMINISTIC_CLOCK: i64 = 1_767_225_600;

fn request_rng(seed: u64, request: &PayRequest) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    use std::hash::{Hash, Hasher};
    let basis = match &request.idempotency_key {
        Some(key) => format!("key:{}:{key}", request.account_id),
        None => format!(
            "req:{}:{}:{}:{}",
            request.account_id,
            request.operation,
            request.id.as_deref().unwrap_or(""),
            serde_json::Value::Object(request.params.clone())
        ),
    };
    // A stable hash (not std's RandomState): the same request seeds the same ids in every run.
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, basis.as_bytes());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    digest.as_u128().hash(&mut hasher);
    rand::rngs::StdRng::seed_from_u64(hasher.finish())
}

/// The Connect id of an account: bound by the initial state or by its first use, else
/// derived from the account id so it is stable across restarts without being stored.
pub(crate) fn connect_id_for(state: &State, account: &str) -> String {
    if let Some(id) = state.connect_id(account) {
        return id.to_string();
    }
    derived_connect_id(account)
}

/// The Connect id the sandbox gives an account that never named one: `acct_` and 16 hex
/// digits from a UUIDv5 of the account id, so it is the same on every run.
pub fn derived_connect_id(account: &str) -> String {
    let uuid = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("altan-pay-sandbox:{account}").as_bytes(),
    );
    format!("acct_{}", &uuid.simple().to_string()[..16])
}

/// `acct_` and 16 lower-case hex digits: what [`derived_connect_id`] makes. Stripe's own ids
/// mix cases, so a real one has this shape only by a one-in-10^9 chance.
fn is_derived_shape(id: &str) -> bool {
    id.strip_prefix("acct_").is_some_and(|rest| {
        rest.len() == 16
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn is_mutation(operation: &str) -> bool {
    !(operation.ends_with(".list")
        || operation.ends_with(".retrieve")
        || operation.starts_with("account."))
}

fn handle(state: &mut State, request: &PayRequest) -> PayResponse {
    match respond(state, request) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn respond(state: &mut State, req: &PayRequest) -> Result<PayResponse, GatewayRefusal> {
    let account = req.account_id.as_str();
    if account.is_empty() {
        return Err(GatewayRefusal::missing_param("account_id"));
    }
    let fields = params::accepted(&req.operation).ok_or_else(|| {
        GatewayRefusal::invalid(format!(
            "The sandbox does not implement `{}`.",
            req.operation
        ))
        .status(404)
    })?;
    let expected = match state.connect_id(account) {
        Some(bound) => bound.to_owned(),
        None => bind_connect_id(state, req)?,
    };
    if req.operation == "account.stripe_connect_id" {
        params::validate(fields, &req.params)?;
        return Ok(ok(json!({
            "object": "stripe_connect_id",
            "account_id": account,
            "stripe_connect_id": expected,
        })));
    }
    check_connect_id(req.stripe_connect_id.as_deref(), &expected, account)?;
    let key = req
        .idempotency_key
        .as_deref()
        .filter(|_| is_mutation(&req.operation));
    let fingerprint = key.map(|_| fingerprint(req));
    if let (Some(key), Some(fp)) = (key, &fingerprint)
        && let Some(replay) = replay(state, account, key, fp)?
    {
        return Ok(replay);
    }
    // Like Stripe, a request that fails validation is not saved under its key.
    let params = params::validate(fields, &req.params).map_err(|e| explain(&req.operation, e))?;
    let mut tx = Tx::new(state, account);
    let result = dispatch(&mut tx, &req.operation, req.id.as_deref(), &params);
    let writes = tx.writes;
    let response = match result {
        Ok(body) => ok(body),
        Err(e) => e.into_response(),
    };
    let mut changes = Changes {
        objects: if response.status == 200 {
            writes
        } else {
            Vec::new()
        },
        ..Changes::default()
    };
    if let (Some(key), Some(fingerprint)) = (key, fingerprint) {
        let record = IdemRecord {
            fingerprint,
            status: response.status,
            body: response.body.clone(),
        };
        changes.idempotency = Some((key.to_string(), record));
    }
    state.commit(account, changes).map_err(|e| {
        GatewayRefusal::internal(format!("the sandbox could not save the change: {e}"))
    })?;
    Ok(response)
}

/// Says why Stripe refuses a parameter where the bare "unknown parameter" would puzzle.
fn explain(operation: &str, mut e: GatewayRefusal) -> GatewayRefusal {
    let immutable = ["unit_amount", "currency", "recurring", "product", "type"];
    if operation == "prices.update"
        && e.code == Some("parameter_unknown")
        && e.param.as_deref().is_some_and(|p| immutable.contains(&p))
    {
        e.message.push_str(
            ". A price's unit_amount, currency, recurring and product cannot change after creation: create a new price and archive this one (active=false).",
        );
    }
    e
}

fn ok(body: Value) -> PayResponse {
    PayResponse { status: 200, body }
}

/// First use of an account: the platform's Connect id (Altan passes the real one in the
/// context) becomes the account's, stored with the sandbox state, unless another account
/// already has it; the Connect id lookup binds the derived id. A request naming no Connect id
/// binds nothing (it is refused below).
fn bind_connect_id(state: &mut State, req: &PayRequest) -> Result<String, GatewayRefusal> {
    let account = req.account_id.as_str();
    let given = req.stripe_connect_id.as_deref().filter(|s| !s.is_empty());
    let candidate = match (req.operation.as_str(), given) {
        ("account.stripe_connect_id", _) => derived_connect_id(account),
        (_, Some(given)) => given.to_owned(),
        (_, None) => return Ok(derived_connect_id(account)),
    };
    // An id of the derived shape belongs to the account it is derived from (whether that
    // account has been seen yet or not), so it cannot be bound to another one.
    let derived_elsewhere =
        is_derived_shape(&candidate) && candidate != derived_connect_id(account);
    let taken = derived_elsewhere
        || state
            .account_ids()
            .any(|other| other != account && connect_id_for(state, other) == candidate);
    if taken {
        return Err(GatewayRefusal::invalid(format!(
            "The Stripe Connect id '{candidate}' belongs to another account, not to '{account}'."
        ))
        .code("account_invalid")
        .param("stripe_connect_id")
        .status(403));
    }
    let changes = Changes {
        connect_id: Some(candidate.clone()),
        ..Changes::default()
    };
    state.commit(account, changes).map_err(|e| {
        GatewayRefusal::internal(format!("the sandbox could not save the Connect id: {e}"))
    })?;
    Ok(candidate)
}

fn check_connect_id(
    given: Option<&str>,
    expected: &str,
    account: &str,
) -> Result<(), GatewayRefusal> {
    let given = given
        .filter(|s| !s.is_empty())
        .ok_or_else(|| GatewayRefusal::missing_param("stripe_connect_id"))?;
    if given != expected {
        return Err(GatewayRefusal::invalid(format!(
            "The Stripe Connect id '{given}' does not belong to account '{account}' (its Connect id is '{expected}')."
        ))
        .code("account_invalid")
        .param("stripe_connect_id")
        .status(403));
    }
    Ok(())
}

/// Same operation, object and parameters (order-insensitive) give the same fingerprint.
fn fingerprint(req: &PayRequest) -> String {
    json!({
        "operation": req.operation,
        "id": req.id,
        "params": canonical(&Value::Object(req.params.clone())),
    })
    .to_string()
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            let sorted: Map<String, Value> = keys
                .into_iter()
                .map(|k| (k.clone(), canonical(&map[k])))
                .collect();
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn replay(
    state: &State,
    account: &str,
    key: &str,
    fp: &str,
) -> Result<Option<PayResponse>, GatewayRefusal> {
    if key.len() > 255 {
        return Err(GatewayRefusal::invalid(
            "Idempotency-Key must be at most 255 characters long.",
        )
        .code("idempotency_key_in_use")
        .param("Idempotency-Key"));
    }
    let Some(record) = state.idempotency(account, key) else {
        return Ok(None);
    };
    if record.fingerprint != fp {
        return Err(GatewayRefusal {
            status: 400,
            kind: "idempotency_error",
            code: None,
            message: format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
            param: None,
        });
    }
    Ok(Some(PayResponse {
        status: record.status,
        body: record.body.clone(),
    }))
}

/// One request's view of the state: reads see its own writes, writes are buffered until
/// the whole operation succeeded and are then committed at once.
pub(crate) struct Tx<'a> {
    state: &'a State,
    account: &'a str,
    writes: Vec<(String, String, Option<Value>)>,
    pub now: i64,
}

impl<'a> Tx<'a> {
    fn new(state: &'a State, account: &'a str) -> Tx<'a> {
        Tx {
            state,
            account,
            writes: Vec::new(),
            now: util::now(),
        }
    }

    pub fn get(&self, collection: &str, id: &str) -> Option<Value> {
        if let Some((_, _, v)) = self
            .writes
            .iter()
            .find(|(c, i, _)| c == collection && i == id)
        {
            return v.clone();
        }
        self.state.get(self.account, collection, id).cloned()
    }

    pub fn exists(&self, collection: &str, id: &str) -> bool {
        self.get(collection, id).is_some()
    }

    /// Stores an object under its own `id`.
    pub fn put(&mut self, collection: &str, value: Value) {
        let id = value["id"].as_str().unwrap_or_default().to_string();
        self.write(collection, id, Some(value));
    }

    pub fn remove(&mut self, collection: &str, id: &str) {
        self.write(collection, id.to_string(), None);
    }

    fn write(&mut self, collection: &str, id: String, value: Option<Value>) {
        match self
            .writes
            .iter_mut()
            .find(|(c, i, _)| c == collection && *i == id)
        {
            Some(slot) => slot.2 = value,
            None => self.writes.push((collection.to_string(), id, value)),
        }
    }

    /// Committed objects of a collection, newest first (lists never write, so this is exact).
    pub fn newest_first(&self, collection: &str) -> Vec<(u64, &'a Value)> {
        self.state.newest_first(self.account, collection)
    }

    pub fn newest_below(
        &self,
        collection: &str,
        below: u64,
    ) -> impl Iterator<Item = (u64, &'a Value)> + 'a {
        self.state.newest_below(self.account, collection, below)
    }

    pub fn oldest_above(
        &self,
        collection: &str,
        above: u64,
    ) -> impl Iterator<Item = (u64, &'a Value)> + 'a {
        self.state.oldest_above(self.account, collection, above)
    }

    pub fn seq(&self, collection: &str, id: &str) -> Option<u64> {
        self.state.seq(self.account, collection, id)
    }
}

type Params = Map<String, Value>;

fn dispatch(tx: &mut Tx, op: &str, id: Option<&str>, p: &Params) -> Result<Value, GatewayRefusal> {
    let id = || id.ok_or_else(|| GatewayRefusal::missing_param("id"));
    match op {
        "products.create" => catalog::create_product(tx, p),
        "products.list" => catalog::list_products(tx, p),
        "products.retrieve" => catalog::retrieve(tx, "product", id()?),
        "products.update" => catalog::update_product(tx, id()?, p),
        "products.delete" => catalog::delete_product(tx, id()?),
        "prices.create" => catalog::create_price(tx, p),
        "prices.list" => catalog::list_prices(tx, p),
        "prices.retrieve" => catalog::retrieve(tx, "price", id()?),
        "prices.update" => catalog::update_price(tx, id()?, p),
        "customers.create" => billing::create_customer(tx, p),
        "customers.list" => billing::list_customers(tx, p),
        "customers.retrieve" => billing::retrieve_customer(tx, id()?),
        "customers.update" => billing::update_customer(tx, id()?, p),
        "customers.delete" => billing::delete_customer(tx, id()?),
        "coupons.create" => billing::create_coupon(tx, p),
        "coupons.list" => billing::list_coupons(tx, p),
        "coupons.retrieve" => billing::retrieve_coupon(tx, id()?),
        "coupons.update" => billing::update_coupon(tx, id()?, p),
        "coupons.delete" => billing::delete_coupon(tx, id()?),
        "promotion_codes.create" => billing::create_promotion_code(tx, p),
        "promotion_codes.list" => billing::list_promotion_codes(tx, p),
        "promotion_codes.retrieve" => catalog::retrieve(tx, "promotion_code", id()?),
        "promotion_codes.update" => billing::update_promotion_code(tx, id()?, p),
        "subscriptions.create" => subscriptions::create(tx, p),
        "subscriptions.list" => subscriptions::list(tx, p),
        "subscriptions.retrieve" => catalog::retrieve(tx, "subscription", id()?),
        "subscriptions.update" => subscriptions::update(tx, id()?, p),
        "subscriptions.cancel" => subscriptions::cancel(tx, id()?, p),
        "checkout_sessions.create" => checkout::create(tx, p),
        other => Err(
            GatewayRefusal::invalid(format!("The sandbox does not implement `{other}`."))
                .status(404),
        ),
    }
}
