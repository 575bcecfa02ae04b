//! Customers, coupons, promotion codes and discounts: tombstones for deleted customers,
//! coupon validity and redemption counts, and the checks a discount must pass.

use serde_json::{Map, Value, json};

use super::catalog::{matches_flag, matches_str, retrieve};
use super::util::{
    add_months, copy_fields, exclusive, is_ended, mark_canceled, merge_metadata, missing_ref,
    random_code, random_id, str_of,
};
use super::{Tx, list};
use crate::gateway::error::GatewayRefusal;

type Params = Map<String, Value>;

const CUSTOMER_FIELDS: &[&str] = &["email", "name", "description", "phone"];

fn is_deleted(v: &Value) -> bool {
    v["deleted"] == json!(true)
}

/// A live (not deleted) customer, or Stripe's 404.
pub fn live_customer(tx: &Tx, id: &str) -> Result<Value, GatewayRefusal> {
    match tx.get("customer", id) {
        Some(c) if !is_deleted(&c) => Ok(c),
        _ => Err(GatewayRefusal::missing("customer", id)),
    }
}

pub fn create_customer(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let id = random_id("cus_", 14);
    let mut customer = json!({
        "id": id, "object": "customer", "address": null, "balance": 0, "created": tx.now,
        "currency": null, "default_source": null, "delinquent": false, "description": null,
        "discount": null, "email": null, "invoice_prefix": random_code(7),
        "invoice_settings": {"custom_fields": null, "default_payment_method": null,
            "footer": null, "rendering_options": null},
        "livemode": false, "metadata": {}, "name": null, "next_invoice_sequence": 1,
        "phone": null, "preferred_locales": [], "shipping": null, "tax_exempt": "none",
        "test_clock": null,
    });
    apply_customer(tx, &mut customer, p)?;
    tx.put("customer", customer.clone());
    Ok(customer)
}

fn apply_customer(tx: &mut Tx, customer: &mut Value, p: &Params) -> Result<(), GatewayRefusal> {
    copy_fields(customer, p, CUSTOMER_FIELDS);
    merge_metadata(customer, p);
    if let Some(Value::Object(address)) = p.get("address") {
        if customer["address"].is_null() {
            customer["address"] = json!({"city": null, "country": null, "line1": null,
                "line2": null, "postal_code": null, "state": null});
        }
        copy_fields(
            &mut customer["address"],
            address,
            &["city", "country", "line1", "line2", "postal_code", "state"],
        );
    }
    let id = customer["id"].as_str().unwrap_or_default().to_string();
    match customer_discount_spec(p)? {
        None => {}
        Some(None) => customer["discount"] = Value::Null,
        Some(Some((spec, param))) => {
            let (coupon, promo) = resolve_discount(tx, &spec, &param, Some(&id))?;
            let discount = redeem(tx, &coupon, promo.as_deref(), Some(&id), None)?;
            customer["discount"] = discount;
        }
    }
    Ok(())
}

type DiscountSpec = Option<Option<(Params, String)>>;

/// What the request says about the customer's discount: nothing, clear it, or this one
/// (from `discounts[0]`, `coupon` or `promotion_code`, with the param to name in errors).
fn customer_discount_spec(p: &Params) -> Result<DiscountSpec, GatewayRefusal> {
    let mut specs = Vec::new();
    for name in ["coupon", "promotion_code"] {
        if let Some(v) = str_of(p, name) {
            if v.is_empty() {
                return Ok(Some(None));
            }
            let mut spec = Params::new();
            spec.insert(name.to_string(), json!(v));
            specs.push((spec, name.to_string()));
        }
    }
    if let Some(Value::Array(items)) = p.get("discounts") {
        if items.is_empty() {
            return Ok(Some(None));
        }
        if items.len() > 1 {
            return Err(
                GatewayRefusal::invalid("A customer can have at most one discount.")
                    .param("discounts"),
            );
        }
        if let Some(Value::Object(spec)) = items.first() {
            specs.push((spec.clone(), "discounts[0]".to_string()));
        }
    }
    match specs.len() {
        0 => Ok(None),
        1 => Ok(specs.pop().map(Some)),
        _ => Err(exclusive("coupon", "promotion_code").param("discounts")),
    }
}

pub fn retrieve_customer(tx: &Tx, id: &str) -> Result<Value, GatewayRefusal> {
    retrieve(tx, "customer", id)
}

