//! Every tool against a real local HTTP server: the exact method, path, query, headers and
//! body it sends, and what the model reads back.

mod support;

use altan_pay::pay::idempotency_key;
use altan_pay::tools::{ErrorCode, ToolOutputView, ToolSet};
use serde_json::{Value, json};
use support::{MockPay, Scripted, ctx};

const C: &str = "stripe_connect_id=acct_9";

/// One tool call and the request it must produce.
type Case = (
    &'static str,  // tool
    Value,         // arguments
    &'static str,  // method
    String,        // path?query
    Option<Value>, // JSON body (None: no body)
    &'static str,  // route operation
);

fn cases() -> Vec<Case> {
    vec![
        (
            "create_product",
            json!({"name": "Pro Plan", "description": "All features", "metadata": [{"key": "tier", "value": "pro"}], "account_id": null}),
            "POST",
            format!("/v2/connect/products/acc_1/create_product?{C}"),
            Some(
                json!({"payload": {"name": "Pro Plan", "description": "All features", "metadata": {"tier": "pro"}}}),
            ),
            "products.create",
        ),
        (
            "get_products",
            json!({"active": true, "ids": ["prod_1", "prod_2"], "limit": 5}),
            "GET",
            format!(
                "/v2/connect/products/acc_1/get_products?{C}&active=true&ids%5B0%5D=prod_1&ids%5B1%5D=prod_2&limit=5"
            ),
            None,
            "products.list",
        ),
        (
            "get_products",
            json!({"id": "prod_1"}),
            "GET",
            format!("/v2/connect/products/acc_1/get_product/prod_1?{C}"),
            None,
            "products.retrieve",
        ),
        (
            "update_product",
            json!({"id": "prod_1", "active": false, "metadata": [{"key": "old", "value": null}]}),
            "POST",
            format!("/v2/connect/products/acc_1/update_product/prod_1?{C}"),
            Some(json!({"payload": {"active": false, "metadata": {"old": ""}}})),
            "products.update",
        ),
        (
            "delete_product",
            json!({"id": "prod_1"}),
            "DELETE",
            format!("/v2/connect/products/acc_1/delete_product/prod_1?{C}"),
            None,
            "products.delete",
        ),
        (
            "create_price",
            json!({"product": "prod_1", "unit_amount": 2000, "currency": "USD", "recurring": {"interval": "month", "interval_count": 3}}),
            "POST",
            format!("/v2/connect/prices/acc_1/create_price?{C}"),
            Some(
                json!({"payload": {"product": "prod_1", "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month", "interval_count": 3}}}),
            ),
            "prices.create",
        ),
        (
            "create_price",
            json!({"product": "prod_1", "unit_amount": 4900, "currency": "eur", "recurring": null}),
            "POST",
            format!("/v2/connect/prices/acc_1/create_price?{C}"),
            Some(json!({"payload": {"product": "prod_1", "unit_amount": 4900, "currency": "eur"}})),
            "prices.create",
        ),
        (
            "get_prices",
            json!({"product": "prod_1", "type": "recurring", "active": true}),
            "GET",
            format!(
                "/v2/connect/prices/acc_1/get_prices?{C}&active=true&product=prod_1&type=recurring"
            ),
            None,
            "prices.list",
        ),
        (
            "update_price",
            json!({"id": "price_1", "active": false}),
            "POST",
            format!("/v2/connect/prices/acc_1/update_price/price_1?{C}"),
            Some(json!({"payload": {"active": false}})),
            "prices.update",
        ),
        (
            "create_customer",
            json!({"email": "ada@example.com", "name": "Ada"}),
            "POST",
            format!("/v2/connect/customers/acc_1/create_customer?{C}"),
            Some(json!({"payload": {"email": "ada@example.com", "name": "Ada"}})),
            "customers.create",
        ),
        (
            "get_customers",
            json!({"email": "ada+x@example.com"}),
            "GET",
            format!("/v2/connect/customers/acc_1/get_customers?{C}&email=ada%2Bx%40example.com"),
            None,
            "customers.list",
        ),
        (
            "update_customer",
            json!({"id": "cus_1", "discounts": [{"coupon": "LAUNCH20"}]}),
            "POST",
            format!("/v2/connect/customers/acc_1/update_customer/cus_1?{C}"),
            Some(json!({"payload": {"discounts": [{"coupon": "LAUNCH20"}]}})),
            "customers.update",
        ),
        (
            "delete_customer",
            json!({"id": "cus_1"}),
            "DELETE",
            format!("/v2/connect/customers/acc_1/delete_customer/cus_1?{C}"),
            None,
            "customers.delete",
        ),
        (
            "create_subscription",
            json!({"customer": "cus_1", "items": [{"price": "price_1", "quantity": 2}], "discounts": [{"promotion_code": "promo_1"}]}),
            "POST",
            format!("/v2/connect/subscriptions/acc_1/create_subscription?{C}"),
            Some(
                json!({"payload": {"customer": "cus_1", "items": [{"price": "price_1", "quantity": 2}], "discounts": [{"promotion_code": "promo_1"}]}}),
            ),
            "subscriptions.create",
        ),
        (
            "get_subscriptions",
            json!({"customer": "cus_1", "status": "all"}),
            "GET",
            format!(
                "/v2/connect/subscriptions/acc_1/get_subscriptions?{C}&customer=cus_1&status=all"
            ),
            None,
            "subscriptions.list",
        ),
        (
            "update_subscription",
            json!({"id": "sub_1", "cancel_at_period_end": true}),
            "POST",
            format!("/v2/connect/subscriptions/acc_1/update_subscription/sub_1?{C}"),
            Some(json!({"payload": {"cancel_at_period_end": true}})),
            "subscriptions.update",
        ),
        (
            "cancel_subscription",
            json!({"id": "sub_1", "prorate": true}),
            "POST",
            format!("/v2/connect/subscriptions/acc_1/cancel_subscription/sub_1?{C}"),
            Some(json!({"payload": {"prorate": true}})),
            "subscriptions.cancel",
        ),
        (
            "create_coupon",
            json!({"percent_off": 20.0, "duration": "repeating", "duration_in_months": 3, "name": "Launch"}),
            "POST",
            format!("/v2/connect/coupons/acc_1/create_coupon?{C}"),
            Some(
                json!({"payload": {"percent_off": 20.0, "duration": "repeating", "duration_in_months": 3, "name": "Launch"}}),
            ),
            "coupons.create",
        ),
        (
            "create_coupon",
            json!({"amount_off": 500, "currency": "usd", "duration": "once", "id": "FIVE"}),
            "POST",
            format!("/v2/connect/coupons/acc_1/create_coupon?{C}"),
            Some(
                json!({"payload": {"amount_off": 500, "currency": "usd", "duration": "once", "id": "FIVE"}}),
            ),
            "coupons.create",
        ),
        (
            "get_coupons",
            json!({"limit": 100}),
            "GET",
            format!("/v2/connect/coupons/acc_1/get_coupons?{C}&limit=100"),
            None,
            "coupons.list",
        ),
        (
            "update_coupon",
            json!({"id": "FIVE", "name": "Five off"}),
            "POST",
            format!("/v2/connect/coupons/acc_1/update_coupon/FIVE?{C}"),
            Some(json!({"payload": {"name": "Five off"}})),
            "coupons.update",
        ),
        (
            "delete_coupon",
            json!({"id": "FIVE"}),
            "DELETE",
            format!("/v2/connect/coupons/acc_1/delete_coupon/FIVE?{C}"),
            None,
            "coupons.delete",
        ),
        (
            "create_promotion_code",
            json!({"coupon": "FIVE", "code": "FALL20", "max_redemptions": 10}),
            "POST",
            format!("/v2/connect/promotion_codes/acc_1/create_promotion_code?{C}"),
            Some(json!({"payload": {"coupon": "FIVE", "code": "FALL20", "max_redemptions": 10}})),
            "promotion_codes.create",
        ),
        (
            "get_promotion_codes",
            json!({"code": "FALL20"}),
            "GET",
            format!("/v2/connect/promotion_codes/acc_1/get_promotion_codes?{C}&code=FALL20"),
            None,
            "promotion_codes.list",
        ),
        (
            "update_promotion_code",
            json!({"id": "promo_1", "active": false}),
            "POST",
            format!("/v2/connect/promotion_codes/acc_1/update_promotion_code/promo_1?{C}"),
            Some(json!({"payload": {"active": false}})),
            "promotion_codes.update",
        ),
        (
            "create_checkout_session",
            json!({"mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "https://app.example.com/ok", "allow_promotion_codes": true}),
            "POST",
            format!("/v2/connect/checkout/acc_1/create_checkout_session?{C}"),
            Some(
                json!({"payload": {"mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "https://app.example.com/ok", "allow_promotion_codes": true}}),
            ),
            "checkout_sessions.create",
        ),
    ]
}

#[tokio::test]
async fn every_tool_sends_exactly_its_route() {
    let tools = ToolSet::altan_pay();
    let mut covered = std::collections::BTreeSet::new();
    for (i, (tool, args, method, target, body, operation)) in cases().into_iter().enumerate() {
        let pay = MockPay::start().await;
        let answer = json!({"id": "obj_1", "object": "thing"});
        pay.push(Scripted::json(200, answer.clone()));
        let call_id = format!("call_{i}");
        let out = tools
            .call(&pay.env(), &ctx(&call_id), tool, &args.to_string())
            .await;
        assert!(out.error().is_none(), "{tool}: {:?}", out.error());

        let reqs = pay.requests();
        assert_eq!(reqs.len(), 1, "{tool}: one request");
        let r = &reqs[0];
        assert_eq!(r.method, method, "{tool}");
        assert_eq!(r.target(), target, "{tool}");
        match &body {
            Some(expected) => {
                assert_eq!(&r.json(), expected, "{tool}: body");
                assert_eq!(r.header("content-type"), Some("application/json"), "{tool}");
            }
            None => assert!(r.body.is_empty(), "{tool}: no body"),
        }
        let mutation = method != "GET";
        let expected_key = mutation.then(|| idempotency_key("thread-1", &call_id, operation));
        assert_eq!(
            r.header("idempotency-key").map(str::to_string),
            expected_key,
            "{tool}"
        );
        assert_eq!(
            r.header("authorization"),
            None,
            "{tool}: no token configured"
        );
        assert_eq!(
            out.effect().is_some(),
            mutation,
            "{tool}: effect recorded for mutations only"
        );
        if operation.ends_with(".retrieve") {
            assert_eq!(
                out.content(),
                json!({"object": "list", "data": [answer], "has_more": false})
            );
        } else {
            assert_eq!(out.content(), answer);
        }
        covered.insert(tool);
    }
    let all: std::collections::BTreeSet<_> = altan_pay::tools::catalog::all()
        .iter()
        .map(|t| t.definition().name)
        .filter(|n| *n != "get_account_stripe_connection_id")
        .collect();
    assert_eq!(covered, all, "every Pay tool has a case");
}

#[tokio::test]
async fn connect_id_is_looked_up_once_and_cached() {
    let pay = MockPay::start().await;
    let tools = ToolSet::altan_pay();
    let env = pay.env();
    let mut c = ctx("call_1");
    c.stripe_connect_id = None;
    pay.push(Scripted::json(
        200,
        json!({"stripe_connect_id": "acct_Z 1"}),
    ));
    pay.push(Scripted::json(
        200,
        json!({"object": "list", "data": [], "has_more": false}),
    ));
    pay.push(Scripted::json(
        200,
        json!({"object": "list", "data": [], "has_more": false}),
    ));
    let out = tools.call(&env, &c, "get_products", "{}").await;
    assert!(out.error().is_none(), "{:?}", out.error());
    let out = tools.call(&env, &c, "get_coupons", "{}").await;
    assert!(out.error().is_none());
    let targets: Vec<String> = pay.requests().iter().map(|r| r.target()).collect();
    assert_eq!(
        targets,
        vec![
            "/v2/connect/account/acc_1/stripe_connect_id".to_string(),
            "/v2/connect/products/acc_1/get_products?stripe_connect_id=acct_Z%201".to_string(),
            "/v2/connect/coupons/acc_1/get_coupons?stripe_connect_id=acct_Z%201".to_string(),
        ]
    );

    // The dedicated tool answers from the cache too, without another request.
    let out = tools
        .call(&env, &c, "get_account_stripe_connection_id", "{}")
        .await;
    assert_eq!(
        out.content(),
        json!({"account_id": "acc_1", "stripe_connect_id": "acct_Z 1"})
    );
    assert_eq!(pay.requests().len(), 3);
}

#[tokio::test]
async fn bearer_token_is_sent_when_configured() {
    let pay = MockPay::start().await;
    let mut config = altan_pay::pay::PayConfig::new(
        altan_pay::pay::RouteTable::embedded().with_base_url(&pay.base_url),
    );
    config.token = Some("tok_secret".into());
    let env = altan_pay::tools::ToolEnv {
        pay: altan_pay::pay::PayClient::new(config).unwrap(),
    };
    pay.push(Scripted::json(
        200,
        json!({"object": "list", "data": [], "has_more": false}),
    ));
    let out = ToolSet::altan_pay()
        .call(&env, &ctx("c"), "get_products", "{}")
        .await;
    assert!(out.error().is_none());
    assert_eq!(
        pay.requests()[0].header("authorization"),
        Some("Bearer tok_secret")
    );
    assert!(
        !format!("{:?}", env.pay).contains("tok_secret"),
        "Debug never shows the token"
    );
}

/// Arguments the model gets wrong: each becomes a tool result that says what to fix, and
/// no request leaves.
#[tokio::test]
async fn bad_arguments_never_reach_the_api() {
    let cases: &[(&str, &str, &str)] = &[
        ("create_product", "{not json", "not valid JSON"),
        ("create_product", "[1,2]", "must be a JSON object"),
        ("create_product", r#"{"name": 5}"#, "invalid type"),
        (
            "create_product",
            r#"{"name": "A", "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (
            "create_product",
            r#"{"description": "no name"}"#,
            "missing field `name`",
        ),
        ("create_product", r#"{"name": "  "}"#, "`name` is empty"),
        (
            "create_product",
            r#"{"name": "A", "default_price_data": {}}"#,
            "create_price",
        ),
        (
            "create_coupon",
            r#"{"percent_off": 10, "amount_off": 100, "currency": "usd", "duration": "once"}"#,
            "not both",
        ),
        (
            "create_coupon",
            r#"{"duration": "once"}"#,
            "needs `percent_off`",
        ),
        (
            "create_coupon",
            r#"{"amount_off": 100, "duration": "once"}"#,
            "needs `currency`",
        ),
        (
            "create_coupon",
            r#"{"percent_off": 120, "duration": "once"}"#,
            "at most 100",
        ),
        (
            "create_coupon",
            r#"{"percent_off": 10, "duration": "repeating"}"#,
            "duration_in_months",
        ),
        (
            "create_coupon",
            r#"{"percent_off": 10, "duration": "forever", "duration_in_months": 3}"#,
            "only allowed with duration repeating",
        ),
        (
            "create_coupon",
            r#"{"percent_off": 10, "duration": "weekly"}"#,
            "unknown variant `weekly`",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": -5, "currency": "usd"}"#,
            "cannot be negative",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": 500, "currency": "dollars"}"#,
            "three-letter ISO currency",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "recurring": {"interval_count": 3}}"#,
            "missing field `interval`",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "interval_count": 3}"#,
            "inside `recurring`",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "recurring": {"interval": "month", "interval_count": 13}}"#,
            "between 1 and 12",
        ),
        (
            "create_price",
            r#"{"product": "prod_1", "unit_amount": "5", "currency": "usd"}"#,
            "invalid type",
        ),
        (
            "update_price",
            r#"{"id": "price_1", "unit_amount": 100}"#,
            "never change",
        ),
        (
            "update_price",
            r#"{"id": "prod_1", "active": false}"#,
            "must start with price_",
        ),
        ("update_price", r#"{"id": "price_1"}"#, "at least one field"),
        (
            "update_coupon",
            r#"{"id": "FIVE", "percent_off": 5}"#,
            "only a coupon's name and metadata",
        ),
        ("get_products", r#"{"limit": 0}"#, "between 1 and 100"),
        ("get_products", r#"{"limit": 101}"#, "between 1 and 100"),
        (
            "get_products",
            r#"{"id": "prod_1", "active": true}"#,
            "not both",
        ),
        (
            "update_customer",
            r#"{"id": "cus_1", "discounts": [{"coupon": "A", "promotion_code": "promo_1"}]}"#,
            "exactly one",
        ),
        (
            "update_customer",
            r#"{"id": "cus_1", "email": "not-an-email"}"#,
            "not an email",
        ),
        (
            "create_subscription",
            r#"{"customer": "cus_1", "items": []}"#,
            "1 to 20",
        ),
        (
            "create_subscription",
            r#"{"customer": "Ada", "items": [{"price": "price_1"}]}"#,
            "must start with cus_",
        ),
        (
            "create_checkout_session",
            r#"{"mode": "payment", "line_items": [], "success_url": "https://x.io"}"#,
            "at least one price",
        ),
        (
            "create_checkout_session",
            r#"{"mode": "payment", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "/ok"}"#,
            "absolute http(s) URL",
        ),
        (
            "update_product",
            r#"{"id": "prod 1", "name": "x"}"#,
            "not a Stripe id",
        ),
        (
            "create_product",
            r#"{"name": "A", "metadata": [{"key": "a[b]", "value": "x"}]}"#,
            "square brackets",
        ),
        (
            "create_product",
            r#"{"name": "A", "account_id": 7}"#,
            "string or null",
        ),
    ];
    let pay = MockPay::start().await;
    let tools = ToolSet::altan_pay();
    for (tool, args, expected) in cases {
        let out = tools.call(&pay.env(), &ctx("c"), tool, args).await;
        let err = out
            .error()
            .unwrap_or_else(|| panic!("{tool} {args}: accepted"));
        assert_eq!(err.code, ErrorCode::InvalidArguments, "{tool} {args}");
        assert!(
            err.model_message.contains(expected),
            "{tool} {args}: `{}` lacks `{expected}`",
            err.model_message
        );
        assert_eq!(out.content()["error"]["code"], "invalid_arguments");
        assert_eq!(out.content()["error"]["message"], err.model_message);
    }
    assert!(pay.requests().is_empty(), "no request was sent");
}

#[tokio::test]
async fn account_scope_is_enforced_before_any_request() {
    let pay = MockPay::start().await;
    let tools = ToolSet::altan_pay();

    let out = tools
        .call(
            &pay.env(),
            &ctx("c"),
            "get_products",
            r#"{"account_id": "acc_other"}"#,
        )
        .await;
    assert_eq!(out.error().unwrap().code, ErrorCode::AccountMismatch);

    let out = tools
        .call(
            &pay.env(),
            &ctx("c"),
            "get_products",
            r#"{"stripe_connect_id": "acct_other"}"#,
        )
        .await;
    assert_eq!(out.error().unwrap().code, ErrorCode::AccountMismatch);

    let mut no_account = ctx("c");
    no_account.account_id = None;
    let out = tools
        .call(
            &pay.env(),
            &no_account,
            "create_product",
            r#"{"name": "A"}"#,
        )
        .await;
    let err = out.error().unwrap();
    assert_eq!(err.code, ErrorCode::MissingAccountId);
    assert!(err.model_message.contains("@Altan"));

    let out = tools
        .call(&pay.env(), &ctx("c"), "refund_everything", "{}")
        .await;
    let err = out.error().unwrap();
    assert_eq!(err.code, ErrorCode::UnknownTool);
    assert!(err.model_message.contains("create_product"));
    assert!(pay.requests().is_empty());

    // With no trusted account, an id the model passes is used (the engine checks where it came from).
    pay.push(Scripted::json(
        200,
        json!({"object": "list", "data": [], "has_more": false}),
    ));
    let out = tools
        .call(
            &pay.env(),
            &no_account,
            "get_products",
            r#"{"account_id": "acc_7"}"#,
        )
        .await;
    assert!(out.error().is_none());
    assert_eq!(
        pay.requests()[0].path,
        "/v2/connect/products/acc_7/get_products"
    );
}
