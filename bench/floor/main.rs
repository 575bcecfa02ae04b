//! The floor of the side-by-side benchmark: no framework, the same HTTP exchanges as an agent
//! (three model calls, three gateway calls, the two price calls concurrent), with the same
//! system prompt and the same two tool definitions the peers send. See `bench/run.sh`.

#[path = "../harness.rs"]
mod harness;

use serde_json::{Value, json};

struct Floor {
    http: reqwest::Client,
    args: harness::Args,
    prompt: String,
    tools: Vec<Value>,
}

impl Floor {
    async fn chat(&self, messages: &[Value]) -> Result<Value, String> {
        let body = json!({"model": "scripted", "messages": messages, "tools": self.tools});
        let resp = self
            .http
            .post(format!("{}/chat/completions", self.args.model_url))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        v["choices"][0]["message"]
            .as_object()
            .map(|m| Value::Object(m.clone()))
            .ok_or_else(|| format!("no message in {v}"))
    }

    async fn tool(&self, call: &Value) -> Result<Value, String> {
        let name = call["function"]["name"].as_str().unwrap_or_default();
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}"))
                .map_err(|e| e.to_string())?;
        let resource = match name {
            "create_product" => "products/{a}/create_product",
            "create_price" => "prices/{a}/create_price",
            other => return Err(format!("unknown tool {other}")),
        }
        .replace("{a}", &self.args.account);
        let url = format!(
            "{}/v2/connect/{resource}?stripe_connect_id={}",
            self.args.gateway, self.args.connect
        );
        let text = self
            .http
            .post(url)
            .json(&json!({"payload": args}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(json!({"role": "tool", "tool_call_id": call["id"], "content": text}))
    }

    async fn conversation(&self) -> Result<(), String> {
        let mut messages = vec![
            json!({"role": "system", "content": self.prompt}),
            json!({"role": "user", "content": "Create Pro at $20/month and $200/year"}),
        ];
        for _ in 0..4 {
            let message = self.chat(&messages).await?;
            let calls = message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            messages.push(message);
            if calls.is_empty() {
                return Ok(());
            }
            let results = futures::future::join_all(calls.iter().map(|c| self.tool(c))).await;
            for r in results {
                messages.push(r?);
            }
        }
        Err("no final answer after 4 model calls".into())
    }
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
    let tools = all
        .into_iter()
        .filter(|t| {
            matches!(
                t["function"]["name"].as_str(),
                Some("create_product" | "create_price")
            )
        })
        .collect();
    let floor = Floor {
        http: reqwest::Client::new(),
        args: args.clone(),
        prompt,
        tools,
    };
    harness::measure("floor", &args, |_| floor.conversation()).await
}
