//! `altan-pay reconcile`: the database mirror (a JSON snapshot or PostgreSQL) against Stripe
//! (listed through the Altan Pay API), the drift, the sync plan, and the pushes the database wins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::mirror::{TableProblem, quote_ident};
use crate::pay::{PayCall, PayClient};
use crate::sync::{
    MutationSource, ObjectKind, OpOrigin, RowChange, SyncMapping, SyncOperation, SyncPlan,
    canonical_json,
};
use crate::tools::{Action, ToolSet};

/// Why reconcile stopped; nothing was changed unless the variant says so.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The snapshot file could not be read or is not the expected JSON.
    #[error("snapshot {path}: {problem}")]
    Snapshot {
        /// The `--snapshot` path.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The database could not be reached or queried.
    #[error("database: {0}")]
    Database(String),
    /// A table the sync mapping names is not in the database.
    #[error("database: table {table} does not exist (the sync mapping expects it)")]
    TableMissing {
        /// The missing table.
        table: String,
    },
    /// A mapped table lacks columns the sync mapping names.
    #[error("database: table {table} lacks the column(s) {columns} of the sync mapping")]
    ColumnsMissing {
        /// The table.
        table: String,
        /// The missing columns, comma-separated.
        columns: String,
    },
    /// Reading Stripe's side through the Altan Pay API failed.
    #[error("Altan Pay API: {0}")]
    Pay(String),
    /// `--apply` without `--approve-destructive` while some updates deactivate or cancel:
    /// how many, and which (`operation id`, comma-separated). Nothing was changed.
    #[error(
        "--apply refused, nothing changed: {0} destructive update(s) need --approve-destructive ({1})"
    )]
    NeedsApproval(usize, String),
    /// Stripe's values moved since the drift was read (or could not be re-read); nothing
    /// was changed.
    #[error("--apply refused, nothing changed: {0}")]
    Changed(String),
    #[error(
        "--apply stopped after {applied} of {total} update(s): {failed}: {error}. Rerunning reconcile is safe (the applied ones are no longer drift, and each update has a fixed idempotency key)"
    )]
    /// `--apply` failed part-way: the first `applied` updates reached Stripe, the rest did not.
    Partial {
        /// Updates that were applied before the failure.
        applied: usize,
        /// Updates there were to apply.
        total: usize,
        /// The update that failed, `operation id`.
        failed: String,
        /// The Altan Pay API's error.
        error: String,
    },
}

/// Rows per kind, keyed by the key column's value.
pub type Rows = BTreeMap<ObjectKind, BTreeMap<String, Map<String, Value>>>;

/// The database side: every mapped table's rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mirror {
    /// Every mapped table's rows, by kind and key.
    pub rows: Rows,
}

fn unify_rows(
    kind: ObjectKind,
    mapping: &SyncMapping,
    rows: Vec<Map<String, Value>>,
    where_: &str,
) -> Result<BTreeMap<String, Map<String, Value>>, String> {
    let table = mapping.table(kind);
    let mut out = BTreeMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        let id = match row.get(&table.key_column) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(format!(
                    "{where_} {}: row {i} has no string key column `{}`",
                    table.table, table.key_column
                ));
            }
        };
        if out.insert(id.clone(), row).is_some() {
            return Err(format!("{where_} {}: two rows with key {id}", table.table));
        }
    }
    Ok(out)
}

impl Mirror {
    /// `{"products": [rows], "prices": [...], ...}` under the mapping's table names; every
    /// table must be present (an empty list for an empty table).
    pub fn from_snapshot(
        doc: &Value,
        mapping: &SyncMapping,
        origin: &str,
    ) -> Result<Mirror, ReconcileError> {
        let bad = |problem: String| ReconcileError::Snapshot {
            path: origin.to_owned(),
            problem,
        };
        let map = doc
            .as_object()
            .ok_or_else(|| bad("expected an object keyed by table name".into()))?;
        let mut rows = Rows::new();
        for kind in ObjectKind::ALL {
            let table = &mapping.table(kind).table;
            let list = map
                .get(table)
                .ok_or_else(|| bad(format!("table `{table}` is missing")))?
                .as_array()
                .ok_or_else(|| bad(format!("`{table}` is not a list of rows")))?;
            let mut parsed = Vec::with_capacity(list.len());
            for (i, row) in list.iter().enumerate() {
                let row = row
                    .as_object()
                    .ok_or_else(|| bad(format!("{table}[{i}] is not an object")))?;
                parsed.push(row.clone());
            }
            rows.insert(
                kind,
                unify_rows(kind, mapping, parsed, "table").map_err(bad)?,
            );
        }
        Ok(Mirror { rows })
    }

