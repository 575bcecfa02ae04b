//! The tool definitions: committed in tools/schemas.json and kept in step with the code,
//! valid for OpenAI's strict mode, every parameter described, every tool in the README.

use altan_pay::sync::SyncMapping;
use altan_pay::tools::schema::strict_violation;
use altan_pay::tools::{Action, ToolSet};
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn committed_schemas_match_the_code() {
    let generated = ToolSet::altan_pay().to_json_text();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(
            format!("{}/tools/schemas.json", env!("CARGO_MANIFEST_DIR")),
            &generated,
        )
        .unwrap();
    }
    let committed = repo_file("tools/schemas.json");
    assert!(
        committed == generated,
        "tools/schemas.json is out of date with the tool types; regenerate it with \
         `cargo run -- tools --json > tools/schemas.json` (or UPDATE_SCHEMAS=1 cargo test --test schemas)"
    );
}

#[test]
fn every_schema_is_strict_mode_valid() {
    for def in ToolSet::altan_pay().definitions() {
        assert_eq!(def.parameters["type"], "object", "{}", def.name);
        if let Some(v) = strict_violation(&def.parameters, def.name) {
            panic!("{v}");
        }
    }
}

/// Parameters whose name and type do not say what the model must know (units, either/or,
/// what null means); the rest are left undescribed so every call costs fewer tokens.
const MUST_DESCRIBE: &[&str] = &[
    "unit_amount",
    "amount_off",
    "percent_off",
    "duration_in_months",
    "interval_count",
    "value",
    "promotion_code",
];

/// `update`: the tool changes existing objects (a metadata value's note is for updates only).
fn undescribed(schema: &Value, path: &str, update: bool, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            let described = prop
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.is_empty());
            // A metadata value's note (null removes the key) is for updates only.
            let needed = MUST_DESCRIBE.contains(&name.as_str()) && (name != "value" || update);
            if !described && needed {
                out.push(here.clone());
            }
            undescribed(prop, &here, update, out);
            for key in ["items", "anyOf"] {
                match prop.get(key) {
                    Some(Value::Array(list)) => {
                        list.iter().for_each(|v| undescribed(v, &here, update, out))
                    }
                    Some(v) => undescribed(v, &here, update, out),
                    None => {}
                }
            }
        }
    }
}

#[test]
fn tools_and_the_parameters_that_need_it_are_described() {
    let mut missing = Vec::new();
    for tool in ToolSet::altan_pay().iter() {
        let def = tool.definition();
        assert!(
            def.description.len() > 20,
            "{} has no real description",
            def.name
        );
        assert!(
            !def.description.contains('\n'),
            "{}: descriptions are one paragraph",
            def.name
        );
        let update = tool.declaration().action == Action::Update;
        undescribed(&def.parameters, def.name, update, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "parameters without a description: {missing:?}"
    );
}

/// Tokens (o200k) of each tool's `tools[]` entry as sent when the context has the account id.
/// A definition that grows past its budget fails here; raise a budget only on purpose.
const BUDGETS: &[(&str, usize)] = &[
    ("create_product", 205),
    ("create_price", 325),
    ("open_tools", 175),
    ("get_account_stripe_connection_id", 80),
    ("get_products", 120),
    ("update_product", 225),
    ("delete_product", 90),
    ("get_prices", 150),
    ("update_price", 210),
    ("create_customer", 155),
    ("get_customers", 110),
    ("update_customer", 260),
    ("delete_customer", 65),
    ("create_subscription", 340),
    ("get_subscriptions", 170),
    ("update_subscription", 395),
    ("cancel_subscription", 105),
    ("create_coupon", 300),
    ("get_coupons", 95),
    ("update_coupon", 140),
    ("delete_coupon", 60),
    ("create_promotion_code", 220),
    ("get_promotion_codes", 140),
    ("update_promotion_code", 145),
    ("create_checkout_session", 385),
    ("read_plan", 60),
    ("update_plan", 95),
];

#[test]
fn every_tool_definition_is_within_its_token_budget() {
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let tools = ToolSet::altan_pay();
    let sent = tools.to_openai_json_for(altan_pay::tools::Opened::all(), true);
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), BUDGETS.len(), "every tool has a budget");
    let mut over = Vec::new();
    for entry in sent {
        let name = entry["function"]["name"].as_str().unwrap();
        let budget = BUDGETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no budget for {name}"))
            .1;
        let n = bpe.encode_with_special_tokens(&entry.to_string()).len();
        if n > budget {
            over.push(format!("{name}: {n} tokens, budget {budget}"));
        }
    }
    assert!(over.is_empty(), "{}", over.join("\n"));
}

#[test]
fn the_readme_lists_every_tool_with_its_route_and_table() {
    let readme = repo_file("README.md");
    let routes = altan_pay::pay::RouteTable::embedded();
    let mapping = SyncMapping::default();
    for tool in ToolSet::altan_pay().iter() {
        let name = tool.definition().name;
        let declared = tool.declaration();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("README has no tool table row for {name}"));
        if let Some(kind) = declared.syncs {
            let table = &mapping.table(kind).table;
            assert!(
                row.contains(&format!("`{table}`")),
                "README row of {name} lacks table {table}: {row}"
            );
        }
        for op in declared.routes {
            assert!(
                routes.get(op).is_some() && row.contains(&format!("`{op}`")),
                "README row of {name} lacks its route {op}: {row}"
            );
        }
        // The last column says what a call destroys, as the declaration does.
        let destructive = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap_or_default()
            .trim();
        if declared.destroys.is_empty() {
            assert_eq!(destructive, "no", "README row of {name}: {row}");
        }
        for fact in &declared.destroys {
            let said = match fact.param {
                None => format!("{}, always", fact.effect),
                Some(param) => format!("{}, when `{param}`", fact.effect),
            };
            assert!(
                destructive.contains(&said),
                "README row of {name} does not say `{said}`: {row}"
            );
        }
    }
}
