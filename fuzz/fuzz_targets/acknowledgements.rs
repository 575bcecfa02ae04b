//! Altan's acknowledgements read from arbitrary room text: never panics, ids are sync ids.
#![no_main]

use altan_pay::sync::parse_acknowledgements;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    for ack in parse_acknowledgements(data) {
        assert!(data.contains(&ack.sync_id));
    }
});
