//! Objects Stripe changes on its own reach Altan: signed Stripe events in, pending syncs out
//! (next answer, listing, room post), and reconciliation of the database mirror against Stripe.

mod http;
mod intake;
mod pending_syncs;
mod poster;
pub mod reconcile;

/// Stripe's webhook signature, kept here too where the events endpoint's users look for it.
pub use crate::stripe::signature;
pub use http::{MAX_EVENT_BYTES, router};
pub use intake::{
    AccountMap, EventsConfig, EventsState, HANDLED_EVENT_TYPES, IntakeError, Receipt,
};
pub use pending_syncs::{
    Applied, EventRecord, PendingEntry, PendingStore, SqlitePendingStore, Versioned,
};
pub use poster::{RoomConfig, RoomPoster, handoff_text};
