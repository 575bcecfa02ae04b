//! `altan-pay apply`: one sync plan checked whole, then written to the PostgreSQL mirror in one
//! transaction in reference order, and the acknowledgement the agent reads back.
//!
//! The plan is the input itself when it is JSON, else the runtime's marked block of an answer
//! ([`crate::sync::plan_blocks`]); no other code block of an answer is ever read. With a plan
//! signing key, a plan must carry the runtime's signature ([`crate::sync::PlanSigningKey`]).
//! U+0000, which PostgreSQL text cannot hold, becomes U+FFFD in every string of a row.
//!
//! Version rule (an older row never overwrites a newer one): Stripe never reuses an id, so an
//! upsert of an id this mirror deleted is stale; a row whose mapping has a column with path
//! `updated` (products) is not replaced by one with a smaller `updated` (equal goes to the
//! later plan, as in the event intake); a canceled or expired subscription never goes back to
//! another status, nor loses its `canceled_at`. Other rows carry no Stripe version, so the
//! later plan wins.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::sync::{
    ObjectKind, Op, PlanSignatureError, PlanSigningKey, SIGNATURE_FIELD, SyncMapping, TableMapping,
    pg_safe, plan_blocks,
};

use super::pg::{TableProblem, check_tables, columns_of, error_message, quote_ident};
use super::schema::DELETED_TABLE;

/// Why a plan was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The input is neither plan JSON nor an answer holding exactly one runtime plan block,
    /// or its top level is not a plan object; the text says which.
    #[error("not a sync plan: {0}")]
    NotAPlan(String),
    /// The answer holds this many plan blocks (more than one); each must be applied alone.
    #[error("the text holds {0} sync plans; apply them one at a time")]
    SeveralPlans(usize),
    /// `sync_id` is missing, not a string, or not `sync_` followed by letters and digits.
    #[error("bad sync_id: {0}")]
    BadSyncId(String),
    /// An operation names a table the sync mapping does not have.
    #[error("{at}: unknown table `{table}` (the sync mapping has {known})")]
    UnknownTable {
        /// The operation, as `operations[i]`.
        at: String,
        /// The table the plan named.
        table: String,
        /// The mapping's table names, comma-separated.
        known: String,
    },
    /// An operation's `key` is missing, not `{"<key column>": "<Stripe id>"}`, or disagrees
    /// with the row's key column.
    #[error("{at}: missing key: {problem}")]
    MissingKey {
        /// The operation, as [`PlanOp::describe`] or `operations[i]` writes it.
        at: String,
        /// What is wrong with the key.
        problem: String,
    },
    /// A row's value does not fit its column's type in the mapping.
    #[error("{at}: column `{column}` must be {expected}, not {found}")]
    WrongType {
        /// The operation, as [`PlanOp::describe`] writes it.
        at: String,
        /// The column's name.
        column: String,
        /// The type the column takes, in words (`an integer`).
        expected: String,
        /// The value the plan gave, in words (`the string "x"`).
        found: String,
    },
    /// Any other fault of one operation: its shape, an unknown or missing column, a second
    /// operation on the same row.
    #[error("{at}: {problem}")]
    BadOperation {
        /// The operation, as [`PlanOp::describe`] or `operations[i]` writes it.
        at: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A signing key is configured and the plan's signature is missing, malformed or wrong.
    #[error("{0}")]
    Signature(#[from] PlanSignatureError),
}

/// One checked operation of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOp {
    /// Position in the plan's `operations`, for messages.
    pub index: usize,
    /// The Stripe object kind the table holds.
    pub kind: ObjectKind,
    /// The mirror table, as the mapping names it.
    pub table: String,
    /// Upsert or delete.
    pub op: Op,
    /// The Stripe id of the row (the value of the table's key column).
    pub id: String,
    /// Every mapped column, for an upsert; `None` for a delete.
    pub row: Option<Map<String, Value>>,
}

impl PlanOp {
    /// `operations[2] (upsert prices price_1)`.
    pub fn describe(&self) -> String {
        format!(
            "operations[{}] ({} {} {})",
            self.index,
            self.op.as_str(),
            self.table,
            self.id
        )
    }
}

/// A plan that passed every check: known tables, keys, every column with the right type.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPlan {
    /// The plan's id (`sync_` and hex digits), which the acknowledgement names.
    pub sync_id: String,
    /// The operations in the plan's own order; [`ParsedPlan::ordered`] gives the order they run in.
    pub operations: Vec<PlanOp>,
}

