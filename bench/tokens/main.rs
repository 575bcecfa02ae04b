//! Tokens (o200k_base, via tiktoken-rs which bundles the BPE).
//!
//! `cargo run --release --example bench_tokens -- [--stripe TOOLS.json] [--seed PROMPT.md]
//! [--scenarios DIR]... [--markdown]`
//!
//! - the system prompt and the tool definitions as the agent sends them (per tool, and the
//!   starter set a thread begins with);
//! - with `--stripe` (the output of `bench/tokens/stripe_toolkit_tools.js`) and `--seed` (the
//!   spec's prompt): the peer configuration, seed prompt + Stripe's toolkit, per call;
//! - with `--scenarios`: every model call of every recorded transcript in DIR, counted on the
//!   request body as recorded (the JSON sent), with the largest call and the cacheable prefix
//!   (the system prompt plus the leading tools every call of the scenario shares), the calls
//!   that only opened tools (`open_tools`; the scenario's minimum is its calls without them),
//!   and for each call the share of its tokens the thread's previous call shared from the start
//!   (`share.rs`: what a prompt cache reuses). Give two directories (e.g. an older checkout's
//!   fixtures first) to compare them.
//!
//! Prints one JSON object, or Markdown tables with `--markdown`.

mod share;

use std::path::{Path, PathBuf};

use altan_pay::prompt::PromptLibrary;
use altan_pay::tools::{Opened, ToolSet};
use altan_pay::transcript::format::Transcript;
use serde_json::{Value, json};
use tiktoken_rs::CoreBPE;

struct Args {
    stripe: Option<PathBuf>,
    seed: Option<PathBuf>,
    scenarios: Vec<PathBuf>,
    markdown: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stripe: None,
        seed: None,
        scenarios: Vec::new(),
        markdown: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--stripe" => args.stripe = Some(value("--stripe")?.into()),
            "--seed" => args.seed = Some(value("--seed")?.into()),
            "--scenarios" => args.scenarios.push(value("--scenarios")?.into()),
            "--markdown" => args.markdown = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// One scenario's model calls: tokens of each request body and of its cacheable prefix.
fn scenario(bpe: &CoreBPE, t: &Transcript) -> Value {
    let count = |s: &str| bpe.encode_with_special_tokens(s).len();
    let requests = share::requests(t);
    let calls: Vec<usize> = requests.iter().map(|r| count(&r.to_string())).collect();
    let tools = |r: &Value| r["tools"].as_array().cloned().unwrap_or_default();
    // The leading tools every call of the scenario sends, then the system prompt.
    let mut shared = requests.first().map(|r| tools(r)).unwrap_or_default();
    for r in &requests {
        let these = tools(r);
        let same = shared
            .iter()
            .zip(&these)
            .take_while(|(a, b)| a == b)
            .count();
        shared.truncate(same);
    }
    let prompt = requests
        .first()
        .map(|r| r["messages"][0].to_string())
        .unwrap_or_default();
    let prefix = count(&Value::Array(shared).to_string()) + count(&prompt);
    let opening = t
        .turns
        .iter()
        .flat_map(|turn| &turn.model_calls)
        .filter(|c| c.called_tools() == ["open_tools"])
        .count();
    // From the second call on: the percent of its tokens the previous call shared.
    let shares: Vec<usize> = share::shared_prefixes(bpe, &requests)
        .into_iter()
        .skip(1)
        .map(|(tokens, shared)| share::percent(tokens, shared))
        .collect();
    json!({
        "scenario": t.name,
        "model_calls": calls.len(),
        "opening_calls": opening,
        "minimum_calls": calls.len() - opening,
        "shared_percent": shares,
        "least_shared_percent": shares.iter().min(),
        "tokens": calls.iter().sum::<usize>(),
        "largest_call": calls.iter().max().copied().unwrap_or(0),
        "prefix": prefix,
        "calls": calls,
    })
}

fn scenarios(bpe: &CoreBPE, dir: &Path) -> Result<Value, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let t = Transcript::load(&f).map_err(|e| e.to_string())?;
        rows.push(scenario(bpe, &t));
    }
    let sum = |k: &str| rows.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    let max = |k: &str| rows.iter().filter_map(|r| r[k].as_u64()).max().unwrap_or(0);
    let least = rows
        .iter()
        .filter_map(|r| r["least_shared_percent"].as_u64())
        .min();
    let shares: Vec<u64> = rows
        .iter()
        .filter_map(|r| r["shared_percent"].as_array())
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mean = (shares.iter().sum::<u64>()).checked_div(shares.len() as u64);
    Ok(json!({
        "dir": dir.display().to_string(),
        "scenarios": rows.len(),
        "model_calls": sum("model_calls"),
        "minimum_calls": sum("minimum_calls"),
        "least_shared_percent": least,
        "mean_shared_percent": mean,
        "tokens": sum("tokens"),
        "largest_call": max("largest_call"),
        "rows": rows,
    }))
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let bpe = tiktoken_rs::o200k_base().map_err(|e| e.to_string())?;
    let count = |s: &str| bpe.encode_with_special_tokens(s).len();
    let prompt = PromptLibrary::embedded()
        .render_default()
        .map_err(|e| e.to_string())?;
    let tools = ToolSet::altan_pay();
    let all = tools.to_openai_json();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    // Per tool as the platform's conversations get them (the context has the account id).
    let per_tool: Vec<Value> = list(&tools.to_openai_json_for(Opened::all(), true))
        .iter()
        .map(|t| json!({"tool": t["function"]["name"], "tokens": count(&t.to_string())}))
        .collect();
    let starter = tools.to_openai_json_for(Opened::default(), true);
    let mut out = json!({
        "encoding": "o200k_base",
        "prompt_tokens": count(&prompt),
        "prompt_bytes": prompt.len(),
        "tools": per_tool.len(),
        "tools_total_with_account_id": count(&all.to_string()),
        "tools_total": count(&tools.to_openai_json_for(Opened::all(), true).to_string()),
        "starter_tools": list(&starter).len(),
        "starter_tools_tokens": count(&starter.to_string()),
        "per_tool": per_tool,
    });
    if let (Some(stripe), Some(seed)) = (&args.stripe, &args.seed) {
        let stripe: Vec<Value> = serde_json::from_str(&read(stripe)?).map_err(|e| e.to_string())?;
        let seed = read(seed)?;
        let (p, t) = (
            count(&seed),
            count(&Value::Array(stripe.clone()).to_string()),
        );
        out["peer"] = json!({
            "seed_prompt_tokens": p,
            "toolkit_tools": stripe.len(),
            "toolkit_tools_tokens": t,
            "per_call": p + t,
            "per_tool": stripe.iter().map(|s| json!({"tool": s["function"]["name"], "tokens": count(&s.to_string())})).collect::<Vec<_>>(),
        });
    }
    let mut runs = Vec::new();
    for dir in &args.scenarios {
        runs.push(scenarios(&bpe, dir)?);
    }
    out["scenario_runs"] = Value::Array(runs);
    if args.markdown {
        print!("{}", markdown(&out));
    } else {
        println!("{out}");
    }
    Ok(())
}

