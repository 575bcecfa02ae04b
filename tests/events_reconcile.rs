//! Reconcile against the sandbox, from a JSON snapshot and from a real PostgreSQL (started by
//! `scripts/with-postgres.sh`), with drift of every kind seeded into the database side.

#[path = "support/postgres.rs"]
mod test_pg;

use std::sync::Arc;

/// The binary's command line, to parse flags exactly as `altan-pay` does.
#[allow(dead_code)]
#[path = "../src/cli/mod.rs"]
mod cli;

use altan_pay::events::reconcile::{
    DbWins, Mirror, ReconcileError, ReconcileProblem, Report, StripeSide, Winner, apply_updates,
    diff, list_stripe,
};
use altan_pay::gateway::{GatewayHandle, Sandbox, spawn};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::sync::{ObjectKind, SyncMapping};
use clap::Parser;
use serde_json::{Map, Value, json};
use test_pg::database_url;

const ACCOUNT: &str = "ws_r";
const CONNECT: &str = "acct_r";

fn seed() -> Value {
    let mut products = vec![
        json!({"id": "prod_a", "name": "Alpha"}),
        json!({"id": "prod_b", "name": "Beta", "description": "b"}),
        json!({"id": "prod_c", "name": "Gamma", "metadata": {"tier": "silver", "x": "1"}}),
    ];
    // Enough to need several pages of 100.
    for i in 0..150 {
        products.push(json!({"id": format!("prod_bulk_{i:03}"), "name": format!("Bulk {i}")}));
    }
    let mut doc = json!({"accounts": {ACCOUNT: {
        "stripe_connect_id": CONNECT,
        "products": products,
        "prices": [{"id": "price_1", "product": "prod_a", "currency": "usd", "unit_amount": 1000,
            "recurring": {"interval": "month", "interval_count": 1}}],
        "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"},
            {"id": "cus_2", "email": "bob@example.com"}],
        "subscriptions": [{"id": "sub_1", "customer": "cus_1",
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_1"}, "quantity": 1}]}}],
        "coupons": [{"id": "co_1", "name": "Ten", "percent_off": 10, "duration": "once"}],
        "promotion_codes": [{"id": "promo_1", "code": "TEN", "coupon": "co_1"}]
    }}});
    // A fixed `created`: two sandboxes seeded in different seconds hold the same objects.
    for list in doc["accounts"][ACCOUNT]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        for object in list.as_array_mut().into_iter().flatten() {
            object["created"] = json!(1_767_225_600);
        }
    }
    doc
}

struct Stripe {
    pay: PayClient,
    sandbox: Sandbox,
    _gateway: GatewayHandle,
}

async fn stripe() -> Stripe {
    let sandbox = Sandbox::with_state(&seed()).unwrap();
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(sandbox.clone()), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url))).unwrap();
    Stripe {
        pay,
        sandbox,
        _gateway: gateway,
    }
}

/// The database as Altan would hold it, then drifted: one row of each problem.
fn drifted_snapshot(side: &StripeSide, mapping: &SyncMapping) -> Value {
    let mut doc = Map::new();
    for kind in ObjectKind::ALL {
        let t = mapping.table(kind);
        let mut rows: Vec<Value> = side[&kind]
            .values()
            .map(|o| Value::Object(t.row(o)))
            .collect();
        let find = |rows: &mut Vec<Value>, id: &str| -> usize {
            rows.iter().position(|r| r["id"] == id).unwrap()
        };
        match kind {
            ObjectKind::Product => {
                // Missing in the database.
                let i = find(&mut rows, "prod_a");
                rows.remove(i);
                // The database wins the name; Stripe wins `active`.
                let i = find(&mut rows, "prod_b");
                rows[i]["name"] = json!("Beta (renamed in the database)");
                rows[i]["active"] = json!(false);
                // The database wins metadata, kept as JSON text in this row.
                let i = find(&mut rows, "prod_c");
                rows[i]["metadata"] = json!({"tier": "gold"});
                // Gone from Stripe.
                let mut gone = rows[i].clone();
                gone["id"] = json!("prod_gone");
                rows.push(gone);
            }
            ObjectKind::Price => rows[0]["unit_amount"] = json!(900),
            ObjectKind::Customer => {
                let i = find(&mut rows, "cus_2");
                rows.remove(i);
                rows[0]["email"] = json!("old@example.com");
            }
            ObjectKind::Subscription => rows[0]["status"] = json!("past_due"),
            ObjectKind::Coupon => {
                let mut gone = rows[0].clone();
                gone["id"] = json!("co_gone");
                rows.push(gone);
            }
            ObjectKind::PromotionCode => rows[0]["code"] = json!("TEN-OLD"),
        }
        doc.insert(t.table.clone(), Value::Array(rows));
    }
    Value::Object(doc)
}

