//! The database side of the sync plan: the mirror's PostgreSQL schema, derived from the sync
//! mapping, and the applier that reads only the runtime's marked plan block, checks its
//! signature when given the key, writes one plan in one transaction and acknowledges it.

mod apply;
mod pg;
mod schema;

pub use apply::{
    Acknowledgement, AppliedPlan, ApplyError, ApplyOptions, OpResult, ParsedPlan, PlanError,
    PlanOp, apply_file, apply_plan, apply_signed_text, apply_text, parse_plan, parse_signed_plan,
};
pub use pg::{Connected, TableProblem, connect};
pub(crate) use pg::{check_tables, error_message, quote_ident};
pub use schema::{SchemaError, SchemaOptions, ddl, ddl_for, pg_type};
