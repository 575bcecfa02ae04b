//! rig (rig-core + rig-agent 0.44) in the side-by-side benchmark: an agent over the OpenAI
//! Chat Completions route pointed at the scripted model server, with two function tools,
//! create_product and create_price (the same definitions altan-pay sends), that POST to the
//! sandbox gateway's Altan Pay routes with the `{"payload": ...}` envelope. See bench/run.sh.

#[path = "../../harness.rs"]
mod harness;

use rig_agent::prelude::*;
use rig_core::completion::message::ToolName;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::{DynamicTool, ToolExecutionError, ToolOutput};
use serde_json::{Value, json};

fn pay_tool(definition: &Value, http: reqwest::Client, url: String) -> Result<DynamicTool, String> {
    let f = &definition["function"];
    let name = ToolName::new(f["name"].as_str().unwrap_or_default().to_string())
        .map_err(|e| e.to_string())?;
    Ok(DynamicTool::new(
        name,
        f["description"].as_str().unwrap_or_default(),
        f["parameters"].clone(),
        move |args: Value| {
            let http = http.clone();
            let url = url.clone();
            Box::pin(async move {
                let payload: serde_json::Map<String, Value> = args
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| k.as_str() != "account_id" && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let text = http
                    .post(&url)
                    .json(&json!({"payload": payload}))
                    .send()
                    .await
                    .map_err(|e| ToolExecutionError::other(e.to_string()))?
                    .text()
                    .await
                    .map_err(|e| ToolExecutionError::other(e.to_string()))?;
                Ok(ToolOutput::text(text))
            })
        },
    ))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = harness::parse_args()?;
    let prompt =
        std::fs::read_to_string(&args.prompt).map_err(|e| format!("{}: {e}", args.prompt))?;
    let all: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&args.tools).map_err(|e| format!("{}: {e}", args.tools))?,
    )
    .map_err(|e| e.to_string())?;
    let find = |name: &str| {
        all.iter()
            .find(|t| t["function"]["name"] == name)
            .cloned()
            .ok_or(format!("no {name} in {}", args.tools))
    };
    let http = reqwest::Client::new();
    let url = |path: &str| {
        format!(
            "{}/v2/connect/{path}?stripe_connect_id={}",
            args.gateway, args.connect
        )
    };
    let model = OpenAIConfig::new("sk-scripted")
        .with_base_url(args.model_url.clone())
        .with_route(Route::Chat)
        .client()
        .completion("scripted");
    let agent = AgentBuilder::new(model)
        .preamble(&prompt)
        .dynamic_tool(pay_tool(
            &find("create_product")?,
            http.clone(),
            url(&format!("products/{}/create_product", args.account)),
        )?)
        .dynamic_tool(pay_tool(
            &find("create_price")?,
            http.clone(),
            url(&format!("prices/{}/create_price", args.account)),
        )?)
        .build();
    harness::measure("rig", &args, |_| {
        let agent = &agent;
        async move {
            let answer = agent
                .prompt("Ada (user, member u-1): Create Pro at $20/month and $200/year")
                .max_turns(5)
                .await
                .map_err(|e| e.to_string())?;
            if !answer.output().contains("@Altan") {
                return Err(format!("unexpected answer: {}", answer.output()));
            }
            Ok(())
        }
    })
    .await
}
