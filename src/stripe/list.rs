//! Stripe's list envelope and the `deleted_*` answer of a delete call.

use serde::{Deserialize, Serialize};

use super::Extra;

/// A page of objects (`object: "list"`, or `"search_result"` for search endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// `"list"`, or `"search_result"` for a search endpoint.
    pub object: String,
    /// The objects of this page, in Stripe's order (newest first for most lists).
    pub data: Vec<T>,
    /// More objects follow; page on with `starting_after` = the last id.
    pub has_more: bool,
    /// Always sent by Stripe; optional so hand-made lists parse too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Fields this struct does not name (`next_page`, `total_count`...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl<T> List<T> {
    /// A single complete page, as a sandbox or a test would build it.
    pub fn new(data: Vec<T>, url: Option<String>) -> Self {
        Self {
            object: "list".to_owned(),
            data,
            has_more: false,
            url,
            extra: Extra::new(),
        }
    }
}

/// What Stripe answers to a delete: the id and kind of the object that is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The id of the deleted object.
    pub id: String,
    /// The kind of the deleted object (`product`, `price`, `customer`, `coupon`...).
    pub object: String,
    /// Always `true` in Stripe's answers.
    pub deleted: bool,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}