/// The plan in a text: the JSON itself, or the runtime's marked block of an answer.
fn find_plan(text: &str) -> Result<Value, PlanError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(PlanError::NotAPlan("the input is empty".into()));
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return Ok(value);
    }
    let blocks = plan_blocks(text).map_err(|e| PlanError::NotAPlan(e.to_string()))?;
    match blocks.as_slice() {
        [] => Err(PlanError::NotAPlan(format!(
            "neither JSON nor an answer with the runtime's plan block (the line {}, the plan's JSON, the line ```); no other code block is read as a plan",
            crate::sync::PLAN_FENCE
        ))),
        [block] => serde_json::from_str::<Value>(block.trim())
            .map_err(|e| PlanError::NotAPlan(format!("the plan block is not JSON: {e}"))),
        several => Err(PlanError::SeveralPlans(several.len())),
    }
}

/// The value as an error message shows it: scalars with their value (short strings whole),
/// an array as "a list", anything else by its kind.
fn described(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        other => crate::stripe::json_kind(other).into(),
    }
}

fn is_sync_id(id: &str) -> bool {
    id.strip_prefix("sync_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks a plan whole against the mapping; the first problem refuses it. Its signature, if
/// any, is not checked: see [`parse_signed_plan`].
pub fn parse_plan(text: &str, mapping: &SyncMapping) -> Result<ParsedPlan, PlanError> {
    parse_signed_plan(text, mapping, None)
}

/// Checks a plan whole against the mapping, and with a key its signature first: an unsigned
/// or mis-signed plan is refused. The first problem refuses it.
pub fn parse_signed_plan(
    text: &str,
    mapping: &SyncMapping,
    key: Option<&PlanSigningKey>,
) -> Result<ParsedPlan, PlanError> {
    let doc = find_plan(text)?;
    let Value::Object(doc) = doc else {
        return Err(PlanError::NotAPlan(format!(
            "expected an object, got {}",
            described(&doc)
        )));
    };
    for key in doc.keys() {
        if key != "sync_id" && key != "operations" && key != SIGNATURE_FIELD {
            return Err(PlanError::NotAPlan(format!(
                "unknown field `{key}` (a plan has `sync_id`, `operations` and `{SIGNATURE_FIELD}`)"
            )));
        }
    }
    if let Some(key) = key {
        key.verify(&Value::Object(doc.clone()))?;
    }
    let sync_id = match doc.get("sync_id") {
        Some(Value::String(s)) if is_sync_id(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(PlanError::BadSyncId(format!(
                "{s:?} is not `sync_` followed by letters and digits"
            )));
        }
        Some(other) => {
            return Err(PlanError::BadSyncId(format!(
                "must be a string, not {}",
                described(other)
            )));
        }
        None => return Err(PlanError::BadSyncId("missing".into())),
    };
    let ops = match doc.get("operations") {
        Some(Value::Array(ops)) => ops,
        Some(other) => {
            return Err(PlanError::NotAPlan(format!(
                "`operations` must be a list, not {}",
                described(other)
            )));
        }
        None => return Err(PlanError::NotAPlan("no `operations`".into())),
    };
    let tables: BTreeMap<&str, ObjectKind> = ObjectKind::ALL
        .iter()
        .map(|k| (mapping.table(*k).table.as_str(), *k))
        .collect();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut operations = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let parsed = parse_op(index, op, mapping, &tables)?;
        if let Some(first) = seen.insert((parsed.table.clone(), parsed.id.clone()), index) {
            return Err(PlanError::BadOperation {
                at: parsed.describe(),
                problem: format!(
                    "operations[{first}] already touches this row; a plan has one operation per row"
                ),
            });
        }
        operations.push(parsed);
    }
    Ok(ParsedPlan {
        sync_id,
        operations,
    })
}

/// One operation as a plan carries it: `op` (the ledger's [`Op`]) picks the shape, and a
/// delete has no `row` field at all. Table, key and row are checked against the mapping after.
#[derive(serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum WireOp {
    Upsert {
        table: Option<Value>,
        key: Option<Value>,
        row: Option<Value>,
    },
    Delete {
        table: Option<Value>,
        key: Option<Value>,
    },
}

