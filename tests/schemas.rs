//! The tool definitions: committed in tools/schemas.json and kept in step with the code,
//! valid for OpenAI's strict mode, every parameter described, every tool in the README.

use altan_pay::tools::ToolSet;
use altan_pay::tools::schema::strict_violation;
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

fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            let described = prop
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.is_empty());
            let obvious = matches!(
                name.as_str(),
                "name"
                    | "description"
                    | "email"
                    | "phone"
                    | "metadata"
                    | "images"
                    | "url"
                    | "unit_label"
                    | "active"
                    | "quantity"
                    | "mode"
                    | "duration"
                    | "max_redemptions"
            );
            if !described && !obvious {
                out.push(here.clone());
            }
            undescribed(prop, &here, out);
            if let Some(items) = prop.get("items") {
                undescribed(items, &here, out);
            }
        }
    }
}

#[test]
fn tools_and_their_parameters_are_described() {
    let mut missing = Vec::new();
    for def in ToolSet::altan_pay().definitions() {
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
        undescribed(&def.parameters, def.name, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "parameters without a description: {missing:?}"
    );
}

#[test]
fn the_readme_lists_every_tool_with_its_route_and_table() {
    let readme = repo_file("README.md");
    let routes = altan_pay::pay::RouteTable::embedded();
    for name in ToolSet::altan_pay().names() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("README has no tool table row for {name}"));
        if let Some(table) = altan_pay::tools::catalog::synced_table(name) {
            assert!(
                row.contains(&format!("`{table}`")),
                "README row of {name} lacks table {table}: {row}"
            );
        }
        let pay_tool = altan_pay::tools::catalog::all()
            .iter()
            .any(|t| t.definition().name == name);
        if pay_tool {
            assert!(
                routes
                    .iter()
                    .any(|(op, _)| row.contains(&format!("`{op}`"))),
                "README row of {name} names no route: {row}"
            );
        }
    }
}
