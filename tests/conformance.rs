//! Differential conformance: the same Altan Pay operation sequences run through the embedded
//! sandbox and through `StripeUpstream` pointed at third-party Stripe fakes, field by field.
//!
//! The fakes are installed by `bash scripts/install-peers.sh` into `.ci-cache/`; each test starts
//! its fake on a free 127.0.0.1 port per sequence and kills it when done (also on panic).
//! Run `cargo test --test conformance -- --nocapture` to see the conformance report; it is
//! also written to `target/conformance-<fake>.txt`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use altan_pay::gateway::upstream::{StripeUpstream, UpstreamConfig};
use altan_pay::gateway::{Backend, PayRequest, PayResponse};
use serde_json::{Map, Value, json};

/// The fakes' versions `scripts/install-peers.sh` pins; the test checks what is installed.
const STRIPE_STATEFUL_MOCK_VERSION: &str = "0.0.16";
const LOCALSTRIPE_VERSION: &str = "1.15.10";

/// Any `sk_test_` key: both fakes only check the prefix.
const FAKE_KEY: &str = "sk_test_conformance";
/// The Altan account whose Connect id is [`CONNECT_ID`]: steps marked `connected()`.
const ACCOUNT_ID: &str = "ws_conformance";
/// A Connect account the test creates on stripe-stateful-mock (it refuses unknown ones); the
/// sandbox is seeded with it as `ws_conformance`'s Connect id.
const CONNECT_ID: &str = "acct_conformance01";
/// Steps not marked `connected()` act on the platform account on a fake (no `Stripe-Account`);
/// the sandbox always needs an account and its Connect id, so they go to this other account.
const PLATFORM_ACCOUNT_ID: &str = "ws_platform";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fake {
    StatefulMock,
    LocalStripe,
}

impl Fake {
    fn name(self) -> &'static str {
        match self {
            Fake::StatefulMock => "stripe-stateful-mock",
            Fake::LocalStripe => "localstripe",
        }
    }
}

use Fake::{LocalStripe, StatefulMock};

/// stripe-stateful-mock sorts lists by `created`, which is in whole seconds, and keeps
/// insertion order on ties: objects made within one second come oldest first, objects made
/// across a second boundary come newest first as in Stripe. Whether the difference shows
/// depends on the clock, so entries with this text are exempt from the staleness check.
const SAME_SECOND_ORDER: &str = "orders by `created` seconds only, so objects made in the same second list oldest first (Stripe: newest first)";

