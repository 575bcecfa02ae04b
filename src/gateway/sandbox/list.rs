//! Stripe list pages: newest first, `limit` 1-100 (default 10), `starting_after` and
//! `ending_before` cursors by object id, filters applied before paging.

use serde_json::{Map, Value, json};

use super::Tx;
use super::util::{exclusive, missing_ref};
use crate::gateway::error::GatewayRefusal;

/// One page of `collection`, keeping the objects `keep` accepts; `url` is Stripe's list path.
pub fn page(
    tx: &Tx,
    collection: &str,
    url: &str,
    p: &Map<String, Value>,
    keep: impl Fn(&Value) -> bool,
) -> Result<Value, GatewayRefusal> {
    let limit = p.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    let after = p.get("starting_after").and_then(Value::as_str);
    let before = p.get("ending_before").and_then(Value::as_str);
    if after.is_some() && before.is_some() {
        return Err(exclusive("starting_after", "ending_before"));
    }
    let cursor = |param: &str, id: &str| {
        tx.seq(collection, id)
            .ok_or_else(|| missing_ref(collection, id, param))
    };
    let shown = |v: &Value| v["deleted"] != json!(true) && keep(v);
    let (data, has_more): (Vec<&Value>, bool) = if let Some(id) = before {
        let seq = cursor("ending_before", id)?;
        let mut newer = tx
            .oldest_above(collection, seq)
            .map(|(_, v)| v)
            .filter(|v| shown(v));
        let mut data: Vec<_> = newer.by_ref().take(limit).collect();
        data.reverse();
        (data, newer.next().is_some())
    } else {
        let seq = match after {
            Some(id) => cursor("starting_after", id)?,
            None => u64::MAX,
        };
        let mut rest = tx
            .newest_below(collection, seq)
            .map(|(_, v)| v)
            .filter(|v| shown(v));
        let data: Vec<_> = rest.by_ref().take(limit).collect();
        (data, rest.next().is_some())
    };
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": url }))
}
