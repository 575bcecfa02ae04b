//! How the model reads tool results. A fresh result comes without the timestamps it has no
//! use for (`created`, `updated`) and without the `object` type of nested objects (the field
//! holding them says what they are); the tools, the policy and the sync plan still see the
//! whole object. Once the model has taken its next step, a result it has read is cut down to
//! its digest: the ids, references and few fields a later step or the answer can still need
//! (names, codes, status, list structure; the amounts and terms a call set are in its own
//! arguments). Every later call of the turn, and the thread's
//! history, carries the digest instead of the whole object. Errors stay whole (their `next`
//! is an instruction the model may still follow).

use serde_json::{Map, Value};

/// The fields a digest keeps, besides any string that is a Stripe id (a reference).
const KEPT: &[&str] = &[
    "id",
    "name",
    "email",
    "nickname",
    "code",
    "status",
    "active",
    "deleted",
    "has_more",
    "data",
    "items",
    "price",
    "product",
    "customer",
    "discounts",
    "cancel_at_period_end",
    "url",
    "mode",
];

/// The digest of a tool result (its JSON text), or `None` when it stays as it is: not JSON,
/// an error, or no shorter.
pub fn digest(content: &str) -> Option<String> {
    let value: Value = serde_json::from_str(content).ok()?;
    if !(value.is_object() || value.is_array()) || value.get("error").is_some() {
        return None;
    }
    let mut cut = cut(value);
    // A whole list is its items.
    if cut.get("has_more") == Some(&Value::Bool(false))
        && let Some(items) = cut.get_mut("data").map(Value::take)
    {
        cut = items;
    }
    let text = cut.to_string();
    (text.len() < content.len()).then_some(text)
}

/// The kept fields; an object held by a field (a subscription item's `price`) is named by its
/// id alone, since its own result was read when it was fetched or made.
fn cut(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, v)| KEPT.contains(&k.as_str()) || v.as_str().is_some_and(is_id))
                .map(|(k, v)| {
                    let v = match v.get("id") {
                        Some(Value::String(id)) if k != "data" => Value::String(id.clone()),
                        // A whole nested list is its items.
                        _ if k != "data" && v.get("has_more") != Some(&Value::Bool(true)) => {
                            match v.get("data") {
                                Some(items) => cut(items.clone()),
                                None => cut(v),
                            }
                        }
                        _ => cut(v),
                    };
                    (k, v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(cut).collect()),
        other => other,
    }
}

/// Fields a fresh result leaves out: timestamps, and settings Stripe fills in on its own that
/// no tool sets (a subscription's tax, billing, invoice, payment and trial settings).
const NOT_READ: &[&str] = &[
    "created",
    "updated",
    "automatic_tax",
    "billing_cycle_anchor",
    "billing_mode",
    "invoice_settings",
    "managed_payments",
    "payment_settings",
    "trial_settings",
];

/// A fresh result as the model reads it (see the module's doc). A nested list that is whole
/// is its items; in the result of a write (`write`), an object a field holds (a subscription
/// item's `price`) is named by its id: the call's own arguments named it, and an earlier
/// result showed it.
pub fn fresh(content: &Value, write: bool) -> String {
    fn trim(value: &Value, top: bool, write: bool) -> Value {
        match value {
            Value::Object(map) => {
                let is_list = map.get("object").and_then(Value::as_str) == Some("list");
                if is_list
                    && !top
                    && map.get("has_more") != Some(&Value::Bool(true))
                    && let Some(items) = map.get("data")
                {
                    return trim(items, false, write);
                }
                Value::Object(
                    map.iter()
                        .filter(|(k, _)| {
                            !NOT_READ.contains(&k.as_str()) && (top || k.as_str() != "object")
                        })
                        .map(|(k, v)| {
                            let v = match v.get("id") {
                                Some(Value::String(id)) if write && k != "data" => {
                                    Value::String(id.clone())
                                }
                                // A list's items are its top level.
                                _ => trim(v, top && is_list && k == "data", write),
                            };
                            (k.clone(), v)
                        })
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| trim(v, top, write)).collect())
            }
            other => other.clone(),
        }
    }
    if content.get("error").is_some() {
        return content.to_string();
    }
    trim(content, true, write).to_string()
}