/// Where a fake is less faithful than Stripe's documented behaviour, the sandbox follows Stripe
/// and the difference is recorded here, and only here: `(fake, operation, field, what differs)`.
/// A mismatch on a listed field is skipped and reported; a listed difference that is not
/// observed fails the test, so the table never goes stale. Field `(request)` marks a request
/// the fake can't take as Stripe would: the test adapts it for that fake (see `adapt`).
/// Field `status` is the status class; when it differs nothing else of that step is compared.
const KNOWN_DIFFERENCES: &[(Fake, &str, &str, &str)] = &[
    // stripe-stateful-mock 0.0.16
    (
        StatefulMock,
        "products.create",
        "active",
        "stores the form string \"false\" instead of the boolean false",
    ),
    (StatefulMock, "products.list", "data.ids", SAME_SECOND_ORDER),
    (StatefulMock, "prices.list", "data.ids", SAME_SECOND_ORDER),
    (
        StatefulMock,
        "prices.create",
        "status",
        "does not check that `product` exists (Stripe: 400 resource_missing)",
    ),
    (
        StatefulMock,
        "prices.update",
        "status",
        "ignores unit_amount on update (Stripe: 400 parameter_unknown)",
    ),
    (
        StatefulMock,
        "products.delete",
        "error.status",
        "has no DELETE /v1/products/{id}: 404 No matching path (Stripe: 400, the product has prices)",
    ),
    (
        StatefulMock,
        "customers.create",
        "name",
        "ignores `name` on create (always null)",
    ),
    (
        StatefulMock,
        "customers.update",
        "metadata",
        "replaces metadata instead of merging, and keeps keys set to \"\"",
    ),
    (
        StatefulMock,
        "customers.retrieve",
        "metadata",
        "replaces metadata instead of merging, and keeps keys set to \"\"",
    ),
    (
        StatefulMock,
        "subscriptions.create",
        "(request)",
        "each item also needs a Plan: the test creates one with the price's id and adds items[].plan",
    ),
    (
        StatefulMock,
        "subscriptions.create",
        "error.code",
        "an unknown price is parameter_missing `product` (it tries to create a Plan) (Stripe: resource_missing)",
    ),
    (
        StatefulMock,
        "subscriptions.create",
        "error.param",
        "an unknown price names `product` (Stripe: items[0][price])",
    ),
    (
        StatefulMock,
        "subscriptions.cancel",
        "status",
        "has no DELETE /v1/subscriptions/{id} (404 No matching path)",
    ),
    // localstripe 1.15.10
    (
        LocalStripe,
        "products.list",
        "data.ids",
        "lists oldest first (Stripe: newest first)",
    ),
    (
        LocalStripe,
        "products.retrieve",
        "error.code",
        "a missing object is a bare 404 without code resource_missing",
    ),
    (
        LocalStripe,
        "products.retrieve",
        "error.param",
        "a missing object is a bare 404 without param id",
    ),
    (
        LocalStripe,
        "products.update",
        "metadata",
        "keeps a metadata key set to \"\" instead of removing it",
    ),
    (
        LocalStripe,
        "products.retrieve",
        "metadata",
        "keeps a metadata key set to \"\" instead of removing it",
    ),
    (
        LocalStripe,
        "customers.update",
        "metadata",
        "keeps a metadata key set to \"\" instead of removing it",
    ),
    (
        LocalStripe,
        "customers.retrieve",
        "metadata",
        "keeps a metadata key set to \"\" instead of removing it",
    ),
    (
        LocalStripe,
        "customers.retrieve",
        "status",
        "a deleted customer is a 404 (Stripe: 200 with the deleted: true tombstone)",
    ),
    (
        LocalStripe,
        "products.update",
        "active",
        "stores the form string \"false\" instead of the boolean false",
    ),
    (
        LocalStripe,
        "products.retrieve",
        "active",
        "stores the form string \"false\" instead of the boolean false",
    ),
    (
        LocalStripe,
        "subscriptions.create",
        "items.data.0.price.id",
        "subscription items carry a `plan` and no `price`",
    ),
    (
        LocalStripe,
        "subscriptions.create",
        "error.status",
        "an unknown plan is a 404 (Stripe: 400 for an unknown price in items)",
    ),
    (
        LocalStripe,
        "subscriptions.create",
        "error.code",
        "an unknown plan is a bare 404 without code resource_missing",
    ),
    (
        LocalStripe,
        "subscriptions.create",
        "error.param",
        "an unknown plan is a bare 404 without param",
    ),
    (
        LocalStripe,
        "coupons.create",
        "status",
        "requires an explicit coupon id (Stripe generates one)",
    ),
    (
        LocalStripe,
        "coupons.update",
        "status",
        "coupons have no `name` (400 Bad request) and accept percent_off on update (Stripe: only name and metadata)",
    ),
    (
        LocalStripe,
        "coupons.retrieve",
        "error.code",
        "a missing object is a bare 404 without code resource_missing",
    ),
    (
        LocalStripe,
        "coupons.retrieve",
        "error.param",
        "a missing object is a bare 404 without param id",
    ),
    (
        LocalStripe,
        "prices.create",
        "(request)",
        "has no /v1/prices: a Plan with the same id, amount, currency and interval stands in, not compared",
    ),
    (
        LocalStripe,
        "subscriptions.create",
        "(request)",
        "subscription items take `plan`, not `price`: the item's price id is sent as plan",
    ),
];

// ---------------------------------------------------------------------------------------------
// Sequences

/// One operation of a sequence. Strings `$label` in `id` and `params` stand for the id the
/// step with that label got on the same side; `compare` lists the fields to compare besides
/// the status class, `object`, the id prefix and, for errors, `type`/`code`/`param`.
#[derive(Debug, Clone)]
struct Step {
    label: &'static str,
    op: &'static str,
    id: Option<&'static str>,
    params: Value,
    idempotency_key: Option<&'static str>,
    connect: bool,
    compare: &'static [&'static str],
}

fn step(label: &'static str, op: &'static str, params: Value) -> Step {
    Step {
        label,
        op,
        id: None,
        params,
        idempotency_key: None,
        connect: false,
        compare: &[],
    }
}

impl Step {
    fn on(mut self, id: &'static str) -> Self {
        self.id = Some(id);
        self
    }
    fn cmp(mut self, fields: &'static [&'static str]) -> Self {
        self.compare = fields;
        self
    }
    fn idem(mut self, key: &'static str) -> Self {
        self.idempotency_key = Some(key);
        self
    }
    fn connected(mut self) -> Self {
        self.connect = true;
        self
    }
}

struct Sequence {
    name: &'static str,
    fakes: &'static [Fake],
    /// Requests made on the fake only, before the sequence (state the sandbox does not need).
    fake_setup: &'static [(&'static str, &'static str)],
    steps: Vec<Step>,
}

const BOTH: &[Fake] = &[StatefulMock, LocalStripe];