    /// Reads a snapshot file.
    pub fn read_snapshot(path: &Path, mapping: &SyncMapping) -> Result<Mirror, ReconcileError> {
        let origin = path.display().to_string();
        let bad = |problem: String| ReconcileError::Snapshot {
            path: origin.clone(),
            problem,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        Mirror::from_snapshot(&doc, mapping, &origin)
    }

    /// Reads every mapped table from PostgreSQL in one read-only snapshot transaction; checks
    /// that every table and column exists before reading any row.
    pub async fn read_postgres(
        url: &str,
        schema: &str,
        mapping: &SyncMapping,
    ) -> Result<Mirror, ReconcileError> {
        let db = |e: tokio_postgres::Error| ReconcileError::Database(e.to_string());
        let mut conn = crate::mirror::connect(url)
            .await
            .map_err(ReconcileError::Database)?;
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        crate::mirror::check_tables(&tx, schema, mapping)
            .await
            .map_err(|e| match e {
                TableProblem::TableMissing { table } => ReconcileError::TableMissing { table },
                TableProblem::ColumnsMissing { table, columns } => {
                    ReconcileError::ColumnsMissing { table, columns }
                }
                TableProblem::Database(e) => ReconcileError::Database(e),
            })?;
        let mut rows = Rows::new();
        for kind in ObjectKind::ALL {
            let t = mapping.table(kind);
            let sql = format!(
                "SELECT row_to_json(t)::text FROM {}.{} t",
                quote_ident(schema),
                quote_ident(&t.table)
            );
            let mut parsed = Vec::new();
            for row in tx.query(sql.as_str(), &[]).await.map_err(db)? {
                let text: String = row.get(0);
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| ReconcileError::Database(format!("{}: {e}", t.table)))?;
                if let Value::Object(map) = value {
                    parsed.push(map);
                }
            }
            rows.insert(
                kind,
                unify_rows(kind, mapping, parsed, "table").map_err(ReconcileError::Database)?,
            );
        }
        tx.rollback().await.map_err(db)?;
        Ok(Mirror { rows })
    }
}

/// Every Stripe object per kind, keyed by id.
pub type StripeSide = BTreeMap<ObjectKind, BTreeMap<String, Value>>;

fn resource(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Product => "products",
        ObjectKind::Price => "prices",
        ObjectKind::Customer => "customers",
        ObjectKind::Subscription => "subscriptions",
        ObjectKind::Coupon => "coupons",
        ObjectKind::PromotionCode => "promotion_codes",
    }
}

/// Lists every object of every kind, all pages (`starting_after` until `has_more` is false).
pub async fn list_stripe(
    pay: &PayClient,
    account_id: &str,
    connect_id: &str,
) -> Result<StripeSide, ReconcileError> {
    let mut side = StripeSide::new();
    for kind in ObjectKind::ALL {
        let operation = format!("{}.list", resource(kind));
        let mut objects = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut params = json!({"limit": 100});
            if kind == ObjectKind::Subscription {
                // Stripe leaves canceled subscriptions out unless asked; their rows exist.
                params["status"] = json!("all");
            }
            if let Some(a) = &after {
                params["starting_after"] = json!(a);
            }
            let page = pay
                .call(PayCall {
                    operation: &operation,
                    account_id,
                    stripe_connect_id: Some(connect_id),
                    id: None,
                    params,
                    idempotency_key: None,
                })
                .await
                .map_err(|e| ReconcileError::Pay(format!("{operation}: {e}")))?;
            let data = page.get("data").and_then(Value::as_array).ok_or_else(|| {
                ReconcileError::Pay(format!("{operation}: the answer has no `data` list"))
            })?;
            let mut last = None;
            for object in data {
                if let Some(id) = object.get("id").and_then(Value::as_str) {
                    objects.insert(id.to_owned(), object.clone());
                    last = Some(id.to_owned());
                }
            }
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            if !more {
                break;
            }
            match last {
                Some(l) if after.as_deref() != Some(l.as_str()) => after = Some(l),
                _ => {
                    return Err(ReconcileError::Pay(format!(
                        "{operation}: has_more is true but the page gave no new object"
                    )));
                }
            }
        }
        side.insert(kind, objects);
    }
    Ok(side)
}

