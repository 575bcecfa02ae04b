//! Stripe form decoding: never panics, and what decodes re-encodes to the same value.
#![no_main]

use altan_pay::pay::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(value) = form::decode(data) {
        let again = form::decode(&form::encode(&value));
        assert_eq!(
            again.ok(),
            Some(value),
            "decode(encode(v)) != v for {data:?}"
        );
    }
});
