//! Subscriptions and their items: an existing customer and active recurring prices of one
//! currency and interval, discounts, cancellation, and no changes once canceled.

use serde_json::{Map, Value, json};

use super::billing::{live_customer, redeem, resolve_discount};
use super::catalog::{matches_str, retrieve};
use super::util::{
    add_interval, copy_fields, ensure_object, is_ended, mark_canceled, merge_metadata, missing_ref,
    random_id, str_of,
};
use super::{Tx, list};
use crate::gateway::error::GatewayRefusal;

type Params = Map<String, Value>;

/// An active recurring price, or the error Stripe gives for this item.
fn usable_price(tx: &Tx, id: &str, param: &str) -> Result<Value, GatewayRefusal> {
    let price = tx
        .get("price", id)
        .ok_or_else(|| missing_ref("price", id, param))?;
    if price["active"] != json!(true) {
        return Err(GatewayRefusal::invalid(format!(
            "The price '{id}' is inactive (archived); subscriptions only accept active prices."
        ))
        .param(param));
    }
    if price["type"] != json!("recurring") {
        return Err(GatewayRefusal::invalid(format!(
            "The price '{id}' is set to `type=one_time` but subscriptions only accept prices with `type=recurring`."
        ))
        .param(param));
    }
    Ok(price)
}

fn plan_of(price: &Value) -> Value {
    json!({
        "id": price["id"], "object": "plan", "active": price["active"],
        "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit", "created": price["created"], "currency": price["currency"],
        "interval": price["recurring"]["interval"], "interval_count": price["recurring"]["interval_count"],
        "livemode": false, "metadata": price["metadata"], "meter": null,
        "nickname": price["nickname"], "product": price["product"], "tiers_mode": null,
        "transform_usage": null, "trial_period_days": null, "usage_type": "licensed",
    })
}

fn new_item(sub_id: &str, price: Value, quantity: i64, now: i64, period: (i64, i64)) -> Value {
    json!({
        "id": random_id("si_", 14), "object": "subscription_item", "billing_thresholds": null,
        "created": now, "current_period_start": period.0, "current_period_end": period.1,
        "discounts": [], "metadata": {}, "plan": plan_of(&price), "price": price,
        "quantity": quantity, "subscription": sub_id, "tax_rates": [],
    })
}

fn period_end(price: &Value, start: i64) -> i64 {
    let interval = price["recurring"]["interval"].as_str().unwrap_or("month");
    let count = price["recurring"]["interval_count"].as_i64().unwrap_or(1);
    add_interval(start, interval, count)
}

pub fn create(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let customer = str_of(p, "customer").unwrap_or_default().to_string();
    live_customer(tx, &customer).map_err(|_| missing_ref("customer", &customer, "customer"))?;
    let id = random_id("sub_", 24);
    let items = p
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        return Err(GatewayRefusal::missing_param("items"));
    }
    let now = tx.now;
    let trial_days = p
        .get("trial_period_days")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut built = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let price_id = item["price"].as_str().unwrap_or_default();
        let price = usable_price(tx, price_id, &format!("items[{i}][price]"))?;
        let end = if trial_days > 0 {
            now + trial_days * 86_400
        } else {
            period_end(&price, now)
        };
        let quantity = item["quantity"].as_i64().unwrap_or(1);
        let mut si = new_item(&id, price, quantity, now, (now, end));
        if let Value::Object(m) = item {
            merge_metadata(&mut si, m);
        }
        built.push(si);
    }
    check_items(&built)?;
    let mut sub = template(&id, &customer, now, &built);
    if trial_days > 0 {
        sub["status"] = json!("trialing");
        sub["trial_start"] = json!(now);
        sub["trial_end"] = json!(now + trial_days * 86_400);
    }
    apply_common(tx, &mut sub, p)?;
    tx.put("subscription", sub.clone());
    Ok(sub)
}

