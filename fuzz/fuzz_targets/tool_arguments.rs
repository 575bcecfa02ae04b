//! Arbitrary bytes as the arguments of every tool, through the policy and the tool itself
//! (against a closed port): never panics, never an internal error for the model's input.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use altan_pay::pay::{PayClient, PayConfig, RetryPolicy, RouteTable};
use altan_pay::policy::{self, CallScope, PolicyConfig, Provenance};
use altan_pay::tools::{ErrorCode, ToolContext, ToolEnv, ToolSet};
use libfuzzer_sys::fuzz_target;

static SETUP: LazyLock<(tokio::runtime::Runtime, ToolEnv, ToolSet)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = PayConfig::new(RouteTable::embedded().with_base_url("http://127.0.0.1:9"));
    config.timeout = Duration::from_millis(100);
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let env = ToolEnv {
        pay: PayClient::new(config).expect("client"),
    };
    (runtime, env, ToolSet::altan_pay())
});

fuzz_target!(|data: &str| {
    let (runtime, env, tools) = &*SETUP;
    let ctx = ToolContext {
        conversation_id: "t".into(),
        tool_call_id: "c".into(),
        account_id: Some("ws_1".into()),
        stripe_connect_id: Some("acct_1".into()),
    };
    for (name, tool) in tools
        .iter()
        .map(|t| (t.definition().name, t))
        .filter(|(n, _)| !n.contains("plan"))
    {
        let _ = policy::check(
            &PolicyConfig::default(),
            &Provenance::default(),
            CallScope {
                trusted_account_id: Some("ws_1"),
                approved: false,
                requested: policy::Requested::none(),
            },
            tool.as_ref(),
            data,
        );
        let out = runtime.block_on(tools.call(env, &ctx, name, data));
        if let Some(e) = out.error {
            assert!(
                e.code != ErrorCode::Internal,
                "{name}: {}",
                e.operator_detail
            );
        }
    }
});