/// The scenario tables of BENCHMARKS.md: one row per scenario, one column group per run.
fn markdown(out: &Value) -> String {
    let runs = out["scenario_runs"].as_array().cloned().unwrap_or_default();
    let mut s = String::new();
    let peer = out["peer"]["per_call"].as_u64();
    let mut header = String::from("| scenario |");
    let mut rule = String::from("|---|");
    for (i, _) in runs.iter().enumerate() {
        let tag = if runs.len() > 1 && i == 0 {
            "before"
        } else if runs.len() > 1 {
            "after"
        } else {
            "now"
        };
        header.push_str(&format!(
            " {tag}: calls (minimum) | {tag}: tokens | {tag}: largest | {tag}: prefix | {tag}: shared with the previous call, 2nd call on (%) |"
        ));
        rule.push_str("---|---|---|---|---|");
    }
    if peer.is_some() {
        header.push_str(" peer: prompt + tools per call × calls |");
        rule.push_str("---|");
    }
    s.push_str(&header);
    s.push('\n');
    s.push_str(&rule);
    s.push('\n');
    let names: Vec<String> = runs
        .first()
        .and_then(|r| r["rows"].as_array())
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["scenario"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for name in &names {
        let mut line = format!("| {name} |");
        let mut last_calls = 0;
        for run in &runs {
            let row = run["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["scenario"] == name.as_str()));
            match row {
                Some(r) => {
                    last_calls = r["model_calls"].as_u64().unwrap_or(0);
                    let shares: Vec<String> = r["shared_percent"]
                        .as_array()
                        .map(|a| a.iter().map(Value::to_string).collect())
                        .unwrap_or_default();
                    let shares = if shares.is_empty() {
                        "—".to_string()
                    } else {
                        shares.join(", ")
                    };
                    line.push_str(&format!(
                        " {} ({}) | {} | {} | {} | {shares} |",
                        r["model_calls"],
                        r["minimum_calls"],
                        r["tokens"],
                        r["largest_call"],
                        r["prefix"]
                    ));
                }
                None => line.push_str(" — | — | — | — | — |"),
            }
        }
        if let Some(p) = peer {
            line.push_str(&format!(" {} |", p * last_calls));
        }
        s.push_str(&line);
        s.push('\n');
    }
    let mut total = String::from("| **total** |");
    let mut last_calls = 0;
    for run in &runs {
        last_calls = run["model_calls"].as_u64().unwrap_or(0);
        total.push_str(&format!(
            " {} ({}) | {} | {} | | least {}, mean {} |",
            run["model_calls"],
            run["minimum_calls"],
            run["tokens"],
            run["largest_call"],
            run["least_shared_percent"],
            run["mean_shared_percent"]
        ));
    }
    if let Some(p) = peer {
        total.push_str(&format!(" {} |", p * last_calls));
    }
    s.push_str(&total);
    s.push('\n');
    s
}
