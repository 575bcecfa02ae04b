//! Fault injection for the gateway: a [`Backend`] wrapper that fails chosen route operations
//! (error status, 429, late answers, a connection dropped after the write committed) on purpose.
//!
//! Rules come from code ([`FaultPlan::rule`]) or a TOML/JSON file (`altan-pay gateway --faults`):
//!
//! ```toml
//! seed = 7                      # for `probability`; the same seed fires the same faults
//! [[rule]]
//! operation = "products.create" # a route operation, or "*" for every one
//! fault = "error"               # error | rate_limit | delay | drop_after_commit
//! status = 503                  # error: the HTTP status (a Stripe-shaped body is sent)
//! skip = 0                      # let this many matching calls through first
//! times = 2                     # fire at most this many times (absent: no limit)
//! probability = 1.0             # chance to fire on each matching call
//! ```
//!
//! `rate_limit` takes `retry_after_secs`; `delay` takes `delay_ms` and `after_commit` (answer
//! late after the inner backend wrote, instead of before it runs).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;

use super::server::DROP_CONNECTION;
use super::{Backend, PayRequest, PayResponse};

/// One kind of failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer `status` with a Stripe-shaped error body; the inner backend is not called.
    Error {
        /// The HTTP status answered, 400-599.
        status: u16,
    },
    /// Answer 429 with `Retry-After`; the inner backend is not called.
    RateLimit {
        /// Sent as `Retry-After`, in whole seconds.
        retry_after: Duration,
    },
    /// Wait before answering: before the inner backend runs, or after it committed.
    Delay {
        /// How long the answer is held back.
        delay: Duration,
        /// Wait after the inner backend wrote (`true`) instead of before it runs.
        after_commit: bool,
    },
    /// Let the inner backend commit, then close the connection without an answer.
    DropAfterCommit,
}

impl Fault {
    fn slot(&self) -> usize {
        match self {
            Fault::Error { .. } => 0,
            Fault::RateLimit { .. } => 1,
            Fault::Delay { .. } => 2,
            Fault::DropAfterCommit => 3,
        }
    }
}

/// When a fault fires.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// A route operation (`products.create`) or `*`.
    pub operation: String,
    /// What happens when the rule fires.
    pub fault: Fault,
    /// Matching calls let through before the rule may fire.
    pub skip: u64,
    /// Most times the rule fires; `None` for no limit.
    pub times: Option<u64>,
    /// Chance to fire on an eligible call, drawn from the plan's seeded RNG.
    pub probability: f64,
}

impl FaultRule {
    /// A rule that fires `fault` on every call of `operation` (`*` for all), until narrowed.
    pub fn new(operation: &str, fault: Fault) -> FaultRule {
        FaultRule {
            operation: operation.to_string(),
            fault,
            skip: 0,
            times: None,
            probability: 1.0,
        }
    }

    /// Fire at most `n` times.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Let `n` matching calls through first.
    pub fn skip(mut self, n: u64) -> FaultRule {
        self.skip = n;
        self
    }

    /// Fire with chance `p` on each eligible call (clamped to 0..=1).
    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    fn matches(&self, operation: &str) -> bool {
        self.operation == "*" || self.operation == operation
    }
}

/// The rules of one run, checked in order; the first that fires wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Seed of the RNG behind `probability`: the same seed fires the same faults.
    pub seed: u64,
    /// The rules, in the order they are checked.
    pub rules: Vec<FaultRule>,
}

/// Why a fault file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("fault file {origin}: {reason}")]
pub struct FaultConfigError {
    /// The file (or other origin) the rules came from.
    pub origin: String,
    /// What is wrong with it, naming the rule where one is at fault.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    operation: String,
    fault: String,
    status: Option<u16>,
    retry_after_secs: Option<u64>,
    delay_ms: Option<u64>,
    after_commit: Option<bool>,
    #[serde(default)]
    skip: u64,
    times: Option<u64>,
    probability: Option<f64>,
}

