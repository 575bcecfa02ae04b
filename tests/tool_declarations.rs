//! What each tool does is declared once, on the tool: a walk over the whole catalog finds every
//! fact that is missing or contradicts the route table, the schema or another tool, and the
//! walk itself fails when one fact of one tool is removed or altered.

use std::sync::Arc;

use altan_pay::pay::RouteTable;
use altan_pay::sync::ObjectKind;
use altan_pay::tools::declare::{Problem, problems};
use altan_pay::tools::{
    Action, BoxFuture, Declaration, DestructiveEffect, Exposure, Opened, Tool, ToolContext,
    ToolDefinition, ToolEnv, ToolOutput, ToolSet,
};

/// A catalog tool with its declaration replaced: everything else is the real tool.
struct Doctored {
    tool: Arc<dyn Tool>,
    declaration: Declaration,
}

impl Tool for Doctored {
    fn definition(&self) -> &ToolDefinition {
        self.tool.definition()
    }
    fn declaration(&self) -> &Declaration {
        &self.declaration
    }
    fn call<'a>(
        &'a self,
        env: &'a ToolEnv,
        ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> BoxFuture<'a, ToolOutput> {
        self.tool.call(env, ctx, arguments)
    }
}

/// A change to one declaration.
type Doctor = Box<dyn FnOnce(&mut Declaration)>;

/// The problems of the catalog with `name`'s declaration changed by `doctor`.
fn problems_with(name: &str, doctor: impl FnOnce(&mut Declaration)) -> Vec<Problem> {
    let tools = ToolSet::altan_pay();
    let mut doctor = Some(doctor);
    let doctored: Vec<Arc<dyn Tool>> = tools
        .iter()
        .map(|t| {
            if t.definition().name != name {
                return t.clone();
            }
            let mut declaration = t.declaration().clone();
            if let Some(doctor) = doctor.take() {
                doctor(&mut declaration);
            }
            Arc::new(Doctored {
                tool: t.clone(),
                declaration,
            }) as Arc<dyn Tool>
        })
        .collect();
    problems(&ToolSet::new(doctored), &RouteTable::embedded())
}

#[test]
fn every_tool_declares_every_fact_and_none_contradicts_another() {
    let found = problems(&ToolSet::altan_pay(), &RouteTable::embedded());
    assert!(
        found.is_empty(),
        "{}",
        found
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_walk_fails_when_one_tool_loses_or_contradicts_a_fact() {
    let cases: Vec<(&str, &str, Doctor)> = vec![
        (
            "update_product",
            "no verifying read",
            Box::new(|d| d.target = None),
        ),
        (
            "update_subscription",
            "`cancel_at_period_end` but does not declare",
            Box::new(|d| d.destroys.clear()),
        ),
        (
            "cancel_subscription",
            "does not declare that it always cancels",
            Box::new(|d| d.destroys.clear()),
        ),
        (
            "delete_coupon",
            "but route `coupons.delete` is a Delete",
            Box::new(|d| d.action = Action::Update),
        ),
        (
            "create_price",
            "changes a price",
            Box::new(|d| d.syncs = None),
        ),
        (
            "update_price",
            "`actve` is not in its schema",
            Box::new(|d| d.destroys[0].param = Some("actve")),
        ),
        (
            "update_customer",
            "does not fetch a customer by id",
            Box::new(|d| {
                if let Some(t) = &mut d.target {
                    t.read = "get_prices";
                }
            }),
        ),
        (
            "create_checkout_session",
            "not mirrored",
            Box::new(|d| d.syncs = Some(ObjectKind::Customer)),
        ),
        (
            "open_tools",
            "exactly one",
            Box::new(|d| d.exposure = Exposure::Opened),
        ),
        (
            "get_products",
            "a Read declares a destructive effect",
            Box::new(|d| {
                d.destroys.push(altan_pay::tools::DestroysFact {
                    effect: DestructiveEffect::Delete,
                    param: None,
                })
            }),
        ),
    ];
    for (tool, expected, doctor) in cases {
        let found = problems_with(tool, doctor);
        let named = found
            .iter()
            .any(|p| (p.tool == tool || p.tool == "*") && p.problem.contains(expected));
        assert!(
            named,
            "doctoring {tool} should report `{expected}`; the walk found: {found:?}"
        );
    }
}

#[test]
fn what_a_call_destroys_is_read_from_its_argument_values() {
    let tools = ToolSet::altan_pay();
    let effect = |tool: &str, args: &str| tools.get(tool).unwrap().destructive(args);
    use DestructiveEffect::*;
    let cases = [
        ("delete_product", r#"{"id":"prod_1"}"#, Some(Delete)),
        ("delete_customer", r#"{"id":"cus_1"}"#, Some(Delete)),
        ("delete_coupon", r#"{"id":"X"}"#, Some(Delete)),
        ("cancel_subscription", r#"{"id":"sub_1"}"#, Some(Cancel)),
        (
            "update_subscription",
            r#"{"id":"sub_1","cancel_at_period_end":true}"#,
            Some(Cancel),
        ),
        (
            "update_subscription",
            r#"{"id":"sub_1","cancel_at_period_end":false}"#,
            None,
        ),
        (
            "update_subscription",
            r#"{"id":"sub_1","items":[{"id":"si_1","deleted":true}]}"#,
            Some(Delete),
        ),
        (
            "update_subscription",
            r#"{"id":"sub_1","metadata":null}"#,
            None,
        ),
        (
            "update_product",
            r#"{"id":"prod_1","active":false}"#,
            Some(Deactivate),
        ),
        ("update_product", r#"{"id":"prod_1","active":true}"#, None),
        ("update_product", r#"{"id":"prod_1","name":"New"}"#, None),
        (
            "update_price",
            r#"{"id":"price_1","active":false}"#,
            Some(Deactivate),
        ),
        (
            "update_promotion_code",
            r#"{"id":"promo_1","active":false}"#,
            Some(Deactivate),
        ),
        ("update_coupon", r#"{"id":"X","name":"Y"}"#, None),
        ("update_customer", r#"{"id":"cus_1","discounts":[]}"#, None),
        ("create_product", r#"{"name":"P","active":false}"#, None),
        ("get_products", r#"{"active":false}"#, None),
        // Arguments the tool cannot read never reach Stripe: it refuses them itself.
        ("delete_product", r#"{"id":"prod_1","force":true}"#, None),
        ("update_product", "not json", None),
    ];
    for (tool, args, expected) in cases {
        assert_eq!(effect(tool, args), expected, "{tool} {args}");
    }
}

#[test]
fn the_starter_tools_and_the_writes_come_from_the_declarations() {
    let tools = ToolSet::altan_pay();
    let sent: Vec<String> = tools
        .to_openai_json_for(Opened::default(), true)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["open_tools", "create_product", "create_price"]);
    let writes: Vec<&str> = tools
        .iter()
        .filter(|t| t.writes_to_stripe())
        .map(|t| t.definition().name)
        .collect();
    assert_eq!(
        writes,
        [
            "create_product",
            "update_product",
            "delete_product",
            "create_price",
            "update_price",
            "create_customer",
            "update_customer",
            "delete_customer",
            "create_subscription",
            "update_subscription",
            "cancel_subscription",
            "create_coupon",
            "update_coupon",
            "delete_coupon",
            "create_promotion_code",
            "update_promotion_code",
            "create_checkout_session",
        ],
        "the plan tools write the room's plan, not Stripe"
    );
}
