//! Products and prices: creation from Stripe's sample shapes, archiving, the immutable parts
//! of a price, and the rule that a product with prices cannot be deleted.

use serde_json::{Map, Value, json};

use super::util::{copy_fields, exclusive, merge_metadata, missing_ref, random_id, str_of};
use super::{Tx, list};
use crate::gateway::error::GatewayRefusal;

type Params = Map<String, Value>;

const PRODUCT_FIELDS: &[&str] = &[
    "name",
    "active",
    "description",
    "images",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
];

/// Any object by id, or Stripe's 404.
pub fn retrieve(tx: &Tx, collection: &str, id: &str) -> Result<Value, GatewayRefusal> {
    tx.get(collection, id)
        .ok_or_else(|| GatewayRefusal::missing(collection, id))
}

fn product_template(id: &str, now: i64) -> Value {
    json!({
        "id": id, "object": "product", "active": true, "created": now, "default_price": null,
        "description": null, "images": [], "livemode": false, "marketing_features": [],
        "metadata": {}, "name": "", "package_dimensions": null, "shippable": null,
        "statement_descriptor": null, "tax_code": null, "type": "service", "unit_label": null,
        "updated": now, "url": null,
    })
}

pub fn create_product(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let id = match str_of(p, "id") {
        Some(id) if tx.exists("product", id) => {
            return Err(
                GatewayRefusal::invalid(format!("Product already exists: '{id}'"))
                    .code("resource_already_exists")
                    .param("id"),
            );
        }
        Some("") => return Err(GatewayRefusal::invalid("id cannot be empty").param("id")),
        Some(id) => id.to_string(),
        None => random_id("prod_", 14),
    };
    let mut product = product_template(&id, tx.now);
    copy_fields(&mut product, p, PRODUCT_FIELDS);
    check_name(&product)?;
    merge_metadata(&mut product, p);
    if let Some(Value::Object(data)) = p.get("default_price_data") {
        let price = new_price(tx, data, &id, "default_price_data")?;
        product["default_price"] = price["id"].clone();
        tx.put("price", price);
    }
    tx.put("product", product.clone());
    Ok(product)
}

fn check_name(product: &Value) -> Result<(), GatewayRefusal> {
    match product["name"].as_str() {
        Some(name) if !name.trim().is_empty() => Ok(()),
        _ => Err(GatewayRefusal::invalid("A product's name cannot be empty.")
            .code("parameter_invalid_string_empty")
            .param("name")),
    }
}

pub fn update_product(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut product = retrieve(tx, "product", id)?;
    copy_fields(&mut product, p, PRODUCT_FIELDS);
    check_name(&product)?;
    merge_metadata(&mut product, p);
    if let Some(price_id) = str_of(p, "default_price") {
        product["default_price"] = check_default_price(tx, id, price_id)?;
    }
    product["updated"] = json!(tx.now);
    tx.put("product", product.clone());
    Ok(product)
}

fn check_default_price(tx: &Tx, product: &str, price_id: &str) -> Result<Value, GatewayRefusal> {
    if price_id.is_empty() {
        return Ok(Value::Null);
    }
    let price = tx
        .get("price", price_id)
        .ok_or_else(|| missing_ref("price", price_id, "default_price"))?;
    if price["product"] != json!(product) {
        return Err(GatewayRefusal::invalid(format!(
            "The price '{price_id}' belongs to another product; a default price must be one of this product's prices."
        ))
        .param("default_price"));
    }
    if price["active"] != json!(true) {
        return Err(GatewayRefusal::invalid(format!(
            "The price '{price_id}' is archived (active=false) and cannot be the default price."
        ))
        .param("default_price"));
    }
    Ok(json!(price_id))
}

pub fn delete_product(tx: &mut Tx, id: &str) -> Result<Value, GatewayRefusal> {
    retrieve(tx, "product", id)?;
    let has_prices = tx
        .newest_first("price")
        .iter()
        .any(|(_, price)| price["product"] == json!(id));
    if has_prices {
        return Err(GatewayRefusal::invalid(
            "This product cannot be deleted because it has one or more user-created prices. Archive it instead (active=false).",
        ));
    }
    tx.remove("product", id);
    Ok(json!({ "id": id, "object": "product", "deleted": true }))
}

