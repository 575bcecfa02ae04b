//! What each tool does is declared once, on the tool: a walk over the whole catalog finds every
//! fact that is missing or contradicts the route table, the schema or another tool, and the
//! walk itself fails when one fact of one tool is removed or altered.

use std::sync::Arc;

use altan_pay::pay::RouteTable;
use altan_pay::sync::ObjectKind;
use altan_pay::tools::declare::{DeclarationProblem, problems};
use altan_pay::tools::{
    Action, Declaration, DestructiveEffect, Exposure, Opened, Tool, ToolContext, ToolDefinition,
    ToolEnv, ToolFuture, ToolOutput, ToolSet,
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
    ) -> ToolFuture<'a, ToolOutput> {
        self.tool.call(env, ctx, arguments)
    }
}

/// A change to one declaration.
type Doctor = Box<dyn FnOnce(&mut Declaration)>;

/// The problems of the catalog with `name`'s declaration changed by `doctor`.
fn problems_with(name: &str, doctor: impl FnOnce(&mut Declaration)) -> Vec<DeclarationProblem> {
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
            .map(DeclarationProblem::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_walk_fails_when_one_tool_loses_or_contradicts_a_fact() {
    /// One fact of `tool` doctored, and the problem the walk must report.
    struct Case {
        tool: &'static str,
        reports: &'static str,
        doctor: Doctor,
    }
    let cases = vec![
        Case {
            tool: "update_product",
            reports: "no verifying read",
            doctor: Box::new(|d| d.target = None),
        },
        Case {
            tool: "update_subscription",
            reports: "`cancel_at_period_end` but does not declare",
            doctor: Box::new(|d| d.destroys.clear()),
        },
        Case {
            tool: "cancel_subscription",
            reports: "does not declare that it always cancels",
            doctor: Box::new(|d| d.destroys.clear()),
        },
        Case {
            tool: "delete_coupon",
            reports: "but route `coupons.delete` is a Delete",
            doctor: Box::new(|d| d.action = Action::Update),
        },
        Case {
            tool: "create_price",
            reports: "changes a price",
            doctor: Box::new(|d| d.syncs = None),
        },
        Case {
            tool: "update_price",
            reports: "`actve` is not in its schema",
            doctor: Box::new(|d| d.destroys[0].param = Some("actve")),
        },
        Case {
            tool: "update_customer",
            reports: "does not fetch a customer by id",
            doctor: Box::new(|d| {
                if let Some(t) = &mut d.target {
                    t.read = "get_prices";
                }
            }),
        },
        Case {
            tool: "create_checkout_session",
            reports: "not mirrored",
            doctor: Box::new(|d| d.syncs = Some(ObjectKind::Customer)),
        },
        Case {
            tool: "open_tools",
            reports: "exactly one",
            doctor: Box::new(|d| d.exposure = Exposure::Opened),
        },
        Case {
            tool: "get_products",
            reports: "a Read declares a destructive effect",
            doctor: Box::new(|d| {
                d.destroys.push(altan_pay::tools::DestroysFact {
                    effect: DestructiveEffect::Delete,
                    param: None,
                })
            }),
        },
    ];
    for Case {
        tool,
        reports: expected,
        doctor,
    } in cases
    {
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
    /// A call and what it destroys.
    struct Case {
        tool: &'static str,
        args: &'static str,
        destroys: Option<DestructiveEffect>,
    }
    use DestructiveEffect::*;
    let cases = [
        Case {
            tool: "delete_product",
            args: r#"{"id":"prod_1"}"#,
            destroys: Some(Delete),
        },
        Case {
            tool: "delete_customer",
            args: r#"{"id":"cus_1"}"#,
            destroys: Some(Delete),
        },
        Case {
            tool: "delete_coupon",
            args: r#"{"id":"X"}"#,
            destroys: Some(Delete),
        },
        Case {
            tool: "cancel_subscription",
            args: r#"{"id":"sub_1"}"#,
            destroys: Some(Cancel),
        },
        Case {
            tool: "update_subscription",
            args: r#"{"id":"sub_1","cancel_at_period_end":true}"#,
            destroys: Some(Cancel),
        },
        Case {
            tool: "update_subscription",
            args: r#"{"id":"sub_1","cancel_at_period_end":false}"#,
            destroys: None,
        },
        Case {
            tool: "update_subscription",
            args: r#"{"id":"sub_1","items":[{"id":"si_1","deleted":true}]}"#,
            destroys: Some(Delete),
        },
        Case {
            tool: "update_subscription",
            args: r#"{"id":"sub_1","metadata":null}"#,
            destroys: None,
        },
        Case {
            tool: "update_product",
            args: r#"{"id":"prod_1","active":false}"#,
            destroys: Some(Deactivate),
        },
        Case {
            tool: "update_product",
            args: r#"{"id":"prod_1","active":true}"#,
            destroys: None,
        },
        Case {
            tool: "update_product",
            args: r#"{"id":"prod_1","name":"New"}"#,
            destroys: None,
        },
        Case {
            tool: "update_price",
            args: r#"{"id":"price_1","active":false}"#,
            destroys: Some(Deactivate),
        },
        Case {
            tool: "update_promotion_code",
            args: r#"{"id":"promo_1","active":false}"#,
            destroys: Some(Deactivate),
        },
        Case {
            tool: "update_coupon",
            args: r#"{"id":"X","name":"Y"}"#,
            destroys: None,
        },
        Case {
            tool: "update_customer",
            args: r#"{"id":"cus_1","discounts":[]}"#,
            destroys: None,
        },
        Case {
            tool: "create_product",
            args: r#"{"name":"P","active":false}"#,
            destroys: None,
        },
        Case {
            tool: "get_products",
            args: r#"{"active":false}"#,
            destroys: None,
        },
        // Arguments the tool cannot read never reach Stripe: it refuses them itself.
        Case {
            tool: "delete_product",
            args: r#"{"id":"prod_1","force":true}"#,
            destroys: None,
        },
        Case {
            tool: "update_product",
            args: "not json",
            destroys: None,
        },
    ];
    for Case {
        tool,
        args,
        destroys: expected,
    } in cases
    {
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
