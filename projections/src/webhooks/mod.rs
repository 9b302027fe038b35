//! Webhooks: company endpoints that receive the public events, signed the
//! Standard Webhooks way.
//!
//! The flow: the [`dispatch::Dispatcher`] reads committed events in commit
//! order (its own checkpoint, like any consumer), renders the public ones
//! and records one delivery row per matching enabled webhook, in the same
//! transaction as its checkpoint; the [`send::Sender`] claims due deliveries
//! and posts them, each endpoint in its own task so a slow one holds up no
//! other, retrying on the Standard Webhooks schedule. A crash anywhere only
//! repeats work: a delivery row exists once per (webhook, event), and an
//! unfinished attempt is claimed again when its claim runs out, with the
//! same body and `webhook-id`.
//!
//! Endpoints themselves are configuration in a plain table ([`store`]).
pub mod dispatch;
pub mod send;
pub mod sign;
pub mod store;
pub mod target;

/// Which targets the operator allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetPolicy {
    /// Loopback, private, link-local targets (for tests and closed networks).
    pub allow_private: bool,
    /// `http://` URLs (otherwise only `https://`).
    pub allow_http: bool,
}

/// A stored time: RFC 3339 UTC with microseconds, so text order is time order.
pub fn stored_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
