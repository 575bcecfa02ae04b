//! The parameters each operation accepts (one table, close to Stripe's) and their coercion:
//! query strings arrive as strings, JSON may carry real types; both end up typed here.

use serde_json::{Map, Number, Value};

use crate::gateway::error::GatewayRefusal;

/// The type of one parameter.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Any string (numbers and booleans are accepted as their text, like a form would).
    Str,
    /// Integer within inclusive bounds.
    Int(i64, i64),
    /// Number within `(min, max]`.
    Float(f64, f64),
    Bool,
    /// Three ASCII letters, lowercased.
    Currency,
    OneOf(&'static [&'static str]),
    /// String keys to string values; an empty value removes the key.
    Metadata,
    List(&'static Ty),
    Obj(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const MAX_AMOUNT: i64 = 99_999_999_999;
const AMOUNT: Ty = Ty::Int(0, MAX_AMOUNT);
const COUNT: Ty = Ty::Int(1, 1_000_000);
const QUANTITY: Ty = Ty::Int(0, 1_000_000);
const TIMESTAMP: Ty = Ty::Int(0, 253_402_300_799);
const STRINGS: Ty = Ty::List(&Ty::Str);
const INTERVAL: Ty = Ty::OneOf(&["day", "week", "month", "year"]);

const PAGE: [Field; 3] = [
    opt("limit", Ty::Int(1, 100)),
    opt("starting_after", Ty::Str),
    opt("ending_before", Ty::Str),
];

const RECURRING: &[Field] = &[
    req("interval", INTERVAL),
    opt("interval_count", Ty::Int(1, 365)),
    opt("usage_type", Ty::OneOf(&["licensed", "metered"])),
    opt("trial_period_days", Ty::Int(0, 730)),
];
const DISCOUNT: &[Field] = &[opt("coupon", Ty::Str), opt("promotion_code", Ty::Str)];
const DISCOUNTS: Ty = Ty::List(&Ty::Obj(DISCOUNT));
const ADDRESS: &[Field] = &[
    opt("line1", Ty::Str),
    opt("line2", Ty::Str),
    opt("city", Ty::Str),
    opt("state", Ty::Str),
    opt("postal_code", Ty::Str),
    opt("country", Ty::Str),
];
const PRICE_DATA: &[Field] = &[
    req("currency", Ty::Currency),
    req("unit_amount", AMOUNT),
    opt("recurring", Ty::Obj(RECURRING)),
    opt("tax_behavior", TAX_BEHAVIOR),
];
const PRODUCT_DATA: &[Field] = &[
    req("name", Ty::Str),
    opt("active", Ty::Bool),
    opt("metadata", Ty::Metadata),
    opt("statement_descriptor", Ty::Str),
    opt("tax_code", Ty::Str),
    opt("unit_label", Ty::Str),
];
const TAX_BEHAVIOR: Ty = Ty::OneOf(&["exclusive", "inclusive", "unspecified"]);
const SUB_ITEM_CREATE: &[Field] = &[
    req("price", Ty::Str),
    opt("quantity", QUANTITY),
    opt("metadata", Ty::Metadata),
];
const SUB_ITEM_UPDATE: &[Field] = &[
    opt("id", Ty::Str),
    opt("price", Ty::Str),
    opt("quantity", QUANTITY),
    opt("metadata", Ty::Metadata),
    opt("deleted", Ty::Bool),
];
const LINE_ITEM: &[Field] = &[
    req("price", Ty::Str),
    opt("quantity", Ty::Int(1, 1_000_000)),
];
const SUBSCRIPTION_DATA: &[Field] = &[
    opt("description", Ty::Str),
    opt("metadata", Ty::Metadata),
    opt("trial_period_days", Ty::Int(1, 730)),
];
const CANCELLATION: &[Field] = &[
    opt("comment", Ty::Str),
    opt(
        "feedback",
        Ty::OneOf(&[
            "customer_service",
            "low_quality",
            "missing_features",
            "other",
            "switched_service",
            "too_complex",
            "too_expensive",
            "unused",
        ]),
    ),
];
const RESTRICTIONS: &[Field] = &[
    opt("first_time_transaction", Ty::Bool),
    opt("minimum_amount", AMOUNT),
    opt("minimum_amount_currency", Ty::Currency),
];
const PROMOTION: &[Field] = &[req("type", Ty::OneOf(&["coupon"])), req("coupon", Ty::Str)];

const PRODUCT_FIELDS: [Field; 9] = [
    opt("active", Ty::Bool),
    opt("description", Ty::Str),
    opt("metadata", Ty::Metadata),
    opt("images", STRINGS),
    opt("shippable", Ty::Bool),
    opt("statement_descriptor", Ty::Str),
    opt("tax_code", Ty::Str),
    opt("unit_label", Ty::Str),
    opt("url", Ty::Str),
];
const CUSTOMER_FIELDS: [Field; 9] = [
    opt("email", Ty::Str),
    opt("name", Ty::Str),
    opt("description", Ty::Str),
    opt("phone", Ty::Str),
    opt("metadata", Ty::Metadata),
    opt("address", Ty::Obj(ADDRESS)),
    opt("coupon", Ty::Str),
    opt("promotion_code", Ty::Str),
    opt("discounts", DISCOUNTS),
];
const SUBSCRIPTION_FIELDS: [Field; 7] = [
    opt("metadata", Ty::Metadata),
    opt("description", Ty::Str),
    opt("discounts", DISCOUNTS),
    opt("cancel_at_period_end", Ty::Bool),
    opt(
        "collection_method",
        Ty::OneOf(&["charge_automatically", "send_invoice"]),
    ),
    opt("days_until_due", Ty::Int(0, 730)),
    opt(
        "proration_behavior",
        Ty::OneOf(&["always_invoice", "create_prorations", "none"]),
    ),
];

macro_rules! fields {
    ($($group:expr),* ; $($field:expr),* $(,)?) => {{
        const ALL: &[Field] = &{
            let mut out = [opt("", Ty::Str); 0 $(+ $group.len())* $(+ { let _ = stringify!($field); 1 })*];
            let mut n = 0;
            $(
                let group = &$group;
                let mut i = 0;
                while i < group.len() {
                    out[n] = group[i];
                    n += 1;
                    i += 1;
                }
            )*
            $(
                out[n] = $field;
                n += 1;
            )*
            let _ = n;
            out
        };
        ALL
    }};
}

/// The accepted parameters of an operation; `None` for an operation the sandbox lacks.
pub fn accepted(operation: &str) -> Option<&'static [Field]> {
    Some(match operation {
        "account.stripe_connect_id" => &[],
        "products.create" => fields!(PRODUCT_FIELDS; req("name", Ty::Str), opt("id", Ty::Str),
            opt("default_price_data", Ty::Obj(PRICE_DATA))),
        "products.update" => {
            fields!(PRODUCT_FIELDS; opt("name", Ty::Str), opt("default_price", Ty::Str))
        }
        "products.list" => fields!(PAGE; opt("active", Ty::Bool), opt("ids", STRINGS),
            opt("shippable", Ty::Bool), opt("url", Ty::Str)),
        "prices.create" => {
            const {
                &[
                    req("currency", Ty::Currency),
                    opt("unit_amount", AMOUNT),
                    opt("product", Ty::Str),
                    opt("product_data", Ty::Obj(PRODUCT_DATA)),
                    opt("recurring", Ty::Obj(RECURRING)),
                    opt("active", Ty::Bool),
                    opt("nickname", Ty::Str),
                    opt("lookup_key", Ty::Str),
                    opt("metadata", Ty::Metadata),
                    opt("tax_behavior", TAX_BEHAVIOR),
                ]
            }
        }
        "prices.update" => {
            const {
                &[
                    opt("active", Ty::Bool),
                    opt("nickname", Ty::Str),
                    opt("lookup_key", Ty::Str),
                    opt("metadata", Ty::Metadata),
                    opt("tax_behavior", TAX_BEHAVIOR),
                ]
            }
        }
        "prices.list" => fields!(PAGE; opt("active", Ty::Bool), opt("product", Ty::Str),
            opt("type", Ty::OneOf(&["one_time", "recurring"])), opt("currency", Ty::Currency),
            opt("lookup_keys", STRINGS)),
        "customers.create" | "customers.update" => fields!(CUSTOMER_FIELDS;),
        "customers.list" => fields!(PAGE; opt("email", Ty::Str)),
        "subscriptions.create" => fields!(SUBSCRIPTION_FIELDS; req("customer", Ty::Str),
            req("items", Ty::List(&Ty::Obj(SUB_ITEM_CREATE))),
            opt("trial_period_days", Ty::Int(0, 730)),
            opt("payment_behavior", Ty::OneOf(&["allow_incomplete", "default_incomplete",
                "error_if_incomplete", "pending_if_incomplete"]))),
        "subscriptions.update" => fields!(SUBSCRIPTION_FIELDS;
            opt("items", Ty::List(&Ty::Obj(SUB_ITEM_UPDATE))),
            opt("payment_behavior", Ty::OneOf(&["allow_incomplete", "default_incomplete",
                "error_if_incomplete", "pending_if_incomplete"]))),
        "subscriptions.cancel" => {
            const {
                &[
                    opt("invoice_now", Ty::Bool),
                    opt("prorate", Ty::Bool),
                    opt("cancellation_details", Ty::Obj(CANCELLATION)),
                ]
            }
        }
        "subscriptions.list" => fields!(PAGE; opt("customer", Ty::Str), opt("price", Ty::Str),
            opt("status", Ty::OneOf(&["active", "all", "canceled", "ended", "incomplete",
                "incomplete_expired", "past_due", "paused", "trialing", "unpaid"])),
            opt("collection_method", Ty::OneOf(&["charge_automatically", "send_invoice"]))),
        "coupons.create" => {
            const {
                &[
                    opt("id", Ty::Str),
                    opt("name", Ty::Str),
                    opt("percent_off", Ty::Float(0.0, 100.0)),
                    opt("amount_off", Ty::Int(1, MAX_AMOUNT)),
                    opt("currency", Ty::Currency),
                    opt("duration", Ty::OneOf(&["forever", "once", "repeating"])),
                    opt("duration_in_months", Ty::Int(1, 1200)),
                    opt("max_redemptions", COUNT),
                    opt("redeem_by", TIMESTAMP),
                    opt("metadata", Ty::Metadata),
                ]
            }
        }
        "coupons.update" => const { &[opt("name", Ty::Str), opt("metadata", Ty::Metadata)] },
        "coupons.list" => fields!(PAGE;),
        "promotion_codes.create" => {
            const {
                &[
                    opt("coupon", Ty::Str),
                    opt("promotion", Ty::Obj(PROMOTION)),
                    opt("code", Ty::Str),
                    opt("customer", Ty::Str),
                    opt("active", Ty::Bool),
                    opt("max_redemptions", COUNT),
                    opt("expires_at", TIMESTAMP),
                    opt("restrictions", Ty::Obj(RESTRICTIONS)),
                    opt("metadata", Ty::Metadata),
                ]
            }
        }
        "promotion_codes.update" => {
            const { &[opt("active", Ty::Bool), opt("metadata", Ty::Metadata)] }
        }
        "promotion_codes.list" => fields!(PAGE; opt("code", Ty::Str), opt("coupon", Ty::Str),
            opt("active", Ty::Bool), opt("customer", Ty::Str)),
        "checkout_sessions.create" => {
            const {
                &[
                    opt("mode", Ty::OneOf(&["payment", "setup", "subscription"])),
                    opt("line_items", Ty::List(&Ty::Obj(LINE_ITEM))),
                    opt("success_url", Ty::Str),
                    opt("cancel_url", Ty::Str),
                    opt("customer", Ty::Str),
                    opt("customer_email", Ty::Str),
                    opt("client_reference_id", Ty::Str),
                    opt("allow_promotion_codes", Ty::Bool),
                    opt("discounts", DISCOUNTS),
                    opt("metadata", Ty::Metadata),
                    opt("subscription_data", Ty::Obj(SUBSCRIPTION_DATA)),
                ]
            }
        }
        op if op.ends_with(".retrieve") || op.ends_with(".delete") => &[],
        _ => return None,
    })
}

/// Checks and coerces `params` against `fields`. Nulls count as absent (the form encoding
/// drops them), except metadata values, where null means "remove".
pub fn validate(
    fields: &[Field],
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, GatewayRefusal> {
    object(fields, params, "")
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}[{name}]")
    }
}

