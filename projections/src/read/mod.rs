//! The queries behind every GET. Each takes the caller's [`domain::CompanyId`]
//! first, so a query that forgets the tenant does not compile; rows of
//! another company are simply never found.
pub mod companies;
pub mod customers;
pub mod photos;
pub mod users;

/// Where a page ended: the last row's sort key and id. The API wraps it in an
/// opaque, signed cursor.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Keyset {
    pub key: String,
    pub id: String,
}

/// The upper bound of a prefix range: every string that starts with
/// `prefix` sorts (bytewise) below this.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}