/// All items share a currency and a billing interval, and no price appears twice.
fn check_items(items: &[Value]) -> Result<(), GatewayRefusal> {
    let Some(first) = items.first() else {
        return Err(
            GatewayRefusal::invalid("A subscription needs at least one item.").param("items"),
        );
    };
    for (i, item) in items.iter().enumerate() {
        let price = &item["price"];
        if price["currency"] != first["price"]["currency"]
            || price["recurring"]["interval"] != first["price"]["recurring"]["interval"]
            || price["recurring"]["interval_count"] != first["price"]["recurring"]["interval_count"]
        {
            return Err(GatewayRefusal::invalid(
                "Currency and interval fields must match across all prices on a subscription.",
            )
            .param(format!("items[{i}][price]")));
        }
        if items[..i].iter().any(|o| o["price"]["id"] == price["id"]) {
            return Err(GatewayRefusal::invalid(format!(
                "Cannot add multiple subscription items with the same price: '{}'.",
                price["id"].as_str().unwrap_or_default()
            ))
            .param(format!("items[{i}][price]")));
        }
    }
    Ok(())
}

fn template(id: &str, customer: &str, now: i64, items: &[Value]) -> Value {
    let first = items.first().cloned().unwrap_or(Value::Null);
    let mut head = json!({
        "id": id, "object": "subscription", "application": null, "application_fee_percent": null,
        "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
        "billing_cycle_anchor": first["current_period_end"], "billing_cycle_anchor_config": null,
        "billing_mode": {"type": "classic"}, "billing_schedules": [], "billing_thresholds": null,
        "cancel_at": null, "cancel_at_period_end": false, "canceled_at": null,
        "cancellation_details": {"comment": null, "feedback": null, "reason": null},
        "collection_method": "charge_automatically", "created": now,
        "currency": first["price"]["currency"], "customer": customer, "customer_account": null,
        "days_until_due": null, "default_payment_method": null, "default_source": null,
        "default_tax_rates": [], "description": null, "discounts": [], "ended_at": null,
        "invoice_settings": {"account_tax_ids": null, "custom_fields": null, "description": null,
            "footer": null, "issuer": {"type": "self"}},
    });
    let rest = json!({
        "items": {"object": "list", "data": items, "has_more": false,
            "url": format!("/v1/subscription_items?subscription={id}")},
        "latest_invoice": null, "livemode": false, "managed_payments": {"enabled": false},
        "metadata": {}, "next_pending_invoice_item_invoice": null, "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {"payment_method_options": null, "payment_method_types": null,
            "save_default_payment_method": "off"},
        "pending_invoice_item_interval": null, "pending_setup_intent": null,
        "pending_update": null, "schedule": null, "start_date": now, "status": "active",
        "test_clock": null, "transfer_data": null, "trial_end": null,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": null,
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut head, rest) {
        a.extend(b);
    }
    head
}

/// Fields create and update share: metadata, description, collection, discounts, cancel_at.
fn apply_common(tx: &mut Tx, sub: &mut Value, p: &Params) -> Result<(), GatewayRefusal> {
    copy_fields(
        sub,
        p,
        &[
            "description",
            "collection_method",
            "days_until_due",
            "cancel_at_period_end",
        ],
    );
    merge_metadata(sub, p);
    if sub["collection_method"] == json!("send_invoice") && sub["days_until_due"].is_null() {
        return Err(GatewayRefusal::missing_param("days_until_due"));
    }
    let period_end = sub["items"]["data"][0]["current_period_end"].clone();
    sub["cancel_at"] = if sub["cancel_at_period_end"] == json!(true) {
        period_end
    } else {
        Value::Null
    };
    if let Some(Value::Array(specs)) = p.get("discounts") {
        let sub_id = sub["id"].as_str().unwrap_or_default().to_string();
        let customer = sub["customer"].as_str().unwrap_or_default().to_string();
        let mut ids = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let spec = spec.as_object().cloned().unwrap_or_default();
            let (coupon, promo) =
                resolve_discount(tx, &spec, &format!("discounts[{i}]"), Some(&customer))?;
            let discount = redeem(
                tx,
                &coupon,
                promo.as_deref(),
                Some(&customer),
                Some(&sub_id),
            )?;
            ids.push(discount["id"].clone());
            tx.put("discount", discount);
        }
        sub["discounts"] = Value::Array(ids);
    }
    Ok(())
}