impl FaultPlan {
    /// A plan with no rules yet, its RNG seeded with `seed`.
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            rules: Vec::new(),
        }
    }

    /// Adds a rule after the ones already there.
    pub fn rule(mut self, rule: FaultRule) -> FaultPlan {
        self.rules.push(rule);
        self
    }

    /// Reads a `.json` file as JSON and anything else as TOML.
    pub fn load(path: &Path) -> Result<FaultPlan, FaultConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FaultConfigError {
            origin: origin.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        FaultPlan::parse(&text, json, &origin)
    }

    /// Parses a fault file (TOML, or JSON when `json`); `origin` names it in errors.
    pub fn parse(text: &str, json: bool, origin: &str) -> Result<FaultPlan, FaultConfigError> {
        let failed = |reason: String| FaultConfigError {
            origin: origin.to_string(),
            reason,
        };
        let spec: FileSpec = if json {
            serde_json::from_str(text).map_err(|e| failed(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| failed(e.to_string()))?
        };
        let mut plan = FaultPlan::new(spec.seed);
        for (i, r) in spec.rule.into_iter().enumerate() {
            let rule = r
                .into_rule()
                .map_err(|e| failed(format!("rule {}: {e}", i + 1)))?;
            plan.rules.push(rule);
        }
        Ok(plan)
    }
}

impl RuleSpec {
    fn into_rule(self) -> Result<FaultRule, String> {
        let op = self.operation.trim();
        if op != "*" && !crate::pay::routes::OPERATIONS.contains(&op) {
            return Err(format!(
                "unknown operation `{op}` (a route operation such as products.create, or *)"
            ));
        }
        let only = |allowed: &[&str]| -> Result<(), String> {
            let given = [
                ("status", self.status.is_some()),
                ("retry_after_secs", self.retry_after_secs.is_some()),
                ("delay_ms", self.delay_ms.is_some()),
                ("after_commit", self.after_commit.is_some()),
            ];
            match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
                Some((k, _)) => Err(format!("`{k}` does not apply to fault `{}`", self.fault)),
                None => Ok(()),
            }
        };
        let fault = match self.fault.as_str() {
            "error" => {
                only(&["status"])?;
                let status = self.status.ok_or("fault `error` needs `status`")?;
                if !(400..=599).contains(&status) {
                    return Err(format!("status {status} is not an error status (400-599)"));
                }
                Fault::Error { status }
            }
            "rate_limit" => {
                only(&["retry_after_secs"])?;
                Fault::RateLimit {
                    retry_after: Duration::from_secs(self.retry_after_secs.unwrap_or(1)),
                }
            }
            "delay" => {
                only(&["delay_ms", "after_commit"])?;
                Fault::Delay {
                    delay: Duration::from_millis(
                        self.delay_ms.ok_or("fault `delay` needs `delay_ms`")?,
                    ),
                    after_commit: self.after_commit.unwrap_or(false),
                }
            }
            "drop_after_commit" => {
                only(&[])?;
                Fault::DropAfterCommit
            }
            other => {
                return Err(format!(
                    "unknown fault `{other}` (error, rate_limit, delay, drop_after_commit)"
                ));
            }
        };
        let probability = self.probability.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&probability) {
            return Err(format!("probability {probability} is not between 0 and 1"));
        }
        Ok(FaultRule {
            operation: op.to_string(),
            fault,
            skip: self.skip,
            times: self.times,
            probability,
        })
    }
}

/// How many faults of each kind fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// [`Fault::Error`]s fired.
    pub errors: u64,
    /// [`Fault::RateLimit`]s fired.
    pub rate_limits: u64,
    /// [`Fault::Delay`]s fired.
    pub delays: u64,
    /// [`Fault::DropAfterCommit`]s fired.
    pub drops: u64,
}

impl FaultCounts {
    /// Every fault fired, of any kind.
    pub fn total(&self) -> u64 {
        self.errors + self.rate_limits + self.delays + self.drops
    }
}