/// Which columns the database wins when they differ: `name` (every table) or `products.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbWins {
    /// Column names (`name`) or `table.column` names (`products.name`).
    pub columns: BTreeSet<String>,
}

impl Default for DbWins {
    fn default() -> Self {
        DbWins::parse(["name", "description", "metadata"])
    }
}

impl DbWins {
    /// The rule from `--db-wins` items; blanks are skipped, spaces trimmed.
    pub fn parse<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> DbWins {
        DbWins {
            columns: items
                .into_iter()
                .map(|s| s.as_ref().trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Whether the database's value of `table.column` is kept over Stripe's.
    pub fn wins(&self, table: &str, column: &str) -> bool {
        self.columns.contains(column) || self.columns.contains(&format!("{table}.{column}"))
    }
}

/// The Stripe parameters an update can push, per kind (parameter name = column path).
fn pushable(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Product => &["name", "description", "metadata", "active"],
        ObjectKind::Price => &["nickname", "metadata", "lookup_key", "active"],
        ObjectKind::Customer => &["name", "email", "phone", "description", "metadata"],
        ObjectKind::Subscription => &["metadata", "cancel_at_period_end"],
        ObjectKind::Coupon => &["name", "metadata"],
        ObjectKind::PromotionCode => &["metadata", "active"],
    }
}

/// What kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileProblem {
    /// Stripe has the object; the database has no row.
    MissingInDatabase,
    /// The database has a row; Stripe has no such object.
    GoneFromStripe,
    /// Both have it; a column differs.
    FieldDiffers,
}

impl ReconcileProblem {
    fn as_str(self) -> &'static str {
        match self {
            ReconcileProblem::MissingInDatabase => "missing in database",
            ReconcileProblem::GoneFromStripe => "gone from Stripe",
            ReconcileProblem::FieldDiffers => "field differs",
        }
    }
}

/// Which side's value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    /// Stripe's value is written to the database (through the sync plan).
    Stripe,
    /// The database's value is pushed to Stripe (a [`StripeUpdate`]).
    Database,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// The database table.
    pub table: String,
    /// The kind of Stripe object.
    pub kind: ObjectKind,
    /// Stripe's id of the object (the row's key).
    pub id: String,
    /// What differs.
    pub problem: ReconcileProblem,
    /// The column that differs, for [`ReconcileProblem::FieldDiffers`].
    pub column: Option<String>,
    /// The database's value (the whole row when Stripe has no object; null when the
    /// database has no row).
    pub database: Value,
    /// Stripe's value (the whole row it should be when the database has none; null when
    /// Stripe has no object).
    pub stripe: Value,
    /// Which side's value is kept.
    pub winner: Winner,
}

/// One Stripe update pushing database values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StripeUpdate {
    /// The kind of Stripe object.
    pub kind: ObjectKind,
    /// Stripe's id of the object.
    pub id: String,
    /// The route operation, e.g. `products.update`.
    pub operation: String,
    /// The Stripe parameters sent: the database's values.
    pub params: Value,
    /// The database columns whose values are pushed.
    pub columns: Vec<String>,
    /// Deactivates or cancels: applied only with approval.
    pub destructive: bool,
    /// Stripe's values of those columns when the drift was read; re-checked before applying.
    pub expected: Map<String, Value>,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The Altan account reconciled.
    pub account_id: String,
    /// Per table: (database rows, Stripe objects).
    pub counts: BTreeMap<String, (usize, usize)>,
    /// Every difference, table by table.
    pub drift: Vec<Drift>,
    /// The database changes that bring the mirror to Stripe's values; `None` when there are
    /// none.
    pub sync_plan: Option<SyncPlan>,
    /// The Stripe updates the database-wins columns need (applied only with `--apply`).
    pub stripe_updates: Vec<StripeUpdate>,
    /// Remarks for people, e.g. a database-wins value that cannot be pushed to Stripe.
    pub notes: Vec<String>,
}

impl Report {
    /// Whether the mirror matches Stripe (no drift).
    pub(crate) fn in_line(&self) -> bool {
        self.drift.is_empty()
    }

