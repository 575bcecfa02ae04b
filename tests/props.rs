//! Property tests of the parsers: Stripe form encoding round-trips, route paths expand and match
//! back, acknowledgements are found in any prose, and no parser panics on arbitrary input.

use std::time::Duration;

use altan_pay::pay::form;
use altan_pay::pay::routes::{RouteTable, RouteValues};
use altan_pay::pay::{PayClient, PayConfig, RetryPolicy};
use altan_pay::policy::{self, CallScope, PolicyConfig, Provenance};
use altan_pay::sync::{AckStatus, parse_acknowledgements};
use altan_pay::tools::{ErrorCode, ToolContext, ToolEnv, ToolSet};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A Stripe parameter name: never numeric, never with brackets.
fn key() -> impl Strategy<Value = String> {
    "[a-z][a-z_]{0,8}"
}

/// Stripe parameters as the form encoding can carry them: non-empty objects and arrays,
/// string leaves (any text, empty included).
fn params() -> impl Strategy<Value = Value> {
    let leaf = any::<String>().prop_map(Value::String);
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 1..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON value.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        prop_oneof![
            Just("NaN"),
            Just("Infinity"),
            Just("-0"),
            Just("1e999"),
            Just("prod_x"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    key(),
                    any::<String>(),
                    Just("name".to_string()),
                    Just("id".to_string()),
                    Just("account_id".to_string()),
                    Just("metadata".to_string()),
                    Just("unit_amount".to_string()),
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Found by the `form_decode` fuzz target: numeric top-level keys made the whole query an
/// array, which the gateway then dropped.
#[test]
fn numeric_top_level_keys_stay_an_object() {
    assert_eq!(
        form::decode("0=a&1=b").unwrap(),
        json!({"0": "a", "1": "b"})
    );
    assert_eq!(form::decode("0").unwrap(), json!({"0": ""}));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn form_encoding_round_trips(fields in prop::collection::btree_map(key(), params(), 1..5)) {
        let value = Value::Object(fields.into_iter().collect::<Map<String, Value>>());
        let encoded = form::encode(&value);
        let decoded = form::decode(&encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, value, "through {}", encoded);
    }

    #[test]
    fn form_decoding_never_panics(query in "[a-z\\[\\]%=&+0-9A-F]{0,80}|\\PC{0,80}") {
        let _ = form::decode(&query);
    }

    #[test]
    fn routes_expand_and_match_back(
        account in "\\PC{1,24}",
        id in "\\PC{1,24}",
        connect in "\\PC{1,24}",
    ) {
        let routes = RouteTable::embedded();
        for (operation, route) in routes.iter() {
            let values = RouteValues {
                account_id: Some(&account),
                id: Some(&id),
                stripe_connect_id: Some(&connect),
            };
            let expanded = route.expand(&values).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (path, query) = expanded.split_once('?').unwrap_or((&expanded, ""));
            let found = route.match_path(path).ok_or_else(|| TestCaseError::fail(format!("{operation}: {path} does not match")))?;
            prop_assert_eq!(found.get("account_id"), Some(&account));
            if route.uses("id") {
                prop_assert_eq!(found.get("id"), Some(&id));
            }
            // No other route claims the same method and path.
            for (other, r) in routes.iter() {
                if other != operation && r.method == route.method {
                    prop_assert!(r.match_path(path).is_none(), "{} also matches {}", other, path);
                }
            }
            if route.uses("stripe_connect_id") {
                let q = form::decode(query).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&q["stripe_connect_id"], &json!(connect));
            }
        }
    }

    #[test]
    fn route_matching_never_panics(path in "(/[a-z_%0-9A-F.{}]{0,12}){0,8}|\\PC{0,60}") {
        for (_, route) in RouteTable::embedded().iter() {
            let _ = route.match_path(&path);
        }
    }

    #[test]
    fn acknowledgements_are_found_in_any_prose(
        hex in "[0-9a-f]{12}",
        before in "\\PC{0,60}",
        after in "\\PC{0,60}",
        failed in any::<bool>(),
        fenced in any::<bool>(),
    ) {
        let id = format!("sync_{hex}");
        let status = if failed {
            json!({"sync_id": id, "status": "failed", "reason": "table missing"})
        } else {
            json!({"sync_id": id, "status": "applied"})
        };
        let block = if fenced { format!("\n```json\n{status}\n```\n") } else { status.to_string() };
        // The prose around must not itself mention the id.
        let text = format!("{} {block} {}", before.replace("sync_", "s"), after.replace("sync_", "s"));
        let acks = parse_acknowledgements(&text);
        let ours: Vec<_> = acks.iter().filter(|a| a.sync_id == id).collect();
        prop_assert_eq!(ours.len(), 1, "{}", text);
        let got_failed = matches!(ours[0].status, AckStatus::Failed { .. });
        prop_assert_eq!(got_failed, failed);
    }

    #[test]
    fn acknowledgement_parsing_never_panics(text in "\\PC{0,300}|[{}\"a-z_: ,\\[\\]0-9]{0,300}") {
        let _ = parse_acknowledgements(&text);
    }

    #[test]
    fn the_policy_never_panics_on_arbitrary_arguments(args in any_json(), tool in prop_oneof![
        Just("update_product"), Just("delete_product"), Just("create_price"),
        Just("create_subscription"), Just("get_products"), Just("update_subscription"),
        Just("update_price"), Just("cancel_subscription"), Just("open_tools"), Just("update_plan"),
    ]) {
        let tools = altan_pay::tools::ToolSet::altan_pay();
        let tool = tools.get(tool).unwrap();
        let _ = policy::check(
            &PolicyConfig::default(),
            &Provenance::default(),
            CallScope {
                trusted_account_id: Some("ws_1"),
                approved: false,
                requested: policy::Requested::none(),
            },
            tool.as_ref(),
            &args.to_string(),
        );
        let _ = tool.destructive(&args.to_string());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Arbitrary JSON as the arguments of every tool: a result or a clear refusal, never a
    /// panic, and never a "bug" code for the model's input.
    #[test]
    fn tool_argument_parsing_never_panics(args in any_json()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Nothing listens on port 9: whatever passes validation fails to connect at once.
        let mut config = PayConfig::new(RouteTable::embedded().with_base_url("http://127.0.0.1:9"));
        config.timeout = Duration::from_millis(200);
        config.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        let env = ToolEnv { pay: PayClient::new(config).unwrap() };
        let ctx = ToolContext {
            conversation_id: "t".into(),
            tool_call_id: "c".into(),
            account_id: Some("ws_1".into()),
            stripe_connect_id: Some("acct_1".into()),
        };
        let tools = ToolSet::altan_pay();
        let text = args.to_string();
        for name in tools.names().filter(|n| !n.contains("plan")).collect::<Vec<_>>() {
            let out = runtime.block_on(tools.call(&env, &ctx, name, &text));
            if let Err(e) = &out {
                prop_assert!(e.code != ErrorCode::Internal, "{}: internal error for {}: {}", name, text, e.operator_detail);
            }
        }
    }
}
