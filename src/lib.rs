//! altan-pay: a runtime for the Altan Pay agent.
//!
//! Parts (see DESIGN.md): [`stripe`] object types, [`pay`] the Altan Pay API client,
//! [`tools`] the tools the model calls, [`gateway`] a local Altan Pay API server.

pub mod gateway;
pub mod model;
pub mod pay;
pub mod stripe;
pub mod sync;
pub mod tools;