pub fn update_customer(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut customer = live_customer(tx, id)?;
    apply_customer(tx, &mut customer, p)?;
    tx.put("customer", customer.clone());
    Ok(customer)
}

/// Deletes the customer: its subscriptions are canceled and a tombstone stays retrievable.
pub fn delete_customer(tx: &mut Tx, id: &str) -> Result<Value, GatewayRefusal> {
    live_customer(tx, id)?;
    let subs: Vec<Value> = tx
        .newest_first("subscription")
        .into_iter()
        .map(|(_, s)| s.clone())
        .filter(|s| s["customer"] == json!(id))
        .collect();
    for mut sub in subs {
        if !is_ended(&sub) {
            mark_canceled(&mut sub, tx.now, None);
            tx.put("subscription", sub);
        }
    }
    let tombstone = json!({ "id": id, "object": "customer", "deleted": true });
    tx.put("customer", tombstone.clone());
    Ok(tombstone)
}

pub fn list_customers(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    list::page(tx, "customer", "/v1/customers", p, |v| {
        matches_str(v, p, "email")
    })
}

pub fn create_coupon(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let id = match str_of(p, "id") {
        Some("") => return Err(GatewayRefusal::invalid("id cannot be empty").param("id")),
        Some(id) if tx.exists("coupon", id) => {
            return Err(
                GatewayRefusal::invalid(format!("Coupon already exists: '{id}'"))
                    .code("resource_already_exists")
                    .param("id"),
            );
        }
        Some(id) => id.to_string(),
        None => random_code(8),
    };
    check_coupon_terms(tx, p)?;
    let mut coupon = json!({
        "id": id, "object": "coupon", "amount_off": null, "created": tx.now, "currency": null,
        "duration": "once", "duration_in_months": null, "livemode": false,
        "max_redemptions": null, "metadata": {}, "name": null, "percent_off": null,
        "redeem_by": null, "times_redeemed": 0, "valid": true,
    });
    copy_fields(
        &mut coupon,
        p,
        &[
            "amount_off",
            "currency",
            "duration",
            "duration_in_months",
            "max_redemptions",
            "name",
            "percent_off",
            "redeem_by",
        ],
    );
    merge_metadata(&mut coupon, p);
    tx.put("coupon", coupon.clone());
    Ok(coupon)
}

fn check_coupon_terms(tx: &Tx, p: &Params) -> Result<(), GatewayRefusal> {
    match (p.get("percent_off"), p.get("amount_off")) {
        (Some(_), Some(_)) => return Err(exclusive("percent_off", "amount_off")),
        (None, None) => {
            return Err(
                GatewayRefusal::invalid("You must pass either percent_off or amount_off.")
                    .code("parameter_missing")
                    .param("percent_off"),
            );
        }
        (None, Some(_)) if !p.contains_key("currency") => {
            return Err(GatewayRefusal::missing_param("currency"));
        }
        _ => {}
    }
    let repeating = str_of(p, "duration") == Some("repeating");
    if repeating && !p.contains_key("duration_in_months") {
        return Err(GatewayRefusal::missing_param("duration_in_months"));
    }
    if !repeating && p.contains_key("duration_in_months") {
        return Err(GatewayRefusal::invalid(
            "duration_in_months can only be set when duration is `repeating`.",
        )
        .param("duration_in_months"));
    }
    if p.get("redeem_by")
        .and_then(Value::as_i64)
        .is_some_and(|t| t <= tx.now)
    {
        return Err(GatewayRefusal::invalid("redeem_by must be in the future.").param("redeem_by"));
    }
    Ok(())
}

/// Coupons turn invalid once past `redeem_by` or out of redemptions.
fn refresh_valid(coupon: &mut Value, now: i64) {
    let expired = coupon["redeem_by"].as_i64().is_some_and(|t| t <= now);
    let used_up = coupon["max_redemptions"]
        .as_i64()
        .is_some_and(|m| coupon["times_redeemed"].as_i64().unwrap_or(0) >= m);
    coupon["valid"] = json!(!(expired || used_up));
}

pub fn retrieve_coupon(tx: &Tx, id: &str) -> Result<Value, GatewayRefusal> {
    let mut coupon = retrieve(tx, "coupon", id)?;
    refresh_valid(&mut coupon, tx.now);
    Ok(coupon)
}