pub fn update(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut sub = retrieve(tx, "subscription", id)?;
    if is_ended(&sub)
        && let Some(other) = p.keys().find(|k| *k != "metadata")
    {
        return Err(GatewayRefusal::invalid(format!(
            "The subscription '{id}' is {}; a canceled subscription can only update its metadata.",
            sub["status"].as_str().unwrap_or("canceled")
        ))
        .param(other.clone()));
    }
    if let Some(Value::Array(changes)) = p.get("items") {
        update_items(tx, &mut sub, changes)?;
    }
    apply_common(tx, &mut sub, p)?;
    tx.put("subscription", sub.clone());
    Ok(sub)
}

fn update_items(tx: &Tx, sub: &mut Value, changes: &[Value]) -> Result<(), GatewayRefusal> {
    let sub_id = sub["id"].as_str().unwrap_or_default().to_string();
    let mut items = sub["items"]["data"].as_array().cloned().unwrap_or_default();
    let period = (
        items
            .first()
            .and_then(|i| i["current_period_start"].as_i64())
            .unwrap_or(tx.now),
        items
            .first()
            .and_then(|i| i["current_period_end"].as_i64())
            .unwrap_or(tx.now),
    );
    for (i, change) in changes.iter().enumerate() {
        let param = |n: &str| format!("items[{i}][{n}]");
        let new_price = match change["price"].as_str() {
            Some(price_id) => Some(usable_price(tx, price_id, &param("price"))?),
            None => None,
        };
        let quantity = change["quantity"].as_i64();
        let meta = change.as_object().cloned().unwrap_or_default();
        match change["id"].as_str() {
            Some(item_id) => {
                let pos = items
                    .iter()
                    .position(|it| it["id"] == json!(item_id))
                    .ok_or_else(|| missing_ref("subscription_item", item_id, &param("id")))?;
                if change["deleted"] == json!(true) {
                    items.remove(pos);
                    continue;
                }
                let item = &mut items[pos];
                ensure_object(item);
                if let Some(price) = new_price {
                    item["plan"] = plan_of(&price);
                    item["price"] = price;
                }
                if let Some(q) = quantity {
                    item["quantity"] = json!(q);
                }
                merge_metadata(item, &meta);
            }
            None => {
                let price =
                    new_price.ok_or_else(|| GatewayRefusal::missing_param(&param("price")))?;
                let mut item = new_item(&sub_id, price, quantity.unwrap_or(1), tx.now, period);
                merge_metadata(&mut item, &meta);
                items.push(item);
            }
        }
    }
    check_items(&items)?;
    sub["currency"] = items
        .first()
        .map(|i| i["price"]["currency"].clone())
        .unwrap_or_default();
    ensure_object(&mut sub["items"]);
    sub["items"]["data"] = Value::Array(items);
    Ok(())
}

pub fn cancel(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut sub = retrieve(tx, "subscription", id)?;
    if is_ended(&sub) {
        return Err(GatewayRefusal::invalid(format!(
            "The subscription '{id}' is already canceled."
        )));
    }
    mark_canceled(&mut sub, tx.now, p.get("cancellation_details"));
    tx.put("subscription", sub.clone());
    Ok(sub)
}

pub fn list(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let status = str_of(p, "status");
    let price = str_of(p, "price");
    list::page(tx, "subscription", "/v1/subscriptions", p, |v| {
        let status_ok = match status {
            None => !matches!(v["status"].as_str(), Some("canceled")),
            Some("all") => true,
            Some("ended") => is_ended(v),
            Some(s) => v["status"] == json!(s),
        };
        let price_ok = price.is_none_or(|want| {
            v["items"]["data"]
                .as_array()
                .is_some_and(|items| items.iter().any(|it| it["price"]["id"] == json!(want)))
        });
        status_ok
            && price_ok
            && matches_str(v, p, "customer")
            && matches_str(v, p, "collection_method")
    })
}
