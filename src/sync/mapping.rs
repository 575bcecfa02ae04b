//! [`SyncMapping`]: which table and columns each Stripe object kind becomes, read from TOML
//! (`tools/sync_mapping.toml` by default) so a workspace with other table names needs no rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The default mapping, embedded at build time.
const DEFAULT_MAPPING_TOML: &str = include_str!("../../tools/sync_mapping.toml");
const DEFAULT_ORIGIN: &str = "tools/sync_mapping.toml";

/// The Stripe object kinds that have a database table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Stripe `product`, `prod_...`.
    Product,
    /// Stripe `price`, `price_...`.
    Price,
    /// Stripe `customer`, `cus_...`.
    Customer,
    /// Stripe `subscription`, `sub_...`.
    Subscription,
    /// Stripe `coupon` (its id is chosen by the account or random).
    Coupon,
    /// Stripe `promotion_code`, `promo_...`.
    PromotionCode,
}

impl ObjectKind {
    /// Every kind, in declaration order ([`ObjectKind::index`] is the position here).
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Product,
        ObjectKind::Price,
        ObjectKind::Customer,
        ObjectKind::Subscription,
        ObjectKind::Coupon,
        ObjectKind::PromotionCode,
    ];

    /// Position in [`ObjectKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stripe's `object` string for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Product => "product",
            ObjectKind::Price => "price",
            ObjectKind::Customer => "customer",
            ObjectKind::Subscription => "subscription",
            ObjectKind::Coupon => "coupon",
            ObjectKind::PromotionCode => "promotion_code",
        }
    }

    /// From Stripe's `object` string; `None` for kinds without a table (checkout sessions...).
    pub fn from_object_name(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// From the resource of a route operation (`prices.update` → price).
    pub fn from_operation(operation: &str) -> Option<ObjectKind> {
        let resource = operation.split('.').next().unwrap_or_default();
        let singular = resource.strip_suffix('s').unwrap_or(resource);
        ObjectKind::from_object_name(singular)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bad mapping: the file and the entry, so whoever edits it knows where to look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync mapping {file}: {entry}: {problem}")]
pub struct MappingError {
    /// The mapping file's path (`tools/sync_mapping.toml` for the embedded default).
    pub file: String,
    /// Where in it: `file`, `[product]`, or the table's column entry at fault.
    pub entry: String,
    /// What is wrong there.
    pub problem: String,
}

impl MappingError {
    fn new(file: &str, entry: impl Into<String>, problem: impl Into<String>) -> Self {
        MappingError {
            file: file.to_owned(),
            entry: entry.into(),
            problem: problem.into(),
        }
    }
}

/// One step of a column path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    Each,
}

/// Where a column's value is in a Stripe object: alternatives tried in order until one is
/// not null (old and new API shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPath {
    source: String,
    alternatives: Vec<Vec<Step>>,
}

