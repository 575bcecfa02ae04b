//! Operator metrics: one process-wide registry that the agent, the store, the events intake
//! and the server update, rendered by `GET /metrics` in the Prometheus text format.
//!
//! A global behind a `OnceLock` rather than a handle passed through every builder: Prometheus
//! scrapes a process, so one registry per process is what is exported anyway; the library
//! keeps working without a server (updating a metric is an atomic add, nobody has to read
//! it); and the store's commit thread, the events intake and the agent need no new
//! constructor argument. The cost: two agents in one process add into the same counters.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::tools::ErrorCode;

type Labels1 = [(&'static str, &'static str); 1];
type Counters1 = Family<Labels1, Counter>;
/// Labels whose values are only known at run time (tool names, routes, statuses).
type Owned<const N: usize> = [(&'static str, String); N];
type Histograms1 = Family<Owned<1>, Histogram, fn() -> Histogram>;

/// Every metric of the process. Read it with [`global`].
pub struct Metrics {
    registry: Registry,
    turns: Counters1,
    tool_calls: Family<Owned<2>, Counter>,
    model_calls: Counters1,
    model_latency: Histogram,
    tokens: Counters1,
    sync_plans: Counters1,
    uncertain_pending: Gauge,
    /// Uncertain writes per thread as last seen, so the gauge is their sum.
    uncertain_by_thread: Mutex<HashMap<String, i64>>,
    commit_latency: Histogram,
    commit_batch: Histogram,
    stripe_events: Counters1,
    http_requests: Family<Owned<2>, Counter>,
    http_latency: Histograms1,
}

/// Latency buckets from 100 µs to about 26 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("altan_pay");
        let m = Metrics {
            registry: Registry::default(),
            turns: Counters1::default(),
            tool_calls: Family::default(),
            model_calls: Counters1::default(),
            model_latency: seconds(),
            tokens: Counters1::default(),
            sync_plans: Counters1::default(),
            uncertain_pending: Gauge::default(),
            uncertain_by_thread: Mutex::default(),
            commit_latency: seconds(),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            stripe_events: Counters1::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(seconds),
        };
        registry.register(
            "turns",
            "Turns answered, by status (completed, stopped, failed)",
            m.turns.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls, by tool and outcome (ok or the error code the model saw)",
            m.tool_calls.clone(),
        );
        registry.register(
            "model_calls",
            "Model calls, by outcome (ok, error)",
            m.model_calls.clone(),
        );
        registry.register(
            "model_call_duration_seconds",
            "Time of one model call, whatever its outcome",
            m.model_latency.clone(),
        );
        registry.register(
            "tokens",
            "Tokens reported by the model server, by kind (input, output, cached: the part of input read from the prompt cache)",
            m.tokens.clone(),
        );
        registry.register(
            "sync_plans",
            "Sync plans handed to Altan (emitted) and Altan's answers to them (acknowledged, failed)",
            m.sync_plans.clone(),
        );
        registry.register(
            "uncertain_writes_pending",
            "Stripe writes of unknown outcome waiting to be confirmed, in the threads this process served",
            m.uncertain_pending.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time of one group commit of the session store (transaction and fsync)",
            m.commit_latency.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Writes per group commit of the session store",
            m.commit_batch.clone(),
        );
        registry.register(
            "stripe_events",
            "Stripe events received, by status (applied, duplicate, ignored, rejected)",
            m.stripe_events.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served, by route template and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from the request to the response head, by route template",
            m.http_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Everything in the Prometheus text format (with OpenMetrics' `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// One turn answered; `status`: `completed`, `stopped` or `failed`.
    pub fn turn(&self, status: &'static str) {
        self.turns.get_or_create(&[("status", status)]).inc();
    }

    /// One tool call and what came of it; `None` is success. A name the model made up is
    /// counted as `unknown`, so the model cannot grow the label set.
    pub fn tool_call(&self, tool: &str, error: Option<ErrorCode>) {
        let (tool, outcome) = match error {
            None => (tool.to_string(), "ok".to_string()),
            Some(ErrorCode::UnknownTool) => ("unknown".to_string(), "unknown_tool".to_string()),
            Some(code) => (tool.to_string(), code_name(code)),
        };
        self.tool_calls
            .get_or_create(&[("tool", tool), ("outcome", outcome)])
            .inc();
    }

    /// One model call, whatever its outcome: counts it, records how long it took, and adds the
    /// tokens the server reported.
    pub fn model_call(&self, ok: bool, took: Duration, usage: Option<&crate::model::Usage>) {
        let outcome = if ok { "ok" } else { "error" };
        self.model_calls
            .get_or_create(&[("outcome", outcome)])
            .inc();
        self.model_latency.observe(took.as_secs_f64());
        if let Some(u) = usage {
            for (kind, n) in [
                ("input", u.prompt_tokens),
                ("output", u.completion_tokens),
                ("cached", u.cached_tokens),
            ] {
                self.tokens.get_or_create(&[("kind", kind)]).inc_by(n);
            }
        }
    }

    /// `state`: `emitted`, `acknowledged` or `failed`.
    pub fn sync_plan(&self, state: &'static str) {
        self.sync_plans.get_or_create(&[("state", state)]).inc();
    }

    /// The thread now has `pending` writes of unknown outcome.
    pub fn uncertain_writes(&self, thread_id: &str, pending: usize) {
        let mut by_thread = self
            .uncertain_by_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending == 0 {
            by_thread.remove(thread_id);
        } else {
            by_thread.insert(thread_id.to_string(), pending as i64);
        }
        self.uncertain_pending.set(by_thread.values().sum());
    }

    /// One group commit of the session store: how long it took (transaction and fsync) and how many
    /// writes it carried.
    pub fn store_commit(&self, took: Duration, writes: usize) {
        self.commit_latency.observe(took.as_secs_f64());
        self.commit_batch.observe(writes as f64);
    }

    /// `status`: the receipt's (`applied`, `duplicate`, `ignored`) or `rejected`.
    pub fn stripe_event(&self, status: &'static str) {
        self.stripe_events
            .get_or_create(&[("status", status)])
            .inc();
    }

    /// One HTTP request served: `route` is the route template (never the raw path, so ids cannot
    /// grow the label set), `took` the time to the response head.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&[("route", route.to_string()), ("status", status.to_string())])
            .inc();
        self.http_latency
            .get_or_create(&[("route", route.to_string())])
            .observe(took.as_secs_f64());
    }
}

/// The code's own name as the model sees it (serde's snake_case), for labels and attributes.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_families_carry_their_labels_and_counts() {
        let m = Metrics::new();
        m.tool_call("create_product", None);
        m.tool_call("create_product", Some(ErrorCode::NotFound));
        m.tool_call("made_up", Some(ErrorCode::UnknownTool));
        m.uncertain_writes("t1", 2);
        m.uncertain_writes("t2", 1);
        m.uncertain_writes("t1", 0);
        let text = m.render();
        assert!(
            text.contains(r#"altan_pay_tool_calls_total{tool="create_product",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"altan_pay_tool_calls_total{tool="create_product",outcome="not_found"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"altan_pay_tool_calls_total{tool="unknown",outcome="unknown_tool"} 1"#),
            "{text}"
        );
        assert!(!text.contains("made_up"), "{text}");
        assert!(
            text.contains("altan_pay_uncertain_writes_pending 1\n"),
            "{text}"
        );
    }
}
