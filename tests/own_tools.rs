//! A caller's own tools (`AgentBuilder::tool`): run in a scripted turn, treated by their
//! declaration as the catalog's tools are.

use std::sync::{Arc, Mutex};

use altan_pay::agent::{Agent, AgentBuilder, AgentError, Answer};
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use altan_pay::sync::ObjectKind;
use altan_pay::tools::{AgentTool, Facts, OwnCall, ToolError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What each call was given, to look at after the turn.
type Seen = Arc<Mutex<Vec<OwnCall>>>;

/// An own tool `$tool` called `$name` that records each call in its `Seen` and answers
/// `$answer` (written out in full in `AgentBuilder::tool`'s example).
macro_rules! own_tool {
    ($tool:ident, $name:literal, $args:ty, $facts:expr, |$a:ident| $answer:expr) => {
        struct $tool(Seen);

        impl AgentTool for $tool {
            const NAME: &'static str = $name;
            type Args = $args;
            type Output = Value;
            type Error = ToolError;
            const FACTS: Facts<$args> = $facts;
            async fn call(&self, $a: $args, call: &OwnCall) -> Result<Value, ToolError> {
                self.0.lock().unwrap().push(call.clone());
                Ok($answer)
            }
        }
    };
}

/// Looks up a customer's loyalty tier.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct TierArgs {
    /// The customer's e-mail.
    email: String,
}

own_tool!(
    LoyaltyTier,
    "loyalty_tier",
    TierArgs,
    Facts::read(&[]).starter(),
    |args| json!({"email": args.email, "tier": "gold"})
);

/// Creates a product in our own product service, which mirrors it into Stripe.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct MirrorArgs {
    /// The product's name.
    name: String,
}

own_tool!(
    MirrorProduct,
    "mirror_product",
    MirrorArgs,
    Facts::create(&[], Some(ObjectKind::Product)).starter(),
    |args| product("prod_Own1", &args.name)
);

/// Stripe's JSON of a product.
fn product(id: &str, name: &str) -> Value {
    json!({"id": id, "object": "product", "name": name, "active": true})
}

fn pay() -> PayClient {
    PayClient::new(PayConfig::new(RouteTable::embedded())).unwrap()
}

fn context() -> AgentContext {
    AgentContext {
        account_id: Some("ws_1".into()),
        ..Default::default()
    }
}

/// One turn of the `agent` (on an Altan Pay client it does not reach), in which Ada says `text`.
async fn turn(agent: AgentBuilder, text: &str) -> Answer {
    let agent = agent.pay(pay()).build().unwrap();
    let said = RoomMessage {
        member_id: "u1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.into(),
    };
    agent.respond("t1", &context(), &[said]).await.unwrap()
}

#[tokio::test]
async fn a_read_only_own_tool_runs_in_a_turn_without_a_key_or_a_sync_plan() {
    let seen = Seen::default();
    let model = Arc::new(ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "loyalty_tier", json!({"email": "ada@example.com"}))]),
        ScriptedStep::text("Ada is gold.").expect_tool_result_containing("gold"),
    ]));
    let answer = turn(
        Agent::builder()
            .model(model.clone())
            .tool(LoyaltyTier(seen.clone())),
        "My tier? ada@example.com",
    )
    .await;
    assert_eq!(answer.tool_calls.len(), 1, "{:?}", answer.tool_calls);
    assert_eq!(answer.tool_calls[0].error, None);
    assert_eq!(answer.tool_calls[0].result["tier"], "gold");
    assert!(answer.sync_plan.is_none());
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].idempotency_key, None, "a read needs no key");
    assert_eq!(calls[0].account_id.as_deref(), Some("ws_1"));
    // Sent from the first call, as its declaration says.
    let first = &model.requests()[0];
    let sent = serde_json::to_string(&first.tools.raw_json()).unwrap();
    assert!(sent.contains("\"loyalty_tier\""), "{sent:.300}");
}

#[tokio::test]
async fn a_mutating_own_tool_gets_an_idempotency_key_and_its_change_is_in_the_sync_plan() {
    let seen = Seen::default();
    let model = Arc::new(ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "mirror_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Created Pro."),
    ]));
    let answer = turn(
        Agent::builder()
            .model(model)
            .tool(MirrorProduct(seen.clone())),
        "Create a product called Pro",
    )
    .await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{:?}", answer.tool_calls);
    assert!(calls[0].idempotency_key.is_some(), "a write gets a key");
    let plan = answer.sync_plan.expect("the change is handed over");
    assert_eq!(plan.operations().len(), 1);
    assert_eq!(plan.operations()[0].table, "products");
    assert_eq!(plan.operations()[0].id, "prod_Own1");
}

#[test]
fn an_own_tool_under_a_name_the_agent_has_is_refused_at_build() {
    let model = Arc::new(ScriptedModel::new(Vec::new()));
    struct Shadow;
    impl AgentTool for Shadow {
        const NAME: &'static str = "create_product";
        type Args = MirrorArgs;
        type Output = Value;
        type Error = ToolError;
        const FACTS: Facts<MirrorArgs> = Facts::read(&[]);
        async fn call(&self, _: MirrorArgs, _: &OwnCall) -> Result<Value, ToolError> {
            Ok(Value::Null)
        }
    }
    let built = Agent::builder()
        .model(model)
        .pay(pay())
        .tool(Shadow)
        .build();
    assert!(
        matches!(&built, Err(AgentError::Setup(why)) if why.contains("create_product")),
        "{:?}",
        built.as_ref().err()
    );
}

/// Fetches one of our products by id.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct GetArgs {
    /// The product id.
    id: String,
}

own_tool!(
    GetOwnProduct,
    "get_own_product",
    GetArgs,
    Facts::read(&[]).starter(),
    |args| product(&args.id, "Pro")
);

/// Renames one of our products.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct RenameArgs {
    /// The product id.
    id: String,
    /// The new name.
    name: String,
}

own_tool!(
    RenameOwnProduct,
    "rename_own_product",
    RenameArgs,
    Facts::update(&[], ObjectKind::Product, "get_own_product").starter(),
    |args| product(&args.id, &args.name)
);

#[tokio::test]
async fn an_own_update_is_verified_first_with_the_own_read_it_declares() {
    let (reads, writes) = (Seen::default(), Seen::default());
    let model = Arc::new(ScriptedModel::new(vec![
        ScriptedStep::tool_calls([(
            "c1",
            "rename_own_product",
            json!({"id": "prod_Own1", "name": "Pro Plus"}),
        )]),
        ScriptedStep::text("Renamed."),
    ]));
    let agent = Agent::builder()
        .model(model)
        .tool(GetOwnProduct(reads.clone()))
        .tool(RenameOwnProduct(writes.clone()));
    let answer = turn(agent, "Rename prod_Own1 to Pro Plus").await;
    assert_eq!(reads.lock().unwrap().len(), 1, "fetched before the change");
    assert_eq!(writes.lock().unwrap().len(), 1, "{:?}", answer.tool_calls);
    let plan = answer.sync_plan.expect("the rename is handed over");
    assert_eq!(plan.operations()[0].id, "prod_Own1");
}