pub fn update_coupon(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut coupon = retrieve_coupon(tx, id)?;
    copy_fields(&mut coupon, p, &["name"]);
    merge_metadata(&mut coupon, p);
    tx.put("coupon", coupon.clone());
    Ok(coupon)
}

pub fn delete_coupon(tx: &mut Tx, id: &str) -> Result<Value, GatewayRefusal> {
    retrieve(tx, "coupon", id)?;
    tx.remove("coupon", id);
    Ok(json!({ "id": id, "object": "coupon", "deleted": true }))
}

pub fn list_coupons(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut page = list::page(tx, "coupon", "/v1/coupons", p, |_| true)?;
    if let Some(items) = page["data"].as_array_mut() {
        items.iter_mut().for_each(|c| refresh_valid(c, tx.now));
    }
    Ok(page)
}

pub fn create_promotion_code(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let coupon = match (str_of(p, "coupon"), p.get("promotion")) {
        (Some(_), Some(_)) => return Err(exclusive("coupon", "promotion")),
        (Some(c), None) => (c.to_string(), "coupon"),
        (None, Some(promo)) => (
            promo["coupon"].as_str().unwrap_or_default().to_string(),
            "promotion[coupon]",
        ),
        (None, None) => return Err(GatewayRefusal::missing_param("promotion[coupon]")),
    };
    let (coupon, param) = coupon;
    usable_coupon(tx, &coupon, param)?;
    if let Some(customer) = str_of(p, "customer") {
        live_customer(tx, customer).map_err(|_| missing_ref("customer", customer, "customer"))?;
    }
    let restrictions = p.get("restrictions").cloned().unwrap_or(json!({}));
    if restrictions.get("minimum_amount").is_some()
        && restrictions.get("minimum_amount_currency").is_none()
    {
        return Err(GatewayRefusal::missing_param(
            "restrictions[minimum_amount_currency]",
        ));
    }
    let code = str_of(p, "code")
        .map(str::to_string)
        .unwrap_or_else(|| random_code(8));
    check_code_free(tx, &code)?;
    let mut promo = json!({
        "id": random_id("promo_", 24), "object": "promotion_code", "active": true,
        "code": code, "created": tx.now, "customer": null, "customer_account": null,
        "expires_at": null, "livemode": false, "max_redemptions": null, "metadata": {},
        "promotion": {"coupon": coupon, "type": "coupon"},
        "restrictions": {"first_time_transaction": false, "minimum_amount": null,
            "minimum_amount_currency": null},
        "times_redeemed": 0,
    });
    copy_fields(
        &mut promo,
        p,
        &["active", "customer", "expires_at", "max_redemptions"],
    );
    if let Value::Object(r) = &restrictions {
        copy_fields(
            &mut promo["restrictions"],
            r,
            &[
                "first_time_transaction",
                "minimum_amount",
                "minimum_amount_currency",
            ],
        );
    }
    merge_metadata(&mut promo, p);
    tx.put("promotion_code", promo.clone());
    Ok(promo)
}

fn check_code_free(tx: &Tx, code: &str) -> Result<(), GatewayRefusal> {
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(GatewayRefusal::invalid(format!(
            "Invalid code '{code}': use letters, digits, - and _."
        ))
        .param("code"));
    }
    let taken = tx.newest_first("promotion_code").iter().any(|(_, v)| {
        v["active"] == json!(true)
            && v["code"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
    });
    if taken {
        return Err(GatewayRefusal::invalid(format!(
            "An active promotion code with `code: {code}` already exists."
        ))
        .code("resource_already_exists")
        .param("code"));
    }
    Ok(())
}

pub fn update_promotion_code(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut promo = retrieve(tx, "promotion_code", id)?;
    let reactivate = p.get("active") == Some(&json!(true)) && promo["active"] != json!(true);
    if reactivate {
        check_code_free(tx, promo["code"].as_str().unwrap_or_default())?;
    }
    copy_fields(&mut promo, p, &["active"]);
    merge_metadata(&mut promo, p);
    tx.put("promotion_code", promo.clone());
    Ok(promo)
}

pub fn list_promotion_codes(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let coupon = p.get("coupon");
    list::page(tx, "promotion_code", "/v1/promotion_codes", p, |v| {
        matches_flag(v, p, "active")
            && matches_str(v, p, "code")
            && matches_str(v, p, "customer")
            && coupon.is_none_or(|c| &v["promotion"]["coupon"] == c)
    })
}