fn object(
    fields: &[Field],
    params: &Map<String, Value>,
    prefix: &str,
) -> Result<Map<String, Value>, GatewayRefusal> {
    let mut out = Map::new();
    for (name, value) in params {
        let field = fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| GatewayRefusal::unknown_param(&path(prefix, name)))?;
        if value.is_null() {
            continue;
        }
        out.insert(name.clone(), coerce(&field.ty, value, &path(prefix, name))?);
    }
    for field in fields.iter().filter(|f| f.required) {
        if !out.contains_key(field.name) {
            return Err(GatewayRefusal::missing_param(&path(prefix, field.name)));
        }
    }
    Ok(out)
}

fn invalid(path: &str, what: &str, value: &Value) -> GatewayRefusal {
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    GatewayRefusal::invalid(format!("Invalid {what}: {shown}")).param(path)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn coerce(ty: &Ty, value: &Value, path: &str) -> Result<Value, GatewayRefusal> {
    match ty {
        Ty::Str => text(value)
            .map(Value::String)
            .ok_or_else(|| invalid(path, "string", value)),
        Ty::Int(min, max) => integer(value, path, *min, *max),
        Ty::Float(min, max) => float(value, path, *min, *max),
        Ty::Bool => boolean(value, path),
        Ty::Currency => currency(value, path),
        Ty::OneOf(options) => one_of(value, path, options),
        Ty::Metadata => metadata(value, path),
        Ty::List(item) => list(item, value, path),
        Ty::Obj(fields) => match value {
            Value::Object(map) => object(fields, map, path).map(Value::Object),
            _ => Err(invalid(path, "object", value)),
        },
    }
}

fn integer(value: &Value, path: &str, min: i64, max: i64) -> Result<Value, GatewayRefusal> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(path, "integer", value).code("parameter_invalid_integer"))?;
    if n < min || n > max {
        return Err(GatewayRefusal::invalid(format!(
            "Invalid integer: {n}. {path} must be between {min} and {max}."
        ))
        .code("parameter_invalid_integer")
        .param(path));
    }
    Ok(Value::from(n))
}

