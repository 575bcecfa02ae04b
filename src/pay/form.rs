//! Stripe's form encoding of nested parameters (`metadata[plan]=pro`, `items[0][price]=...`),
//! used for GET query strings here and for request bodies sent to Stripe's REST API.

use serde_json::{Map, Value};

/// Flattens a JSON object into Stripe-style `(key, value)` pairs. `null` values are skipped
/// except inside `metadata`, where Stripe reads an empty string as "remove this key"; an empty
/// array becomes `key=` (Stripe's way to clear a list such as `discounts`).
pub(crate) fn encode_pairs(params: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = params {
        for (k, v) in map {
            push(k, v, &mut out, k == "metadata");
        }
    }
    out
}

fn push(key: &str, value: &Value, out: &mut Vec<(String, String)>, in_metadata: bool) {
    match value {
        Value::Null if in_metadata => out.push((key.to_string(), String::new())),
        Value::Null => {}
        Value::Bool(b) => out.push((key.to_string(), b.to_string())),
        Value::Number(n) => out.push((key.to_string(), n.to_string())),
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Array(items) if items.is_empty() => out.push((key.to_string(), String::new())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                push(&format!("{key}[{i}]"), item, out, in_metadata);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                push(
                    &format!("{key}[{k}]"),
                    v,
                    out,
                    in_metadata || k == "metadata",
                );
            }
        }
    }
}

/// Percent-encodes pairs as `application/x-www-form-urlencoded` (brackets escaped).
pub fn encode(params: &Value) -> String {
    let mut out = String::new();
    for (i, (k, v)) in encode_pairs(params).iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape(k, &mut out);
        out.push('=');
        escape(v, &mut out);
    }
    out
}

fn escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// Why a form string could not be turned back into parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed parameter `{key}`: {reason}")]
pub struct FormError {
    /// The parameter's key (`items[0][price]`).
    pub key: String,
    /// What is wrong with it (bad percent-encoding, unbalanced brackets, given twice...).
    pub reason: String,
}

/// Parses an urlencoded string into nested JSON. Every leaf is a string (the form has no
/// types); `a[0]`, `a[1]` become an array, `a[b]` an object, and a bare `a=` with an empty
/// value is kept as the empty string.
pub fn decode(query: &str) -> Result<Value, FormError> {
    let mut root = Value::Object(Map::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = unescape(k).ok_or_else(|| FormError {
            key: k.to_string(),
            reason: "bad percent-encoding".into(),
        })?;
        let value = unescape(v).ok_or_else(|| FormError {
            key: key.clone(),
            reason: "bad percent-encoding in the value".into(),
        })?;
        insert(&mut root, &key, Value::String(value))?;
    }
    // Only nested maps become arrays: the top level stays an object even for `0=a&1=b`.
    if let Value::Object(map) = &mut root {
        map.values_mut().for_each(normalise_arrays);
    }
    Ok(root)
}

fn unescape(s: &str) -> Option<String> {
    super::routes::percent_decode(&s.replace('+', " "))
}

fn split_key(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut parts = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        parts.push(&inner[..end]);
        rest = &inner[end + 1..];
    }
    Some(parts)
}

fn insert(root: &mut Value, key: &str, value: Value) -> Result<(), FormError> {
    let err = |reason: &str| FormError {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let parts = split_key(key).ok_or_else(|| err("unbalanced brackets"))?;
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let map = node
            .as_object_mut()
            .ok_or_else(|| err("a key is used both as a value and as a container"))?;
        // Arrays are collected as objects keyed by index and turned into arrays at the end,
        // so `a[1]` before `a[0]` and `a[]` both work.
        let part = if part.is_empty() {
            map.len().to_string()
        } else {
            part.to_string()
        };
        if last {
            if map.contains_key(&part) {
                return Err(err("given twice"));
            }
            map.insert(part, value);
            return Ok(());
        }
        node = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Objects whose keys are exactly 0..n become arrays.
fn normalise_arrays(value: &mut Value) {
    if let Value::Object(map) = value {
        for v in map.values_mut() {
            normalise_arrays(v);
        }
        let n = map.len();
        if n > 0 && (0..n).all(|i| map.contains_key(&i.to_string())) {
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                items.push(map.remove(&i.to_string()).unwrap_or(Value::Null));
            }
            *value = Value::Array(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_round_trip() {
        let params = json!({
            "items": [{"price": "price_1", "quantity": 2}],
            "metadata": {"plan": "pro", "old": null},
            "name": "T shirt & co",
            "active": true,
            "discounts": []
        });
        let encoded = encode(&params);
        assert!(
            encoded.contains("items%5B0%5D%5Bprice%5D=price_1"),
            "{encoded}"
        );
        assert!(encoded.contains("metadata%5Bold%5D=&"), "{encoded}");
        assert!(encoded.contains("name=T+shirt+%26+co"), "{encoded}");
        let back = decode(&encoded).unwrap();
        assert_eq!(
            back,
            json!({
                "items": [{"price": "price_1", "quantity": "2"}],
                "metadata": {"plan": "pro", "old": ""},
                "name": "T shirt & co",
                "active": "true",
                "discounts": ""
            })
        );
    }

    #[test]
    fn malformed_keys_are_named() {
        assert_eq!(decode("a[b=1").unwrap_err().key, "a[b");
        assert_eq!(decode("a=1&a=2").unwrap_err().reason, "given twice");
        assert!(decode("a=1&a[b]=2").is_err());
        assert!(decode("a=%G1").is_err());
        assert!(decode("[x]=1").is_err());
    }
}
