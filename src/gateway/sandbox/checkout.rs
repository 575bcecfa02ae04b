//! Checkout sessions: mode-specific checks on line items, an open unpaid session with a
//! hosted URL, and amounts computed from the prices and the discount.

use serde_json::{Map, Value, json};

use super::Tx;
use super::billing::{live_customer, resolve_discount, usable_coupon};
use super::util::{copy_fields, exclusive, merge_metadata, missing_ref, random_id, str_of};
use crate::gateway::error::GatewayRefusal;

type Params = Map<String, Value>;

pub fn create(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let mode = str_of(p, "mode").ok_or_else(|| GatewayRefusal::missing_param("mode"))?;
    check_exclusive(p)?;
    for url in ["success_url", "cancel_url"] {
        if let Some(u) = str_of(p, url)
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(GatewayRefusal::invalid(format!("Not a valid URL: '{u}'")).param(url));
        }
    }
    let customer = str_of(p, "customer");
    if let Some(c) = customer {
        live_customer(tx, c).map_err(|_| missing_ref("customer", c, "customer"))?;
    }
    let (currency, subtotal) = line_items(tx, p, mode)?;
    let (discounts, off) = discount(tx, p, customer, subtotal, currency.as_deref())?;
    let id = random_id("cs_test_", 58);
    let mut session = template(&id, mode, tx.now);
    copy_fields(
        &mut session,
        p,
        &[
            "success_url",
            "cancel_url",
            "customer",
            "customer_email",
            "client_reference_id",
            "allow_promotion_codes",
        ],
    );
    merge_metadata(&mut session, p);
    session["currency"] = json!(currency);
    session["discounts"] = discounts;
    if mode != "setup" {
        session["amount_subtotal"] = json!(subtotal);
        session["amount_total"] = json!(subtotal - off);
        session["total_details"] =
            json!({"amount_discount": off, "amount_shipping": 0, "amount_tax": 0});
    }
    tx.put("checkout.session", session.clone());
    // Kept aside (Stripe returns them only when expanded) for `Sandbox::complete_checkout`.
    tx.put(
        "checkout.line_items",
        json!({"id": id, "data": p.get("line_items")}),
    );
    Ok(session)
}

fn check_exclusive(p: &Params) -> Result<(), GatewayRefusal> {
    if p.contains_key("customer") && p.contains_key("customer_email") {
        return Err(exclusive("customer", "customer_email"));
    }
    if p.contains_key("discounts") && p.get("allow_promotion_codes") == Some(&json!(true)) {
        return Err(exclusive("allow_promotion_codes", "discounts"));
    }
    Ok(())
}

/// Checks the line items for the mode; returns their currency and subtotal.
fn line_items(tx: &Tx, p: &Params, mode: &str) -> Result<(Option<String>, i64), GatewayRefusal> {
    let items = p
        .get("line_items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if mode == "setup" {
        if !items.is_empty() {
            return Err(
                GatewayRefusal::invalid("line_items cannot be used in `setup` mode.")
                    .param("line_items"),
            );
        }
        return Ok((None, 0));
    }
    if items.is_empty() {
        return Err(GatewayRefusal::missing_param("line_items"));
    }
    let mut currency: Option<String> = None;
    let (mut subtotal, mut recurring) = (0i64, false);
    for (i, item) in items.iter().enumerate() {
        let param = format!("line_items[{i}][price]");
        let price_id = item["price"].as_str().unwrap_or_default();
        let price = tx
            .get("price", price_id)
            .ok_or_else(|| missing_ref("price", price_id, &param))?;
        if price["active"] != json!(true) {
            return Err(GatewayRefusal::invalid(format!(
                "The price '{price_id}' is inactive (archived)."
            ))
            .param(param));
        }
        let is_recurring = price["type"] == json!("recurring");
        if mode == "payment" && is_recurring {
            return Err(GatewayRefusal::invalid(
                "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
            )
            .param(param));
        }
        recurring |= is_recurring;
        let this = price["currency"].as_str().map(str::to_string);
        if currency.is_some() && currency != this {
            return Err(
                GatewayRefusal::invalid("All line items must use the same currency.").param(param),
            );
        }
        currency = this;
        let quantity = item["quantity"].as_i64().unwrap_or(1);
        subtotal = subtotal.saturating_add(
            price["unit_amount"]
                .as_i64()
                .unwrap_or(0)
                .saturating_mul(quantity),
        );
    }
    if mode == "subscription" && !recurring {
        return Err(GatewayRefusal::invalid("You must provide at least one recurring price in `subscription` mode when using prices.")
            .param("line_items"));
    }
    Ok((currency, subtotal))
}

