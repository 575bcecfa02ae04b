//! Every tool against a real local HTTP server: the exact method, path, query, headers and
//! body it sends, and what the model reads back.

mod support;

use altan_pay::pay::idempotency_key;
use altan_pay::tools::{ErrorCode, ToolOutputView, ToolSet};
use serde_json::{Value, json};
use support::{MockPay, Scripted, ctx};

const C: &str = "stripe_connect_id=acct_9";

/// One tool call and the one request it must send.
struct Case {
    tool: &'static str,
    args: Value,
    method: &'static str,
    /// Path and query, as written in the route table.
    target: String,
    /// The JSON body; `None`: no body.
    body: Option<Value>,
    /// The route's operation.
    operation: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            tool: "create_product",
            args: json!({"name": "Pro Plan", "description": "All features", "metadata": [{"key": "tier", "value": "pro"}], "account_id": null}),
            method: "POST",
            target: format!("/v2/connect/products/acc_1/create_product?{C}"),
            body: Some(
                json!({"payload": {"name": "Pro Plan", "description": "All features", "metadata": {"tier": "pro"}}}),
            ),
            operation: "products.create",
        },
        Case {
            tool: "get_products",
            args: json!({"active": true, "ids": ["prod_1", "prod_2"], "limit": 5}),
            method: "GET",
            target: format!(
                "/v2/connect/products/acc_1/get_products?{C}&active=true&ids%5B0%5D=prod_1&ids%5B1%5D=prod_2&limit=5"
            ),
            body: None,
            operation: "products.list",
        },
        Case {
            tool: "get_products",
            args: json!({"id": "prod_1"}),
            method: "GET",
            target: format!("/v2/connect/products/acc_1/get_product/prod_1?{C}"),
            body: None,
            operation: "products.retrieve",
        },
        Case {
            tool: "update_product",
            args: json!({"id": "prod_1", "active": false, "metadata": [{"key": "old", "value": null}]}),
            method: "POST",
            target: format!("/v2/connect/products/acc_1/update_product/prod_1?{C}"),
            body: Some(json!({"payload": {"active": false, "metadata": {"old": ""}}})),
            operation: "products.update",
        },
        Case {
            tool: "delete_product",
            args: json!({"id": "prod_1"}),
            method: "DELETE",
            target: format!("/v2/connect/products/acc_1/delete_product/prod_1?{C}"),
            body: None,
            operation: "products.delete",
        },
        Case {
            tool: "create_price",
            args: json!({"product": "prod_1", "unit_amount": 2000, "currency": "USD", "recurring": {"interval": "month", "interval_count": 3}}),
            method: "POST",
            target: format!("/v2/connect/prices/acc_1/create_price?{C}"),
            body: Some(
                json!({"payload": {"product": "prod_1", "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month", "interval_count": 3}}}),
            ),
            operation: "prices.create",
        },
        Case {
            tool: "create_price",
            args: json!({"product": "prod_1", "unit_amount": 4900, "currency": "eur", "recurring": null}),
            method: "POST",
            target: format!("/v2/connect/prices/acc_1/create_price?{C}"),
            body: Some(
                json!({"payload": {"product": "prod_1", "unit_amount": 4900, "currency": "eur"}}),
            ),
            operation: "prices.create",
        },
        Case {
            tool: "get_prices",
            args: json!({"product": "prod_1", "type": "recurring", "active": true}),
            method: "GET",
            target: format!(
                "/v2/connect/prices/acc_1/get_prices?{C}&active=true&product=prod_1&type=recurring"
            ),
            body: None,
            operation: "prices.list",
        },
        Case {
            tool: "update_price",
            args: json!({"id": "price_1", "active": false}),
            method: "POST",
            target: format!("/v2/connect/prices/acc_1/update_price/price_1?{C}"),
            body: Some(json!({"payload": {"active": false}})),
            operation: "prices.update",
        },
        Case {
            tool: "create_customer",
            args: json!({"email": "ada@example.com", "name": "Ada"}),
            method: "POST",
            target: format!("/v2/connect/customers/acc_1/create_customer?{C}"),
            body: Some(json!({"payload": {"email": "ada@example.com", "name": "Ada"}})),
            operation: "customers.create",
        },
        Case {
            tool: "get_customers",
            args: json!({"email": "ada+x@example.com"}),
            method: "GET",
            target: format!(
                "/v2/connect/customers/acc_1/get_customers?{C}&email=ada%2Bx%40example.com"
            ),
            body: None,
            operation: "customers.list",
        },
        Case {
            tool: "update_customer",
            args: json!({"id": "cus_1", "discounts": [{"coupon": "LAUNCH20"}]}),
            method: "POST",
            target: format!("/v2/connect/customers/acc_1/update_customer/cus_1?{C}"),
            body: Some(json!({"payload": {"discounts": [{"coupon": "LAUNCH20"}]}})),
            operation: "customers.update",
        },
        Case {
            tool: "delete_customer",
            args: json!({"id": "cus_1"}),
            method: "DELETE",
            target: format!("/v2/connect/customers/acc_1/delete_customer/cus_1?{C}"),
            body: None,
            operation: "customers.delete",
        },
        Case {
            tool: "create_subscription",
            args: json!({"customer": "cus_1", "items": [{"price": "price_1", "quantity": 2}], "discounts": [{"promotion_code": "promo_1"}]}),
            method: "POST",
            target: format!("/v2/connect/subscriptions/acc_1/create_subscription?{C}"),
            body: Some(
                json!({"payload": {"customer": "cus_1", "items": [{"price": "price_1", "quantity": 2}], "discounts": [{"promotion_code": "promo_1"}]}}),
            ),
            operation: "subscriptions.create",
        },
        Case {
            tool: "get_subscriptions",
            args: json!({"customer": "cus_1", "status": "all"}),
            method: "GET",
            target: format!(
                "/v2/connect/subscriptions/acc_1/get_subscriptions?{C}&customer=cus_1&status=all"
            ),
            body: None,
            operation: "subscriptions.list",
        },
        Case {
            tool: "update_subscription",
            args: json!({"id": "sub_1", "cancel_at_period_end": true}),
            method: "POST",
            target: format!("/v2/connect/subscriptions/acc_1/update_subscription/sub_1?{C}"),
            body: Some(json!({"payload": {"cancel_at_period_end": true}})),
            operation: "subscriptions.update",
        },
        Case {
            tool: "cancel_subscription",
            args: json!({"id": "sub_1", "prorate": true}),
            method: "POST",
            target: format!("/v2/connect/subscriptions/acc_1/cancel_subscription/sub_1?{C}"),
            body: Some(json!({"payload": {"prorate": true}})),
            operation: "subscriptions.cancel",
        },
        Case {
            tool: "create_coupon",
            args: json!({"percent_off": 20.0, "duration": "repeating", "duration_in_months": 3, "name": "Launch"}),
            method: "POST",
            target: format!("/v2/connect/coupons/acc_1/create_coupon?{C}"),
            body: Some(
                json!({"payload": {"percent_off": 20.0, "duration": "repeating", "duration_in_months": 3, "name": "Launch"}}),
            ),
            operation: "coupons.create",
        },
        Case {
            tool: "create_coupon",
            args: json!({"amount_off": 500, "currency": "usd", "duration": "once", "id": "FIVE"}),
            method: "POST",
            target: format!("/v2/connect/coupons/acc_1/create_coupon?{C}"),
            body: Some(
                json!({"payload": {"amount_off": 500, "currency": "usd", "duration": "once", "id": "FIVE"}}),
            ),
            operation: "coupons.create",
        },
        Case {
            tool: "get_coupons",
            args: json!({"limit": 100}),
            method: "GET",
            target: format!("/v2/connect/coupons/acc_1/get_coupons?{C}&limit=100"),
            body: None,
            operation: "coupons.list",
        },
        Case {
            tool: "update_coupon",
            args: json!({"id": "FIVE", "name": "Five off"}),
            method: "POST",
            target: format!("/v2/connect/coupons/acc_1/update_coupon/FIVE?{C}"),
            body: Some(json!({"payload": {"name": "Five off"}})),
            operation: "coupons.update",
        },
        Case {
            tool: "delete_coupon",
            args: json!({"id": "FIVE"}),
            method: "DELETE",
            target: format!("/v2/connect/coupons/acc_1/delete_coupon/FIVE?{C}"),
            body: None,
            operation: "coupons.delete",
        },
        Case {
            tool: "create_promotion_code",
            args: json!({"coupon": "FIVE", "code": "FALL20", "max_redemptions": 10}),
            method: "POST",
            target: format!("/v2/connect/promotion_codes/acc_1/create_promotion_code?{C}"),
            body: Some(
                json!({"payload": {"coupon": "FIVE", "code": "FALL20", "max_redemptions": 10}}),
            ),
            operation: "promotion_codes.create",
        },
        Case {
            tool: "get_promotion_codes",
            args: json!({"code": "FALL20"}),
            method: "GET",
            target: format!(
                "/v2/connect/promotion_codes/acc_1/get_promotion_codes?{C}&code=FALL20"
            ),
            body: None,
            operation: "promotion_codes.list",
        },
        Case {
            tool: "update_promotion_code",
            args: json!({"id": "promo_1", "active": false}),
            method: "POST",
            target: format!("/v2/connect/promotion_codes/acc_1/update_promotion_code/promo_1?{C}"),
            body: Some(json!({"payload": {"active": false}})),
            operation: "promotion_codes.update",
        },
        Case {
            tool: "create_checkout_session",
            args: json!({"mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "https://app.example.com/ok", "allow_promotion_codes": true}),
            method: "POST",
            target: format!("/v2/connect/checkout/acc_1/create_checkout_session?{C}"),
            body: Some(
                json!({"payload": {"mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "https://app.example.com/ok", "allow_promotion_codes": true}}),
            ),
            operation: "checkout_sessions.create",
        },
    ]
}

#[tokio::test]
async fn every_tool_sends_exactly_its_route() {
    let tools = ToolSet::altan_pay();
    let mut covered = std::collections::BTreeSet::new();
    for (
        i,
        Case {
            tool,
            args,
            method,
            target,
            body,
            operation,
        },
    ) in cases().into_iter().enumerate()
    {
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
    /// Arguments for `tool` that are wrong, and what the result must say.
    struct Case {
        tool: &'static str,
        args: &'static str,
        says: &'static str,
    }
    let cases = &[
        Case {
            tool: "create_product",
            args: "{not json",
            says: "not valid JSON",
        },
        Case {
            tool: "create_product",
            args: "[1,2]",
            says: "must be a JSON object",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": 5}"#,
            says: "invalid type",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": "A", "colour": "red"}"#,
            says: "unknown field `colour`",
        },
        Case {
            tool: "create_product",
            args: r#"{"description": "no name"}"#,
            says: "missing field `name`",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": "  "}"#,
            says: "`name` is empty",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": "A", "default_price_data": {}}"#,
            says: "create_price",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"percent_off": 10, "amount_off": 100, "currency": "usd", "duration": "once"}"#,
            says: "not both",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"duration": "once"}"#,
            says: "needs `percent_off`",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"amount_off": 100, "duration": "once"}"#,
            says: "needs `currency`",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"percent_off": 120, "duration": "once"}"#,
            says: "at most 100",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"percent_off": 10, "duration": "repeating"}"#,
            says: "duration_in_months",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"percent_off": 10, "duration": "forever", "duration_in_months": 3}"#,
            says: "only allowed with duration repeating",
        },
        Case {
            tool: "create_coupon",
            args: r#"{"percent_off": 10, "duration": "weekly"}"#,
            says: "unknown variant `weekly`",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": -5, "currency": "usd"}"#,
            says: "cannot be negative",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": 500, "currency": "dollars"}"#,
            says: "three-letter ISO currency",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "recurring": {"interval_count": 3}}"#,
            says: "missing field `interval`",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "interval_count": 3}"#,
            says: "inside `recurring`",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": 500, "currency": "usd", "recurring": {"interval": "month", "interval_count": 13}}"#,
            says: "between 1 and 12",
        },
        Case {
            tool: "create_price",
            args: r#"{"product": "prod_1", "unit_amount": "5", "currency": "usd"}"#,
            says: "invalid type",
        },
        Case {
            tool: "update_price",
            args: r#"{"id": "price_1", "unit_amount": 100}"#,
            says: "never change",
        },
        Case {
            tool: "update_price",
            args: r#"{"id": "prod_1", "active": false}"#,
            says: "must start with price_",
        },
        Case {
            tool: "update_price",
            args: r#"{"id": "price_1"}"#,
            says: "at least one field",
        },
        Case {
            tool: "update_coupon",
            args: r#"{"id": "FIVE", "percent_off": 5}"#,
            says: "only a coupon's name and metadata",
        },
        Case {
            tool: "get_products",
            args: r#"{"limit": 0}"#,
            says: "between 1 and 100",
        },
        Case {
            tool: "get_products",
            args: r#"{"limit": 101}"#,
            says: "between 1 and 100",
        },
        Case {
            tool: "get_products",
            args: r#"{"id": "prod_1", "active": true}"#,
            says: "not both",
        },
        Case {
            tool: "update_customer",
            args: r#"{"id": "cus_1", "discounts": [{"coupon": "A", "promotion_code": "promo_1"}]}"#,
            says: "exactly one",
        },
        Case {
            tool: "update_customer",
            args: r#"{"id": "cus_1", "email": "not-an-email"}"#,
            says: "not an email",
        },
        Case {
            tool: "create_subscription",
            args: r#"{"customer": "cus_1", "items": []}"#,
            says: "1 to 20",
        },
        Case {
            tool: "create_subscription",
            args: r#"{"customer": "Ada", "items": [{"price": "price_1"}]}"#,
            says: "must start with cus_",
        },
        Case {
            tool: "create_checkout_session",
            args: r#"{"mode": "payment", "line_items": [], "success_url": "https://x.io"}"#,
            says: "at least one price",
        },
        Case {
            tool: "create_checkout_session",
            args: r#"{"mode": "payment", "line_items": [{"price": "price_1", "quantity": 1}], "success_url": "/ok"}"#,
            says: "absolute http(s) URL",
        },
        Case {
            tool: "update_product",
            args: r#"{"id": "prod 1", "name": "x"}"#,
            says: "not a Stripe id",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": "A", "metadata": [{"key": "a[b]", "value": "x"}]}"#,
            says: "square brackets",
        },
        Case {
            tool: "create_product",
            args: r#"{"name": "A", "account_id": 7}"#,
            says: "string or null",
        },
    ];
    let pay = MockPay::start().await;
    let tools = ToolSet::altan_pay();
    for Case {
        tool,
        args,
        says: expected,
    } in cases
    {
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