fn problems(report: &Report) -> Vec<(String, String, ReconcileProblem, Option<String>, Winner)> {
    report
        .drift
        .iter()
        .map(|d| {
            (
                d.table.clone(),
                d.id.clone(),
                d.problem,
                d.column.clone(),
                d.winner,
            )
        })
        .collect()
}

fn check_report(report: &Report) {
    use ReconcileProblem::*;
    use Winner::*;
    let s = |x: &str| x.to_owned();
    let expected = vec![
        (s("products"), s("prod_a"), MissingInDatabase, None, Stripe),
        (
            s("products"),
            s("prod_b"),
            FieldDiffers,
            Some(s("name")),
            Database,
        ),
        (
            s("products"),
            s("prod_b"),
            FieldDiffers,
            Some(s("active")),
            Stripe,
        ),
        (
            s("products"),
            s("prod_c"),
            FieldDiffers,
            Some(s("metadata")),
            Database,
        ),
        (s("products"), s("prod_gone"), GoneFromStripe, None, Stripe),
        (
            s("prices"),
            s("price_1"),
            FieldDiffers,
            Some(s("unit_amount")),
            Stripe,
        ),
        (
            s("customers"),
            s("cus_1"),
            FieldDiffers,
            Some(s("email")),
            Stripe,
        ),
        (s("customers"), s("cus_2"), MissingInDatabase, None, Stripe),
        (
            s("subscriptions"),
            s("sub_1"),
            FieldDiffers,
            Some(s("status")),
            Stripe,
        ),
        (s("coupons"), s("co_gone"), GoneFromStripe, None, Stripe),
        (
            s("promotion_codes"),
            s("promo_1"),
            FieldDiffers,
            Some(s("code")),
            Stripe,
        ),
    ];
    let mut got = problems(report);
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut want = expected;
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(got, want, "{}", report.to_text());
    assert_eq!(report.counts["products"], (153, 153));

    let plan = report.sync_plan.as_ref().unwrap().to_json();
    let ops: Vec<(String, String, String)> = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["table"].as_str().unwrap().to_owned(),
                o["op"].as_str().unwrap().to_owned(),
                o["key"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("products", "upsert", "prod_a"),
        ("products", "upsert", "prod_b"),
        ("products", "delete", "prod_gone"),
        ("prices", "upsert", "price_1"),
        ("customers", "upsert", "cus_1"),
        ("customers", "upsert", "cus_2"),
        ("subscriptions", "upsert", "sub_1"),
        ("coupons", "delete", "co_gone"),
        ("promotion_codes", "upsert", "promo_1"),
    ] {
        assert!(
            ops.contains(&(want.0.into(), want.1.into(), want.2.into())),
            "{want:?} in {ops:?}"
        );
    }
    assert_eq!(
        ops.len(),
        9,
        "prod_c differs only where the database wins: no row to write"
    );
    // prod_b's row keeps the database's name (pushed to Stripe) and takes Stripe's `active`.
    let b = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"]["id"] == "prod_b")
        .unwrap();
    assert_eq!(b["row"]["name"], "Beta (renamed in the database)");
    assert_eq!(b["row"]["active"], true);

    let updates: Vec<(String, Value)> = report
        .stripe_updates
        .iter()
        .map(|u| (u.id.clone(), u.params.clone()))
        .collect();
    assert_eq!(
        updates,
        vec![
            (
                s("prod_b"),
                json!({"name": "Beta (renamed in the database)"})
            ),
            (s("prod_c"), json!({"metadata": {"tier": "gold", "x": ""}})),
        ]
    );
    assert!(report.stripe_updates.iter().all(|u| !u.destructive));
}