/// Validates the session's discount (redeemed only when the session completes) and returns
/// the session's `discounts` field and the amount off.
fn discount(
    tx: &Tx,
    p: &Params,
    customer: Option<&str>,
    subtotal: i64,
    currency: Option<&str>,
) -> Result<(Value, i64), GatewayRefusal> {
    let Some(Value::Array(specs)) = p.get("discounts") else {
        return Ok((Value::Null, 0));
    };
    if specs.len() > 1 {
        return Err(
            GatewayRefusal::invalid("A checkout session accepts at most one discount.")
                .param("discounts"),
        );
    }
    let Some(spec) = specs.first().and_then(Value::as_object) else {
        return Ok((json!([]), 0));
    };
    let (coupon_id, promo) = resolve_discount(tx, spec, "discounts[0]", customer)?;
    let coupon = usable_coupon(tx, &coupon_id, "discounts[0][coupon]")?;
    let off = if let Some(pct) = coupon["percent_off"].as_f64() {
        ((subtotal as f64) * pct / 100.0).round() as i64
    } else {
        if coupon["currency"].as_str() != currency {
            return Err(GatewayRefusal::invalid(format!(
                "The coupon '{coupon_id}' is in {} but the line items are in {}.",
                coupon["currency"].as_str().unwrap_or("?"),
                currency.unwrap_or("?")
            ))
            .param("discounts[0][coupon]"));
        }
        coupon["amount_off"].as_i64().unwrap_or(0).min(subtotal)
    };
    Ok((json!([{"coupon": coupon_id, "promotion_code": promo}]), off))
}

fn template(id: &str, mode: &str, now: i64) -> Value {
    let payment_status = if mode == "setup" {
        "no_payment_required"
    } else {
        "unpaid"
    };
    let mut head = json!({
        "id": id, "object": "checkout.session", "adaptive_pricing": {"enabled": false},
        "after_expiration": null, "allow_promotion_codes": null, "amount_subtotal": null,
        "amount_total": null,
        "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
        "billing_address_collection": null, "cancel_url": null, "client_reference_id": null,
        "client_secret": null, "collected_information": null, "consent": null,
        "consent_collection": null, "created": now, "currency": null, "currency_conversion": null,
        "custom_fields": [],
        "custom_text": {"after_submit": null, "shipping_address": null, "submit": null,
            "terms_of_service_acceptance": null},
        "customer": null, "customer_account": null,
        "customer_creation": if mode == "payment" { json!("if_required") } else { Value::Null },
        "customer_details": null, "customer_email": null, "discounts": null,
    });
    let rest = json!({
        "expires_at": now + 86_400, "integration_identifier": null, "invoice": null,
        "invoice_creation": null, "livemode": false, "locale": null,
        "managed_payments": {"enabled": false}, "metadata": {}, "mode": mode,
        "origin_context": null, "payment_intent": null, "payment_link": null,
        "payment_method_collection": "always", "payment_method_configuration_details": null,
        "payment_method_options": {}, "payment_method_types": ["card"],
        "payment_status": payment_status, "permissions": null,
        "phone_number_collection": {"enabled": false}, "recovered_from": null,
        "saved_payment_method_options": null, "setup_intent": null,
        "shipping_address_collection": null, "shipping_cost": null, "shipping_options": [],
        "status": "open", "submit_type": null, "subscription": null, "success_url": null,
        "total_details": null, "ui_mode": "hosted",
        "url": format!("https://checkout.stripe.com/c/pay/{id}"), "wallet_options": null,
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut head, rest) {
        a.extend(b);
    }
    head
}