impl ColumnPath {
    /// Parses `a.b[0].c | d[].e`; the error says what is wrong, without the file (the caller adds it).
    pub fn parse(source: &str) -> Result<ColumnPath, ColumnPathError> {
        let mut alternatives = Vec::new();
        for alternative in source.split('|') {
            alternatives.push(parse_steps(alternative.trim())?);
        }
        Ok(ColumnPath {
            source: source.trim().to_owned(),
            alternatives,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this path is exactly the object's `id`.
    fn is_id(&self) -> bool {
        self.alternatives == [vec![Step::Field("id".to_owned())]]
    }

    /// The value at this path; null when no alternative finds one.
    pub fn get(&self, object: &Value) -> Value {
        self.alternatives
            .iter()
            .map(|steps| walk(object, steps))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null)
    }
}

/// Why a column path of the sync mapping could not be read; each names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnPathError {
    /// The path, or one of its `|` alternatives, is empty.
    #[error("empty path")]
    Empty,
    /// A `.` with no field name beside it.
    #[error("empty field name in `{path}`")]
    EmptyField {
        /// The alternative as written.
        path: String,
    },
    /// A field name holds a character other than ASCII letters, digits, `_` and `-`.
    #[error("unexpected `{found}` in field name `{field}` of `{path}`")]
    BadCharacter {
        /// The character.
        found: char,
        /// The field name it is in.
        field: String,
        /// The alternative as written.
        path: String,
    },
    /// Text after a `]` that is not another `[`.
    #[error("unexpected text after `]` in `{path}`")]
    TextAfterBracket {
        /// The alternative as written.
        path: String,
    },
    /// A `[` never closed.
    #[error("unclosed `[` in `{path}`")]
    Unclosed {
        /// The alternative as written.
        path: String,
    },
    /// Between brackets, something that is neither empty (`[]`, every element) nor an index.
    #[error("`[{inner}]` in `{path}` is not `[]` or an array index")]
    BadIndex {
        /// What stood between the brackets.
        inner: String,
        /// The alternative as written.
        path: String,
    },
}

fn parse_steps(text: &str) -> Result<Vec<Step>, ColumnPathError> {
    if text.is_empty() {
        return Err(ColumnPathError::Empty);
    }
    let mut steps = Vec::new();
    for segment in text.split('.') {
        let (name, mut rest) = match segment.find('[') {
            Some(i) => segment.split_at(i),
            None => (segment, ""),
        };
        if name.is_empty() {
            return Err(ColumnPathError::EmptyField { path: text.into() });
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(ColumnPathError::BadCharacter {
                found: bad,
                field: name.into(),
                path: text.into(),
            });
        }
        steps.push(Step::Field(name.to_owned()));
        while !rest.is_empty() {
            if !rest.starts_with('[') {
                return Err(ColumnPathError::TextAfterBracket { path: text.into() });
            }
            let Some(close) = rest.find(']') else {
                return Err(ColumnPathError::Unclosed { path: text.into() });
            };
            let inner = rest.get(1..close).unwrap_or_default();
            if inner.is_empty() {
                steps.push(Step::Each);
            } else {
                let index = inner
                    .parse::<usize>()
                    .map_err(|_| ColumnPathError::BadIndex {
                        inner: inner.into(),
                        path: text.into(),
                    })?;
                steps.push(Step::Index(index));
            }
            rest = rest.get(close + 1..).unwrap_or_default();
        }
    }
    Ok(steps)
}

fn walk(value: &Value, steps: &[Step]) -> Value {
    let Some((step, rest)) = steps.split_first() else {
        return value.clone();
    };
    match (step, value) {
        (Step::Field(name), Value::Object(map)) => match map.get(name) {
            Some(v) => walk(v, rest),
            None => Value::Null,
        },
        // An expandable field that was not expanded is the id itself.
        (Step::Field(name), Value::String(_)) if name == "id" => walk(value, rest),
        (Step::Index(i), Value::Array(items)) => match items.get(*i) {
            Some(v) => walk(v, rest),
            None => Value::Null,
        },
        (Step::Each, Value::Array(items)) => {
            Value::Array(items.iter().map(|v| walk(v, rest)).collect())
        }
        _ => Value::Null,
    }
}

/// What a column holds: the applier checks rows against it and the schema derives its
/// PostgreSQL type from it, so the mapping is the one place a column is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// A string (ids, names, currencies, statuses).
    Text,
    /// Whole numbers: amounts in the smallest unit, counts, Unix times.
    Integer,
    /// Decimal numbers (`percent_off`).
    Numeric,
    /// `true` or `false` (`active`, `livemode`).
    Boolean,
    /// Any JSON, kept whole (metadata, lists of ids).
    #[default]
    Json,
}

impl ColumnType {
    /// The name in the mapping file.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Numeric => "numeric",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "json",
        }
    }

    /// Whether a row value fits: null always does (a field the object lacks).
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (ColumnType::Json, _) => true,
            (ColumnType::Text, Value::String(_)) => true,
            (ColumnType::Integer, Value::Number(n)) => n.is_i64(),
            (ColumnType::Numeric, Value::Number(_)) => true,
            (ColumnType::Boolean, Value::Bool(_)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name in the mirror table.
    pub name: String,
    /// Where its value is in the Stripe object.
    pub path: ColumnPath,
    /// What it holds; the applier checks values and the schema picks the PostgreSQL type by it.
    pub sql_type: ColumnType,
}

/// The table one object kind is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// The mirror table's name.
    pub table: String,
    /// The key column; its path is always the Stripe `id`.
    pub key_column: String,
    /// Every mapped column, the key column included, in the mapping's order.
    pub columns: Vec<Column>,
}

impl TableMapping {
    /// The row for a Stripe object: every column, null where the object has no value; strings
    /// made safe for PostgreSQL text (U+0000 becomes U+FFFD).
    pub fn row(&self, object: &Value) -> Map<String, Value> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), pg_safe(c.path.get(object))))
            .collect()
    }
}

/// The character PostgreSQL's `text` and `jsonb` cannot hold.
const NUL: char = '\u{0}';

