//! Small helpers the sandbox's resources share: ids, clocks, calendar arithmetic, metadata
//! merging, optional-field copying with Stripe's "empty string unsets" rule, and the end of a
//! subscription (which deleting a customer causes too).

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::gateway::error::GatewayRefusal;

/// Seconds since the epoch (0 if the clock is before 1970, which no test machine is), or the
/// fixed clock of a deterministic request.
pub fn now() -> i64 {
    if let Some(clock) = DETERMINISTIC.with(|d| d.borrow().as_ref().map(|d| d.clock)) {
        return clock;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Stripe-looking id: prefix plus `len` random alphanumerics (seeded ones in a
/// deterministic request).
pub fn random_id(prefix: &str, len: usize) -> String {
    let seeded = DETERMINISTIC.with(|d| {
        d.borrow_mut().as_mut().map(|d| {
            (&mut d.rng)
                .sample_iter(rand::distr::Alphanumeric)
                .take(len)
                .map(char::from)
                .collect::<String>()
        })
    });
    let tail = seeded.unwrap_or_else(|| {
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    });
    format!("{prefix}{tail}")
}

/// The seeded generator and fixed clock of the request being served on this thread.
pub struct Deterministic {
    pub rng: rand::rngs::StdRng,
    pub clock: i64,
}

thread_local! {
    static DETERMINISTIC: std::cell::RefCell<Option<Deterministic>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with seeded ids and a fixed clock on this thread. The sandbox serves a request
/// synchronously under its lock, so everything the request creates is covered.
pub fn with_determinism<T>(d: Deterministic, f: impl FnOnce() -> T) -> T {
    DETERMINISTIC.with(|cell| *cell.borrow_mut() = Some(d));
    let out = f();
    DETERMINISTIC.with(|cell| *cell.borrow_mut() = None);
    out
}

/// Random upper-case code, for coupon ids and promotion codes Stripe generates.
pub fn random_code(len: usize) -> String {
    random_id("", len).to_ascii_uppercase()
}

/// `ts` plus `count` intervals, with calendar months (day clamped to the month's length).
pub fn add_interval(ts: i64, interval: &str, count: i64) -> i64 {
    match interval {
        "day" => ts + count * 86_400,
        "week" => ts + count * 7 * 86_400,
        "year" => add_months(ts, count * 12),
        _ => add_months(ts, count),
    }
}

pub fn add_months(ts: i64, months: i64) -> i64 {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd) * 86_400 + secs
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Applies validated `metadata`: `""` clears all, a key with `""` is removed, others are set.
pub fn merge_metadata(obj: &mut Value, params: &Map<String, Value>) {
    let Some(update) = params.get("metadata") else {
        return;
    };
    ensure_object(obj);
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Map::new());
    }
    let Some(current) = obj["metadata"].as_object_mut() else {
        return;
    };
    match update {
        Value::Object(map) => {
            for (k, v) in map {
                if v.as_str() == Some("") {
                    current.remove(k);
                } else {
                    current.insert(k.clone(), v.clone());
                }
            }
        }
        _ => current.clear(),
    }
}

/// Copies the listed parameters onto the object; an empty string sets the field to null.
pub fn copy_fields(obj: &mut Value, params: &Map<String, Value>, names: &[&str]) {
    ensure_object(obj);
    for name in names {
        if let Some(v) = params.get(*name) {
            obj[*name] = match v {
                Value::String(s) if s.is_empty() => Value::Null,
                other => other.clone(),
            };
        }
    }
}

/// Makes `v` an object so `v[key] = ...` cannot panic on a badly seeded object.
pub fn ensure_object(v: &mut Value) {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
}

pub fn str_of<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params.get(name).and_then(Value::as_str)
}

/// Stripe's error when two exclusive parameters are both given.
pub fn exclusive(a: &str, b: &str) -> GatewayRefusal {
    GatewayRefusal::invalid(format!(
        "You may only specify one of these parameters: {a}, {b}."
    ))
    .code("parameters_exclusive")
    .param(b)
}

/// A reference to another object (in a parameter) that does not exist: 400, param named.
pub fn missing_ref(object: &str, id: &str, param: &str) -> GatewayRefusal {
    GatewayRefusal::invalid(format!("No such {object}: '{id}'"))
        .code("resource_missing")
        .param(param)
}

/// Canceled and incomplete_expired subscriptions are over for good.
pub fn is_ended(sub: &Value) -> bool {
    matches!(
        sub["status"].as_str(),
        Some("canceled" | "incomplete_expired")
    )
}

pub fn mark_canceled(sub: &mut Value, now: i64, details: Option<&Value>) {
    sub["status"] = json!("canceled");
    sub["canceled_at"] = json!(now);
    sub["ended_at"] = json!(now);
    sub["cancel_at_period_end"] = json!(false);
    sub["cancellation_details"] =
        json!({"comment": null, "feedback": null, "reason": "cancellation_requested"});
    if let Some(Value::Object(d)) = details {
        copy_fields(
            &mut sub["cancellation_details"],
            d,
            &["comment", "feedback"],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_clamp_to_month_end() {
        // 2024-01-31T12:00:00Z + 1 month = 2024-02-29T12:00:00Z (leap year).
        assert_eq!(add_months(1_706_702_400, 1), 1_709_208_000);
        // 2023-12-15 + 1 year = 2024-12-15.
        assert_eq!(add_interval(1_702_598_400, "year", 1), 1_734_220_800);
        assert_eq!(add_interval(0, "week", 2), 14 * 86_400);
    }
}
