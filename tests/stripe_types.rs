//! Stripe object types against Stripe's own samples (`fixtures/stripe/samples.json`).

use std::path::Path;

use altan_pay::stripe::{
    BillingScheme, CheckoutMode, CheckoutSession, CheckoutStatus, CollectionMethod, Coupon,
    CouponDiscount, Customer, Deleted, Discount, DiscountSourceType, Duration, ErrorBody,
    ErrorType, Expandable, Interval, List, PaymentStatus, Price, PriceType, Product, PromotionCode,
    StripeObject, Subscription, SubscriptionItem, SubscriptionStatus, TaxExempt, UsageType,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn samples() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stripe/samples.json");
    let text = std::fs::read_to_string(&path).expect("read samples.json");
    serde_json::from_str(&text).expect("samples.json is JSON")
}

fn sample(name: &str) -> Value {
    samples()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no sample {name}"))
}

fn parse<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_value(sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// serialize(parse(x)) == x, compared as JSON values (key order does not matter).
fn assert_round_trip<T: DeserializeOwned + Serialize>(value: &Value) {
    let parsed: T = serde_json::from_value(value.clone()).expect("parse");
    let back = serde_json::to_value(&parsed).expect("serialize");
    assert_eq!(&back, value);
}

#[test]
fn product_parses() {
    let p: Product = parse("product");
    assert_eq!(p.id, "prod_QXg1hqf4jFNsqG");
    assert_eq!(p.name, "T-shirt");
    assert!(p.active);
    assert_eq!(
        p.default_price.as_ref().map(Expandable::id),
        Some("price_1PgafmB7WZ01zgkW02Hf9z6c")
    );
    assert_eq!(
        p.description.as_deref(),
        Some("Comfortable gray cotton t-shirt")
    );
    // Unnamed fields land in `extra`.
    assert_eq!(p.extra["type"], "good");
    assert!(p.extra.contains_key("package_dimensions"));
}

#[test]
fn price_parses() {
    let p: Price = parse("price");
    assert_eq!(p.id, "price_1PgafmB7WZ01zgkW6dKueIc5");
    assert_eq!(p.unit_amount, Some(2000));
    assert_eq!(p.unit_amount_decimal.as_deref(), Some("2000"));
    assert_eq!(p.currency, "usd");
    assert_eq!(p.r#type, PriceType::Recurring);
    assert_eq!(p.billing_scheme, BillingScheme::PerUnit);
    assert_eq!(p.product.id(), "prod_QXg1hqf4jFNsqG");
    assert!(!p.product.is_expanded());
    let r = p.recurring.expect("recurring");
    assert_eq!(r.interval, Interval::Month);
    assert_eq!(r.interval_count, 1);
    assert_eq!(r.usage_type, Some(UsageType::Licensed));
}

#[test]
fn customer_parses() {
    let c: Customer = parse("customer");
    assert_eq!(c.id, "cus_QXg1o8vcGmoR32");
    assert_eq!(c.balance, 0);
    assert_eq!(c.tax_exempt, Some(TaxExempt::None));
    assert_eq!(c.invoice_prefix.as_deref(), Some("7FE1103"));
    let d = c.discount.expect("discount");
    assert_eq!(d.id, "obj_123");
    assert_eq!(
        d.source.as_ref().map(|s| &s.r#type),
        Some(&DiscountSourceType::Coupon)
    );
    assert_eq!(d.coupon_id(), None);
    assert!(c.address.is_some_and(|a| a.city.is_none()));
}

#[test]
fn subscription_parses() {
    let s: Subscription = parse("subscription");
    assert_eq!(s.id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.customer.id(), "cus_QXg1o8vcGmoR32");
    assert_eq!(s.collection_method, CollectionMethod::ChargeAutomatically);
    assert!(s.cancel_at_period_end);
    assert!(!s.items.has_more);
    assert_eq!(s.items.data.len(), 1);
    let item = &s.items.data[0];
    assert_eq!(item.id, "si_QXhVnC2h0Jczwc");
    assert_eq!(item.price.unit_amount, Some(2000));
    assert_eq!(item.quantity, Some(1));
    // Newer API: the period lives on the items, not on the subscription.
    assert_eq!(s.current_period_end, None);
    assert_eq!(s.current_period(), Some((1896570518, 976287773)));
}

#[test]
fn subscription_period_from_older_api_versions() {
    let mut v = sample("subscription");
    v["current_period_start"] = json!(100);
    v["current_period_end"] = json!(200);
    let s: Subscription = serde_json::from_value(v.clone()).expect("parse");
    assert_eq!(s.current_period(), Some((100, 200)));
    assert_round_trip::<Subscription>(&v);
}

#[test]
fn subscription_item_parses() {
    let i: SubscriptionItem = parse("subscription_item");
    assert_eq!(i.id, "si_QXhVBoJ7NQdNXh");
    assert_eq!(i.subscription, "sub_1Pgc6xB7WZ01zgkWJMvZp5ja");
    assert_eq!(i.current_period_start, Some(1896570518));
    assert_eq!(i.current_period_end, Some(976287773));
    assert_eq!(i.price.id, "price_1PgafmB7WZ01zgkW6dKueIc5");
}

#[test]
fn coupon_parses() {
    let c: Coupon = parse("coupon");
    assert_eq!(c.id, "Z4OV52SU");
    assert_eq!(c.discount, CouponDiscount::PercentOff(25.5));
    assert_eq!(c.discount.percent_off(), Some(25.5));
    assert_eq!(c.discount.amount_off(), None);
    // `forever` with a stray duration_in_months: the duration wins, the stray value is kept.
    assert_eq!(c.duration, Duration::Forever);
    assert_eq!(c.extra["duration_in_months"], 3);
    // Currency is irrelevant to a percent-off coupon but kept for the round trip.
    assert_eq!(c.extra["currency"], "usd");
    assert_eq!(c.redeem_by, Some(1234567890));
    assert!(c.valid);
}

#[test]
fn promotion_code_parses() {
    let p: PromotionCode = parse("promotion_code");
    assert_eq!(p.id, "promo_1Pgc79B7WZ01zgkWNy4mn5NX");
    assert_eq!(p.code, "FALL20");
    assert!(!p.active);
    assert_eq!(p.expires_at, Some(1234567890));
    assert!(p.promotion.is_some());
    assert_eq!(p.coupon, None);
    assert_eq!(p.coupon_id(), None);
    assert_eq!(
        p.restrictions.as_ref().map(|r| r.first_time_transaction),
        Some(false)
    );
}

#[test]
fn promotion_code_coupon_in_both_api_shapes() {
    let mut newer = sample("promotion_code");
    newer["promotion"]["coupon"] = json!("Z4OV52SU");
    let p: PromotionCode = serde_json::from_value(newer.clone()).expect("newer");
    assert_eq!(p.coupon_id(), Some("Z4OV52SU"));
    assert_round_trip::<PromotionCode>(&newer);

    // Older versions: no `promotion`, the whole coupon at top level.
    let mut older = sample("promotion_code");
    let obj = older.as_object_mut().expect("object");
    obj.remove("promotion");
    obj.insert("coupon".into(), sample("coupon"));
    let p: PromotionCode = serde_json::from_value(older.clone()).expect("older");
    assert_eq!(p.coupon_id(), Some("Z4OV52SU"));
    assert!(p.coupon.as_ref().is_some_and(Expandable::is_expanded));
    assert_round_trip::<PromotionCode>(&older);
}

#[test]
fn discount_parses() {
    let d: Discount = parse("discount");
    assert_eq!(d.id, "di_1Pgc6rB7WZ01zgkW7Al8Fal9");
    assert_eq!(
        d.customer.as_ref().map(Expandable::id),
        Some("cus_QXg1o8vcGmoR32")
    );
    assert_eq!(d.start, 1234567890);
    assert_eq!(d.end, Some(1234567890));

    // Older versions embed the coupon at top level.
    let mut older = sample("discount");
    let obj = older.as_object_mut().expect("object");
    obj.remove("source");
    obj.insert("coupon".into(), sample("coupon"));
    let d: Discount = serde_json::from_value(older.clone()).expect("older");
    assert_eq!(d.coupon_id(), Some("Z4OV52SU"));
    assert_round_trip::<Discount>(&older);
}

#[test]
fn checkout_session_parses() {
    let s: CheckoutSession = parse("checkout.session");
    assert!(s.id.starts_with("cs_test_"));
    assert_eq!(s.mode, CheckoutMode::Payment);
    assert_eq!(s.status, Some(CheckoutStatus::Open));
    assert_eq!(s.payment_status, PaymentStatus::Unpaid);
    assert!(
        s.url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://checkout.stripe.com/"))
    );
    assert_eq!(
        s.success_url.as_deref(),
        Some("https://example.com/success")
    );
    assert_eq!(s.customer, None);
    assert_eq!(s.amount_total, None);
}

#[test]
fn deleted_objects_parse() {
    for (name, id, object) in [
        ("deleted_product", "prod_QXg1hqf4jFNsqG", "product"),
        ("deleted_customer", "cus_QXg1o8vcGmoR32", "customer"),
        ("deleted_coupon", "Z4OV52SU", "coupon"),
        ("deleted_price", "obj_123", "price"),
    ] {
        let d: Deleted = parse(name);
        assert_eq!(
            (d.id.as_str(), d.object.as_str(), d.deleted),
            (id, object, true)
        );
    }
}

#[test]
fn every_sample_round_trips() {
    let all = samples();
    let all = all.as_object().expect("object");
    for (name, value) in all {
        match name.as_str() {
            "product" => assert_round_trip::<Product>(value),
            "price" => assert_round_trip::<Price>(value),
            "customer" => assert_round_trip::<Customer>(value),
            "subscription" => assert_round_trip::<Subscription>(value),
            "subscription_item" => assert_round_trip::<SubscriptionItem>(value),
            "coupon" => assert_round_trip::<Coupon>(value),
            "promotion_code" => assert_round_trip::<PromotionCode>(value),
            "discount" => assert_round_trip::<Discount>(value),
            "checkout.session" => assert_round_trip::<CheckoutSession>(value),
            n if n.starts_with("deleted_") => assert_round_trip::<Deleted>(value),
            other => panic!("sample {other} has no type in this test"),
        }
        assert_round_trip::<StripeObject>(value);
    }
}

#[test]
fn stripe_object_classifies_every_sample() {
    let all = samples();
    let all = all.as_object().expect("object");
    assert_eq!(all.len(), 13);
    for (name, value) in all {
        let obj = StripeObject::from_value(value);
        let ok = match name.as_str() {
            "product" => matches!(obj, StripeObject::Product(_)),
            "price" => matches!(obj, StripeObject::Price(_)),
            "customer" => matches!(obj, StripeObject::Customer(_)),
            "subscription" => matches!(obj, StripeObject::Subscription(_)),
            "subscription_item" => matches!(obj, StripeObject::SubscriptionItem(_)),
            "coupon" => matches!(obj, StripeObject::Coupon(_)),
            "promotion_code" => matches!(obj, StripeObject::PromotionCode(_)),
            "discount" => matches!(obj, StripeObject::Discount(_)),
            "checkout.session" => matches!(obj, StripeObject::CheckoutSession(_)),
            n if n.starts_with("deleted_") => {
                obj.is_deleted() && Some(obj.object_name()) == n.strip_prefix("deleted_")
            }
            _ => false,
        };
        assert!(ok, "{name} classified as {obj:?}");
        assert_eq!(obj.id(), value["id"].as_str(), "{name}");
        if !name.starts_with("deleted_") {
            assert_eq!(obj.object_name(), name);
            assert!(!obj.is_deleted());
        }
        assert!(StripeObject::try_from_value(value).is_ok(), "{name}");
    }
}

#[test]
fn stripe_object_never_fails() {
    for value in [
        json!(null),
        json!(42),
        json!("prod_123"),
        json!([1, 2]),
        json!({}),
        json!({"object": 7}),
        json!({"id": "ii_1", "object": "invoiceitem"}),
    ] {
        let obj = StripeObject::from_value(&value);
        assert_eq!(obj, StripeObject::Unknown(value.clone()));
        assert_eq!(serde_json::to_value(&obj).expect("serialize"), value);
    }
    let unknown = StripeObject::from_value(&json!({"id": "ii_1", "object": "invoiceitem"}));
    assert_eq!(unknown.id(), Some("ii_1"));
    assert_eq!(unknown.object_name(), "invoiceitem");
    assert_eq!(
        StripeObject::from_value(&json!({})).object_name(),
        "unknown"
    );

    // A known kind that does not parse is kept whole; try_from_value says why.
    let broken = json!({"id": "prod_1", "object": "product"});
    assert_eq!(
        StripeObject::from_value(&broken),
        StripeObject::Unknown(broken.clone())
    );
    let err = StripeObject::try_from_value(&broken).expect_err("missing fields");
    assert!(err.to_string().contains("missing field"), "{err}");

    // Deleted objects of any kind, even ones this crate has no type for.
    let gone =
        StripeObject::from_value(&json!({"id": "txi_1", "object": "tax_id", "deleted": true}));
    assert!(gone.is_deleted());
    assert_eq!((gone.id(), gone.object_name()), (Some("txi_1"), "tax_id"));
}

#[test]
fn stripe_object_classifies_lists_and_their_elements() {
    let list = json!({
        "object": "list",
        "data": [sample("product"), sample("price"), {"object": "invoice", "id": "in_1"}],
        "has_more": true,
        "url": "/v1/things"
    });
    let obj = StripeObject::from_value(&list);
    let StripeObject::List(l) = &obj else {
        panic!("not a list: {obj:?}");
    };
    assert!(l.has_more);
    assert_eq!(obj.id(), None);
    assert_eq!(obj.object_name(), "list");
    assert!(matches!(l.data[0], StripeObject::Product(_)));
    assert!(matches!(l.data[1], StripeObject::Price(_)));
    assert_eq!(l.data[2].object_name(), "invoice");
    assert_eq!(serde_json::to_value(&obj).expect("serialize"), list);
}

#[test]
fn unknown_fields_and_enum_values_survive() {
    let mut v = sample("price");
    v["brand_new_field"] = json!({"nested": [1, 2, 3]});
    v["type"] = json!("hybrid");
    v["billing_scheme"] = json!("per_galaxy");
    v["recurring"]["interval"] = json!("fortnight");
    v["recurring"]["usage_type"] = json!("prepaid");
    v["recurring"]["future"] = json!(true);
    let p: Price = serde_json::from_value(v.clone()).expect("parse");
    assert_eq!(p.r#type, PriceType::Other("hybrid".into()));
    assert_eq!(p.billing_scheme, BillingScheme::Other("per_galaxy".into()));
    let r = p.recurring.as_ref().expect("recurring");
    assert_eq!(r.interval, Interval::Other("fortnight".into()));
    assert_eq!(r.usage_type, Some(UsageType::Other("prepaid".into())));
    assert_eq!(p.extra["brand_new_field"], json!({"nested": [1, 2, 3]}));
    assert_eq!(serde_json::to_value(&p).expect("serialize"), v);

    let mut s = sample("subscription");
    s["status"] = json!("hibernating");
    let sub: Subscription = serde_json::from_value(s.clone()).expect("parse");
    assert_eq!(sub.status, SubscriptionStatus::Other("hibernating".into()));
    assert_eq!(sub.status.as_str(), "hibernating");
    assert_eq!(serde_json::to_value(&sub).expect("serialize"), s);

    let mut c = sample("coupon");
    c["duration"] = json!("lunar");
    let coupon: Coupon = serde_json::from_value(c.clone()).expect("parse");
    assert_eq!(coupon.duration, Duration::Other("lunar".into()));
    assert_eq!(serde_json::to_value(&coupon).expect("serialize"), c);

    assert_eq!(Interval::from("month"), Interval::Month);
    assert_eq!(Interval::from("month".to_string()), Interval::Month);
    assert_eq!(SubscriptionStatus::PastDue.to_string(), "past_due");
}

fn coupon_with(changes: Value) -> Value {
    let mut c = sample("coupon");
    let obj = c.as_object_mut().expect("object");
    for (k, v) in changes.as_object().expect("object") {
        obj.insert(k.clone(), v.clone());
    }
    c
}

#[test]
fn coupon_amount_off_and_repeating() {
    let v = coupon_with(json!({
        "percent_off": null, "amount_off": 500, "currency": "eur",
        "duration": "repeating", "duration_in_months": 3
    }));
    let c: Coupon = serde_json::from_value(v.clone()).expect("parse");
    assert_eq!(
        c.discount,
        CouponDiscount::AmountOff {
            amount: 500,
            currency: "eur".into()
        }
    );
    assert_eq!(c.discount.amount_off(), Some((500, "eur")));
    assert_eq!(c.duration, Duration::Repeating { months: 3 });
    assert!(!c.extra.contains_key("currency"));
    assert!(!c.extra.contains_key("duration_in_months"));
    assert_round_trip::<Coupon>(&v);

    // Whole percentages round-trip as integers, which is how Stripe sends them.
    let whole =
        coupon_with(json!({"percent_off": 20, "duration": "once", "duration_in_months": null}));
    let c: Coupon = serde_json::from_value(whole.clone()).expect("parse");
    assert_eq!(
        (c.discount, c.duration),
        (CouponDiscount::PercentOff(20.0), Duration::Once)
    );
    assert_round_trip::<Coupon>(&whole);
}

#[test]
fn coupon_with_both_or_neither_discount_is_rejected() {
    let neither = coupon_with(json!({"percent_off": null, "amount_off": null}));
    let err = serde_json::from_value::<Coupon>(neither.clone()).expect_err("neither");
    assert_eq!(
        err.to_string(),
        "coupon Z4OV52SU has neither percent_off nor amount_off; Stripe sets exactly one"
    );
    // Also through the text parser, and classification keeps the JSON instead of failing.
    let err = serde_json::from_str::<Coupon>(&neither.to_string()).expect_err("neither");
    assert!(
        err.to_string()
            .contains("neither percent_off nor amount_off"),
        "{err}"
    );
    assert_eq!(
        StripeObject::from_value(&neither),
        StripeObject::Unknown(neither.clone())
    );

    let both = coupon_with(json!({"percent_off": 10, "amount_off": 500}));
    let err = serde_json::from_value::<Coupon>(both).expect_err("both");
    assert!(
        err.to_string().contains("both percent_off and amount_off"),
        "{err}"
    );

    let no_currency =
        coupon_with(json!({"percent_off": null, "amount_off": 500, "currency": null}));
    let err = serde_json::from_value::<Coupon>(no_currency).expect_err("no currency");
    assert!(
        err.to_string().contains("amount_off but no currency"),
        "{err}"
    );

    let no_months = coupon_with(json!({"duration": "repeating", "duration_in_months": null}));
    let err = serde_json::from_value::<Coupon>(no_months).expect_err("no months");
    assert!(
        err.to_string().contains("duration_in_months is null"),
        "{err}"
    );
}

#[test]
fn expanded_references_parse_and_report_their_own_errors() {
    let mut v = sample("price");
    v["product"] = sample("product");
    let p: Price = serde_json::from_value(v.clone()).expect("parse");
    assert!(p.product.is_expanded());
    assert_eq!(p.product.id(), "prod_QXg1hqf4jFNsqG");
    assert_eq!(
        p.product.as_object().map(|x| x.name.as_str()),
        Some("T-shirt")
    );
    assert_round_trip::<Price>(&v);

    v["product"] = json!(17);
    let err = serde_json::from_value::<Price>(v).expect_err("number");
    assert!(
        err.to_string()
            .contains("expected an id string or an expanded object"),
        "{err}"
    );

    let mut d = sample("discount");
    d["source"]["coupon"] = coupon_with(json!({"percent_off": null}));
    let err = serde_json::from_value::<Discount>(d).expect_err("bad coupon");
    assert!(
        err.to_string()
            .contains("neither percent_off nor amount_off"),
        "{err}"
    );
}

#[test]
fn error_body_parses() {
    let v = json!({"error": {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such price: 'price_nope'",
        "param": "price",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_1"
    }});
    let body: ErrorBody = serde_json::from_value(v.clone()).expect("parse");
    let e = &body.error;
    assert_eq!(e.r#type, ErrorType::InvalidRequestError);
    assert_eq!(e.code.as_deref(), Some("resource_missing"));
    assert_eq!(e.param.as_deref(), Some("price"));
    assert_eq!(
        e.to_string(),
        "invalid_request_error (resource_missing): No such price: 'price_nope' [param: price]"
    );
    assert_round_trip::<ErrorBody>(&v);

    let card = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}});
    let body: ErrorBody = serde_json::from_value(card.clone()).expect("parse");
    assert_eq!(body.error.r#type, ErrorType::CardError);
    assert_eq!(
        body.error.decline_code.as_deref(),
        Some("insufficient_funds")
    );
    assert_round_trip::<ErrorBody>(&card);

    for (s, t) in [
        ("api_error", ErrorType::ApiError),
        ("idempotency_error", ErrorType::IdempotencyError),
        ("authentication_error", ErrorType::AuthenticationError),
        ("rate_limit_error", ErrorType::RateLimitError),
        ("permission_error", ErrorType::PermissionError),
    ] {
        let body: ErrorBody = serde_json::from_value(json!({"error": {"type": s}})).expect("parse");
        assert_eq!(body.error.r#type, t);
    }

    let novel = json!({"error": {"type": "temporal_paradox_error", "message": "later", "new_field": 1}, "request_id": "req_9"});
    let body: ErrorBody = serde_json::from_value(novel.clone()).expect("parse");
    assert_eq!(
        body.error.r#type,
        ErrorType::Other("temporal_paradox_error".into())
    );
    assert_eq!(body.error.extra["new_field"], 1);
    assert_eq!(body.extra["request_id"], "req_9");
    assert_round_trip::<ErrorBody>(&novel);
}

#[test]
fn list_of_prices_parses() {
    let mut second = sample("price");
    second["id"] = json!("price_2");
    second["type"] = json!("one_time");
    second["recurring"] = json!(null);
    second["unit_amount"] = json!(999);
    let v = json!({
        "object": "list",
        "data": [sample("price"), second],
        "has_more": true,
        "url": "/v1/prices"
    });
    let list: List<Price> = serde_json::from_value(v.clone()).expect("parse");
    assert!(list.has_more);
    assert_eq!(list.url.as_deref(), Some("/v1/prices"));
    assert_eq!(list.data.len(), 2);
    assert_eq!(list.data[1].r#type, PriceType::OneTime);
    assert_eq!(list.data[1].recurring, None);
    assert_eq!(list.data[1].unit_amount, Some(999));
    assert_round_trip::<List<Price>>(&v);

    // Hand-made lists without a url parse and stay without one.
    let bare = json!({"object": "list", "data": [], "has_more": false});
    let empty: List<Price> = serde_json::from_value(bare.clone()).expect("parse");
    assert!(empty.data.is_empty());
    assert_round_trip::<List<Price>>(&bare);
    assert_eq!(
        serde_json::to_value(List::<Price>::new(vec![], None)).expect("ser"),
        bare
    );
}

/// The copied samples must equal Stripe's originals in the shared spec folder, when present.
#[test]
fn samples_match_shared_fixtures() {
    let original =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/stripe/fixtures3.json");
    let Ok(text) = std::fs::read_to_string(&original) else {
        eprintln!(
            "note: {} not found; skipping the drift check of fixtures/stripe/samples.json",
            original.display()
        );
        return;
    };
    let original: Value = serde_json::from_str(&text).expect("fixtures3.json is JSON");
    let resources = original["resources"].as_object().expect("resources");
    let copied = samples();
    let copied = copied.as_object().expect("object");
    for (name, value) in copied {
        assert_eq!(resources.get(name), Some(value), "sample {name} drifted");
    }
}