impl WireOp {
    fn op(&self) -> Op {
        match self {
            WireOp::Upsert { .. } => Op::Upsert,
            WireOp::Delete { .. } => Op::Delete,
        }
    }
}

fn parse_op(
    index: usize,
    op: &Value,
    mapping: &SyncMapping,
    tables: &BTreeMap<&str, ObjectKind>,
) -> Result<PlanOp, PlanError> {
    let at = format!("operations[{index}]");
    let bad = |at: &str, problem: String| PlanError::BadOperation {
        at: at.to_owned(),
        problem,
    };
    if !op.is_object() {
        return Err(bad(
            &at,
            format!("expected an object, got {}", described(op)),
        ));
    }
    // serde's own words: an unknown or missing `op`, an unknown field, a delete's `row`.
    let wire = WireOp::deserialize(op).map_err(|e| bad(&at, e.to_string()))?;
    let op_kind = wire.op();
    let (table, key, row) = match wire {
        WireOp::Upsert { table, key, row } => (table, key, Some(row)),
        WireOp::Delete { table, key } => (table, key, None),
    };
    let table = match table {
        Some(Value::String(t)) => t,
        other => {
            return Err(bad(
                &at,
                format!(
                    "`table` must be a string, not {}",
                    described(other.as_ref().unwrap_or(&Value::Null))
                ),
            ));
        }
    };
    let Some(&kind) = tables.get(table.as_str()) else {
        return Err(PlanError::UnknownTable {
            at,
            table,
            known: tables.keys().copied().collect::<Vec<_>>().join(", "),
        });
    };
    let t = mapping.table(kind);
    let id = match key {
        Some(Value::Object(key)) => match (key.len(), key.get(&t.key_column)) {
            (1, Some(Value::String(id))) if !id.trim().is_empty() && !id.contains('\u{0}') => {
                id.clone()
            }
            (1, Some(other)) => {
                return Err(PlanError::MissingKey {
                    at,
                    problem: format!(
                        "`{}` must be a non-empty string without U+0000, not {}",
                        t.key_column,
                        described(other)
                    ),
                });
            }
            _ => {
                return Err(PlanError::MissingKey {
                    at,
                    problem: format!(
                        "`key` must be exactly {{\"{}\": \"<Stripe id>\"}}",
                        t.key_column
                    ),
                });
            }
        },
        Some(other) => {
            return Err(PlanError::MissingKey {
                at,
                problem: format!("`key` must be an object, not {}", described(&other)),
            });
        }
        None => {
            return Err(PlanError::MissingKey {
                at,
                problem: "no `key`".into(),
            });
        }
    };
    let mut parsed = PlanOp {
        index,
        kind,
        table,
        op: op_kind,
        id,
        row: None,
    };
    let at = parsed.describe();
    match row {
        None => {}
        Some(Some(Value::Object(row))) => {
            check_row(&at, t, &parsed.id, &row)?;
            parsed.row = Some(row);
        }
        Some(other) => {
            return Err(bad(
                &at,
                format!(
                    "an upsert needs a `row` object, not {}",
                    described(other.as_ref().unwrap_or(&Value::Null))
                ),
            ));
        }
    }
    Ok(parsed)
}

fn check_row(
    at: &str,
    t: &TableMapping,
    id: &str,
    row: &Map<String, Value>,
) -> Result<(), PlanError> {
    let known: BTreeSet<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    if let Some(extra) = row.keys().find(|k| !known.contains(k.as_str())) {
        return Err(PlanError::BadOperation {
            at: at.to_owned(),
            problem: format!("unknown column `{extra}` for table {}", t.table),
        });
    }
    for c in &t.columns {
        let Some(value) = row.get(&c.name) else {
            return Err(PlanError::BadOperation {
                at: at.to_owned(),
                problem: format!("the row lacks column `{}`", c.name),
            });
        };
        if !c.sql_type.accepts(value) {
            return Err(PlanError::WrongType {
                at: at.to_owned(),
                column: c.name.clone(),
                expected: match c.sql_type {
                    crate::sync::ColumnType::Integer => "an integer".into(),
                    crate::sync::ColumnType::Numeric => "a number".into(),
                    crate::sync::ColumnType::Boolean => "a boolean".into(),
                    other => format!("{other}"),
                },
                found: described(value),
            });
        }
    }
    if row.get(&t.key_column).and_then(Value::as_str) != Some(id) {
        return Err(PlanError::MissingKey {
            at: at.to_owned(),
            problem: format!("the row's `{}` is not the key's id", t.key_column),
        });
    }
    Ok(())
}