async fn reconcile_from(mirror: &Mirror, s: &Stripe, rule: &DbWins) -> Report {
    let side = list_stripe(&s.pay, ACCOUNT, CONNECT).await.unwrap();
    diff(ACCOUNT, &SyncMapping::default(), mirror, &side, rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_drift_of_every_kind_plan_and_apply() {
    let s = stripe().await;
    let mapping = SyncMapping::default();
    let side = list_stripe(&s.pay, ACCOUNT, CONNECT).await.unwrap();
    let snapshot = drifted_snapshot(&side, &mapping);
    let mirror = Mirror::from_snapshot(&snapshot, &mapping, "test").unwrap();
    let report = reconcile_from(&mirror, &s, &DbWins::default()).await;
    check_report(&report);
    let text = report.to_text();
    assert!(
        text.contains("prod_gone") && text.contains("gone from Stripe"),
        "{text}"
    );
    assert_eq!(report.to_json()["drift"].as_array().unwrap().len(), 11);

    // A destructive push without approval: refused, and nothing at all is applied.
    let rule = DbWins::parse(["name", "description", "metadata", "products.active"]);
    let strict = reconcile_from(&mirror, &s, &rule).await;
    assert!(strict.stripe_updates.iter().any(|u| u.destructive));
    let e = apply_updates(&s.pay, ACCOUNT, CONNECT, &strict.stripe_updates, false)
        .await
        .unwrap_err();
    assert!(matches!(e, ReconcileError::NeedsApproval(1, _)), "{e}");
    let after = reconcile_from(&mirror, &s, &DbWins::default()).await;
    assert_eq!(after.stripe_updates.len(), 2, "nothing was pushed");

    // Apply the default pushes: Stripe now has the database's name and metadata.
    let applied = apply_updates(&s.pay, ACCOUNT, CONNECT, &report.stripe_updates, false)
        .await
        .unwrap();
    assert_eq!(applied.len(), 2);
    let again = reconcile_from(&mirror, &s, &DbWins::default()).await;
    assert!(again.stripe_updates.is_empty(), "{}", again.to_text());
    // What is left is Stripe's side, including the `updated` the pushes moved.
    assert!(again.drift.iter().all(|d| d.winner == Winner::Stripe));
    assert!(
        again
            .drift
            .iter()
            .any(|d| d.id == "prod_c" && d.column.as_deref() == Some("updated"))
    );
    let _ = &s.sandbox;
}

/// With the key `serve` signs plans with, the repair plan is signed: an `apply` that checks
/// signatures takes it, and a plan signed with another key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_signing_key_the_repair_plan_is_signed() {
    let s = stripe().await;
    let mapping = SyncMapping::default();
    let side = list_stripe(&s.pay, ACCOUNT, CONNECT).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, drifted_snapshot(&side, &mapping).to_string()).unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, seed().to_string()).unwrap();
    let (snapshot, state) = (snapshot.display().to_string(), state.display().to_string());
    let cli = cli::Cli::try_parse_from([
        "altan-pay",
        "reconcile",
        "--snapshot",
        &snapshot,
        "--account-id",
        ACCOUNT,
        "--json",
        "--plan-signing-key",
        "k-reconcile",
        "--sandbox",
        "--sandbox-state",
        &state,
    ])
    .unwrap();
    let cli::Command::Reconcile(args) = cli.command else {
        panic!("not the reconcile command");
    };
    let out = altan_pay::events::reconcile::execute(args.into())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&out).unwrap();
    let plan = &json["sync_plan"];
    assert!(
        plan["operations"].as_array().is_some_and(|o| !o.is_empty()),
        "{out}"
    );
    let key = altan_pay::sync::PlanSigningKey::new("k-reconcile").unwrap();
    assert_eq!(key.verify(plan), Ok(()), "{plan}");
    let other = altan_pay::sync::PlanSigningKey::new("another key").unwrap();
    assert_eq!(
        other.verify(plan),
        Err(altan_pay::sync::PlanSignatureError::Mismatch)
    );
}