fn sequences() -> Vec<Sequence> {
    vec![
        Sequence {
            name: "products: create, list, retrieve",
            fakes: BOTH,
            fake_setup: &[],
            steps: vec![
                step(
                    "tee",
                    "products.create",
                    json!({"name": "Basic tee", "description": "Cotton", "metadata": {"color": "blue"}}),
                )
                .cmp(&["name", "description", "active", "metadata"]),
                step(
                    "hoodie",
                    "products.create",
                    json!({"name": "Hoodie", "active": false}),
                )
                .cmp(&["name", "active"]),
                step("", "products.list", json!({"limit": "1"})).cmp(&[
                    "has_more",
                    "data.len",
                    "data.ids",
                ]),
                step("", "products.list", json!({})).cmp(&["has_more", "data.len"]),
                step("", "products.retrieve", json!({}))
                    .on("$tee")
                    .cmp(&["name", "metadata", "active"]),
                step("", "products.retrieve", json!({})).on("prod_doesnotexist"),
            ],
        },
        Sequence {
            name: "products: update (metadata merge), delete",
            fakes: &[LocalStripe],
            fake_setup: &[],
            steps: vec![
                step(
                    "mug",
                    "products.create",
                    json!({"name": "Mug", "metadata": {"a": "1", "b": "2"}}),
                )
                .cmp(&["name", "metadata"]),
                step(
                    "",
                    "products.update",
                    json!({"name": "Big mug", "metadata": {"b": "", "c": "3"}, "active": false}),
                )
                .on("$mug")
                .cmp(&["name", "metadata", "active"]),
                step("", "products.retrieve", json!({}))
                    .on("$mug")
                    .cmp(&["name", "metadata", "active"]),
                step("", "products.delete", json!({}))
                    .on("$mug")
                    .cmp(&["id", "deleted"]),
                step("", "products.retrieve", json!({})).on("$mug"),
            ],
        },
        Sequence {
            name: "prices: one-time and recurring, list by product, archive",
            fakes: &[StatefulMock],
            fake_setup: &[],
            steps: vec![
                step("plan", "products.create", json!({"name": "Plan"})),
                step(
                    "once",
                    "prices.create",
                    json!({"product": "$plan", "unit_amount": 1500, "currency": "usd"}),
                )
                .cmp(&[
                    "unit_amount",
                    "currency",
                    "type",
                    "recurring",
                    "product",
                    "active",
                ]),
                step(
                    "monthly",
                    "prices.create",
                    json!({"product": "$plan", "unit_amount": 900, "currency": "eur",
                           "recurring": {"interval": "month"}, "metadata": {"tier": "pro"}}),
                )
                .cmp(&[
                    "unit_amount",
                    "currency",
                    "type",
                    "recurring.interval",
                    "recurring.interval_count",
                    "product",
                    "metadata",
                ]),
                step("", "prices.list", json!({"product": "$plan"})).cmp(&[
                    "has_more",
                    "data.len",
                    "data.ids",
                ]),
                step("", "prices.update", json!({"active": false}))
                    .on("$once")
                    .cmp(&["active", "unit_amount"]),
                step("", "prices.update", json!({"unit_amount": 2000})).on("$once"),
                step("", "prices.retrieve", json!({}))
                    .on("$once")
                    .cmp(&["active", "unit_amount", "currency"]),
                step("", "products.delete", json!({})).on("$plan"),
                step(
                    "",
                    "prices.create",
                    json!({"product": "prod_doesnotexist", "unit_amount": 100, "currency": "usd"}),
                ),
                step("", "prices.retrieve", json!({})).on("price_doesnotexist"),
            ],
        },
        Sequence {
            name: "customers: create, metadata merge, list",
            fakes: BOTH,
            fake_setup: &[],
            steps: vec![
                step(
                    "ada",
                    "customers.create",
                    json!({"email": "ada@example.com", "name": "Ada",
                           "metadata": {"tier": "gold", "ref": "x"}}),
                )
                .cmp(&["email", "name", "metadata"]),
                step(
                    "",
                    "customers.update",
                    json!({"metadata": {"ref": "", "plan": "pro"}, "email": "ada@lovelace.dev"}),
                )
                .on("$ada")
                .cmp(&["email", "metadata"]),
                step("", "customers.retrieve", json!({}))
                    .on("$ada")
                    .cmp(&["email", "metadata"]),
                step("bob", "customers.create", json!({"email": "bob@example.com"}))
                    .cmp(&["email"]),
                step("", "customers.list", json!({"limit": "5"})).cmp(&["has_more", "data.len"]),
            ],
        },
        Sequence {
            name: "customers: delete leaves a tombstone",
            fakes: &[LocalStripe],
            fake_setup: &[],
            steps: vec![
                step("eve", "customers.create", json!({"email": "eve@example.com"})),
                step("", "customers.delete", json!({}))
                    .on("$eve")
                    .cmp(&["id", "deleted"]),
                step("", "customers.retrieve", json!({}))
                    .on("$eve")
                    .cmp(&["deleted"]),
            ],
        },
        Sequence {
            name: "subscriptions: customer + recurring price, then cancel",
            fakes: BOTH,
            fake_setup: &[],
            steps: vec![
                step("cus", "customers.create", json!({"email": "sub@example.com"})),
                step("prod", "products.create", json!({"name": "Membership"})),
                step(
                    "price_conformance_monthly",
                    "prices.create",
                    json!({"product": "$prod", "unit_amount": 0, "currency": "usd",
                           "recurring": {"interval": "month"}}),
                ),
                step(
                    "sub",
                    "subscriptions.create",
                    json!({"customer": "$cus", "items": [{"price": "$price_conformance_monthly"}],
                           "metadata": {"source": "conformance"}}),
                )
                .cmp(&[
                    "customer",
                    "status",
                    "metadata",
                    "cancel_at_period_end",
                    "items.data.0.price.id",
                    "items.data.0.quantity",
                ]),
                step("", "subscriptions.retrieve", json!({}))
                    .on("$sub")
                    .cmp(&["customer", "status"]),
                step("", "subscriptions.list", json!({"customer": "$cus"}))
                    .cmp(&["data.len", "data.ids"]),
                step(
                    "",
                    "subscriptions.create",
                    json!({"customer": "$cus", "items": [{"price": "price_doesnotexist"}]}),
                ),
                step("", "subscriptions.cancel", json!({}))
                    .on("$sub")
                    .cmp(&["status", "customer"]),
            ],
        },
        Sequence {
            name: "coupons: percent and amount, update, delete",
            fakes: &[LocalStripe],
            fake_setup: &[],
            steps: vec![
                step(
                    "SUMMER20",
                    "coupons.create",
                    json!({"id": "SUMMER20", "percent_off": 20, "duration": "once"}),
                )
                .cmp(&["id", "percent_off", "duration", "valid", "amount_off"]),
                step(
                    "FIVEOFF",
                    "coupons.create",
                    json!({"id": "FIVEOFF", "amount_off": 500, "currency": "usd",
                           "duration": "repeating", "duration_in_months": 3}),
                )
                .cmp(&[
                    "id",
                    "amount_off",
                    "currency",
                    "duration",
                    "duration_in_months",
                    "percent_off",
                ]),
                step(
                    "",
                    "coupons.create",
                    json!({"percent_off": 10, "duration": "forever"}),
                )
                .cmp(&["percent_off", "duration"]),
                step("", "coupons.update", json!({"name": "Summer sale"}))
                    .on("$SUMMER20")
                    .cmp(&["name", "percent_off"]),
                step(
                    "",
                    "coupons.update",
                    json!({"metadata": {"campaign": "summer"}}),
                )
                .on("$SUMMER20")
                .cmp(&["metadata", "percent_off"]),
                step("", "coupons.retrieve", json!({}))
                    .on("$FIVEOFF")
                    .cmp(&["amount_off", "duration_in_months"]),
                step("", "coupons.update", json!({"percent_off": 30})).on("$FIVEOFF"),
                step("", "coupons.delete", json!({}))
                    .on("$FIVEOFF")
                    .cmp(&["id", "deleted"]),
                step("", "coupons.retrieve", json!({})).on("$FIVEOFF"),
            ],
        },
        Sequence {
            name: "idempotency: same key same body, same key other body",
            fakes: &[StatefulMock],
            fake_setup: &[],
            steps: vec![
                step("first", "products.create", json!({"name": "Once"}))
                    .idem("conformance-key-1")
                    .cmp(&["id", "name"]),
                step("again", "products.create", json!({"name": "Once"}))
                    .idem("conformance-key-1")
                    .cmp(&["id", "name"]),
                step("", "products.create", json!({"name": "Twice"})).idem("conformance-key-1"),
                step("", "products.list", json!({})).cmp(&["data.len"]),
            ],
        },
        Sequence {
            name: "Connect: Stripe-Account isolates the connected account",
            fakes: &[StatefulMock],
            fake_setup: &[(
                "/v1/accounts",
                "type=custom&id=acct_conformance01&country=US",
            )],
            steps: vec![
                step("conn_prod", "products.create", json!({"name": "Connected"}))
                    .connected()
                    .cmp(&["name"]),
                step("", "products.list", json!({}))
                    .connected()
                    .cmp(&["data.len", "data.ids"]),
                step("", "products.list", json!({})).cmp(&["data.len"]),
                step("", "products.retrieve", json!({})).on("$conn_prod"),
                step("", "products.retrieve", json!({}))
                    .on("$conn_prod")
                    .connected()
                    .cmp(&["name"]),
            ],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The fakes as child processes

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    repo().join(".ci-cache")
}

/// Fails (never skips) when the fakes are missing, with the command that installs them.
fn require_installed(fake: Fake) -> String {
    let hint = "run `bash scripts/install-peers.sh` (installs the Stripe fakes into .ci-cache/)";
    match fake {
        Fake::StatefulMock => {
            let pkg = cache().join("npm/node_modules/stripe-stateful-mock/package.json");
            let text = std::fs::read_to_string(&pkg)
                .unwrap_or_else(|_| panic!("stripe-stateful-mock is not installed: {hint}"));
            let meta: Value = serde_json::from_str(&text).unwrap();
            let version = meta["version"].as_str().unwrap_or("?").to_string();
            assert_eq!(
                version, STRIPE_STATEFUL_MOCK_VERSION,
                "stripe-stateful-mock {version} installed, {STRIPE_STATEFUL_MOCK_VERSION} expected: {hint}"
            );
            version
        }
        Fake::LocalStripe => {
            let python = cache().join("venv/bin/python");
            let out = Command::new(&python)
                .args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('localstripe'))",
                ])
                .output()
                .unwrap_or_else(|_| panic!("localstripe is not installed: {hint}"));
            assert!(out.status.success(), "localstripe is not installed: {hint}");
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                version, LOCALSTRIPE_VERSION,
                "localstripe {version} installed, {LOCALSTRIPE_VERSION} expected: {hint}"
            );
            version
        }
    }
}