/// A coupon that exists and can still be redeemed.
pub fn usable_coupon(tx: &Tx, id: &str, param: &str) -> Result<Value, GatewayRefusal> {
    let mut coupon = tx
        .get("coupon", id)
        .ok_or_else(|| missing_ref("coupon", id, param))?;
    refresh_valid(&mut coupon, tx.now);
    if coupon["valid"] != json!(true) {
        return Err(GatewayRefusal::invalid(format!(
            "Coupon '{id}' is no longer valid (expired or fully redeemed)."
        ))
        .code("coupon_expired")
        .param(param));
    }
    Ok(coupon)
}

/// Checks `{coupon}` or `{promotion_code}` and returns (coupon id, promotion code id).
pub fn resolve_discount(
    tx: &Tx,
    spec: &Params,
    param: &str,
    customer: Option<&str>,
) -> Result<(String, Option<String>), GatewayRefusal> {
    match (str_of(spec, "coupon"), str_of(spec, "promotion_code")) {
        (Some(_), Some(_)) => Err(exclusive("coupon", "promotion_code").param(param)),
        (Some(coupon), None) => {
            usable_coupon(
                tx,
                coupon,
                &format!("{param}[coupon]").replace("coupon[coupon]", "coupon"),
            )?;
            Ok((coupon.to_string(), None))
        }
        (None, Some(promo_id)) => {
            let p_param = format!("{param}[promotion_code]")
                .replace("promotion_code[promotion_code]", "promotion_code");
            let promo = usable_promotion_code(tx, promo_id, &p_param, customer)?;
            let coupon = promo["promotion"]["coupon"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            usable_coupon(tx, &coupon, &p_param)?;
            Ok((coupon, Some(promo_id.to_string())))
        }
        (None, None) => Err(GatewayRefusal::missing_param(&format!("{param}[coupon]"))),
    }
}

fn usable_promotion_code(
    tx: &Tx,
    id: &str,
    param: &str,
    customer: Option<&str>,
) -> Result<Value, GatewayRefusal> {
    let promo = tx
        .get("promotion_code", id)
        .ok_or_else(|| missing_ref("promotion_code", id, param))?;
    let refuse =
        |why: &str| GatewayRefusal::invalid(format!("Promotion code '{id}' {why}.")).param(param);
    if promo["active"] != json!(true) {
        return Err(refuse("is inactive"));
    }
    if promo["expires_at"].as_i64().is_some_and(|t| t <= tx.now) {
        return Err(refuse("has expired"));
    }
    if promo["max_redemptions"]
        .as_i64()
        .is_some_and(|m| promo["times_redeemed"].as_i64().unwrap_or(0) >= m)
    {
        return Err(refuse("has been fully redeemed"));
    }
    if let Some(only) = promo["customer"].as_str()
        && customer != Some(only)
    {
        return Err(refuse(&format!("can only be used by customer '{only}'")));
    }
    Ok(promo)
}

/// Applies a discount: counts the redemption and returns Stripe's discount object.
pub fn redeem(
    tx: &mut Tx,
    coupon_id: &str,
    promo: Option<&str>,
    customer: Option<&str>,
    subscription: Option<&str>,
) -> Result<Value, GatewayRefusal> {
    let mut coupon = retrieve(tx, "coupon", coupon_id)?;
    bump(&mut coupon);
    refresh_valid(&mut coupon, tx.now);
    let end = match (
        coupon["duration"].as_str(),
        coupon["duration_in_months"].as_i64(),
    ) {
        (Some("repeating"), Some(months)) => json!(add_months(tx.now, months)),
        _ => Value::Null,
    };
    tx.put("coupon", coupon);
    if let Some(promo_id) = promo {
        let mut code = retrieve(tx, "promotion_code", promo_id)?;
        bump(&mut code);
        tx.put("promotion_code", code);
    }
    Ok(json!({
        "id": random_id("di_", 24), "object": "discount", "checkout_session": null,
        "customer": customer, "customer_account": null, "end": end, "invoice": null,
        "invoice_item": null, "promotion_code": promo,
        "source": {"coupon": coupon_id, "type": "coupon"}, "start": tx.now,
        "subscription": subscription, "subscription_item": null,
    }))
}

fn bump(v: &mut Value) {
    v["times_redeemed"] = json!(v["times_redeemed"].as_i64().unwrap_or(0) + 1);
}