    /// The report as the JSON `--json` prints.
    pub fn to_json(&self) -> Value {
        let counts: Map<String, Value> = self
            .counts
            .iter()
            .map(|(t, (d, s))| (t.clone(), json!({"database": d, "stripe": s})))
            .collect();
        json!({
            "account_id": self.account_id,
            "in_line": self.in_line(),
            "counts": counts,
            "drift": self.drift,
            "sync_plan": self.sync_plan.as_ref().map(SyncPlan::to_json),
            "stripe_updates": self.stripe_updates,
            "notes": self.notes,
        })
    }

    /// The readable form: a drift table, the sync plan, the Stripe updates.
    pub fn to_text(&self) -> String {
        let mut out = format!("Reconcile {}\n", self.account_id);
        for (t, (d, s)) in &self.counts {
            out.push_str(&format!("  {t:<16} database {d:>6}  stripe {s:>6}\n"));
        }
        if self.drift.is_empty() {
            out.push_str("\nNo drift: the database mirror matches Stripe.\n");
        } else {
            out.push_str(&format!("\nDrift ({}):\n", self.drift.len()));
            let head = [
                "TABLE", "ID", "PROBLEM", "COLUMN", "DATABASE", "STRIPE", "WINNER",
            ];
            let rows: Vec<[String; 7]> = self
                .drift
                .iter()
                .map(|d| {
                    [
                        d.table.clone(),
                        d.id.clone(),
                        d.problem.as_str().to_owned(),
                        d.column.clone().unwrap_or_else(|| "-".into()),
                        short(&d.database),
                        short(&d.stripe),
                        match d.winner {
                            Winner::Stripe => "stripe".into(),
                            Winner::Database => "database".into(),
                        },
                    ]
                })
                .collect();
            let mut widths = head.map(str::len);
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                let mut l = String::from(" ");
                for (c, w) in cells.iter().zip(widths) {
                    l.push_str(&format!(" {c:<w$}"));
                }
                l.trim_end().to_owned() + "\n"
            };
            out.push_str(&line(head.to_vec()));
            for r in &rows {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
            }
        }
        if let Some(plan) = &self.sync_plan {
            out.push_str(&format!(
                "\nSync plan {} for Altan ({} operation(s)):\n",
                plan.sync_id(),
                plan.operations().len()
            ));
            for op in plan.operations() {
                out.push_str(&format!("  - {}\n", op.summary()));
            }
            out.push_str(&plan.to_json_text());
            out.push('\n');
        }
        if !self.stripe_updates.is_empty() {
            out.push_str(&format!(
                "\nStripe updates where the database wins ({}; applied only with --apply):\n",
                self.stripe_updates.len()
            ));
            for u in &self.stripe_updates {
                out.push_str(&format!(
                    "  - {} {} {}{}\n",
                    u.operation,
                    u.id,
                    canonical_json(&u.params),
                    if u.destructive {
                        "  [destructive: needs --approve-destructive]"
                    } else {
                        ""
                    }
                ));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

fn short(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => canonical_json(other),
    };
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(39).collect::<String>())
    } else {
        text
    }
}

/// Equal as database values: numbers by value, JSON kept as text equal to the JSON, null
/// equal to an empty object or list.
pub fn same(db: &Value, stripe: &Value) -> bool {
    match (db, stripe) {
        (a, b) if a == b => true,
        (Value::Null, Value::Object(m)) | (Value::Object(m), Value::Null) => m.is_empty(),
        (Value::Null, Value::Array(a)) | (Value::Array(a), Value::Null) => a.is_empty(),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(s), b @ (Value::Object(_) | Value::Array(_))) => {
            serde_json::from_str::<Value>(s).is_ok_and(|v| !v.is_string() && same(&v, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| same(v, w))
        }
        _ => false,
    }
}