/// The value with every U+0000 in its strings and object keys replaced by U+FFFD (the
/// replacement character): PostgreSQL text cannot hold U+0000, and one such string in a Stripe
/// object must not sink every other row of a plan. Nothing else changes.
pub(crate) fn pg_safe(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains(NUL) => Value::String(s.replace(NUL, "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(pg_safe).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = match k.contains(NUL) {
                        true => k.replace(NUL, "\u{FFFD}"),
                        false => k,
                    };
                    (k, pg_safe(v))
                })
                .collect(),
        ),
        other => other,
    }
}

/// Tables and columns for every [`ObjectKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMapping {
    /// Indexed by [`ObjectKind::index`], so every kind has a table by construction.
    tables: [TableMapping; 6],
}

static DEFAULT_MAPPING: LazyLock<SyncMapping> = LazyLock::new(|| {
    // The embedded file is part of the build, not input; `default_mapping_parses` tests it.
    #[allow(clippy::expect_used)]
    parse_complete(DEFAULT_MAPPING_TOML, DEFAULT_ORIGIN).expect("tools/sync_mapping.toml is valid")
});

impl Default for SyncMapping {
    fn default() -> Self {
        DEFAULT_MAPPING.clone()
    }
}

impl SyncMapping {
    /// The default mapping with the kinds `text` lists replaced; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<SyncMapping, MappingError> {
        let mut mapping = SyncMapping::default();
        for (kind, table) in parse_tables(text, origin)? {
            mapping.tables[kind.index()] = table;
        }
        check_distinct_tables(&mapping.tables, origin)?;
        Ok(mapping)
    }

    /// Reads a mapping file (see [`SyncMapping::from_toml_str`]).
    pub fn load(path: &Path) -> Result<SyncMapping, MappingError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| MappingError::new(&origin, "file", format!("cannot read it: {e}")))?;
        SyncMapping::from_toml_str(&text, &origin)
    }

    /// The table for a kind; every kind has one.
    pub fn table(&self, kind: ObjectKind) -> &TableMapping {
        &self.tables[kind.index()]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    table: String,
    #[serde(default)]
    key: Option<String>,
    columns: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    path: String,
    #[serde(default, rename = "type")]
    sql_type: Option<ColumnType>,
}

fn parse_complete(text: &str, origin: &str) -> Result<SyncMapping, MappingError> {
    let mut parsed = parse_tables(text, origin)?;
    let mut tables = Vec::with_capacity(ObjectKind::ALL.len());
    for kind in ObjectKind::ALL {
        let table = parsed
            .remove(&kind)
            .ok_or_else(|| MappingError::new(origin, format!("[{kind}]"), "missing"))?;
        tables.push(table);
    }
    let tables: [TableMapping; 6] = tables
        .try_into()
        .map_err(|_| MappingError::new(origin, "file", "wrong number of tables"))?;
    check_distinct_tables(&tables, origin)?;
    Ok(SyncMapping { tables })
}

fn parse_tables(
    text: &str,
    origin: &str,
) -> Result<BTreeMap<ObjectKind, TableMapping>, MappingError> {
    let raw: BTreeMap<String, toml::Value> = toml::from_str(text)
        .map_err(|e| MappingError::new(origin, "file", format!("not valid TOML: {e}")))?;
    let mut tables = BTreeMap::new();
    for (name, value) in raw {
        let entry = format!("[{name}]");
        let Some(kind) = ObjectKind::from_object_name(&name) else {
            let known: Vec<_> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(MappingError::new(
                origin,
                entry,
                format!("unknown object kind; expected one of {}", known.join(", ")),
            ));
        };
        let raw: RawTable = value
            .try_into()
            .map_err(|e| MappingError::new(origin, &entry, e.to_string()))?;
        tables.insert(kind, table_mapping(raw, origin, &entry)?);
    }
    Ok(tables)
}

