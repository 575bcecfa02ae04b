//! A caller's own tools (`AgentBuilder::tool`): run in a scripted turn, treated by their
//! declaration as the catalog's tools are.

use std::sync::{Arc, Mutex};

use altan_pay::agent::{Agent, AgentError, Answer};
use altan_pay::model::scripted::{ScriptedModel, Step};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use altan_pay::sync::ObjectKind;
use altan_pay::tools::{AgentTool, Facts, OwnCall, ToolError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Looks up a customer's loyalty tier.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct TierArgs {
    /// The customer's e-mail.
    email: String,
}

/// What each call was given, to look at after the turn.
type Seen = Arc<Mutex<Vec<OwnCall>>>;

struct LoyaltyTier(Seen);

impl AgentTool for LoyaltyTier {
    const NAME: &'static str = "loyalty_tier";
    type Args = TierArgs;
    type Output = Value;
    type Error = ToolError;
    const FACTS: Facts<TierArgs> = Facts::read(&[]).starter();
    async fn call(&self, args: TierArgs, call: &OwnCall) -> Result<Value, ToolError> {
        self.0.lock().unwrap().push(call.clone());
        Ok(json!({"email": args.email, "tier": "gold"}))
    }
}

/// Creates a product in our own product service, which mirrors it into Stripe.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct MirrorArgs {
    /// The product's name.
    name: String,
}

struct MirrorProduct(Seen);

impl AgentTool for MirrorProduct {
    const NAME: &'static str = "mirror_product";
    type Args = MirrorArgs;
    type Output = Value;
    type Error = ToolError;
    const FACTS: Facts<MirrorArgs> = Facts::create(&[], Some(ObjectKind::Product)).starter();
    async fn call(&self, args: MirrorArgs, call: &OwnCall) -> Result<Value, ToolError> {
        self.0.lock().unwrap().push(call.clone());
        Ok(json!({"id": "prod_Own1", "object": "product", "name": args.name, "active": true}))
    }
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

/// One turn of an agent with `tool`, in which Ada says `text`.
async fn turn(model: Arc<ScriptedModel>, tool: impl AgentTool, text: &str) -> Answer {
    let agent = Agent::builder()
        .model(model)
        .pay(pay())
        .tool(tool)
        .build()
        .unwrap();
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
        Step::tool_calls([("c1", "loyalty_tier", json!({"email": "ada@example.com"}))]),
        Step::text("Ada is gold.").expect_tool_result_containing("gold"),
    ]));
    let answer = turn(
        model.clone(),
        LoyaltyTier(seen.clone()),
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
        Step::tool_calls([("c1", "mirror_product", json!({"name": "Pro"}))]),
        Step::text("Created Pro."),
    ]));
    let answer = turn(
        model,
        MirrorProduct(seen.clone()),
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