fn float(value: &Value, path: &str, min: f64, max: f64) -> Result<Value, GatewayRefusal> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
    .ok_or_else(|| invalid(path, "decimal", value))?;
    if n <= min || n > max {
        return Err(GatewayRefusal::invalid(format!(
            "Invalid decimal: {n}. {path} must be greater than {min} and at most {max}."
        ))
        .param(path));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| invalid(path, "decimal", value))
}

fn boolean(value: &Value, path: &str) -> Result<Value, GatewayRefusal> {
    match value {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        _ => Err(invalid(path, "boolean", value)),
    }
}

fn currency(value: &Value, path: &str) -> Result<Value, GatewayRefusal> {
    match value {
        Value::String(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Value::String(s.to_ascii_lowercase()))
        }
        _ => Err(invalid(
            path,
            "currency (expected a three-letter ISO code such as usd)",
            value,
        )),
    }
}

fn one_of(value: &Value, path: &str, options: &[&str]) -> Result<Value, GatewayRefusal> {
    match value {
        Value::String(s) if options.contains(&s.as_str()) => Ok(value.clone()),
        _ => Err(GatewayRefusal::invalid(format!(
            "Invalid {path}: must be one of {}",
            options.join(", ")
        ))
        .param(path)),
    }
}

/// Metadata: `""` clears it all; within it, `""` or null removes a key.
fn metadata(value: &Value, path: &str) -> Result<Value, GatewayRefusal> {
    let map = match value {
        Value::String(s) if s.is_empty() => return Ok(Value::String(String::new())),
        Value::Object(map) => map,
        _ => return Err(invalid(path, "object", value)),
    };
    if map.len() > 50 {
        return Err(GatewayRefusal::invalid("Metadata can have at most 50 keys.").param(path));
    }
    let mut out = Map::new();
    for (key, v) in map {
        let key_path = format!("{path}[{key}]");
        if key.is_empty() || key.chars().count() > 40 || key.contains(['[', ']']) {
            return Err(GatewayRefusal::invalid(format!(
                "Invalid metadata key `{key}`: keys must be 1 to 40 characters without square brackets."
            ))
            .param(key_path));
        }
        let v = if v.is_null() {
            String::new()
        } else {
            text(v).ok_or_else(|| invalid(&key_path, "string", v))?
        };
        if v.chars().count() > 500 {
            return Err(
                GatewayRefusal::invalid("Metadata values can be at most 500 characters.")
                    .param(key_path),
            );
        }
        out.insert(key.clone(), Value::String(v));
    }
    Ok(Value::Object(out))
}

