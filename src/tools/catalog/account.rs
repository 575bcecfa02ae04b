//! The account tool: the Stripe Connect id of the Altan account.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tools::{Facts, PayTool};

/// Look up the Stripe Connect id (acct_...) of the Altan account. Other tools find it by
/// themselves; call this only when the user asks for it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectIdArgs {}

pub(crate) struct GetAccountStripeConnectionId;
impl PayTool for GetAccountStripeConnectionId {
    const NAME: &'static str = "get_account_stripe_connection_id";
    type Args = ConnectIdArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["account.stripe_connect_id"]);
}
