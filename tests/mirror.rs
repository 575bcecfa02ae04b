//! The database side against a real PostgreSQL (`scripts/with-postgres.sh`): the schema derived
//! from the sync mapping holds every mapped Stripe sample, and the applier is one transaction,
//! idempotent, ordered by reference, version-aware, and refuses bad plans whole.

#[path = "support/postgres.rs"]
mod test_pg;

use altan_pay::events::reconcile::{Mirror, same};
use altan_pay::mirror::{
    ApplyError, OpResult, PlanError, apply_plan, apply_text, connect, ddl, parse_plan,
};
use altan_pay::sync::{AckStatus, ObjectKind, PLAN_FENCE, SyncMapping, parse_acknowledgements};
use serde_json::{Map, Value, json};
use test_pg::database_url;

/// A fresh schema holding exactly what `altan-pay schema` prints.
async fn fresh(schema: &str) -> altan_pay::mirror::Connected {
    let conn = connect(&database_url()).await.unwrap();
    conn.client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    conn.client
        .batch_execute(&ddl(&SyncMapping::default(), schema).unwrap())
        .await
        .unwrap();
    conn
}

/// Every row of every mirror table and of the deleted-ids table, as text.
async fn dump(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let mapping = SyncMapping::default();
    let mut out = Vec::new();
    let tables = ObjectKind::ALL
        .iter()
        .map(|k| mapping.table(*k).table.clone())
        .chain(["altan_pay_deleted".to_owned()]);
    for table in tables {
        let rows = client
            .query(
                &format!("SELECT row_to_json(t)::text FROM {schema}.{table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        out.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<_, String>(0))),
        );
    }
    out
}

fn samples() -> Value {
    serde_json::from_str(include_str!("../fixtures/stripe/samples.json")).unwrap()
}

fn upsert(kind: ObjectKind, object: &Value) -> Value {
    let t = SyncMapping::default().table(kind).clone();
    json!({"table": t.table, "op": "upsert", "key": {"id": object["id"]}, "row": t.row(object)})
}

fn plan(sync_id: &str, ops: Vec<Value>) -> String {
    json!({"sync_id": sync_id, "operations": ops}).to_string()
}

fn product(id: &str, name: &str, updated: i64) -> Value {
    json!({"id": id, "object": "product", "name": name, "active": true, "metadata": {"k": "v"},
        "images": [], "created": 1_700_000_000, "updated": updated})
}

fn price(id: &str, product: &str, amount: i64) -> Value {
    json!({"id": id, "object": "price", "product": product, "active": true, "currency": "usd",
        "unit_amount": amount, "type": "recurring", "recurring": {"interval": "month", "interval_count": 1},
        "metadata": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_holds_every_column_of_every_mapped_stripe_sample() {
    let schema = "mirror_samples";
    let mut conn = fresh(schema).await;
    let mapping = SyncMapping::default();
    let samples = samples();
    let mut ops = Vec::new();
    let mut expected: Vec<(ObjectKind, Map<String, Value>)> = Vec::new();
    for (name, sample) in samples.as_object().unwrap() {
        let Some(kind) = ObjectKind::from_object_name(name) else {
            continue;
        };
        ops.push(upsert(kind, sample));
        expected.push((kind, mapping.table(kind).row(sample)));
    }
    assert_eq!(expected.len(), 6, "one sample per mapped kind");
    let text = plan("sync_samples", ops);
    let (ack, result) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    let applied = result.unwrap();
    assert_eq!(applied.count(|r| *r == OpResult::Written), 6);
    assert_eq!(
        parse_acknowledgements(&ack.message)[0].status,
        AckStatus::Applied
    );
    // Read back the way reconcile reads the mirror: every column equals the mapped value.
    let mirror = Mirror::read_postgres(&database_url(), schema, &mapping)
        .await
        .unwrap();
    for (kind, row) in expected {
        let id = row["id"].as_str().unwrap();
        let stored = &mirror.rows[&kind][id];
        for (column, value) in &row {
            assert!(
                same(&stored[column], value),
                "{kind} {id} column {column}: stored {} but the plan had {value}",
                stored[column]
            );
        }
    }
    // The DDL's column types are the mapping's.
    let rows = conn
        .client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap();
    for kind in ObjectKind::ALL {
        let t = mapping.table(kind);
        for c in &t.columns {
            let found = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == t.table && r.get::<_, String>(1) == c.name)
                .map(|r| r.get::<_, String>(2));
            assert_eq!(
                found.as_deref(),
                Some(altan_pay::mirror::pg_type(c.sql_type)),
                "{}.{}",
                t.table,
                c.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_applied_twice_changes_nothing_the_second_time() {
    let schema = "mirror_twice";
    let mut conn = fresh(schema).await;
    let mapping = SyncMapping::default();
    let text = plan(
        "sync_twice1",
        vec![
            upsert(ObjectKind::Product, &product("prod_1", "Pro", 10)),
            upsert(ObjectKind::Price, &price("price_1", "prod_1", 900)),
            json!({"table": "coupons", "op": "delete", "key": {"id": "co_gone"}}),
        ],
    );
    let (_, first) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    assert!(first.unwrap().changed());
    let before = dump(&conn.client, schema).await;
    assert_eq!(before.len(), 3, "{before:?}");
    let (ack, second) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    let second = second.unwrap();
    assert!(!second.changed(), "{:?}", second.results);
    assert_eq!(second.count(|r| *r == OpResult::Unchanged), 2);
    assert_eq!(second.count(|r| *r == OpResult::AlreadyAbsent), 1);
    assert_eq!(dump(&conn.client, schema).await, before);
    let acks = parse_acknowledgements(&ack.message);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].sync_id, "sync_twice1");
    assert_eq!(acks[0].status, AckStatus::Applied);
}

/// Which refusal a bad operation must get.
type Expect = fn(&PlanError) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plan_writes_nothing_and_its_failure_names_the_operation() {
    let schema = "mirror_refused";
    let mut conn = fresh(schema).await;
    let mapping = SyncMapping::default();
    let good = upsert(ObjectKind::Product, &product("prod_ok", "Fine", 10));
    let mut wrong_type = upsert(ObjectKind::Price, &price("price_x", "prod_ok", 900));
    wrong_type["row"]["unit_amount"] = json!("nine hundred");
    let mut extra = upsert(ObjectKind::Price, &price("price_y", "prod_ok", 900));
    extra["row"]["colour"] = json!("red");
    /// A bad operation beside a good one, and the error that refuses the plan.
    struct Case {
        name: &'static str,
        bad: Value,
        check: Expect,
    }
    let cases = vec![
        Case {
            name: "unknown table",
            bad: json!({"table": "invoices", "op": "upsert", "key": {"id": "in_1"}, "row": {"id": "in_1"}}),
            check: |e| matches!(e, PlanError::UnknownTable { table, .. } if table == "invoices"),
        },
        Case {
            name: "missing key",
            bad: json!({"table": "products", "op": "delete"}),
            check: |e| matches!(e, PlanError::MissingKey { .. }),
        },
        Case {
            name: "key of the wrong type",
            bad: json!({"table": "products", "op": "delete", "key": {"id": 7}}),
            check: |e| matches!(e, PlanError::MissingKey { .. }),
        },
        Case {
            name: "wrong type",
            bad: wrong_type,
            check: |e| matches!(e, PlanError::WrongType { column, .. } if column == "unit_amount"),
        },
        Case {
            name: "unknown column",
            bad: extra,
            check: |e| matches!(e, PlanError::BadOperation { problem, .. } if problem.contains("colour")),
        },
        Case {
            name: "unknown op",
            bad: json!({"table": "products", "op": "merge", "key": {"id": "prod_ok"}}),
            check: |e| matches!(e, PlanError::BadOperation { problem, .. } if problem.contains("merge")),
        },
        Case {
            name: "the same row twice",
            bad: good.clone(),
            check: |e| matches!(e, PlanError::BadOperation { problem, .. } if problem.contains("already touches")),
        },
    ];
    for Case { name, bad, check } in cases {
        let text = plan("sync_refused", vec![good.clone(), bad]);
        let (ack, result) = apply_text(&mut conn.client, schema, &mapping, &text)
            .await
            .unwrap();
        match result {
            Err(ApplyError::Plan(e)) => assert!(check(&e), "{name}: {e}"),
            other => panic!("{name}: expected a refused plan, got {other:?}"),
        }
        let acks = parse_acknowledgements(&ack.message);
        assert!(
            matches!(&acks[..], [a] if a.sync_id == "sync_refused" && matches!(&a.status, AckStatus::Failed { reason } if reason.contains("operations[1]"))),
            "{name}: {}",
            ack.message
        );
        // The whole plan was refused, so its acknowledgement lists every operation.
        let listed: Value = serde_json::from_str(&ack.message).unwrap();
        assert_eq!(listed["operations"].as_array().unwrap().len(), 2, "{name}");
        assert_eq!(listed["operations"][0]["id"], "prod_ok", "{name}");
        assert!(dump(&conn.client, schema).await.is_empty(), "{name}");
    }
    // Not a plan at all, and no sync id to acknowledge: an error, nothing written.
    let e = apply_text(&mut conn.client, schema, &mapping, "hello")
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::Plan(PlanError::NotAPlan(_))), "{e}");
    // The database refuses the second operation: the first is rolled back with it.
    conn.client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.prices ADD CONSTRAINT positive CHECK (unit_amount >= 0)"
        ))
        .await
        .unwrap();
    let text = plan(
        "sync_dbfail",
        vec![
            good,
            upsert(ObjectKind::Price, &price("price_neg", "prod_ok", -5)),
        ],
    );
    let (ack, result) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    assert!(
        matches!(&result, Err(ApplyError::Operation { index: 1, error, .. }) if error.contains("positive")),
        "{result:?}"
    );
    assert!(ack.message.contains("price_neg") && !ack.applied);
    assert!(dump(&conn.client, schema).await.is_empty());
    // A missing table is named before anything is written.
    conn.client
        .batch_execute(&format!("DROP TABLE {schema}.coupons"))
        .await
        .unwrap();
    let text = plan(
        "sync_notable",
        vec![upsert(ObjectKind::Product, &product("prod_2", "Two", 1))],
    );
    let (_, result) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    assert!(
        matches!(&result, Err(ApplyError::Tables(_)))
            && format!("{:?}", result).contains("coupons"),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_run_in_reference_order_and_an_older_row_never_wins() {
    let schema = "mirror_order";
    let mut conn = fresh(schema).await;
    let mapping = SyncMapping::default();
    // Foreign keys make the order observable: children listed first still apply.
    conn.client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.prices ADD FOREIGN KEY (product) REFERENCES {schema}.products (id);
             ALTER TABLE {schema}.subscriptions ADD FOREIGN KEY (customer) REFERENCES {schema}.customers (id);"
        ))
        .await
        .unwrap();
    let customer = json!({"id": "cus_1", "object": "customer", "email": "a@example.com", "metadata": {}, "created": 1});
    let subscription = |status: &str| {
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
            "items": {"object": "list", "data": [{"price": {"id": "price_1"}, "quantity": 1}]},
            "cancel_at_period_end": false, "metadata": {}})
    };
    let text = plan(
        "sync_order1",
        vec![
            upsert(ObjectKind::Subscription, &subscription("active")),
            upsert(ObjectKind::Price, &price("price_1", "prod_1", 500)),
            upsert(ObjectKind::Customer, &customer),
            upsert(ObjectKind::Product, &product("prod_1", "New", 200)),
        ],
    );
    let parsed = parse_plan(&text, &mapping).unwrap();
    let order: Vec<&str> = parsed.ordered().iter().map(|o| o.table.as_str()).collect();
    assert_eq!(order, ["products", "customers", "prices", "subscriptions"]);
    apply_plan(&mut conn.client, schema, &mapping, &parsed)
        .await
        .unwrap();

    // An older product (smaller `updated`) and a reopened canceled subscription are stale.
    let cancel = plan(
        "sync_order2",
        vec![upsert(ObjectKind::Subscription, &subscription("canceled"))],
    );
    let (_, r) = apply_text(&mut conn.client, schema, &mapping, &cancel)
        .await
        .unwrap();
    assert!(r.unwrap().changed());
    let old = plan(
        "sync_order3",
        vec![
            upsert(ObjectKind::Product, &product("prod_1", "Old", 100)),
            upsert(ObjectKind::Subscription, &subscription("active")),
        ],
    );
    let (ack, r) = apply_text(&mut conn.client, schema, &mapping, &old)
        .await
        .unwrap();
    let r = r.unwrap();
    assert_eq!(r.count(|x| matches!(x, OpResult::Stale(_))), 2, "{r:?}");
    assert!(ack.applied && ack.message.contains("stale"));
    let mirror = Mirror::read_postgres(&database_url(), schema, &mapping)
        .await
        .unwrap();
    assert_eq!(mirror.rows[&ObjectKind::Product]["prod_1"]["name"], "New");
    assert_eq!(
        mirror.rows[&ObjectKind::Subscription]["sub_1"]["status"],
        "canceled"
    );
    // Stripe's final canceled state (with canceled_at) is not replaced by a guessed one.
    let mut finalised = subscription("canceled");
    finalised["canceled_at"] = json!(1_800_000_000);
    let guessed = subscription("canceled");
    for (id, sub, stale) in [
        ("sync_order6", &finalised, false),
        ("sync_order7", &guessed, true),
    ] {
        let (_, r) = apply_text(
            &mut conn.client,
            schema,
            &mapping,
            &plan(id, vec![upsert(ObjectKind::Subscription, sub)]),
        )
        .await
        .unwrap();
        let r = r.unwrap();
        assert_eq!(
            matches!(r.results[0].1, OpResult::Stale(_)),
            stale,
            "{id}: {r:?}"
        );
    }

    // Deletes run children first (the foreign key would refuse the product first), and a
    // deleted id never comes back: Stripe does not reuse ids.
    let delete = plan(
        "sync_order4",
        vec![
            json!({"table": "products", "op": "delete", "key": {"id": "prod_1"}}),
            json!({"table": "prices", "op": "delete", "key": {"id": "price_1"}}),
        ],
    );
    let (_, r) = apply_text(&mut conn.client, schema, &mapping, &delete)
        .await
        .unwrap();
    assert_eq!(r.unwrap().count(|x| *x == OpResult::Deleted), 2);
    let late = plan(
        "sync_order5",
        vec![upsert(ObjectKind::Product, &product("prod_1", "New", 300))],
    );
    let (_, r) = apply_text(&mut conn.client, schema, &mapping, &late)
        .await
        .unwrap();
    assert!(
        matches!(&r.unwrap().results[0].1, OpResult::Stale(reason) if reason.contains("sync_order4"))
    );
    let mirror = Mirror::read_postgres(&database_url(), schema, &mapping)
        .await
        .unwrap();
    assert!(mirror.rows[&ObjectKind::Product].is_empty());
}