struct RuleState {
    seen: u64,
    fired: u64,
}

/// A backend that injects the plan's faults in front of (or after) the inner backend.
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: FaultPlan,
    state: Mutex<(StdRng, Vec<RuleState>)>,
    counts: [AtomicU64; 4],
}

impl FaultyBackend {
    /// Puts `plan` in front of `inner`.
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> FaultyBackend {
        let states = plan
            .rules
            .iter()
            .map(|_| RuleState { seen: 0, fired: 0 })
            .collect();
        FaultyBackend {
            inner,
            state: Mutex::new((StdRng::seed_from_u64(plan.seed), states)),
            plan,
            counts: Default::default(),
        }
    }

    /// Wraps `inner` when a fault file is given; returns it unchanged otherwise.
    pub(crate) fn wrap_from_file(
        inner: Arc<dyn Backend>,
        path: Option<&Path>,
    ) -> Result<Arc<dyn Backend>, FaultConfigError> {
        match path {
            None => Ok(inner),
            Some(path) => Ok(Arc::new(FaultyBackend::new(inner, FaultPlan::load(path)?))),
        }
    }

    /// How many faults fired so far.
    pub fn counts(&self) -> FaultCounts {
        let n = |i: usize| self.counts[i].load(Ordering::Relaxed);
        FaultCounts {
            errors: n(0),
            rate_limits: n(1),
            delays: n(2),
            drops: n(3),
        }
    }

    /// The fault for this call, if one fires; every matching rule counts the call.
    fn pick(&self, operation: &str) -> Option<Fault> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (rng, states) = &mut *guard;
        let mut chosen = None;
        for (rule, st) in self.plan.rules.iter().zip(states.iter_mut()) {
            if !rule.matches(operation) {
                continue;
            }
            st.seen += 1;
            let eligible =
                chosen.is_none() && st.seen > rule.skip && rule.times.is_none_or(|t| st.fired < t);
            if eligible && (rule.probability >= 1.0 || rng.random_bool(rule.probability)) {
                st.fired += 1;
                chosen = Some(rule.fault.clone());
            }
        }
        if let Some(f) = &chosen {
            self.counts[f.slot()].fetch_add(1, Ordering::Relaxed);
        }
        chosen
    }
}

/// The Stripe-shaped body of an injected error.
fn error_response(status: u16, retry_after: Option<Duration>) -> PayResponse {
    let (kind, message) = match status {
        429 => (
            "rate_limit_error",
            "Too many requests hit the API too quickly (injected fault).",
        ),
        s if s >= 500 => (
            "api_error",
            "An error occurred with our connection to Stripe (injected fault).",
        ),
        _ => (
            "invalid_request_error",
            "The request was refused (injected fault).",
        ),
    };
    let mut error = json!({"type": kind, "message": message});
    if let Some(after) = retry_after {
        error["retry_after"] = json!(after.as_secs());
    }
    PayResponse {
        status,
        body: json!({ "error": error }),
    }
}

impl Backend for FaultyBackend {
    fn handle(
        &self,
        request: PayRequest,
    ) -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>> {
        Box::pin(async move {
            let fault = self.pick(&request.operation);
            match fault {
                None => self.inner.handle(request).await,
                Some(Fault::Error { status }) => error_response(status, None),
                Some(Fault::RateLimit { retry_after }) => error_response(429, Some(retry_after)),
                Some(Fault::Delay {
                    delay,
                    after_commit: false,
                }) => {
                    tokio::time::sleep(delay).await;
                    self.inner.handle(request).await
                }
                Some(Fault::Delay {
                    delay,
                    after_commit: true,
                }) => {
                    let response = self.inner.handle(request).await;
                    tokio::time::sleep(delay).await;
                    response
                }
                Some(Fault::DropAfterCommit) => {
                    let _committed = self.inner.handle(request).await;
                    PayResponse {
                        status: DROP_CONNECTION,
                        body: serde_json::Value::Null,
                    }
                }
            }
        })
    }
}