/// The Stripe parameter that sets `field` to the database's value; `None` when it cannot.
fn push_param(field: &str, db: &Value, stripe: &Value) -> Option<Value> {
    match field {
        "metadata" => {
            let db = match db {
                Value::String(s) => serde_json::from_str(s).ok()?,
                Value::Null => Value::Object(Map::new()),
                other => other.clone(),
            };
            let db = db.as_object()?;
            let mut out = Map::new();
            for (k, v) in db {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                out.insert(k.clone(), json!(v));
            }
            // Stripe merges metadata: a key only Stripe has is removed with "".
            for k in stripe.as_object().into_iter().flat_map(|m| m.keys()) {
                if !db.contains_key(k) {
                    out.insert(k.clone(), json!(""));
                }
            }
            Some(Value::Object(out))
        }
        "active" | "cancel_at_period_end" => Some(json!(db.as_bool()?)),
        _ => Some(json!(db.as_str()?)),
    }
}

/// Whether pushing `field: value` to the object `id` destroys something (deactivates,
/// cancels), as the update tool of its kind declares it: the tools' declarations are the one
/// owner of that fact (`tools::declare`). Metadata never destroys anything, and its pushed
/// form (Stripe's map) is not the tool's argument form.
fn push_destroys(tools: &ToolSet, kind: ObjectKind, id: &str, field: &str, value: &Value) -> bool {
    if field == "metadata" {
        return false;
    }
    tools
        .iter()
        .find(|t| {
            let d = t.declaration();
            d.action == Action::Update && d.syncs == Some(kind)
        })
        .and_then(|t| t.destructive(&json!({ "id": id, field: value }).to_string()))
        .is_some()
}

fn column_field(path: &str) -> Option<&str> {
    path.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(path)
}

/// Compares the two sides and builds the plan and the pushes.
pub fn diff(
    account_id: &str,
    mapping: &SyncMapping,
    mirror: &Mirror,
    stripe: &StripeSide,
    rule: &DbWins,
) -> Report {
    let empty_rows = BTreeMap::new();
    let empty_objects = BTreeMap::new();
    let mut report = Report {
        account_id: account_id.to_owned(),
        counts: BTreeMap::new(),
        drift: Vec::new(),
        sync_plan: None,
        stripe_updates: Vec::new(),
        notes: Vec::new(),
    };
    let mut operations = Vec::new();
    let tools = ToolSet::altan_pay();
    let origin = OpOrigin::Recorded {
        operation: "reconcile".into(),
        source: MutationSource::ToolCall {
            tool_call_id: "reconcile".into(),
        },
    };
    for kind in ObjectKind::ALL {
        let t = mapping.table(kind);
        let rows = mirror.rows.get(&kind).unwrap_or(&empty_rows);
        let objects = stripe.get(&kind).unwrap_or(&empty_objects);
        report
            .counts
            .insert(t.table.clone(), (rows.len(), objects.len()));
        let op = |id: &str, change: RowChange| SyncOperation {
            table: t.table.clone(),
            kind,
            key_column: t.key_column.clone(),
            id: id.to_owned(),
            change,
            label: None,
            origin: origin.clone(),
        };
        for (id, object) in objects {
            let expected = t.row(object);
            let Some(row) = rows.get(id) else {
                report.drift.push(Drift {
                    table: t.table.clone(),
                    kind,
                    id: id.clone(),
                    problem: ReconcileProblem::MissingInDatabase,
                    column: None,
                    database: Value::Null,
                    stripe: Value::Object(expected.clone()),
                    winner: Winner::Stripe,
                });
                operations.push(op(id, RowChange::Upsert { row: expected }));
                continue;
            };
            let mut new_row = expected.clone();
            let mut stripe_wins_any = false;
            let mut params = Map::new();
            let mut columns = Vec::new();
            let mut destructive = false;
            let mut seen = Map::new();
            for column in &t.columns {
                let want = expected.get(&column.name).cloned().unwrap_or(Value::Null);
                let have = row.get(&column.name).cloned().unwrap_or(Value::Null);
                if same(&have, &want) {
                    continue;
                }
                let field =
                    column_field(column.path.as_str()).filter(|f| pushable(kind).contains(f));
                let push = match field {
                    Some(f) if rule.wins(&t.table, &column.name) => {
                        let stripe_value = object.get(f).cloned().unwrap_or(Value::Null);
                        push_param(f, &have, &stripe_value).map(|p| {
                            let d = push_destroys(&tools, kind, id, f, &p);
                            (f, (p, d), stripe_value)
                        })
                    }
                    _ => None,
                };
                let winner = match push {
                    Some((f, (param, d), stripe_value)) => {
                        params.insert(f.to_owned(), param);
                        columns.push(column.name.clone());
                        destructive |= d;
                        seen.insert(f.to_owned(), stripe_value);
                        new_row.insert(column.name.clone(), have.clone());
                        Winner::Database
                    }
                    None => {
                        if rule.wins(&t.table, &column.name) {
                            report.notes.push(format!(
                                "{} {id} column {}: the database value cannot be pushed to Stripe; Stripe's is kept",
                                t.table, column.name
                            ));
                        }
                        stripe_wins_any = true;
                        Winner::Stripe
                    }
                };
                report.drift.push(Drift {
                    table: t.table.clone(),
                    kind,
                    id: id.clone(),
                    problem: ReconcileProblem::FieldDiffers,
                    column: Some(column.name.clone()),
                    database: have,
                    stripe: want,
                    winner,
                });
            }
            if stripe_wins_any {
                operations.push(op(id, RowChange::Upsert { row: new_row }));
            }
            if !params.is_empty() {
                report.stripe_updates.push(StripeUpdate {
                    kind,
                    id: id.clone(),
                    operation: format!("{}.update", resource(kind)),
                    params: Value::Object(params),
                    columns,
                    destructive,
                    expected: seen,
                });
            }
        }
        for (id, row) in rows {
            if objects.contains_key(id) {
                continue;
            }
            report.drift.push(Drift {
                table: t.table.clone(),
                kind,
                id: id.clone(),
                problem: ReconcileProblem::GoneFromStripe,
                column: None,
                database: Value::Object(row.clone()),
                stripe: Value::Null,
                winner: Winner::Stripe,
            });
            operations.push(op(id, RowChange::Delete));
        }
    }
    report.sync_plan = SyncPlan::new(operations);
    report
}

