//! Waiting on a condition instead of sleeping "long enough".

#![allow(dead_code)]

use std::time::Duration;

/// Waits until `done` holds, looking every 20 ms: true as soon as it does, false once `within`
/// has passed without it. Measured on Tokio's clock, so a test with paused time waits for none.
pub async fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
