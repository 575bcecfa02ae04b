//! The Altan Pay client over real HTTP: retries and when not to, timeouts, idempotency keys
//! stable across retries, and every kind of bad answer mapped to a typed error.

mod support;

use std::time::Duration;

use altan_pay::pay::{PayCall, PayError};
use altan_pay::stripe::ErrorType;
use altan_pay::tools::{ErrorCode, ToolOutputView, ToolSet};
use serde_json::json;
use support::{MockPay, Scripted, ctx};

fn create_call(key: Option<&str>) -> PayCall<'static> {
    PayCall {
        operation: "products.create",
        account_id: "acc_1",
        stripe_connect_id: Some("acct_9"),
        id: None,
        params: json!({"name": "Pro"}),
        idempotency_key: key.map(str::to_string),
    }
}

#[tokio::test]
async fn retries_5xx_and_429_with_the_same_idempotency_key() {
    let pay = MockPay::start().await;
    pay.push(Scripted::stripe_error(500, "api_error", "", "boom", None));
    pay.push(
        Scripted::stripe_error(
            429,
            "invalid_request_error",
            "rate_limit",
            "slow down",
            None,
        )
        .header("Retry-After", "0"),
    );
    pay.push(Scripted::json(
        200,
        json!({"id": "prod_1", "object": "product"}),
    ));
    let client = pay.client(Duration::from_secs(5));
    let out = client.call(create_call(Some("key-1"))).await.unwrap();
    assert_eq!(out["id"], "prod_1");
    let reqs = pay.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.header("idempotency-key"), Some("key-1"));
        assert_eq!(r.json(), json!({"payload": {"name": "Pro"}}));
    }
}

#[tokio::test]
async fn tool_retries_keep_the_derived_key() {
    let pay = MockPay::start().await;
    pay.push(Scripted::raw(502, "<html>bad gateway</html>"));
    pay.push(Scripted::json(
        200,
        json!({"id": "prod_1", "object": "product"}),
    ));
    let out = ToolSet::altan_pay()
        .call(
            &pay.env(),
            &ctx("call_42"),
            "create_product",
            r#"{"name": "Pro"}"#,
        )
        .await;
    assert!(out.error().is_none(), "{:?}", out.error());
    let keys: Vec<_> = pay
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    let expected = altan_pay::pay::idempotency_key("thread-1", "call_42", "products.create");
    assert_eq!(keys, vec![Some(expected.clone()), Some(expected)]);
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    for (status, kind, code) in [
        (400, "invalid_request_error", "parameter_unknown"),
        (401, "invalid_request_error", "api_key_invalid"),
        (403, "invalid_request_error", "account_invalid"),
        (404, "invalid_request_error", "resource_missing"),
    ] {
        let pay = MockPay::start().await;
        pay.push(Scripted::stripe_error(
            status,
            kind,
            code,
            "no",
            Some("name"),
        ));
        pay.push(Scripted::json(200, json!({"id": "prod_1"})));
        let err = pay
            .client(Duration::from_secs(5))
            .call(create_call(Some("k")))
            .await
            .unwrap_err();
        assert_eq!(pay.requests().len(), 1, "HTTP {status} is not retried");
        match err {
            PayError::Stripe {
                status: s,
                error,
                attempts,
                ..
            } => {
                assert_eq!(s, status);
                assert_eq!(error.code.as_deref(), Some(code));
                assert_eq!(error.param.as_deref(), Some("name"));
                assert_eq!(attempts, 1);
            }
            other => panic!("HTTP {status}: {other:?}"),
        }
    }
}