#[test]
fn bad_snapshots_are_named() {
    let mapping = SyncMapping::default();
    let e = Mirror::from_snapshot(&json!({"products": []}), &mapping, "db.json").unwrap_err();
    assert!(e.to_string().contains("table `prices` is missing"), "{e}");
    let mut doc = json!({});
    for kind in ObjectKind::ALL {
        doc[mapping.table(kind).table.as_str()] = json!([]);
    }
    doc["products"] = json!([{"name": "no id"}]);
    let e = Mirror::from_snapshot(&doc, &mapping, "db.json").unwrap_err();
    assert!(e.to_string().contains("no string key column `id`"), "{e}");
}

// ---- PostgreSQL ----

async fn pg() -> tokio_postgres::Client {
    test_pg::client(&database_url()).await
}

async fn create_tables(client: &tokio_postgres::Client, schema: &str, snapshot: &Value) {
    let mapping = SyncMapping::default();
    // The tables exactly as `altan-pay schema` prints them.
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; {}",
            altan_pay::mirror::ddl(&mapping, schema).unwrap()
        ))
        .await
        .unwrap();
    for kind in ObjectKind::ALL {
        let t = mapping.table(kind);
        let table = format!("{schema}.{}", t.table);
        for row in snapshot[t.table.as_str()].as_array().unwrap() {
            client
                .execute(
                    &format!("INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::text::json)"),
                    &[&row.to_string()],
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drift_of_every_kind_and_its_report() {
    let url = database_url();
    let s = stripe().await;
    let mapping = SyncMapping::default();
    let side = list_stripe(&s.pay, ACCOUNT, CONNECT).await.unwrap();
    let snapshot = drifted_snapshot(&side, &mapping);
    let client = pg().await;
    create_tables(&client, "recon_drift", &snapshot).await;
    // metadata as JSON text in one row must compare equal to the object.
    let mirror = Mirror::read_postgres(&url, "recon_drift", &mapping)
        .await
        .unwrap();
    let report = reconcile_from(&mirror, &s, &DbWins::default()).await;
    check_report(&report);
    // The same drift read from the snapshot gives the same report.
    let from_snapshot = Mirror::from_snapshot(&snapshot, &mapping, "test").unwrap();
    assert_eq!(
        reconcile_from(&from_snapshot, &s, &DbWins::default()).await,
        report
    );
    println!("{}", report.to_text());

    // The command line, JSON output, against the same database and a seeded embedded sandbox.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, seed().to_string()).unwrap();
    // In process: the shared target directory's binary may belong to another checkout.
    let state = state.display().to_string();
    let cli = cli::Cli::try_parse_from([
        "altan-pay",
        "reconcile",
        "--database-url",
        &url,
        "--schema",
        "recon_drift",
        "--account-id",
        ACCOUNT,
        "--json",
        "--sandbox",
        "--sandbox-state",
        &state,
    ])
    .unwrap();
    let cli::Command::Reconcile(args) = cli.command else {
        panic!("not the reconcile command");
    };
    let out = altan_pay::events::reconcile::execute(args.into())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["drift"].as_array().unwrap().len(), 11);
    assert_eq!(json["sync_plan"]["operations"].as_array().unwrap().len(), 9);
    assert_eq!(json["stripe_updates"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missing_table_and_database_down_are_clear_errors() {
    let url = database_url();
    let mapping = SyncMapping::default();
    let client = pg().await;
    let mut snapshot = json!({});
    for kind in ObjectKind::ALL {
        snapshot[mapping.table(kind).table.as_str()] = json!([]);
    }
    create_tables(&client, "recon_missing", &snapshot).await;
    client
        .batch_execute("DROP TABLE recon_missing.coupons; ALTER TABLE recon_missing.prices DROP COLUMN nickname")
        .await
        .unwrap();
    let e = Mirror::read_postgres(&url, "recon_missing", &mapping)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("prices lacks the column(s) nickname"),
        "{e}"
    );
    client
        .batch_execute("ALTER TABLE recon_missing.prices ADD COLUMN nickname text")
        .await
        .unwrap();
    let e = Mirror::read_postgres(&url, "recon_missing", &mapping)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("table recon_missing.coupons does not exist"),
        "{e}"
    );
    // Nothing listens on port 1.
    let e = Mirror::read_postgres("postgres://altan@127.0.0.1:1/postgres", "public", &mapping)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("database: cannot connect"), "{e}");
}
