//! The read side: projections that turn events into company-scoped read
//! models, the feeds that bring events to them, and the queries the API runs.
//!
//! - [`view`]: the projection contract and the exactly-once-in-effect driver.
//! - [`views`]: the read models (`companies`, `users`, `customers`, `photos`).
//! - [`feed`]: how events arrive: in process after each commit (embedded), or
//!   relay → NATS JetStream → durable consumers (full stack).
//! - [`policy`]: process managers that react to events with commands.
//! - [`read`]: the queries behind every GET, each taking the caller's company.
//! - [`consistency`]: read-your-writes waits for a write's events.
//! - [`lag`]: how far each view is behind, which bounds the writes accepted.
//! - [`public`]: the public events integrations see (feed and webhooks).
//! - [`webhooks`]: webhook endpoints, the dispatcher and the sender.
//! - [`rebuild`]: replaying the event store into a shadow table, then swapping.

pub mod consistency;
pub mod feed;
pub mod lag;
pub mod policy;
pub mod public;
pub mod read;
pub mod rebuild;
pub mod status;
pub mod view;
pub mod views;
pub mod webhooks;