/// A 409 says another request with the same key is still running: retried (as Stripe's SDKs
/// do), and when it lasts the write's outcome is unknown, since the other request may apply.
#[tokio::test]
async fn a_409_for_a_key_in_use_is_retried_and_leaves_the_outcome_unknown() {
    let pay = MockPay::start().await;
    pay.push(Scripted::stripe_error(
        409,
        "idempotency_error",
        "idempotency_key_in_use",
        "in progress",
        None,
    ));
    pay.push(Scripted::json(
        200,
        json!({"id": "prod_1", "object": "product"}),
    ));
    let ok = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap();
    assert_eq!(ok["id"], "prod_1");
    assert_eq!(pay.requests().len(), 2);

    let pay = MockPay::start().await;
    for _ in 0..3 {
        pay.push(Scripted::stripe_error(
            409,
            "idempotency_error",
            "idempotency_key_in_use",
            "in progress",
            None,
        ));
    }
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    assert_eq!(pay.requests().len(), 3);
    assert!(err.outcome_unknown(), "{err:?}");
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_says_so() {
    let pay = MockPay::start().await;
    for _ in 0..3 {
        pay.push(Scripted::stripe_error(503, "api_error", "", "down", None));
    }
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    assert_eq!(pay.requests().len(), 3);
    assert!(
        matches!(
            err,
            PayError::Stripe {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_not_waited_for() {
    let pay = MockPay::start().await;
    pay.push(
        Scripted::stripe_error(429, "invalid_request_error", "rate_limit", "later", None)
            .header("Retry-After", "3600"),
    );
    pay.push(Scripted::json(200, json!({"id": "prod_1"})));
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    assert_eq!(pay.requests().len(), 1);
    assert_eq!(err.status(), Some(429));
}

#[tokio::test]
async fn timeouts_are_retried_then_reported_with_unknown_outcome() {
    let pay = MockPay::start().await;
    for _ in 0..3 {
        pay.push(Scripted::json(200, json!({"id": "prod_1"})).delayed(Duration::from_millis(800)));
    }
    let err = pay
        .client(Duration::from_millis(150))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    assert!(matches!(err, PayError::Timeout { attempts: 3 }), "{err:?}");
    assert!(err.outcome_unknown());

    // What the model reads: the change may have happened, check before retrying.
    let tool_err = altan_pay::tools::ToolError::from_pay(&err, true);
    assert_eq!(tool_err.code, ErrorCode::Unavailable);
    assert!(tool_err.outcome_unknown);
    assert!(
        tool_err
            .model_message
            .contains("may or may not have been applied")
    );
    let read_err = altan_pay::tools::ToolError::from_pay(&err, false);
    assert!(!read_err.outcome_unknown);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = altan_pay::pay::PayConfig::new(
        altan_pay::pay::RouteTable::embedded().with_base_url(&format!("http://127.0.0.1:{port}")),
    );
    config.retry = support::fast_retries();
    let client = altan_pay::pay::PayClient::new(config).unwrap();
    let err = client.call(create_call(Some("k"))).await.unwrap_err();
    assert!(
        matches!(err, PayError::Connect { attempts: 3, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_answers_are_clear_errors_not_panics() {
    let cases = [
        (Scripted::raw(200, "<html>ok</html>"), "not valid JSON"),
        (
            Scripted::raw(200, r#"{"id": "prod_1", "name": "Pr"#),
            "not valid JSON",
        ),
        (Scripted::raw(200, ""), "(empty body)"),
        (Scripted::raw(200, "[1, 2]"), "not an object"),
    ];
    for (answer, expected) in cases {
        let pay = MockPay::start().await;
        pay.push(answer);
        let err = pay
            .client(Duration::from_secs(5))
            .call(create_call(Some("k")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PayError::InvalidResponse { status: 200, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        assert_eq!(pay.requests().len(), 1, "a bad 200 is not retried");
    }

    // An error status without Stripe's body.
    let pay = MockPay::start().await;
    pay.push(Scripted::raw(418, "I'm a teapot"));
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    assert!(matches!(err, PayError::Http { status: 418, .. }), "{err:?}");
    assert!(err.to_string().contains("teapot"));
}

#[tokio::test]
async fn stripe_errors_reach_the_model_with_the_param() {
    let pay = MockPay::start().await;
    pay.push(Scripted::stripe_error(
        400,
        "invalid_request_error",
        "resource_already_exists",
        "This product cannot be deleted because it has one or more user-created prices.",
        None,
    ));
    let out = ToolSet::altan_pay()
        .call(
            &pay.env(),
            &ctx("c"),
            "delete_product",
            r#"{"id": "prod_1"}"#,
        )
        .await;
    let err = out.error().unwrap();
    assert_eq!(err.code, ErrorCode::StripeInvalidRequest);
    assert!(err.model_message.contains("user-created prices"));
    assert!(err.operator_detail.contains("resource_already_exists"));
    assert_eq!(out.content()["error"]["next"], "fix the call and try again");
    assert!(out.effect().is_none(), "a refused delete changed nothing");

    pay.push(Scripted::stripe_error(
        404,
        "invalid_request_error",
        "resource_missing",
        "No such price: 'price_x'",
        Some("id"),
    ));
    let out = ToolSet::altan_pay()
        .call(
            &pay.env(),
            &ctx("c"),
            "update_price",
            r#"{"id": "price_x", "active": false}"#,
        )
        .await;
    let err = out.error().unwrap();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(out.content()["error"]["param"], "id");
}

#[tokio::test]
async fn unknown_error_types_still_parse() {
    let pay = MockPay::start().await;
    pay.push(Scripted::json(
        400,
        json!({"error": {"type": "brand_new_error", "message": "hm"}}),
    ));
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(Some("k")))
        .await
        .unwrap_err();
    match err {
        PayError::Stripe { error, .. } => {
            assert!(!matches!(error.r#type, ErrorType::InvalidRequestError))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_mutation_without_a_key_is_refused_locally() {
    let pay = MockPay::start().await;
    let err = pay
        .client(Duration::from_secs(5))
        .call(create_call(None))
        .await
        .unwrap_err();
    assert!(matches!(err, PayError::Config(_)));
    assert!(pay.requests().is_empty());
}

#[tokio::test]
async fn an_answer_longer_than_one_tool_result_may_hold_is_refused_naming_the_limit() {
    let pay = MockPay::start().await;
    let names: Vec<_> = (0..40_000)
        .map(|i| json!({"id": format!("prod_{i}"), "object": "product", "name": "x".repeat(60)}))
        .collect();
    pay.push(Scripted::json(
        200,
        json!({"object": "list", "data": names}),
    ));
    let client = pay.client(Duration::from_secs(5));
    let error = client
        .call(PayCall {
            operation: "products.list",
            account_id: "acc_1",
            stripe_connect_id: Some("acct_9"),
            id: None,
            params: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, PayError::InvalidResponse { .. }) && text.contains("2097152 bytes"),
        "{text}"
    );
}
