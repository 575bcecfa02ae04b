//! `read_plan` and `update_plan`: one plan per workspace, on disk or in memory, replaced
//! atomically, with bad input refused before anything is written.

use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::tools::plan::{MAX_PLAN_BYTES, PlanStore};
use altan_pay::tools::{ErrorCode, ToolContext, ToolEnv, ToolOutputView, ToolSet};
use serde_json::json;

fn env() -> ToolEnv {
    ToolEnv {
        pay: PayClient::new(PayConfig::new(RouteTable::embedded())).unwrap(),
    }
}

fn ctx(account: Option<&str>) -> ToolContext {
    ToolContext {
        conversation_id: "t".into(),
        tool_call_id: "c".into(),
        account_id: account.map(str::to_string),
        stripe_connect_id: None,
    }
}

#[tokio::test]
async fn plans_round_trip_per_workspace_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let tools = ToolSet::altan_pay_with_plans(PlanStore::directory(dir.path()));
    let out = tools
        .call(&env(), &ctx(Some("ws_1")), "read_plan", "{}")
        .await;
    assert_eq!(out.content(), json!({"plan": null}));

    let plan = "## Payments (Altan Pay)\n- [x] create products\n- [ ] create prices\n";
    let out = tools
        .call(
            &env(),
            &ctx(Some("ws_1")),
            "update_plan",
            &json!({"content": plan}).to_string(),
        )
        .await;
    assert!(out.error().is_none(), "{:?}", out.error());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ws_1/plan.md")).unwrap(),
        plan
    );

    // Another store on the same directory sees it; another workspace does not.
    let again = ToolSet::altan_pay_with_plans(PlanStore::directory(dir.path()));
    let out = again
        .call(&env(), &ctx(Some("ws_1")), "read_plan", "{}")
        .await;
    assert_eq!(out.content()["plan"], plan);
    let out = again
        .call(&env(), &ctx(Some("ws_2")), "read_plan", "{}")
        .await;
    assert_eq!(out.content()["plan"], json!(null));
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("ws_1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("plan.md")]);
}

#[tokio::test]
async fn bad_plan_calls_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tools = ToolSet::altan_pay_with_plans(PlanStore::directory(dir.path()));
    let huge = "x".repeat(MAX_PLAN_BYTES + 1);
    let cases = [
        (
            ctx(Some("ws_1")),
            json!({"content": huge}).to_string(),
            ErrorCode::InvalidArguments,
        ),
        (
            ctx(Some("ws_1")),
            json!({"text": "hi"}).to_string(),
            ErrorCode::InvalidArguments,
        ),
        (
            ctx(Some("ws_1")),
            "not json".to_string(),
            ErrorCode::InvalidArguments,
        ),
        (
            ctx(None),
            json!({"content": "hi"}).to_string(),
            ErrorCode::MissingAccountId,
        ),
        (
            ctx(Some("../etc")),
            json!({"content": "hi"}).to_string(),
            ErrorCode::Internal,
        ),
    ];
    for (c, args, code) in cases {
        let out = tools.call(&env(), &c, "update_plan", &args).await;
        assert_eq!(out.error().map(|e| e.code), Some(code), "{args:.60}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
