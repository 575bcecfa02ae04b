//! Route path matching and percent-decoding of arbitrary request paths: never panics, and a
//! matched path expands back to a path that matches with the same values.
#![no_main]

use altan_pay::pay::routes::{RouteTable, RouteValues, percent_decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let _ = percent_decode(data);
    for (_, route) in RouteTable::embedded().iter() {
        if let Some(found) = route.match_path(data) {
            let values = RouteValues {
                account_id: found.get("account_id").map(String::as_str),
                id: found.get("id").map(String::as_str),
                stripe_connect_id: Some("acct_x"),
            };
            if let Ok(expanded) = route.expand(&values) {
                let path = expanded.split('?').next().unwrap_or("");
                assert_eq!(route.match_path(path), Some(found));
            }
        }
    }
});