/// Applies the pushes, all or nothing as far as checks go: approval and a fresh read of every
/// object first; then each update with a fixed idempotency key.
pub async fn apply_updates(
    pay: &PayClient,
    account_id: &str,
    connect_id: &str,
    updates: &[StripeUpdate],
    approve_destructive: bool,
) -> Result<Vec<Value>, ReconcileError> {
    let destructive: Vec<String> = updates
        .iter()
        .filter(|u| u.destructive)
        .map(|u| format!("{} {}", u.operation, u.id))
        .collect();
    if !destructive.is_empty() && !approve_destructive {
        return Err(ReconcileError::NeedsApproval(
            destructive.len(),
            destructive.join(", "),
        ));
    }
    for u in updates {
        let current = pay
            .call(PayCall {
                operation: &format!("{}.retrieve", resource(u.kind)),
                account_id,
                stripe_connect_id: Some(connect_id),
                id: Some(&u.id),
                params: json!({}),
                idempotency_key: None,
            })
            .await
            .map_err(|e| ReconcileError::Changed(format!("cannot re-read {}: {e}", u.id)))?;
        for (field, was) in &u.expected {
            let now = current.get(field).cloned().unwrap_or(Value::Null);
            if !same(&now, was) {
                return Err(ReconcileError::Changed(format!(
                    "{} {field} changed in Stripe since it was read; run reconcile again",
                    u.id
                )));
            }
        }
    }
    let mut applied = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        let basis = format!(
            "{account_id}|{}|{}|{}",
            u.operation,
            u.id,
            canonical_json(&u.params)
        );
        let key = format!(
            "altan-pay-reconcile-{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, basis.as_bytes()).simple()
        );
        let result = pay
            .call(PayCall {
                operation: &u.operation,
                account_id,
                stripe_connect_id: Some(connect_id),
                id: Some(&u.id),
                params: u.params.clone(),
                idempotency_key: Some(key),
            })
            .await;
        match result {
            Ok(object) => applied.push(object),
            Err(e) => {
                return Err(ReconcileError::Partial {
                    applied: i,
                    total: updates.len(),
                    failed: format!("{} {}", u.operation, u.id),
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(applied)
}

/// The settings of `altan-pay reconcile`.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// The database mirror as JSON: `{"products": [rows], "prices": [...], ...}`.
    pub snapshot: Option<PathBuf>,
    /// PostgreSQL URL of the database mirror (`postgres://user@host:port/db`).
    pub database_url: Option<String>,
    /// The PostgreSQL schema holding the tables.
    pub schema: String,
    /// The Altan account (workspace) id.
    pub account_id: String,
    /// The Stripe Connect id; asked from the Altan Pay API when absent.
    pub stripe_connect_id: Option<String>,
    /// Push the database-wins differences to Stripe.
    pub apply: bool,
    /// Allow pushes that deactivate or cancel (with --apply).
    pub approve_destructive: bool,
    /// Print the report as JSON.
    pub json: bool,
    /// Columns the database wins (`name` for every table, `products.name` for one).
    pub db_wins: Vec<String>,
    /// A sync mapping file replacing tools/sync_mapping.toml's tables.
    pub sync_mapping: Option<PathBuf>,
    /// The key `serve` signs plans with: the repair plan is signed with it, so an `apply`
    /// that checks signatures takes it.
    pub plan_signing_key: Option<crate::sync::PlanSigningKey>,
    /// How to reach the Altan Pay API (or the embedded sandbox).
    pub pay: crate::config::PayOptions,
    /// With --sandbox: an initial state for the embedded sandbox (demos, benchmarks).
    pub sandbox_state: Option<PathBuf>,
}

/// The command's whole output (the table, or the JSON with `--json`).
pub async fn execute(args: ReconcileOptions) -> Result<String, String> {
    let mapping = match &args.sync_mapping {
        Some(p) => SyncMapping::load(p).map_err(|e| e.to_string())?,
        None => SyncMapping::default(),
    };
    let mirror = match (&args.snapshot, &args.database_url) {
        (Some(path), _) => Mirror::read_snapshot(path, &mapping),
        (None, Some(url)) => Mirror::read_postgres(url, &args.schema, &mapping).await,
        (None, None) => return Err("give --snapshot FILE or --database-url URL".into()),
    }
    .map_err(|e| e.to_string())?;
    let (pay, _gateway) = pay_for(&args).await?;
    let connect_id = match &args.stripe_connect_id {
        Some(c) => c.clone(),
        None => pay
            .stripe_connect_id(&args.account_id)
            .await
            .map_err(|e| format!("cannot get the Stripe Connect id: {e}"))?,
    };
    let stripe = list_stripe(&pay, &args.account_id, &connect_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut report = diff(
        &args.account_id,
        &mapping,
        &mirror,
        &stripe,
        &DbWins::parse(&args.db_wins),
    );
    if let (Some(plan), Some(key)) = (report.sync_plan.as_mut(), &args.plan_signing_key) {
        plan.sign(key);
    }
    let applied = if args.apply && !report.stripe_updates.is_empty() {
        Some(
            apply_updates(
                &pay,
                &args.account_id,
                &connect_id,
                &report.stripe_updates,
                args.approve_destructive,
            )
            .await
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    if args.json {
        let mut out = report.to_json();
        out["applied"] = json!(applied.as_ref().map(Vec::len).unwrap_or(0));
        let text = serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string());
        Ok(text + "\n")
    } else {
        let mut text = report.to_text();
        if let Some(a) = &applied {
            text.push_str(&format!("\nApplied {} Stripe update(s).\n", a.len()));
        }
        Ok(text)
    }
}

async fn pay_for(
    args: &ReconcileOptions,
) -> Result<(PayClient, Option<crate::gateway::GatewayHandle>), String> {
    if !args.pay.sandbox {
        let setup = crate::config::pay_setup(&args.pay)
            .await
            .map_err(|e| e.to_string())?;
        return Ok((setup.client, setup.sandbox));
    }
    let sandbox = crate::gateway::Sandbox::in_memory();
    if let Some(path) = &args.sandbox_state {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--sandbox-state {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("--sandbox-state {}: {e}", path.display()))?;
        sandbox.seed(&doc).map_err(|e| e.to_string())?;
    }
    let routes = match &args.pay.routes {
        Some(p) => crate::pay::RouteTable::from_file(p).map_err(|e| e.to_string())?,
        None => crate::pay::RouteTable::embedded(),
    };
    let handle = crate::gateway::spawn(routes.clone(), Arc::new(sandbox), None)
        .await
        .map_err(|e| format!("cannot start the embedded sandbox: {e}"))?;
    let mut config = crate::pay::PayConfig::new(routes.with_base_url(&handle.base_url));
    config.timeout = Duration::from_secs(args.pay.timeout_secs.max(1));
    let pay = PayClient::new(config).map_err(|e| e.to_string())?;
    Ok((pay, Some(handle)))
}
