//! altan-pay: a runtime for the Altan Pay agent.
//!
//! Parts (see DESIGN.md): [`stripe`] object types, [`pay`] the Altan Pay API client.

pub mod gateway;
pub mod pay;
pub mod stripe;
