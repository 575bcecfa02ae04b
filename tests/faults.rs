//! Whole conversations through injected gateway faults (scripted model, real client over HTTP,
//! agent): never a duplicate Stripe object, the plan is exactly what committed, failures reported.

mod rel;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use altan_pay::agent::{Agent, AnswerEnd};
use altan_pay::gateway::faults::{Fault, FaultPlan, FaultRule};
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
use altan_pay::pay::RetryPolicy;
use altan_pay::tools::ErrorCode;
use rel::*;
use serde_json::{Value, json};

const SECOND: Duration = Duration::from_secs(1);

/// A product, then two prices for it, in one answer.
fn product_with_two_prices() -> Vec<ScriptedStep> {
    vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::dynamic(|req| {
            let product = last_tool_json(req)?["id"]
                .as_str()
                .ok_or("no product id")?
                .to_string();
            Ok(calls(vec![
                (
                    "c2",
                    "create_price",
                    json!({"product": product, "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month"}}),
                ),
                (
                    "c3",
                    "create_price",
                    json!({"product": product, "unit_amount": 20000, "currency": "usd", "recurring": {"interval": "year"}}),
                ),
            ]))
        }),
        ScriptedStep::text("Created Pro with a monthly and a yearly price."),
    ]
}

/// The invariants every faulty conversation keeps.
fn assert_exactly_what_committed(w: &World, answer: &altan_pay::agent::Answer) {
    assert_plan_unique(answer);
    assert_eq!(
        plan_rows(answer),
        stripe_rows(&w.sandbox),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn answers_dropped_after_commit_are_retried_with_the_same_key_and_create_once() {
    let plan = FaultPlan::new(1)
        .rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(1))
        .rule(FaultRule::new("prices.create", Fault::DropAfterCommit).times(2));
    let w = world(product_with_two_prices(), plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Pro at $20/month and $200/year")])
        .await
        .unwrap();
    assert_eq!(answer.end, AnswerEnd::Completed);
    assert_eq!(w.faults.counts().drops, 3);
    assert!(answer.tool_calls.iter().all(|c| c.error.is_none()));
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert_eq!(stripe_list(&w.sandbox, "prices.list").len(), 2);
    assert_exactly_what_committed(&w, &answer);
}

// Paused time: Retry-After's second passes on Tokio's clock without being waited for.
#[tokio::test(start_paused = true)]
async fn server_errors_and_rate_limits_are_retried_without_duplicates() {
    let plan = FaultPlan::new(2)
        .rule(FaultRule::new("products.create", Fault::Error { status: 503 }).times(2))
        .rule(FaultRule::new("prices.create", Fault::Error { status: 500 }).times(1))
        .rule(
            FaultRule::new(
                "prices.create",
                Fault::RateLimit {
                    retry_after: SECOND,
                },
            )
            .times(1),
        );
    let w = world(product_with_two_prices(), plan, 5 * SECOND).await;
    let started = tokio::time::Instant::now();
    let answer = w
        .agent
        .respond("t", &context(), &[user("Pro at $20/month and $200/year")])
        .await
        .unwrap();
    let counts = w.faults.counts();
    assert_eq!((counts.errors, counts.rate_limits), (3, 1));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    assert!(answer.tool_calls.iter().all(|c| c.error.is_none()));
    assert_eq!(stripe_list(&w.sandbox, "prices.list").len(), 2);
    assert_exactly_what_committed(&w, &answer);
}

// Paused time: the gateway's delay and the client's timeout race on Tokio's clock.
#[tokio::test(start_paused = true)]
async fn an_answer_later_than_the_client_timeout_is_retried_and_replayed() {
    let plan = FaultPlan::new(3).rule(
        FaultRule::new(
            "products.create",
            Fault::Delay {
                delay: Duration::from_millis(1500),
                after_commit: true,
            },
        )
        .times(1),
    );
    let w = world(product_with_two_prices(), plan, Duration::from_millis(400)).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Pro at $20/month and $200/year")])
        .await
        .unwrap();
    assert_eq!(w.faults.counts().delays, 1);
    assert!(answer.tool_calls.iter().all(|c| c.error.is_none()));
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert_exactly_what_committed(&w, &answer);
}

// Paused time: the gateway's delay and the client's timeout race on Tokio's clock.
#[tokio::test(start_paused = true)]
async fn a_delay_before_the_write_lets_the_retry_win_and_the_late_one_replay() {
    let plan = FaultPlan::new(4).rule(
        FaultRule::new(
            "products.create",
            Fault::Delay {
                delay: Duration::from_millis(800),
                after_commit: false,
            },
        )
        .times(1),
    );
    let w = world(product_with_two_prices(), plan, Duration::from_millis(300)).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Pro at $20/month and $200/year")])
        .await
        .unwrap();
    // Let the delayed first attempt reach the sandbox too.
    let late = until(5 * SECOND, || {
        w.counting.requests_for("products.create") == 2
    })
    .await;
    assert!(late, "the delayed first attempt never reached the sandbox");
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert_exactly_what_committed(&w, &answer);
}

#[tokio::test]
async fn a_lasting_outage_is_reported_to_the_model_and_nothing_is_planned() {
    let plan = FaultPlan::new(5).rule(FaultRule::new(
        "products.create",
        Fault::Error { status: 503 },
    ));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Stripe is unavailable; I could not confirm whether Pro was created.")
            .expect_tool_result_containing("outcome_unknown"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(w.model.remaining(), 0, "the model saw the failure");
    assert_eq!(
        w.faults.counts().errors,
        8,
        "four attempts, and four of the replay before the answer, all refused"
    );
    assert_eq!(answer.tool_calls[1].id, "c1-confirm");
    // Still unknown: kept for the next answer.
    let stored = w.agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(stored.uncertain.len(), 1);
    let call = &answer.tool_calls[0];
    assert_eq!(call.error, Some(ErrorCode::Unavailable));
    assert_eq!(call.result["error"]["outcome_unknown"], json!(true));
    assert!(answer.text.contains("could not confirm"), "{}", answer.text);
    assert!(answer.sync_plan.is_none());
    assert!(stripe_list(&w.sandbox, "products.list").is_empty());
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_is_reported_as_such() {
    let plan = FaultPlan::new(6)
        .rule(FaultRule::new("products.create", Fault::Error { status: 400 }).times(1));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Stripe refused to create Pro.")
            .expect_tool_result_containing("refused"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(w.faults.counts().errors, 1);
    let call = &answer.tool_calls[0];
    assert_eq!(call.error, Some(ErrorCode::StripeInvalidRequest));
    assert_eq!(call.result["error"].get("outcome_unknown"), None);
    assert!(answer.sync_plan.is_none());
    assert!(stripe_list(&w.sandbox, "products.list").is_empty());
}

/// Every answer lost after commit: the object exists once, the model and user are told the
/// outcome is unknown, and the plan claims nothing it did not see.
#[tokio::test]
async fn every_answer_lost_means_one_object_and_an_unknown_outcome_not_a_guess() {
    let plan = FaultPlan::new(7).rule(FaultRule::new("products.create", Fault::DropAfterCommit));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::tool_calls([("c2", "get_products", json!({}))])
            .expect_tool_result_containing("outcome_unknown"),
        ScriptedStep::text("The connection broke, but Pro exists now."),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    // Four attempts of the call, then four of its replay with the same key before the answer.
    assert_eq!(w.faults.counts().drops, 8);
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert_eq!(answer.tool_calls[0].error, Some(ErrorCode::Unavailable));
    assert_eq!(answer.tool_calls[2].id, "c1-confirm");
    assert_eq!(answer.tool_calls[2].error, Some(ErrorCode::Unavailable));
    assert_eq!(
        answer.tool_calls[1].result["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Nothing planned that the agent did not see happen.
    assert!(plan_rows(&answer).is_subset(&stripe_rows(&w.sandbox)));
}

/// Every attempt of a create loses its answer; before the answer the agent replays it with the
/// same idempotency key, Stripe answers with the object the first attempt made, and the plan
/// has it: what Stripe holds and what the plan says are the same.
#[tokio::test]
async fn a_write_whose_answers_were_all_lost_is_confirmed_with_its_key_and_synced() {
    let plan =
        FaultPlan::new(9).rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(4));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("The connection broke; I could not confirm Pro.")
            .expect_tool_result_containing("outcome_unknown"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(w.faults.counts().drops, 4);
    assert_eq!(w.model.remaining(), 0);
    let products = stripe_list(&w.sandbox, "products.list");
    assert_eq!(products.len(), 1);
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(answer.tool_calls[0].error, Some(ErrorCode::Unavailable));
    let confirm = &answer.tool_calls[1];
    assert_eq!((confirm.id.as_str(), confirm.error), ("c1-confirm", None));
    assert_eq!(confirm.result["id"], products[0]["id"]);
    assert_exactly_what_committed(&w, &answer);
    // Settled: the next answer replays nothing.
    let again = w.agent.respond("t", &context(), &[user("Thanks")]).await;
    assert!(again.is_err() || again.unwrap().tool_calls.is_empty());
}

/// The outage outlasts the answer: the write stays uncertain in the session, and the next
/// answer confirms it and hands it over.
#[tokio::test]
async fn a_write_still_unknown_at_the_answer_is_confirmed_by_the_next_answer() {
    let plan =
        FaultPlan::new(10).rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(8));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("I could not confirm Pro.")
            .expect_tool_result_containing("outcome_unknown"),
        ScriptedStep::text("Here is where things stand."),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let first = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(w.faults.counts().drops, 8);
    assert!(first.sync_plan.is_none());
    let stored = w.agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(stored.uncertain.len(), 1);
    assert_eq!(stored.uncertain[0].call.id, "c1");

    let second = w
        .agent
        .respond("t", &context(), &[user("Did it work?")])
        .await
        .unwrap();
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert_eq!(second.tool_calls.len(), 1);
    assert_eq!(second.tool_calls[0].id, "c1-confirm");
    assert_exactly_what_committed(&w, &second);
    assert!(
        w.agent
            .store()
            .load("t")
            .await
            .unwrap()
            .unwrap()
            .uncertain
            .is_empty()
    );
}

/// In a later answer the model repeats the uncertain call with the same arguments (an exact
/// repeat within one answer is refused by the engine): the repeat reuses the first key, so
/// Stripe returns the first object instead of making a second one, and nothing is left to
/// confirm.
#[tokio::test]
async fn repeating_an_uncertain_write_in_a_later_answer_reuses_its_key() {
    let plan =
        FaultPlan::new(11).rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(8));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("I could not confirm Pro.")
            .expect_tool_result_containing("outcome_unknown"),
        ScriptedStep::tool_calls([("c9", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Pro exists."),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let first = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert!(first.sync_plan.is_none());
    let answer = w
        .agent
        .respond("t", &context(), &[user("Try again")])
        .await
        .unwrap();
    let products = stripe_list(&w.sandbox, "products.list");
    assert_eq!(products.len(), 1, "the repeat made a second product");
    let ids: Vec<&str> = answer.tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c9"], "nothing left to confirm");
    assert_eq!(answer.tool_calls[0].error, None);
    assert_eq!(answer.tool_calls[0].result["id"], products[0]["id"]);
    assert_exactly_what_committed(&w, &answer);
}

/// A replay answered with 409 (a request with the key still in flight) settles nothing: the
/// write stays to be confirmed, since the request in flight may yet apply.
#[tokio::test]
async fn a_replay_answered_with_409_keeps_the_write_uncertain() {
    let plan = FaultPlan::new(12)
        .rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(4))
        .rule(FaultRule::new(
            "products.create",
            Fault::Error { status: 409 },
        ));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("I could not confirm Pro.")
            .expect_tool_result_containing("outcome_unknown"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(w.faults.counts().errors, 4, "the replay's four 409s");
    assert_eq!(answer.tool_calls[1].id, "c1-confirm");
    assert_eq!(answer.tool_calls[1].error, Some(ErrorCode::Unavailable));
    let stored = w.agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(stored.uncertain.len(), 1, "a 409 settles nothing");
}

/// The model repeats an uncertain write in a later answer and the repeat is rate limited to
/// the end: the earlier attempt may still have applied, so its entry is kept.
#[tokio::test]
async fn a_rate_limited_repeat_does_not_settle_an_earlier_uncertain_write() {
    let plan = FaultPlan::new(13)
        .rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(8))
        .rule(FaultRule::new(
            "products.create",
            Fault::RateLimit {
                retry_after: Duration::ZERO,
            },
        ));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("I could not confirm Pro.")
            .expect_tool_result_containing("outcome_unknown"),
        ScriptedStep::tool_calls([("c9", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Still unclear.").expect_tool_result_containing("unavailable"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    w.agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    let second = w
        .agent
        .respond("t", &context(), &[user("Try again")])
        .await
        .unwrap();
    assert_eq!(second.tool_calls[0].error, Some(ErrorCode::Unavailable));
    let stored = w.agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(
        stored.uncertain.len(),
        1,
        "the first attempt may have applied"
    );
    assert_eq!(stored.uncertain[0].call.id, "c1");
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
}

/// A session store that cannot record writes: saving a session with a write about to be sent
/// fails, like a full disk would.
struct NoWriteAhead(altan_pay::agent::MemoryStore);

impl altan_pay::agent::SessionStore for NoWriteAhead {
    fn load<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> altan_pay::agent::StoreFuture<'a, Option<altan_pay::agent::Session>> {
        self.0.load(thread_id)
    }

    fn save<'a>(
        &'a self,
        session: &'a altan_pay::agent::Session,
    ) -> altan_pay::agent::StoreFuture<'a, ()> {
        if session.uncertain.is_empty() {
            self.0.save(session)
        } else {
            Box::pin(std::future::ready(Err(
                altan_pay::agent::StoreError::Failed("disk full".into()),
            )))
        }
    }

    fn save_queued(&self, session: &altan_pay::agent::Session) {
        if session.uncertain.is_empty() {
            self.0.save_queued(session);
        }
    }
}

/// When the write cannot be recorded before it is sent, it is not sent: Stripe is untouched,
/// the model hears nothing was changed, and a read in the same step still runs.
#[tokio::test]
async fn a_write_that_cannot_be_recorded_first_is_not_sent() {
    let w = world(Vec::new(), FaultPlan::new(14), 5 * SECOND).await;
    let model = Arc::new(altan_pay::model::ScriptedModel::new(vec![
        ScriptedStep::tool_calls([
            ("c1", "create_product", json!({"name": "Pro"})),
            ("c2", "get_products", json!({})),
        ]),
        ScriptedStep::text("Nothing was created.").expect_tool_result_containing("was not sent"),
    ]));
    let agent = Agent::builder()
        .model(model.clone())
        .pay(client(&w.gateway.base_url, 5 * SECOND, fast_retries()))
        .store(Arc::new(NoWriteAhead(Default::default())))
        .build()
        .unwrap();
    let answer = agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    assert_eq!(model.remaining(), 0);
    assert!(stripe_list(&w.sandbox, "products.list").is_empty());
    assert_eq!(w.faults.counts().total(), 0);
    let create = answer.tool_calls.iter().find(|c| c.id == "c1").unwrap();
    assert_eq!(create.error, Some(ErrorCode::Unavailable));
    let read = answer.tool_calls.iter().find(|c| c.id == "c2");
    assert!(read.is_some_and(|r| r.error.is_none()), "{answer:?}");
    assert!(answer.sync_plan.is_none());
}

/// The first attempt commits and loses its answer, every retry is refused with a 429: the
/// final error is a plain 429, yet the outcome stays unknown (found by the soak).
#[tokio::test]
async fn an_uncertain_attempt_keeps_the_outcome_unknown_whatever_the_last_error() {
    let plan = FaultPlan::new(8)
        .rule(FaultRule::new("products.create", Fault::DropAfterCommit).times(1))
        .rule(FaultRule::new(
            "products.create",
            Fault::RateLimit {
                retry_after: Duration::ZERO,
            },
        ));
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Unclear.").expect_tool_result_containing("outcome_unknown"),
    ];
    let w = world(steps, plan, 5 * SECOND).await;
    let answer = w
        .agent
        .respond("t", &context(), &[user("Create Pro")])
        .await
        .unwrap();
    let counts = w.faults.counts();
    // The call: one drop, three 429s; its replay before the answer: four more 429s.
    assert_eq!((counts.drops, counts.rate_limits), (1, 7));
    // A 429 says nothing about the first attempt: the write stays to be confirmed.
    let stored = w.agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(stored.uncertain.len(), 1);
    assert_eq!(w.model.remaining(), 0);
    assert_eq!(
        answer.tool_calls[0].result["error"]["outcome_unknown"],
        json!(true)
    );
    assert_eq!(stripe_list(&w.sandbox, "products.list").len(), 1);
    assert!(answer.sync_plan.is_none());
}

/// Seeded random faults of every kind on every route, over many calls: whatever failed is
/// reported as failed, whatever succeeded is planned once, nothing is created twice.
#[tokio::test]
async fn seeded_random_faults_never_duplicate_and_never_plan_what_did_not_happen() {
    for seed in [11u64, 12, 13] {
        let plan = FaultPlan::new(seed)
            .rule(FaultRule::new("*", Fault::Error { status: 503 }).probability(0.25))
            .rule(FaultRule::new("*", Fault::DropAfterCommit).probability(0.25))
            .rule(
                FaultRule::new(
                    "*",
                    Fault::RateLimit {
                        retry_after: Duration::ZERO,
                    },
                )
                .probability(0.1),
            );
        let mut steps = Vec::new();
        for i in 0..8 {
            let id = format!("c{i}");
            steps.push(ScriptedStep::tool_calls([(
                id.as_str(),
                "create_customer",
                json!({"email": format!("c{i}@example.com"), "name": format!("Customer {i}")}),
            )]));
        }
        steps.push(ScriptedStep::text("Done."));
        let w = world(steps, plan, 5 * SECOND).await;
        let answer = w
            .agent
            .respond("t", &context(), &[user("Add eight customers")])
            .await
            .unwrap();
        assert!(w.faults.counts().total() > 0, "seed {seed} injected faults");
        let customers = stripe_list(&w.sandbox, "customers.list");
        let emails: BTreeSet<_> = customers.iter().map(|c| c["email"].to_string()).collect();
        assert_eq!(emails.len(), customers.len(), "seed {seed}: a duplicate");
        assert_plan_unique(&answer);
        let planned = plan_rows(&answer);
        let in_stripe = stripe_rows(&w.sandbox);
        assert!(planned.is_subset(&in_stripe), "seed {seed}");
        // What Stripe has that the plan lacks was reported to the model as an unknown outcome.
        let unknown = answer
            .tool_calls
            .iter()
            .filter(|c| c.result["error"]["outcome_unknown"] == json!(true))
            .count();
        assert!(in_stripe.len() - planned.len() <= unknown, "seed {seed}");
        for c in &answer.tool_calls {
            let ok = c.error.is_none();
            let id = c.result["id"].as_str().map(str::to_string);
            if ok {
                let id = id.unwrap();
                assert!(
                    planned.contains(&("customers".to_string(), id)),
                    "seed {seed}"
                );
            }
        }
    }
}

/// The sandbox gateway as its own process with `--data` and `--faults`.
struct Child {
    bin: std::path::PathBuf,
    db: std::path::PathBuf,
    proc: std::process::Child,
    base: String,
}

impl Child {
    fn start(
        bin: &std::path::Path,
        db: &std::path::Path,
        addr: &str,
        faults: Option<&std::path::Path>,
    ) -> Child {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--addr", addr, "--data"]).arg(db);
        if let Some(f) = faults {
            cmd.arg("--faults").arg(f);
        }
        let mut proc = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(proc.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Child {
            bin: bin.to_path_buf(),
            db: db.to_path_buf(),
            proc,
            base,
        }
    }

    /// SIGKILL, then the same binary on the same address and database, without faults.
    fn kill_and_restart(&mut self) {
        self.proc.kill().unwrap();
        self.proc.wait().unwrap();
        let addr = self.base.trim_start_matches("http://").to_string();
        *self = Child::start(&self.bin.clone(), &self.db.clone(), &addr, None);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Always asked for: a stale example from an older build would lack new flags.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    bin
}

/// The write commits, the gateway is killed with SIGKILL before it answers and restarted on
/// the same SQLite file; the client's retry (same idempotency key) gets the same object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_holds_across_a_kill_9_restart_of_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sandbox.db");
    let faults = dir.path().join("faults.toml");
    // The first create commits, then holds its answer long enough to be killed.
    std::fs::write(
        &faults,
        "[[rule]]\noperation = \"products.create\"\nfault = \"delay\"\ndelay_ms = 30000\nafter_commit = true\ntimes = 1\n",
    )
    .unwrap();
    let mut child = Child::start(
        &example_binary("sandbox_gateway"),
        &db,
        "127.0.0.1:0",
        Some(&faults),
    );
    let base = child.base.clone();
    let steps = vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Created Pro."),
    ];
    let model = Arc::new(ScriptedModel::new(steps));
    let patient = RetryPolicy {
        max_attempts: 12,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        max_retry_after: SECOND,
    };
    let agent = Agent::builder()
        .model(model.clone())
        .pay(client(&base, 60 * SECOND, patient))
        .build()
        .unwrap();
    let turn = tokio::spawn(async move {
        agent
            .respond("t", &context(), &[user("Create Pro")])
            .await
            .unwrap()
    });

    // Once the product is in the file, kill the gateway that holds its answer.
    let observer = client(&base, 5 * SECOND, fast_retries());
    let products = |pay: altan_pay::pay::PayClient| async move {
        let connect = pay.stripe_connect_id(ACCOUNT).await.unwrap();
        let list = pay
            .call(altan_pay::pay::PayCall {
                operation: "products.list",
                account_id: ACCOUNT,
                stripe_connect_id: Some(&connect),
                id: None,
                params: json!({"limit": 100}),
                idempotency_key: None,
            })
            .await
            .unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect::<Vec<String>>()
    };
    let deadline = Instant::now() + 20 * SECOND;
    while products(observer.clone()).await.is_empty() {
        assert!(Instant::now() < deadline, "the create never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill_and_restart();
    let answer = turn.await.unwrap();

    assert_eq!(model.remaining(), 0);
    assert_eq!(
        answer.tool_calls[0].error, None,
        "{}",
        answer.tool_calls[0].result
    );
    let id = answer.tool_calls[0].result["id"]
        .as_str()
        .unwrap()
        .to_string();
    let after = products(client(&child.base, 5 * SECOND, fast_retries())).await;
    assert_eq!(
        after,
        vec![id.clone()],
        "one product, the one the agent saw"
    );
    let planned: Vec<Value> = answer
        .sync_plan
        .iter()
        .flat_map(|p| p.operations())
        .map(|o| json!([o.table, o.id]))
        .collect();
    assert_eq!(planned, vec![json!(["products", id])]);
}
