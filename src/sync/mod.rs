//! Stripe-to-database sync: the ledger of Stripe mutations, the sync plan Altan applies, its
//! acknowledgements, plan signatures, and the final answer that hands the plan to Altan with
//! one mention.

mod ack;
mod compose;
mod ledger;
mod mapping;
mod signing;

pub use ack::{
    Ack, AckProblem, AckReport, AckStatus, Inconsistency, PendingSyncs, SentSync, SyncStatus,
    SyncTarget, parse_acknowledgements,
};
pub use compose::{
    AnswerInput, CUT_NOTE, ComposedAnswer, DEFAULT_BOUNCE_THRESHOLD, Member, MemberKind, Mention,
    PLAN_FENCE, PLAN_MARKER, PlanBlockError, Room, RoomMessage, compose_answer, contains_thanks,
    detect_agents_bouncing, plan_blocks,
};
pub use ledger::{
    Effect, KnownObjects, Mutation, MutationSource, NotSynced, Op, OpOrigin, Outcome,
    RelatedObjects, RowChange, SyncLedger, SyncOperation, SyncPlan,
};
// For the mirror's applier, which only the `postgres` feature builds.
#[cfg(feature = "postgres")]
pub(crate) use mapping::pg_safe;
pub use mapping::{
    Column, ColumnPath, ColumnPathError, ColumnType, MappingError, ObjectKind, SyncMapping,
    TableMapping,
};
#[cfg(feature = "postgres")]
pub(crate) use signing::SIGNATURE_FIELD;
pub use signing::{
    PlanSignatureError, PlanSigningKey, SIGNATURE_PREFIX, SigningKeyError, canonical_json,
};
