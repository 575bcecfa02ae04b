//! The database side of the sync plan: the mirror's PostgreSQL schema, derived from the sync
//! mapping, and the applier that reads only the runtime's marked plan block, checks its
//! signature when given the key, writes one plan in one transaction and acknowledges it.

pub mod apply;
pub mod pg;
pub mod schema;

pub use apply::{
    Acknowledgement, AppliedPlan, ApplyError, ApplyOptions, OpResult, ParsedPlan, PlanError, PlanOp,
    apply_file, apply_plan, apply_signed_text, apply_text, parse_plan, parse_signed_plan,
};
pub use pg::{Connected, TableProblem, check_tables, connect, error_message, quote_ident};
pub use schema::{DELETED_TABLE, SchemaError, SchemaOptions, ddl, ddl_for, pg_type};