pub fn list_products(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let ids: Option<Vec<&str>> = p
        .get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    list::page(tx, "product", "/v1/products", p, |v| {
        matches_flag(v, p, "active")
            && matches_flag(v, p, "shippable")
            && matches_str(v, p, "url")
            && ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|i| v["id"] == json!(i)))
    })
}

/// Whether an object's field equals the filter parameter of the same name (if given).
pub fn matches_flag(v: &Value, p: &Params, name: &str) -> bool {
    p.get(name).is_none_or(|want| &v[name] == want)
}

pub fn matches_str(v: &Value, p: &Params, name: &str) -> bool {
    matches_flag(v, p, name)
}

pub fn create_price(tx: &mut Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let product = match (str_of(p, "product"), p.get("product_data")) {
        (Some(_), Some(_)) => return Err(exclusive("product", "product_data")),
        (Some(id), None) => {
            if !tx.exists("product", id) {
                return Err(missing_ref("product", id, "product"));
            }
            id.to_string()
        }
        (None, Some(Value::Object(data))) => {
            let product = create_product(tx, data)?;
            product["id"].as_str().unwrap_or_default().to_string()
        }
        _ => return Err(GatewayRefusal::missing_param("product")),
    };
    let price = new_price(tx, p, &product, "")?;
    tx.put("price", price.clone());
    Ok(price)
}

/// Builds a price for `product` from `p` (prices.create or default_price_data).
fn new_price(tx: &Tx, p: &Params, product: &str, prefix: &str) -> Result<Value, GatewayRefusal> {
    let name = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}[{n}]")
        }
    };
    let amount = p
        .get("unit_amount")
        .and_then(Value::as_i64)
        .ok_or_else(|| GatewayRefusal::missing_param(&name("unit_amount")))?;
    let recurring = match p.get("recurring") {
        Some(Value::Object(r)) => json!({
            "interval": r.get("interval").cloned().unwrap_or(json!("month")),
            "interval_count": r.get("interval_count").cloned().unwrap_or(json!(1)),
            "meter": null,
            "usage_type": r.get("usage_type").cloned().unwrap_or(json!("licensed")),
            "trial_period_days": r.get("trial_period_days").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    };
    let kind = if recurring.is_null() {
        "one_time"
    } else {
        "recurring"
    };
    let mut price = json!({
        "id": random_id("price_", 24), "object": "price", "active": true,
        "billing_scheme": "per_unit", "created": tx.now, "currency": p.get("currency"),
        "custom_unit_amount": null, "livemode": false, "lookup_key": null, "metadata": {},
        "nickname": null, "product": product, "recurring": recurring,
        "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
        "type": kind, "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
    });
    copy_fields(
        &mut price,
        p,
        &["active", "nickname", "lookup_key", "tax_behavior"],
    );
    merge_metadata(&mut price, p);
    Ok(price)
}

pub fn update_price(tx: &mut Tx, id: &str, p: &Params) -> Result<Value, GatewayRefusal> {
    let mut price = retrieve(tx, "price", id)?;
    copy_fields(
        &mut price,
        p,
        &["active", "nickname", "lookup_key", "tax_behavior"],
    );
    merge_metadata(&mut price, p);
    tx.put("price", price.clone());
    Ok(price)
}

pub fn list_prices(tx: &Tx, p: &Params) -> Result<Value, GatewayRefusal> {
    let lookup_keys: Option<Vec<Value>> = p.get("lookup_keys").and_then(Value::as_array).cloned();
    list::page(tx, "price", "/v1/prices", p, |v| {
        matches_flag(v, p, "active")
            && matches_str(v, p, "product")
            && matches_str(v, p, "type")
            && matches_str(v, p, "currency")
            && lookup_keys
                .as_ref()
                .is_none_or(|keys| keys.contains(&v["lookup_key"]))
    })
}
