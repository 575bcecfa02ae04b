//! The sandbox and the platform's Connect id: the first Connect id an account is used with
//! becomes its own (kept with the sandbox state), and only a second, different one is refused.

use std::sync::Arc;

use altan_pay::agent::Agent;
use altan_pay::gateway::{GatewayHandle, Sandbox, spawn};
use altan_pay::model::{ScriptedModel, ScriptedStep};
use altan_pay::pay::{PayCall, PayClient, PayConfig, PayError, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use serde_json::{Value, json};

async fn gateway(sandbox: Sandbox) -> (GatewayHandle, PayClient) {
    let routes = RouteTable::embedded();
    let handle = spawn(routes.clone(), Arc::new(sandbox), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&handle.base_url))).unwrap();
    (handle, pay)
}

async fn create(
    pay: &PayClient,
    account: &str,
    connect: &str,
    key: &str,
) -> Result<Value, PayError> {
    pay.call(PayCall {
        operation: "products.create",
        account_id: account,
        stripe_connect_id: Some(connect),
        id: None,
        params: json!({"name": "Pro"}),
        idempotency_key: Some(key.into()),
    })
    .await
}

fn refused_403(result: Result<Value, PayError>, what: &str) -> String {
    match result {
        Err(PayError::Stripe {
            status: 403, error, ..
        }) => {
            assert_eq!(error.param.as_deref(), Some("stripe_connect_id"), "{what}");
            error.message.clone().unwrap_or_default()
        }
        other => panic!("{what}: expected a 403 on stripe_connect_id, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_connect_id_binds_and_only_a_different_second_one_is_refused() {
    let (_g, pay) = gateway(Sandbox::in_memory()).await;
    // The platform's Connect id, never derived by the sandbox, works from the first call.
    let product = create(&pay, "ws_a", "acct_platform_a", "k1").await.unwrap();
    assert_eq!(product["object"], "product");
    create(&pay, "ws_a", "acct_platform_a", "k2").await.unwrap();
    assert_eq!(
        pay.stripe_connect_id("ws_a").await.unwrap(),
        "acct_platform_a",
        "the lookup answers the bound id"
    );
    let message = refused_403(create(&pay, "ws_a", "acct_other", "k3").await, "second id");
    assert!(
        message.contains("acct_other") && message.contains("acct_platform_a"),
        "{message}"
    );
    // Another account cannot take a Connect id that is already bound.
    let message = refused_403(
        create(&pay, "ws_b", "acct_platform_a", "k4").await,
        "someone else's id",
    );
    assert!(message.contains("another account"), "{message}");
    // Nor the id the sandbox derives for another account, even one not seen yet.
    let theirs = altan_pay::gateway::sandbox::derived_connect_id("ws_unseen");
    refused_403(
        create(&pay, "ws_d", &theirs, "k7").await,
        "a derived id of another account",
    );
    // An account first looked up gets the derived id bound, so the answer stays true.
    let derived = pay.stripe_connect_id("ws_c").await.unwrap();
    assert_eq!(
        derived,
        altan_pay::gateway::sandbox::derived_connect_id("ws_c")
    );
    refused_403(
        create(&pay, "ws_c", "acct_late", "k5").await,
        "after the lookup",
    );
    create(&pay, "ws_c", &derived, "k6").await.unwrap();
}

#[tokio::test]
async fn a_binding_survives_a_restart_and_the_state_file_binds_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.db");
    {
        let (_g, pay) = gateway(Sandbox::open(&path).unwrap()).await;
        create(&pay, "ws_a", "acct_platform_a", "k1").await.unwrap();
    }
    let (_g, pay) = gateway(Sandbox::open(&path).unwrap()).await;
    refused_403(
        create(&pay, "ws_a", "acct_else", "k2").await,
        "after restart",
    );
    create(&pay, "ws_a", "acct_platform_a", "k3").await.unwrap();

    let state = json!({"accounts": {"ws_s": {"stripe_connect_id": "acct_from_state"}}});
    let (_g, pay) = gateway(Sandbox::with_state(&state).unwrap()).await;
    refused_403(
        create(&pay, "ws_s", "acct_platform_s", "k4").await,
        "state binds",
    );
    create(&pay, "ws_s", "acct_from_state", "k5").await.unwrap();
}

/// What the issue saw: the platform's context carries its Connect id and every tool call got
/// a 403; now the agent's calls go through and the second account cannot reuse it.
#[tokio::test]
async fn the_agent_with_the_platforms_connect_id_in_its_context_works() {
    let (_g, pay) = gateway(Sandbox::in_memory()).await;
    let model = ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Created."),
    ]);
    let agent = Agent::builder()
        .model(Arc::new(model))
        .pay(pay.clone())
        .build()
        .unwrap();
    let context = AgentContext {
        account_id: Some("ws_p".into()),
        stripe_connect_id: Some("acct_1PlatformGiven".into()),
        ..Default::default()
    };
    let said = RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create Pro".into(),
    };
    let answer = agent.respond("t-1", &context, &[said]).await.unwrap();
    let call = &answer.tool_calls[0];
    assert!(call.error.is_none(), "{call:?}");
    assert_eq!(answer.sync_plan.unwrap().operations().len(), 1);
    assert_eq!(
        pay.stripe_connect_id("ws_p").await.unwrap(),
        "acct_1PlatformGiven"
    );
}
