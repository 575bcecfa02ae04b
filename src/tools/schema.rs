//! JSON schemas for tool arguments, generated from the Rust argument types and shaped for
//! OpenAI's strict function calling (closed objects, every property required, nullable optionals).

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// The schema of `T` as a model reads it, and the description taken from `T`'s doc comment.
pub fn strict_schema_for<T: JsonSchema>() -> (Value, String) {
    let generator = SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    let description = match schema.as_object_mut() {
        Some(root) => {
            root.remove("title");
            root.remove("description")
                .and_then(|d| d.as_str().map(unwrap_lines))
                .unwrap_or_default()
        }
        None => String::new(),
    };
    make_strict(&mut schema);
    (schema, description)
}

/// Leaves out what only an update reads: a metadata entry's note that null removes its key
/// (a create has no key to remove).
pub fn drop_update_notes(params: &mut Value) {
    if let Some(value) = params
        .pointer_mut("/properties/metadata/items/properties/value")
        .and_then(Value::as_object_mut)
    {
        value.remove("description");
    }
}

/// Joins the lines of a doc comment into one paragraph: the model needs no line breaks.
fn unwrap_lines(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rewrites a schema in place for strict mode: objects closed and all properties required
/// (the ones that were optional become nullable), titles and number formats dropped.
pub fn make_strict(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("title");
    obj.remove("default");
    if let Some(Value::String(d)) = obj.get_mut("description") {
        *d = unwrap_lines(d);
    }
    if obj.get("format").and_then(Value::as_str).is_some_and(|f| {
        f.starts_with("int") || f.starts_with("uint") || f == "double" || f == "float"
    }) {
        obj.remove("format");
    }
    // Unsigned integers come with `minimum: 0`; the tools check ranges themselves.
    if obj.get("minimum") == Some(&json!(0)) {
        obj.remove("minimum");
    }
    if obj.get("properties").is_some_and(Value::is_object) {
        let required: Vec<String> = match obj.get("required") {
            Some(Value::Array(r)) => r
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let mut names = Vec::new();
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for (name, prop) in props.iter_mut() {
                make_strict(prop);
                if !required.contains(name) {
                    make_nullable(prop);
                }
                names.push(name.clone());
            }
        }
        obj.insert("required".into(), json!(names));
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["items", "anyOf", "oneOf", "allOf"] {
        match obj.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(make_strict),
            Some(v @ Value::Object(_)) => make_strict(v),
            _ => {}
        }
    }
}

fn make_nullable(prop: &mut Value) {
    let Some(obj) = prop.as_object_mut() else {
        return;
    };
    match obj.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = t.clone();
            obj.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(values)) = obj.get_mut("enum")
                && !values.contains(&Value::Null)
            {
                values.push(Value::Null);
            }
        }
        Some(Value::Array(types)) => {
            if !types.contains(&json!("null")) {
                types.push(json!("null"));
            }
        }
        _ => {
            if let Some(Value::Array(variants)) = obj.get_mut("anyOf") {
                if !variants
                    .iter()
                    .any(|v| v.get("type") == Some(&json!("null")))
                {
                    variants.push(json!({"type": "null"}));
                }
            } else {
                let inner = std::mem::take(obj);
                let mut wrapper = Map::new();
                let description = inner.get("description").cloned();
                let mut inner = Value::Object(inner);
                if let Some(d) = description {
                    inner.as_object_mut().map(|o| o.remove("description"));
                    wrapper.insert("description".into(), d);
                }
                wrapper.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                *obj = wrapper;
            }
        }
    }
}

/// Checks the rules of strict mode on a finished schema and names the first place that
/// breaks one; used by tests over every tool.
pub fn strict_violation(schema: &Value, path: &str) -> Option<String> {
    let obj = schema.as_object()?;
    if let Some(Value::Object(props)) = obj.get("properties") {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Some(format!("{path}: additionalProperties is not false"));
        }
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, prop) in props {
            if !required.contains(&name.as_str()) {
                return Some(format!("{path}.{name}: not in required"));
            }
            if let Some(v) = strict_violation(prop, &format!("{path}.{name}")) {
                return Some(v);
            }
        }
    } else if obj.get("type") == Some(&json!("object")) {
        return Some(format!(
            "{path}: an object without properties (a free-form map)"
        ));
    }
    if obj.contains_key("$ref") {
        return Some(format!("{path}: a $ref (subschemas must be inlined)"));
    }
    for key in ["items", "anyOf", "oneOf", "allOf"] {
        match obj.get(key) {
            Some(Value::Array(list)) => {
                for (i, item) in list.iter().enumerate() {
                    if let Some(v) = strict_violation(item, &format!("{path}.{key}[{i}]")) {
                        return Some(v);
                    }
                }
            }
            Some(v @ Value::Object(_)) => {
                if let Some(v) = strict_violation(v, &format!("{path}.{key}")) {
                    return Some(v);
                }
            }
            _ => {}
        }
    }
    None
}

/// The compact form of a strict schema, for [`crate::tools::ToolSet::to_openai_json_compact`]:
/// a property that accepts `null` is no longer listed in `required`, so the model may leave it
/// out. Nothing else changes: every type, enum, description and closed object stays as it is.
/// Argument decoding treats a missing optional property exactly as `null` (serde `Option`),
/// and the tools layer validates every argument, so this loses no correctness; it only drops
/// strict mode's guarantee that the model writes every property, and with it the tokens of
/// the long `required` lists.
pub fn compact_schema(schema: &Value) -> Value {
    let mut out = schema.clone();
    compact_in_place(&mut out);
    out
}

fn accepts_null(prop: &Value) -> bool {
    match prop.get("type") {
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        Some(Value::String(t)) => t == "null",
        _ => prop
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.get("type") == Some(&json!("null")))),
    }
}

fn compact_in_place(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        let mut nullable = Vec::new();
        for (name, prop) in props.iter_mut() {
            compact_in_place(prop);
            if accepts_null(prop) {
                nullable.push(name.clone());
            }
        }
        if let Some(Value::Array(required)) = obj.get_mut("required") {
            required.retain(|r| r.as_str().is_none_or(|r| !nullable.iter().any(|n| n == r)));
            if required.is_empty() {
                obj.remove("required");
            }
        }
    }
    for key in ["items", "anyOf", "oneOf", "allOf"] {
        match obj.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(compact_in_place),
            Some(v @ Value::Object(_)) => compact_in_place(v),
            _ => {}
        }
    }
}

/// Removes a top-level property (and its `required` entry) from an object schema.
pub fn remove_property(schema: &mut Value, name: &str) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.remove(name);
    }
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.retain(|r| r.as_str() != Some(name));
    }
}
