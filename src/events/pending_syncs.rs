//! The durable side of event intake lives with the other stores (`store::pending`, SQLite or
//! PostgreSQL); these are its names as the events part uses them.

pub use crate::agent::StoreError;
pub use crate::store::pending::{
    Applied, EventRecord, PendingEntry, PendingStore, SqlitePendingStore, Versioned,
};