fn table_mapping(raw: RawTable, origin: &str, entry: &str) -> Result<TableMapping, MappingError> {
    let table = raw.table.trim().to_owned();
    if table.is_empty() {
        return Err(MappingError::new(origin, entry, "empty table name"));
    }
    let mut seen = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut columns = Vec::with_capacity(raw.columns.len());
    for column in raw.columns {
        let name = column.name.trim().to_owned();
        let at = format!("{entry} column `{name}`");
        if name.is_empty() {
            return Err(MappingError::new(origin, at, "empty column name"));
        }
        if !seen.insert(name.clone()) {
            return Err(MappingError::new(origin, at, "duplicate column"));
        }
        let path = ColumnPath::parse(&column.path)
            .map_err(|problem| MappingError::new(origin, &at, format!("bad path: {problem}")))?;
        if column.sql_type.is_some() {
            typed.insert(name.clone());
        }
        let sql_type = column.sql_type.unwrap_or_default();
        columns.push(Column {
            name,
            path,
            sql_type,
        });
    }
    let key_column = raw
        .key
        .map_or_else(|| "id".to_owned(), |k| k.trim().to_owned());
    let key_typed = typed.contains(&key_column);
    match columns.iter_mut().find(|c| c.name == key_column) {
        Some(c) if c.path.is_id() && key_typed && c.sql_type != ColumnType::Text => {
            return Err(MappingError::new(
                origin,
                format!("{entry} column `{key_column}`"),
                format!(
                    "the key column holds the Stripe id: type `text`, not `{}`",
                    c.sql_type
                ),
            ));
        }
        // The key is the Stripe id: text, whether the file says so or not.
        Some(c) if c.path.is_id() => c.sql_type = ColumnType::Text,
        Some(c) => {
            return Err(MappingError::new(
                origin,
                format!("{entry} column `{key_column}`"),
                format!(
                    "the key column must have path `id`, not `{}`",
                    c.path.as_str()
                ),
            ));
        }
        None => {
            return Err(MappingError::new(
                origin,
                entry,
                format!("no key column `{key_column}` among the columns"),
            ));
        }
    }
    Ok(TableMapping {
        table,
        key_column,
        columns,
    })
}

fn check_distinct_tables(tables: &[TableMapping; 6], origin: &str) -> Result<(), MappingError> {
    let mut seen: BTreeMap<&str, ObjectKind> = BTreeMap::new();
    for (kind, t) in ObjectKind::ALL.iter().zip(tables) {
        if let Some(other) = seen.insert(&t.table, *kind) {
            return Err(MappingError::new(
                origin,
                format!("[{kind}]"),
                format!("table `{}` is already used by [{other}]", t.table),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_mapping_parses() {
        let m = parse_complete(DEFAULT_MAPPING_TOML, DEFAULT_ORIGIN).unwrap();
        assert_eq!(m.table(ObjectKind::PromotionCode).table, "promotion_codes");
    }

    #[test]
    fn paths() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "s": "prod_1", "n": null, "m": 5});
        let get = |p: &str| ColumnPath::parse(p).unwrap().get(&v);
        assert_eq!(get("a.b[].c"), json!([1, 2]));
        assert_eq!(get("a.b[1].c"), json!(2));
        assert_eq!(get("a.b[9].c"), Value::Null);
        assert_eq!(get("s.id"), json!("prod_1"));
        assert_eq!(get("n | m"), json!(5));
        assert_eq!(get("zz.y"), Value::Null);
        for bad in ["", "a..b", "a[", "a[x]", "a]b", "a[]x", "a b", "a|"] {
            assert!(ColumnPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn column_types_come_from_the_file() {
        let m = SyncMapping::default();
        let coupon = m.table(ObjectKind::Coupon);
        let percent = coupon.columns.iter().find(|c| c.name == "percent_off");
        assert_eq!(percent.map(|c| c.sql_type), Some(ColumnType::Numeric));
        let untyped = "[product]\ntable = \"p\"\ncolumns = [{ name = \"id\", path = \"id\" }, { name = \"n\", path = \"name\" }]";
        let m = SyncMapping::from_toml_str(untyped, "x.toml").unwrap();
        let types: Vec<ColumnType> = m
            .table(ObjectKind::Product)
            .columns
            .iter()
            .map(|c| c.sql_type)
            .collect();
        assert_eq!(types, [ColumnType::Text, ColumnType::Json]);
        let key_not_text = "[product]\ntable = \"p\"\ncolumns = [{ name = \"id\", path = \"id\", type = \"integer\" }]";
        let e = SyncMapping::from_toml_str(key_not_text, "x.toml").unwrap_err();
        assert!(e.problem.contains("type `text`"), "{e}");
        let unknown = "[product]\ntable = \"p\"\ncolumns = [{ name = \"id\", path = \"id\", type = \"date\" }]";
        assert!(SyncMapping::from_toml_str(unknown, "x.toml").is_err());
        assert!(
            ColumnType::Integer.accepts(&json!(5)) && !ColumnType::Integer.accepts(&json!(5.5))
        );
        assert!(ColumnType::Text.accepts(&Value::Null) && !ColumnType::Text.accepts(&json!(1)));
    }

    #[test]
    fn operations_name_kinds() {
        assert_eq!(
            ObjectKind::from_operation("promotion_codes.create"),
            Some(ObjectKind::PromotionCode)
        );
        assert_eq!(ObjectKind::from_operation("checkout_sessions.create"), None);
    }
}
