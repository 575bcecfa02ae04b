//! Initial state: Stripe objects to preload per account, for demos and transcript tests.
//!
//! Format (every key optional except `accounts`; lists are oldest first):
//! ```json
//! {"accounts": {"<account_id>": {
//!     "stripe_connect_id": "acct_...",
//!     "products": [{"id": "prod_1", "name": "Pro"}], "prices": [...], "customers": [...],
//!     "subscriptions": [...], "coupons": [...], "promotion_codes": [...],
//!     "checkout_sessions": [...]}}}
//! ```
//! Each object needs a string `id`; `object`, `livemode`, `created` and `metadata` are filled
//! (and `active`, a price's `type`, a coupon's `valid`, a subscription's `status`)
//! in when missing; other fields are stored as given, so give Stripe's shapes.

use serde_json::{Map, Value, json};

use super::state::{Changes, State};
use super::util::now;

/// Why an initial state was refused, naming the place in the document.
#[derive(Debug, thiserror::Error)]
#[error("initial state: {at}: {reason}")]
pub struct SeedError {
    /// The path in the document, e.g. `accounts.ws_1`.
    pub at: String,
    /// What is wrong there.
    pub reason: String,
}

/// (key in the document, collection, Stripe object name).
const COLLECTIONS: &[(&str, &str)] = &[
    ("products", "product"),
    ("prices", "price"),
    ("customers", "customer"),
    ("coupons", "coupon"),
    ("promotion_codes", "promotion_code"),
    ("subscriptions", "subscription"),
    ("checkout_sessions", "checkout.session"),
];

fn err(at: impl Into<String>, reason: impl Into<String>) -> SeedError {
    SeedError {
        at: at.into(),
        reason: reason.into(),
    }
}

pub fn apply(state: &mut State, doc: &Value) -> Result<(), SeedError> {
    let accounts = doc
        .get("accounts")
        .and_then(Value::as_object)
        .ok_or_else(|| err("accounts", "expected an object keyed by account id"))?;
    let mut planned = Vec::new();
    for (account, body) in accounts {
        planned.push((account.clone(), account_changes(account, body)?));
    }
    for (account, changes) in planned {
        state
            .commit(&account, changes)
            .map_err(|e| err(format!("accounts.{account}"), e))?;
    }
    Ok(())
}

fn account_changes(account: &str, body: &Value) -> Result<Changes, SeedError> {
    let at = format!("accounts.{account}");
    let map = body
        .as_object()
        .ok_or_else(|| err(&at, "expected an object"))?;
    let mut changes = Changes::default();
    for key in map.keys() {
        if key != "stripe_connect_id" && !COLLECTIONS.iter().any(|(k, _)| k == key) {
            let known: Vec<_> = COLLECTIONS.iter().map(|(k, _)| *k).collect();
            return Err(err(
                format!("{at}.{key}"),
                format!(
                    "unknown key (known: stripe_connect_id, {})",
                    known.join(", ")
                ),
            ));
        }
    }
    if let Some(id) = map.get("stripe_connect_id") {
        let id = id.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            err(
                format!("{at}.stripe_connect_id"),
                "expected a non-empty string",
            )
        })?;
        changes.connect_id = Some(id.to_string());
    }
    for (key, object) in COLLECTIONS {
        let Some(items) = map.get(*key) else { continue };
        let items = items
            .as_array()
            .ok_or_else(|| err(format!("{at}.{key}"), "expected an array"))?;
        for (i, item) in items.iter().enumerate() {
            let item = normalise(item, object).map_err(|r| err(format!("{at}.{key}[{i}]"), r))?;
            let id = item["id"].as_str().unwrap_or_default().to_string();
            changes.objects.push((object.to_string(), id, Some(item)));
        }
    }
    Ok(changes)
}

fn normalise(item: &Value, object: &str) -> Result<Value, String> {
    let map: &Map<String, Value> = item.as_object().ok_or("expected an object")?;
    match map.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => {}
        _ => return Err("needs a non-empty string `id`".into()),
    }
    if let Some(given) = map.get("object").and_then(Value::as_str)
        && given != object
    {
        return Err(format!(
            "`object` is `{given}` but this list holds `{object}`"
        ));
    }
    let mut out = item.clone();
    for (key, default) in [
        ("object", json!(object)),
        ("livemode", json!(false)),
        ("created", json!(now())),
        ("metadata", json!({})),
    ] {
        if out.get(key).is_none() {
            out[key] = default;
        }
    }
    // What Stripe would have set on creation, so filters like `active=true` find seeded objects.
    let recurring = out.get("recurring").is_some_and(|r| !r.is_null());
    let defaults: &[(&str, Value)] = match object {
        "product" => &[("active", json!(true))],
        "price" => &[
            ("active", json!(true)),
            (
                "type",
                json!(if recurring { "recurring" } else { "one_time" }),
            ),
            ("recurring", Value::Null),
        ],
        "promotion_code" => &[("active", json!(true))],
        "coupon" => &[("valid", json!(true)), ("times_redeemed", json!(0))],
        "subscription" => &[("status", json!("active"))],
        _ => &[],
    };
    for (key, default) in defaults {
        if out.get(*key).is_none() {
            out[*key] = default.clone();
        }
    }
    Ok(out)
}