/// Parents before children: an upsert never precedes the row it references.
const UPSERT_ORDER: [ObjectKind; 6] = [
    ObjectKind::Product,
    ObjectKind::Coupon,
    ObjectKind::Customer,
    ObjectKind::Price,
    ObjectKind::PromotionCode,
    ObjectKind::Subscription,
];

impl ParsedPlan {
    /// Upserts parents first, then deletes children first; the plan's order within a kind.
    pub fn ordered(&self) -> Vec<&PlanOp> {
        let rank = |k: ObjectKind| UPSERT_ORDER.iter().position(|o| *o == k).unwrap_or(0);
        let mut ups: Vec<&PlanOp> = self
            .operations
            .iter()
            .filter(|o| o.op == Op::Upsert)
            .collect();
        ups.sort_by_key(|o| (rank(o.kind), o.index));
        let mut dels: Vec<&PlanOp> = self
            .operations
            .iter()
            .filter(|o| o.op == Op::Delete)
            .collect();
        dels.sort_by_key(|o| (std::cmp::Reverse(rank(o.kind)), o.index));
        ups.extend(dels);
        ups
    }
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// An upsert inserted the row or changed at least one of its values.
    Written,
    /// The row already held exactly these values.
    Unchanged,
    /// A delete removed the row (and recorded its id as deleted).
    Deleted,
    /// A delete of a row the mirror did not have.
    AlreadyAbsent,
    /// Skipped by the version rule; the reason names it.
    Stale(String),
}

/// A plan that was committed, with what each of its operations did: what [`apply_plan`]
/// returns and [`Acknowledgement::applied`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedPlan {
    /// The committed plan's id.
    pub sync_id: String,
    /// In the order they ran.
    pub results: Vec<(PlanOp, OpResult)>,
}

impl AppliedPlan {
    /// How many operations ended in each result.
    pub fn count(&self, f: impl Fn(&OpResult) -> bool) -> usize {
        self.results.iter().filter(|(_, r)| f(r)).count()
    }

    /// Whether anything in the database changed.
    pub fn changed(&self) -> bool {
        self.count(|r| matches!(r, OpResult::Written | OpResult::Deleted)) > 0
    }
}

/// Why a plan was not applied; nothing was written in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The plan failed its checks before the database was touched.
    #[error("plan refused, nothing written: {0}")]
    Plan(#[from] PlanError),
    /// The transaction could not start or commit; PostgreSQL's message.
    #[error("database: {0}")]
    Database(String),
    /// The database lacks a mapped table or column, or the applier's deleted-ids table.
    #[error("database: {0}")]
    Tables(#[from] TableProblem),
    /// One operation's statement failed; the transaction was rolled back.
    #[error("{at} failed, nothing written: {error}")]
    Operation {
        /// Its position in the plan's `operations`.
        index: usize,
        /// The operation, as [`PlanOp::describe`] writes it.
        at: String,
        /// PostgreSQL's message with its detail.
        error: String,
    },
}

/// The column whose Stripe path is exactly `path`, if the table maps one.
fn column_with_path<'a>(t: &'a TableMapping, path: &str) -> Option<&'a str> {
    t.columns
        .iter()
        .find(|c| c.path.as_str() == path)
        .map(|c| c.name.as_str())
}

const TERMINAL: [&str; 2] = ["canceled", "incomplete_expired"];

/// The version rule against the row the mirror holds; `Some(reason)` when the upsert is stale.
fn stale_reason(
    kind: ObjectKind,
    t: &TableMapping,
    existing: &Map<String, Value>,
    row: &Map<String, Value>,
) -> Option<String> {
    if let Some(col) = column_with_path(t, "updated") {
        let old = existing.get(col).and_then(Value::as_i64);
        let new = row.get(col).and_then(Value::as_i64);
        if let (Some(old), Some(new)) = (old, new)
            && new < old
        {
            return Some(format!("older than the row ({col} {new} < {old})"));
        }
    }
    if kind == ObjectKind::Subscription
        && let Some(col) = column_with_path(t, "status")
    {
        let old = existing.get(col).and_then(Value::as_str);
        let new = row.get(col).and_then(Value::as_str);
        if let (Some(old), Some(new)) = (old, new)
            && TERMINAL.contains(&old)
            && !TERMINAL.contains(&new)
        {
            return Some(format!(
                "the subscription is already {old}; Stripe never reopens one"
            ));
        }
        // Stripe sets `canceled_at` once; a canceled row without it (the agent's own guess
        // when a customer is deleted) does not replace Stripe's final state.
        if let Some(at) = column_with_path(t, "canceled_at")
            && let (Some(old), Some(new)) = (old, new)
            && TERMINAL.contains(&old)
            && TERMINAL.contains(&new)
            && existing.get(at).is_some_and(|v| !v.is_null())
            && row.get(at).is_none_or(Value::is_null)
        {
            return Some(format!(
                "the row already holds Stripe's final {old} state ({at} set)"
            ));
        }
    }
    None
}