/// A list; `""` (form) or `[]` (JSON) is an empty list, which clears lists such as discounts.
fn list(item: &Ty, value: &Value, path: &str) -> Result<Value, GatewayRefusal> {
    match value {
        Value::String(s) if s.is_empty() => Ok(Value::Array(Vec::new())),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| coerce(item, v, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(invalid(path, "array", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(op: &str, params: Value) -> Result<Map<String, Value>, GatewayRefusal> {
        let fields = accepted(op).unwrap();
        validate(fields, params.as_object().unwrap())
    }

    #[test]
    fn every_operation_has_a_table() {
        for op in crate::pay::routes::OPERATIONS {
            assert!(accepted(op).is_some(), "{op}");
        }
    }

    #[test]
    fn coerces_form_strings() {
        let p = check(
            "prices.create",
            json!({"currency": "USD", "unit_amount": "2000", "product": "prod_1",
                   "recurring": {"interval": "month", "interval_count": "3"}, "active": "false"}),
        )
        .unwrap();
        assert_eq!(p["currency"], "usd");
        assert_eq!(p["unit_amount"], 2000);
        assert_eq!(p["recurring"]["interval_count"], 3);
        assert_eq!(p["active"], false);
    }

    #[test]
    fn errors_name_the_param() {
        let e = check(
            "prices.create",
            json!({"currency": "usd", "unit_amount": "abc"}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (Some("parameter_invalid_integer"), Some("unit_amount"))
        );
        let e = check(
            "prices.create",
            json!({"currency": "usd", "recurring": {"interval_count": 2}}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (Some("parameter_missing"), Some("recurring[interval]"))
        );
        let e = check("products.update", json!({"nmae": "x"})).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (Some("parameter_unknown"), Some("nmae"))
        );
        let e = check(
            "subscriptions.create",
            json!({"customer": "c", "items": [{"price": "p", "qty": 1}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("items[0][qty]"));
        let e = check("products.list", json!({"limit": "0"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limit"));
    }

    #[test]
    fn merged_tables_keep_every_field() {
        let fields = accepted("products.create").unwrap();
        assert_eq!(fields.len(), PRODUCT_FIELDS.len() + 3);
        assert!(fields.iter().any(|f| f.name == "name" && f.required));
    }
}
