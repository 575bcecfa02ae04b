//! Idempotency keys derived from where a call comes from, so that resending the same tool
//! call (after a timeout, a crash, a replay) can never make a second Stripe object.

use uuid::Uuid;

/// The namespace of altan-pay's keys (a fixed UUID, so keys are stable across versions).
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_4e8a_a0f1_5c7d_2e9b_3a41);

/// `altan-pay-<uuid v5>` of the conversation, the tool call id and the operation. The same
/// three always give the same key; any other triple gives another.
pub fn idempotency_key(conversation_id: &str, tool_call_id: &str, operation: &str) -> String {
    // Lengths first, so ("a:b", "c") and ("a", "b:c") cannot collide.
    let name = format!(
        "{}:{conversation_id}:{}:{tool_call_id}:{operation}",
        conversation_id.len(),
        tool_call_id.len()
    );
    format!("altan-pay-{}", Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        let a = idempotency_key("thread-1", "call_1", "products.create");
        assert_eq!(a, idempotency_key("thread-1", "call_1", "products.create"));
        assert!(a.starts_with("altan-pay-"));
        assert_ne!(a, idempotency_key("thread-1", "call_2", "products.create"));
        assert_ne!(a, idempotency_key("thread-2", "call_1", "products.create"));
        assert_ne!(a, idempotency_key("thread-1", "call_1", "prices.create"));
        assert_ne!(
            idempotency_key("a:b", "c", "x"),
            idempotency_key("a", "b:c", "x")
        );
    }
}