/// A Stripe id: a short lowercase prefix, `_`, at least six letters, digits or `_`.
pub fn is_id(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_once('_') else {
        return false;
    };
    (2..=8).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && rest.len() >= 6
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_digest_keeps_ids_references_and_what_an_answer_names() {
        let sub = json!({
            "id": "sub_Ann", "object": "subscription", "created": 1767225600,
            "customer": "cus_Ann", "status": "active", "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"id": "si_Ann1", "object": "subscription_item", "quantity": 1,
                "price": {"id": "price_ProMonthly", "object": "price", "product": "prod_Pro", "unit_amount": 2000,
                          "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]},
        });
        let got: Value = serde_json::from_str(&digest(&sub.to_string()).unwrap()).unwrap();
        assert_eq!(
            got,
            json!({
                "id": "sub_Ann", "customer": "cus_Ann", "status": "active", "cancel_at_period_end": false,
                "items": [{"id": "si_Ann1", "price": "price_ProMonthly"}],
            })
        );
    }

    #[test]
    fn a_fresh_result_drops_timestamps_and_nested_types() {
        let list = json!({"object": "list", "has_more": false, "data": [{
            "id": "sub_1", "object": "subscription", "created": 1, "status": "active",
            "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                "price": {"id": "price_1", "object": "price", "updated": 2}}]},
        }]});
        let got: Value = serde_json::from_str(&fresh(&list, false)).unwrap();
        assert_eq!(
            got,
            json!({"object": "list", "has_more": false, "data": [{
                "id": "sub_1", "object": "subscription", "status": "active",
                "items": [{"id": "si_1", "price": {"id": "price_1"}}],
            }]}),
            "a whole nested list is its items; the top list says whether there is more"
        );
        let sub = json!({"id": "sub_1", "object": "subscription", "customer": {"id": "cus_1", "email": "a@b.c"},
            "items": {"object": "list", "has_more": true, "data": [{"id": "si_1", "price": {"id": "price_1", "unit_amount": 5}}]}});
        let got: Value = serde_json::from_str(&fresh(&sub, true)).unwrap();
        assert_eq!(
            got,
            json!({"id": "sub_1", "object": "subscription", "customer": "cus_1",
                "items": {"has_more": true, "data": [{"id": "si_1", "price": "price_1"}]}}),
            "a write's result names the objects it holds by id; a partial list stays a page"
        );
        let error = json!({"error": {"code": "not_found", "created": 3}});
        assert_eq!(fresh(&error, true), error.to_string(), "errors stay whole");
    }

    #[test]
    fn errors_text_and_short_results_stay_whole() {
        let error = json!({"error": {"code": "not_found", "message": "No such product", "next": "look it up"}});
        assert_eq!(digest(&error.to_string()), None);
        assert_eq!(digest("plain words"), None);
        assert_eq!(digest("42"), None);
        assert_eq!(digest(r#"{"id":"prod_123456"}"#), None, "nothing to cut");
        let list = json!({"object": "list", "data": [{"id": "prod_123456", "created": 1}], "has_more": false});
        assert_eq!(
            digest(&list.to_string()).as_deref(),
            Some(r#"[{"id":"prod_123456"}]"#),
            "a whole list is its items"
        );
        let page = json!({"object": "list", "data": [{"id": "prod_123456", "created": 1}], "has_more": true});
        assert_eq!(
            digest(&page.to_string()).as_deref(),
            Some(r#"{"data":[{"id":"prod_123456"}],"has_more":true}"#),
            "a page says there is more"
        );
    }
}