/// A running fake; killed on drop, so a panicking test does not leave it behind.
struct FakeServer {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// stripe-stateful-mock's CLI and localstripe's `localstripe --port` listen on every
/// interface (and localstripe pickles its state to /tmp), so both are started through their
/// libraries, bound to 127.0.0.1 only, with nothing written to disk.
fn start(fake: Fake) -> FakeServer {
    // The tests of this file run at once: while one fake is starting, its port is free, and
    // another test choosing a port then could be handed the same one and talk to the wrong
    // fake. One start at a time, each held until its fake answers.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let log =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{port}.log", fake.name()));
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = match fake {
        Fake::StatefulMock => {
            let pkg = cache().join("npm/node_modules/stripe-stateful-mock");
            let mut c = Command::new("node");
            c.arg("-e")
                .arg(
                    "const log = require('loglevel'); log.setLevel('silent');\
                     const app = require(process.argv[1]).createExpressApp();\
                     app.listen(+process.argv[2], '127.0.0.1');",
                )
                .arg(&pkg)
                .arg(port.to_string())
                .current_dir(&pkg);
            c
        }
        Fake::LocalStripe => {
            let mut c = Command::new(cache().join("venv/bin/python"));
            c.arg("-c")
                .arg(
                    "import sys\n\
                     from aiohttp import web\n\
                     import localstripe.server as s\n\
                     s.store.dump_to_disk = lambda: None\n\
                     web.run_app(s.app, host='127.0.0.1', port=int(sys.argv[1]), access_log=None, print=None)\n",
                )
                .arg(port.to_string());
            c
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", fake.name()));
    let mut server = FakeServer {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{} exited with {status} before answering:\n{}",
                fake.name(),
                read_log(&server.log)
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer on port {port} within 30s:\n{}",
            fake.name(),
            read_log(&server.log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Running a sequence on one side

/// One side of the comparison: a backend and the ids its steps produced, by label.
struct Side {
    backend: Box<dyn Backend>,
    ids: BTreeMap<String, String>,
    /// Set for the fake side: raw requests for adapted steps go here.
    fake: Option<(Fake, String)>,
}

impl Side {
    fn resolve(&self, s: &str) -> String {
        match s.strip_prefix('$') {
            Some(label) => self
                .ids
                .get(label)
                .cloned()
                .unwrap_or_else(|| s.to_string()),
            None => s.to_string(),
        }
    }

    fn substitute(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.resolve(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.substitute(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.substitute(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Replaces every id this side recorded by its `$label`, so both sides compare equal.
    fn normalise(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => match self.ids.iter().find(|(_, id)| *id == s) {
                Some((label, _)) => Value::String(format!("${label}")),
                None => value.clone(),
            },
            Value::Number(n) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| value.clone()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.normalise(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.normalise(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    async fn run(&mut self, step: &Step) -> PayResponse {
        let mut params = match self.substitute(&step.params) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some((fake, base_url)) = &self.fake
            && known(*fake, step.op, "(request)").is_some()
            && let Some(response) = adapt(*fake, base_url, step, &mut params).await
        {
            self.record(step, &response);
            return response;
        }
        let (account_id, stripe_connect_id) = match (step.connect, self.fake.is_some()) {
            (true, _) => (ACCOUNT_ID, Some(CONNECT_ID.to_string())),
            (false, true) => (PLATFORM_ACCOUNT_ID, None),
            (false, false) => (
                PLATFORM_ACCOUNT_ID,
                Some(altan_pay::gateway::sandbox::derived_connect_id(
                    PLATFORM_ACCOUNT_ID,
                )),
            ),
        };
        let request = PayRequest {
            operation: step.op.to_string(),
            account_id: account_id.to_string(),
            stripe_connect_id,
            id: step.id.map(|id| self.resolve(id)),
            params,
            idempotency_key: step.idempotency_key.map(String::from),
        };
        let response = self.backend.handle(request).await;
        self.record(step, &response);
        response
    }

    fn record(&mut self, step: &Step, response: &PayResponse) {
        if !step.label.is_empty()
            && (200..300).contains(&response.status)
            && let Some(id) = response.body["id"].as_str()
            && !self.ids.values().any(|v| v == id)
        {
            self.ids.insert(step.label.to_string(), id.to_string());
        }
    }
}

/// Requests a fake can't take as Stripe would, rewritten for it (each is listed in
/// `KNOWN_DIFFERENCES` with field `(request)`). Returns a response when the step was served
/// by a raw call to the fake instead of the backend.
async fn adapt(
    fake: Fake,
    base_url: &str,
    step: &Step,
    params: &mut Map<String, Value>,
) -> Option<PayResponse> {
    match (fake, step.op) {
        (Fake::LocalStripe, "prices.create") => {
            let mut plan = json!({
                "id": step.label,
                "product": params.get("product").cloned().unwrap_or(Value::Null),
                "amount": params.get("unit_amount").cloned().unwrap_or(Value::Null),
                "currency": params.get("currency").cloned().unwrap_or(Value::Null),
            });
            if let Some(interval) = params.get("recurring").and_then(|r| r.get("interval")) {
                plan["interval"] = interval.clone();
            }
            let body = altan_pay::pay::form::encode(&plan);
            let response = reqwest::Client::new()
                .post(format!("{base_url}/v1/plans"))
                .bearer_auth(FAKE_KEY)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert!(
                (200..300).contains(&status),
                "localstripe plan setup failed: {body}"
            );
            Some(PayResponse { status, body })
        }
        (Fake::StatefulMock, "subscriptions.create") => {
            let client = reqwest::Client::new();
            if let Some(Value::Array(items)) = params.get_mut("items") {
                for item in items {
                    let Some(price_id) =
                        item.get("price").and_then(Value::as_str).map(String::from)
                    else {
                        continue;
                    };
                    let found = client
                        .get(format!("{base_url}/v1/prices/{price_id}"))
                        .bearer_auth(FAKE_KEY)
                        .send()
                        .await
                        .unwrap();
                    if !found.status().is_success() {
                        continue;
                    }
                    let price: Value = found.json().await.unwrap();
                    let plan = json!({
                        "id": price_id,
                        "product": price["product"],
                        "amount": price["unit_amount"],
                        "currency": price["currency"],
                        "interval": price["recurring"]["interval"],
                    });
                    let created = client
                        .post(format!("{base_url}/v1/plans"))
                        .bearer_auth(FAKE_KEY)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(altan_pay::pay::form::encode(&plan))
                        .send()
                        .await
                        .unwrap();
                    assert!(created.status().is_success(), "plan setup failed");
                    item["plan"] = Value::String(price_id);
                }
            }
            None
        }
        (Fake::LocalStripe, "subscriptions.create") => {
            if let Some(Value::Array(items)) = params.get_mut("items") {
                for item in items {
                    if let Some(map) = item.as_object_mut()
                        && let Some(price) = map.remove("price")
                    {
                        map.insert("plan".into(), price);
                    }
                }
            }
            None
        }
        _ => None,
    }
}

fn known(fake: Fake, op: &str, field: &str) -> Option<&'static str> {
    KNOWN_DIFFERENCES
        .iter()
        .find(|(f, o, fl, _)| *f == fake && *o == op && *fl == field)
        .map(|(_, _, _, what)| *what)
}

// ---------------------------------------------------------------------------------------------
// Comparing

#[derive(Default)]
struct Report {
    operations: BTreeSet<&'static str>,
    steps: usize,
    fields_compared: usize,
    fields: BTreeSet<String>,
    skipped: Vec<String>,
    observed: BTreeSet<(&'static str, String)>,
    mismatches: Vec<String>,
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn id_prefix(body: &Value) -> Value {
    match body["id"].as_str() {
        Some(id) => match id.rfind('_') {
            Some(i) => Value::String(id[..=i].to_string()),
            None => Value::String("(no prefix)".into()),
        },
        None => Value::Null,
    }
}

fn field(side: &Side, body: &Value, path: &str) -> Value {
    match path {
        "data.len" => body["data"]
            .as_array()
            .map(|d| json!(d.len()))
            .unwrap_or(Value::Null),
        "data.ids" => side.normalise(&Value::Array(
            body["data"]
                .as_array()
                .map(|d| d.iter().map(|o| o["id"].clone()).collect())
                .unwrap_or_default(),
        )),
        _ => {
            let mut node = body;
            for part in path.split('.') {
                node = match (node, part.parse::<usize>()) {
                    (Value::Array(items), Ok(i)) => items.get(i).unwrap_or(&Value::Null),
                    (Value::Object(map), _) => map.get(part).unwrap_or(&Value::Null),
                    _ => &Value::Null,
                };
            }
            side.normalise(node)
        }
    }
}

fn compare_step(
    fake: Fake,
    seq: &str,
    step: &Step,
    sandbox: (&Side, &PayResponse),
    other: (&Side, &PayResponse),
    report: &mut Report,
) {
    report.steps += 1;
    report.operations.insert(step.op);
    let where_ = format!("[{seq}] {} {}", step.op, step.label);
    let check = |name: &str, a: Value, b: Value, report: &mut Report| -> bool {
        report.fields_compared += 1;
        report.fields.insert(format!("{}:{name}", step.op));
        if a == b {
            return true;
        }
        match known(fake, step.op, name) {
            Some(what) => {
                report.skipped.push(format!(
                    "{where_}: `{name}` sandbox {a} vs {} {b} ({what})",
                    fake.name()
                ));
                report.observed.insert((step.op, name.to_string()));
            }
            None => report.mismatches.push(format!(
                "{where_}: `{name}` sandbox {a} vs {} {b}",
                fake.name()
            )),
        }
        false
    };
    let (sa, sr) = sandbox;
    let (fa, fr) = other;
    if !check(
        "status",
        json!(status_class(sr.status)),
        json!(status_class(fr.status)),
        report,
    ) {
        // Context for whoever reads a mismatch: both bodies.
        if known(fake, step.op, "status").is_none() {
            report
                .mismatches
                .push(format!("    sandbox: {} {}", sr.status, sr.body));
            report
                .mismatches
                .push(format!("    {}: {} {}", fake.name(), fr.status, fr.body));
        }
        return;
    }
    if (200..300).contains(&sr.status) {
        check(
            "object",
            sr.body["object"].clone(),
            fr.body["object"].clone(),
            report,
        );
        if sr.body.get("id").is_some() {
            check(
                "id_prefix",
                id_prefix(&sr.body),
                id_prefix(&fr.body),
                report,
            );
        }
        for name in step.compare {
            check(
                name,
                field(sa, &sr.body, name),
                field(fa, &fr.body, name),
                report,
            );
        }
    } else {
        check("error.status", json!(sr.status), json!(fr.status), report);
        for name in ["error.type", "error.code", "error.param"] {
            check(
                name,
                field(sa, &sr.body, name),
                field(fa, &fr.body, name),
                report,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reference side

/// The embedded sandbox, the side that follows Stripe's documented behaviour.
fn sandbox() -> Box<dyn Backend> {
    let state = json!({"accounts": {ACCOUNT_ID: {"stripe_connect_id": CONNECT_ID}}});
    Box::new(altan_pay::gateway::sandbox::Sandbox::with_state(&state).unwrap())
}

fn upstream(base_url: &str) -> Box<dyn Backend> {
    Box::new(
        StripeUpstream::new(
            UpstreamConfig::new(FAKE_KEY)
                .with_base_url(base_url)
                .with_timeout(Duration::from_secs(10))
                // The upstream acts for bound accounts only: `connected()` steps on the Connect
                // account, the others on the platform account.
                .with_connect_id(ACCOUNT_ID, CONNECT_ID)
                .with_platform_account(PLATFORM_ACCOUNT_ID),
        )
        .unwrap(),
    )
}

async fn run_fake_setup(base_url: &str, setup: &[(&str, &str)]) {
    for (path, body) in setup {
        let response = reqwest::Client::new()
            .post(format!("{base_url}{path}"))
            .bearer_auth(FAKE_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "fake setup {path} failed: {text}");
    }
}

async fn conformance(fake: Fake) {
    let version = require_installed(fake);
    let mut report = Report::default();
    let mut sequences_run = Vec::new();
    // CONFORMANCE_TRACE=1 prints every step's two responses.
    let trace = std::env::var_os("CONFORMANCE_TRACE").is_some();
    for seq in sequences().into_iter().filter(|s| s.fakes.contains(&fake)) {
        let server = start(fake);
        run_fake_setup(&server.base_url, seq.fake_setup).await;
        let mut reference = Side {
            backend: sandbox(),
            ids: BTreeMap::new(),
            fake: None,
        };
        let mut other = Side {
            backend: upstream(&server.base_url),
            ids: BTreeMap::new(),
            fake: Some((fake, server.base_url.clone())),
        };
        for step in &seq.steps {
            let a = reference.run(step).await;
            let b = other.run(step).await;
            if trace {
                println!(
                    "[{}] {} {}\n  sandbox {} {}\n  {} {} {}",
                    seq.name,
                    step.op,
                    step.label,
                    a.status,
                    a.body,
                    fake.name(),
                    b.status,
                    b.body
                );
            }
            if known(fake, step.op, "(request)").is_some() && step.op == "prices.create" {
                // Adapted setup step (a Plan stands in): not compared.
                report.observed.insert((step.op, "(request)".into()));
                continue;
            }
            if known(fake, step.op, "(request)").is_some() {
                report.observed.insert((step.op, "(request)".into()));
            }
            compare_step(
                fake,
                seq.name,
                step,
                (&reference, &a),
                (&other, &b),
                &mut report,
            );
        }
        sequences_run.push(seq.name);
        drop(server);
    }

    let stale: Vec<String> = KNOWN_DIFFERENCES
        .iter()
        .filter(|(f, op, field, what)| {
            *f == fake
                && !report.observed.contains(&(*op, field.to_string()))
                && *what != SAME_SECOND_ORDER
        })
        .map(|(_, op, field, what)| format!("{op} `{field}`: {what}"))
        .collect();

    let mut text = String::new();
    text.push_str(&format!(
        "== conformance: sandbox vs {} {version} (through StripeUpstream)\n",
        fake.name()
    ));
    text.push_str(&format!("sequences ({}):\n", sequences_run.len()));
    for s in &sequences_run {
        text.push_str(&format!("  - {s}\n"));
    }
    text.push_str(&format!(
        "operations covered ({}): {}\n",
        report.operations.len(),
        report
            .operations
            .iter()
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str(&format!(
        "steps: {}, field comparisons: {}, distinct fields: {}\n",
        report.steps,
        report.fields_compared,
        report.fields.len()
    ));
    text.push_str(&format!(
        "known differences skipped ({}):\n",
        report.skipped.len()
    ));
    for s in &report.skipped {
        text.push_str(&format!("  - {s}\n"));
    }
    if !stale.is_empty() {
        text.push_str(&format!(
            "known differences NOT observed ({}; remove or fix the entry):\n",
            stale.len()
        ));
        for s in &stale {
            text.push_str(&format!("  - {s}\n"));
        }
    }
    text.push_str(&format!("mismatches ({}):\n", report.mismatches.len()));
    for s in &report.mismatches {
        text.push_str(&format!("  - {s}\n"));
    }
    println!("{text}");
    let out = repo()
        .join("target")
        .join(format!("conformance-{}.txt", fake.name()));
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    let _ = std::fs::write(&out, &text);
    assert!(
        report.mismatches.is_empty() && stale.is_empty(),
        "sandbox and {} disagree beyond KNOWN_DIFFERENCES:\n{text}",
        fake.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_matches_stripe_stateful_mock() {
    conformance(Fake::StatefulMock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_matches_localstripe() {
    conformance(Fake::LocalStripe).await;
}

#[test]
fn known_differences_name_real_operations() {
    for (fake, op, field, what) in KNOWN_DIFFERENCES {
        assert!(
            altan_pay::pay::routes::OPERATIONS.contains(op),
            "{} entry names unknown operation {op}",
            fake.name()
        );
        assert!(!field.is_empty() && !what.is_empty());
        let used = sequences()
            .iter()
            .filter(|s| s.fakes.contains(fake))
            .any(|s| s.steps.iter().any(|st| st.op == *op));
        assert!(
            used,
            "{} entry {op} `{field}`: no sequence runs it on that fake",
            fake.name()
        );
    }
}

/// A Stripe-compatible server that answers something other than JSON (localstripe's router
/// answers `404: Not Found` as text for routes it lacks) becomes a 502 `api_error`.
#[tokio::test]
async fn upstream_turns_a_non_json_answer_into_an_api_error() {
    require_installed(Fake::LocalStripe);
    let server = start(Fake::LocalStripe);
    let response = upstream(&server.base_url)
        .handle(PayRequest {
            operation: "prices.list".into(),
            account_id: PLATFORM_ACCOUNT_ID.into(),
            stripe_connect_id: None,
            id: None,
            params: Map::new(),
            idempotency_key: None,
        })
        .await;
    assert_eq!(response.status, 502, "{}", response.body);
    assert_eq!(response.body["error"]["type"], "api_error");
    let message = response.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("GET /v1/prices") && message.contains("not JSON"),
        "{message}"
    );
}