/// Applies a checked plan in one transaction: every operation or none. The mapping must be
/// the one the plan was checked against.
pub async fn apply_plan(
    client: &mut tokio_postgres::Client,
    schema: &str,
    mapping: &SyncMapping,
    plan: &ParsedPlan,
) -> Result<AppliedPlan, ApplyError> {
    let db = |e: tokio_postgres::Error| ApplyError::Database(error_message(&e));
    let tx = client.transaction().await.map_err(db)?;
    check_tables(&tx, schema, mapping).await?;
    if columns_of(&tx, schema, DELETED_TABLE).await?.is_empty() {
        return Err(TableProblem::TableMissing {
            table: format!("{schema}.{DELETED_TABLE} (create it with `altan-pay schema`)"),
        }
        .into());
    }
    let s = quote_ident(schema);
    let deleted = format!("{s}.{}", quote_ident(DELETED_TABLE));
    let mut results = Vec::with_capacity(plan.operations.len());
    for op in plan.ordered() {
        let t = mapping.table(op.kind);
        let table = format!("{s}.{}", quote_ident(&t.table));
        let key = quote_ident(&t.key_column);
        let fail = |e: tokio_postgres::Error| ApplyError::Operation {
            index: op.index,
            at: op.describe(),
            error: error_message(&e),
        };
        let result = match &op.row {
            None => {
                let n = tx
                    .execute(
                        format!("DELETE FROM {table} WHERE {key} = $1").as_str(),
                        &[&op.id],
                    )
                    .await
                    .map_err(fail)?;
                tx.execute(
                    format!(
                        "INSERT INTO {deleted} (table_name, id, sync_id) VALUES ($1, $2, $3)
                         ON CONFLICT (table_name, id) DO NOTHING"
                    )
                    .as_str(),
                    &[&t.table, &op.id, &plan.sync_id],
                )
                .await
                .map_err(fail)?;
                if n > 0 {
                    OpResult::Deleted
                } else {
                    OpResult::AlreadyAbsent
                }
            }
            Some(row) => {
                let gone = tx
                    .query_opt(
                        format!("SELECT sync_id FROM {deleted} WHERE table_name = $1 AND id = $2")
                            .as_str(),
                        &[&t.table, &op.id],
                    )
                    .await
                    .map_err(fail)?;
                let existing = tx
                    .query_opt(
                        format!(
                            "SELECT row_to_json(t)::text FROM {table} t WHERE {key} = $1 FOR UPDATE"
                        )
                        .as_str(),
                        &[&op.id],
                    )
                    .await
                    .map_err(fail)?
                    .map(|r| r.get::<_, String>(0))
                    .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok());
                let stale = match (&gone, &existing) {
                    (Some(r), _) => Some(format!(
                        "deleted from Stripe by {}; Stripe never reuses an id",
                        r.get::<_, String>(0)
                    )),
                    (None, Some(existing)) => stale_reason(op.kind, t, existing, row),
                    (None, None) => None,
                };
                match stale {
                    Some(reason) => OpResult::Stale(reason),
                    None => {
                        let n = tx
                            .execute(
                                upsert_sql(&table, t).as_str(),
                                &[&pg_safe(Value::Object(row.clone())).to_string()],
                            )
                            .await
                            .map_err(fail)?;
                        if n > 0 {
                            OpResult::Written
                        } else {
                            OpResult::Unchanged
                        }
                    }
                }
            }
        };
        results.push((op.clone(), result));
    }
    tx.commit().await.map_err(db)?;
    Ok(AppliedPlan {
        sync_id: plan.sync_id.clone(),
        results,
    })
}