/// The binary: `schema` prints DDL PostgreSQL accepts; `apply` reads a whole answer from
/// stdin, prints the acknowledgement and exits 0, or 1 with a failed acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_and_apply_commands() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let schema = "mirror_cli";
    let url = database_url();
    let bin = env!("CARGO_BIN_EXE_altan-pay");
    let out = Command::new(bin)
        .args(["schema", "--schema", schema])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ddl_text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ddl_text, ddl(&SyncMapping::default(), schema).unwrap());
    let conn = connect(&url).await.unwrap();
    conn.client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; {ddl_text}"
        ))
        .await
        .unwrap();
    let answer = format!(
        "Created Pro.\n\n{PLAN_FENCE}\n{}\n```\n\nPlease apply it. @Altan",
        plan(
            "sync_cli1",
            vec![upsert(ObjectKind::Product, &product("prod_c", "Pro", 1))]
        )
    );
    let run = |input: String| {
        let mut child = Command::new(bin)
            .args(["apply", "--database-url", &url, "--schema", schema, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(answer);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let acks = parse_acknowledgements(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(acks[0].sync_id, "sync_cli1");
    assert_eq!(acks[0].status, AckStatus::Applied);
    let out = run(plan(
        "sync_cli2",
        vec![json!({"table": "nope", "op": "delete", "key": {"id": "x"}})],
    ));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let acks = parse_acknowledgements(&String::from_utf8_lossy(&out.stdout));
    assert!(
        matches!(&acks[..], [a] if matches!(&a.status, AckStatus::Failed { reason } if reason.contains("unknown table `nope`"))),
        "{acks:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // A plan in any other code block is never read: an answer without the runtime's block holds
    // no plan.
    let out = run(format!(
        "Created Pro.\n\n```json\n{}\n```",
        plan(
            "sync_cli3",
            vec![upsert(ObjectKind::Product, &product("prod_d", "Pro", 1))]
        )
    ));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no other code block is read as a plan"),
        "{out:?}"
    );
    // No sync id to acknowledge: a usage error, exit 2, nothing on stdout.
    let out = run("no plan here".to_owned());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sync plan"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_one_stripe_string_does_not_sink_the_other_rows_of_the_plan() {
    let schema = "mirror_nul";
    let mut conn = fresh(schema).await;
    let mapping = SyncMapping::default();
    let mut odd = product("prod_nul", "Pro\u{0}Plan", 1);
    odd["description"] = json!("line\u{0}break");
    odd["metadata"] = json!({"note": "a\u{0}b", "k\u{0}ey": "v"});
    let text = plan(
        "sync_nul1",
        vec![
            upsert(ObjectKind::Product, &product("prod_plain", "Plain", 1)),
            upsert(ObjectKind::Product, &odd),
            upsert(ObjectKind::Price, &price("price_nul", "prod_nul", 500)),
        ],
    );
    let (ack, result) = apply_text(&mut conn.client, schema, &mapping, &text)
        .await
        .unwrap();
    let applied = result.unwrap_or_else(|e| panic!("{e}; ack {}", ack.message));
    assert_eq!(applied.count(|r| *r == OpResult::Written), 3);
    let row = conn
        .client
        .query_one(
            &format!("SELECT name, description, metadata::text FROM {schema}.products WHERE id = 'prod_nul'"),
            &[],
        )
        .await
        .unwrap();
    // U+0000 becomes U+FFFD, the replacement character; nothing else of the string changes.
    assert_eq!(row.get::<_, String>(0), "Pro\u{FFFD}Plan");
    assert_eq!(row.get::<_, String>(1), "line\u{FFFD}break");
    let metadata: Value = serde_json::from_str(&row.get::<_, String>(2)).unwrap();
    assert_eq!(metadata, json!({"note": "a\u{FFFD}b", "k\u{FFFD}ey": "v"}));
    let ids = conn
        .client
        .query(&format!("SELECT id FROM {schema}.prices"), &[])
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
}
