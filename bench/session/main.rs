//! Memory per idle session and cold start to the first answer, through the library.
//!
//! - cold start: from `main` to the first completed answer of the benchmark scenario (agent
//!   built: prompt rendered, tool schemas generated; sandbox gateway spawned in process on
//!   127.0.0.1; zero-latency in-process model).
//! - idle session: after N conversations of the scenario, the heap bytes held by the
//!   `MemoryStore` and the agent's per-thread state, measured with a counting allocator:
//!   (heap after N conversations − heap before) / N, and the deep size of one stored
//!   `Session` (heap bytes of a clone), and its JSON size.
//!
//! Prints one JSON line. `cargo run --release --example bench_session`

#[path = "../instant_model.rs"]
mod instant_model;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use altan_pay::agent::Agent;
use altan_pay::gateway::sandbox::derived_connect_id;
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use serde_json::json;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ACCOUNT: &str = "ws_bench";
const N: usize = 200;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let start = Instant::now();
    let routes = RouteTable::embedded();
    let sandbox = Sandbox::in_memory();
    let gateway = spawn(routes.clone(), Arc::new(sandbox.clone()), None)
        .await
        .map_err(|e| e.to_string())?;
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url)))
        .map_err(|e| e.to_string())?;
    let agent = Agent::builder()
        .model(Arc::new(instant_model::InstantModel))
        .pay(pay)
        .build()
        .map_err(|e| e.to_string())?;
    let context = AgentContext {
        account_id: Some(ACCOUNT.into()),
        stripe_connect_id: Some(derived_connect_id(ACCOUNT)),
        ..Default::default()
    };
    let said = [RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: "Create Pro at $20/month and $200/year".into(),
    }];
    agent
        .respond("cold", &context, &said)
        .await
        .map_err(|e| e.to_string())?;
    let cold_start_ms = start.elapsed().as_secs_f64() * 1e3;

    // Warm the pools, then count what N idle sessions keep (the sandbox's own Stripe objects
    // are counted separately and subtracted: they are the backend's, not the session's).
    for i in 0..5 {
        let _ = agent.respond(&format!("warm{i}"), &context, &said).await;
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut gateway_bytes = 0isize;
    for i in 0..N {
        let _ = agent.respond(&format!("idle{i}"), &context, &said).await;
        // What one conversation adds to the sandbox: the same three objects made directly.
        let g0 = LIVE.load(Ordering::Relaxed);
        let _ = sandbox.handle_now(&altan_pay::gateway::PayRequest {
            operation: "products.create".into(),
            account_id: ACCOUNT.into(),
            stripe_connect_id: Some(derived_connect_id(ACCOUNT)),
            id: None,
            params: serde_json::Map::from_iter([("name".to_string(), json!("Pro"))]),
            idempotency_key: None,
        });
        gateway_bytes += LIVE.load(Ordering::Relaxed) - g0;
    }
    let after = LIVE.load(Ordering::Relaxed);
    // Three objects per conversation, one of which was just measured (a product; prices are
    // of the same order): 3 × the product's bytes, and the extra products made above.
    let per_conv_total = (after - before) as f64 / N as f64;
    let product_bytes = gateway_bytes as f64 / N as f64;
    let per_session_est = per_conv_total - product_bytes - 3.0 * product_bytes;

    let session = agent
        .store()
        .load("idle0")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no stored session")?;
    let c0 = LIVE.load(Ordering::Relaxed);
    let copy = session.clone();
    let deep = LIVE.load(Ordering::Relaxed) - c0 + std::mem::size_of_val(&copy) as isize;
    let json_bytes = serde_json::to_vec(&session).map(|v| v.len()).unwrap_or(0);
    drop(copy);
    println!(
        "{}",
        json!({
            "cold_start_ms": cold_start_ms,
            "sessions": N,
            "heap_per_conversation_bytes": per_conv_total,
            "sandbox_bytes_per_object": product_bytes,
            "idle_session_estimate_bytes": per_session_est,
            "session_deep_bytes": deep,
            "session_json_bytes": json_bytes,
            "history_messages": session.history.len(),
        })
    );
    Ok(())
}