/// An insert of the row's mapped columns that updates only when a value differs (compared as
/// text, so `json` columns work too), so a repeat reports zero rows.
fn upsert_sql(table: &str, t: &TableMapping) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let list = cols.join(", ");
    let set: Vec<String> = cols
        .iter()
        .filter(|c| **c != quote_ident(&t.key_column))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let old: Vec<String> = cols.iter().map(|c| format!("t.{c}::text")).collect();
    let new: Vec<String> = cols.iter().map(|c| format!("EXCLUDED.{c}::text")).collect();
    format!(
        "INSERT INTO {table} AS t ({list}) SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1::text::jsonb)
         ON CONFLICT ({key}) DO UPDATE SET {set} WHERE ROW({old}) IS DISTINCT FROM ROW({new})",
        key = quote_ident(&t.key_column),
        set = set.join(", "),
        old = old.join(", "),
        new = new.join(", "),
    )
}

/// What Altan posts back to the room, in the form `sync::parse_acknowledgements` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The plan's id, or the id read from a refused plan's text.
    pub sync_id: String,
    /// Whether the plan was committed.
    pub applied: bool,
    /// One JSON line: `{"sync_id", "status": "applied", ...}` or `{"sync_id", "status":
    /// "failed", "error", "operations": [...]}`.
    pub message: String,
}

impl Acknowledgement {
    /// The acknowledgement of a committed plan.
    pub fn applied(applied: &AppliedPlan) -> Acknowledgement {
        let stale: Vec<Value> = applied
            .results
            .iter()
            .filter_map(|(op, r)| match r {
                OpResult::Stale(reason) => {
                    Some(json!({"table": op.table, "id": op.id, "reason": reason}))
                }
                _ => None,
            })
            .collect();
        let body = json!({
            "sync_id": applied.sync_id,
            "status": "applied",
            "written": applied.count(|r| *r == OpResult::Written),
            "unchanged": applied.count(|r| *r == OpResult::Unchanged),
            "deleted": applied.count(|r| *r == OpResult::Deleted),
            "already_absent": applied.count(|r| *r == OpResult::AlreadyAbsent),
            "stale": stale,
        });
        Acknowledgement {
            sync_id: applied.sync_id.clone(),
            applied: true,
            message: body.to_string(),
        }
    }

    /// The acknowledgement of a plan that was not applied, naming the operations it concerns:
    /// the failing one, or all of them when the whole plan was refused.
    pub fn failed(sync_id: &str, plan: Option<&ParsedPlan>, error: &ApplyError) -> Acknowledgement {
        let ops: Vec<Value> = plan
            .map(|p| p.operations.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|op| match error {
                ApplyError::Operation { index, .. } => op.index == *index,
                _ => true,
            })
            .map(|op| json!({"index": op.index, "table": op.table, "op": op.op.as_str(), "id": op.id}))
            .collect();
        Acknowledgement::failed_with(sync_id, ops, error)
    }

    fn failed_with(sync_id: &str, operations: Vec<Value>, error: &ApplyError) -> Acknowledgement {
        let body = json!({
            "sync_id": sync_id,
            "status": "failed",
            "error": error.to_string(),
            "operations": operations,
        });
        Acknowledgement {
            sync_id: sync_id.to_owned(),
            applied: false,
            message: body.to_string(),
        }
    }
}

/// The sync id and whatever can be read of the operations of a plan that failed its checks,
/// for its failure acknowledgement.
fn refused_parts(text: &str) -> Option<(String, Vec<Value>)> {
    let doc = find_plan(text).ok()?;
    let id = doc.get("sync_id")?.as_str()?;
    if !is_sync_id(id) {
        return None;
    }
    let ops = doc
        .get("operations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, op)| {
            let key = op.get("key").and_then(Value::as_object);
            let id = key.and_then(|k| k.values().next()).cloned();
            json!({"index": index, "table": op.get("table"), "op": op.get("op"), "id": id})
        })
        .collect();
    Some((id.to_owned(), ops))
}

/// Checks and applies a plan given as text, its signature unchecked (see
/// [`apply_signed_text`]); the acknowledgement says what happened. `Err` only when the text
/// names no sync id to acknowledge.
pub async fn apply_text(
    client: &mut tokio_postgres::Client,
    schema: &str,
    mapping: &SyncMapping,
    text: &str,
) -> Result<(Acknowledgement, Result<AppliedPlan, ApplyError>), ApplyError> {
    apply_signed_text(client, schema, mapping, None, text).await
}

/// [`apply_text`], and with a key the plan must carry the runtime's signature: an unsigned or
/// mis-signed plan is refused, nothing written, and the acknowledgement says why.
pub async fn apply_signed_text(
    client: &mut tokio_postgres::Client,
    schema: &str,
    mapping: &SyncMapping,
    key: Option<&PlanSigningKey>,
    text: &str,
) -> Result<(Acknowledgement, Result<AppliedPlan, ApplyError>), ApplyError> {
    let plan = match parse_signed_plan(text, mapping, key) {
        Ok(plan) => plan,
        Err(e) => {
            let error = ApplyError::Plan(e);
            return match refused_parts(text) {
                Some((id, ops)) => Ok((Acknowledgement::failed_with(&id, ops, &error), Err(error))),
                None => Err(error),
            };
        }
    };
    let result = apply_plan(client, schema, mapping, &plan).await;
    let ack = match &result {
        Ok(applied) => Acknowledgement::applied(applied),
        Err(e) => Acknowledgement::failed(&plan.sync_id, Some(&plan), e),
    };
    Ok((ack, result))
}

/// The settings of `altan-pay apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// PostgreSQL URL of the database mirror (`postgres://user@host:port/db`).
    pub database_url: String,
    /// The PostgreSQL schema holding the tables.
    pub schema: String,
    /// A sync mapping file replacing tools/sync_mapping.toml's tables.
    pub sync_mapping: Option<PathBuf>,
    /// The key the runtime signs plans with (`serve --plan-signing-key`): with it, a plan
    /// without the runtime's signature, or with a wrong one, is refused and nothing is written.
    pub plan_signing_key: Option<PlanSigningKey>,
    /// The plan: its JSON, or an answer holding the runtime's plan block; `-` reads stdin.
    pub file: String,
}

/// Reads the plan `args` name (a file, or stdin for `-`) and applies it: the acknowledgement
/// and the outcome; `Err` when the plan could not be read or the database reached.
pub async fn apply_file(
    args: &ApplyOptions,
) -> Result<(Acknowledgement, Result<AppliedPlan, ApplyError>), String> {
    let mapping = match &args.sync_mapping {
        Some(p) => SyncMapping::load(p).map_err(|e| e.to_string())?,
        None => SyncMapping::default(),
    };
    let text = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the plan from stdin: {e}"))?;
        text
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file))?
    };
    let mut conn = super::pg::connect(&args.database_url)
        .await
        .map_err(|e| format!("database: {e}"))?;
    apply_signed_text(
        &mut conn.client,
        &args.schema,
        &mapping,
        args.plan_signing_key.as_ref(),
        &text,
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(op: Value) -> PlanError {
        let plan = json!({"sync_id": "sync_1", "operations": [op]});
        match parse_plan(&plan.to_string(), &SyncMapping::default()) {
            Err(e) => e,
            Ok(parsed) => panic!("accepted {op}: {parsed:?}"),
        }
    }

    #[test]
    fn a_delete_carrying_a_row_or_an_operation_with_an_unknown_op_is_refused_by_its_shape() {
        let e = refusal(json!({"table": "products", "op": "delete",
            "key": {"id": "prod_1"}, "row": {"id": "prod_1"}}));
        assert!(
            matches!(&e, PlanError::BadOperation { problem, .. } if problem.contains("`row`")),
            "{e}"
        );
        let e = refusal(json!({"table": "products", "op": "merge", "key": {"id": "prod_1"}}));
        assert!(
            matches!(&e, PlanError::BadOperation { problem, .. } if problem.contains("merge")),
            "{e}"
        );
        let e = refusal(json!({"table": "products", "op": "upsert", "key": {"id": "prod_1"}}));
        assert!(
            matches!(&e, PlanError::BadOperation { problem, .. } if problem.contains("needs a `row`")),
            "{e}"
        );
        let parsed = parse_plan(
            &json!({"sync_id": "sync_1", "operations": [
                {"table": "products", "op": "delete", "key": {"id": "prod_1"}}]})
            .to_string(),
            &SyncMapping::default(),
        )
        .unwrap();
        assert_eq!(
            (parsed.operations[0].op, parsed.operations[0].row.as_ref()),
            (Op::Delete, None)
        );
    }
}
