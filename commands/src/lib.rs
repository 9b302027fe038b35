//! The command side: cqrs-es over the event store, and the services commands
//! need around the pure domain.
//!
//! The life of a write: the API builds a domain command from a validated
//! request and a [`CommandContext`] (the caller, from the verified token), then
//! [`Commands::execute`] loads the aggregate from the event store, checks the
//! tenant and the expected version in one place, lets the aggregate decide, and
//! commits the events with their metadata. Nothing else is written on this path.
//!
//! - [`db`]: the event store database (Postgres via postgres-es, or SQLite via
//!   sqlite-es) and our own migrations.
//! - [`executor`]: [`Commands`], the one way to run a command.
//! - [`append`]: writing event rows, for a command and in bulk (the seed).
//! - [`events`]: reading stored events in commit order (relay, replay, history).
//! - [`passwords`]: argon2id hashing and verification, off the async threads.
//! - [`accounts`], [`photos`], [`external_ids`]: use cases that span
//!   aggregates (sign-up, users, a customer's photo, a customer's external
//!   id), run as short sagas over [`Commands::execute`].
//! - [`objects`]: the object store for photo bytes (S3 via `minio`, or local files).

pub mod accounts;
pub mod append;
pub mod applied;
pub mod context;
pub mod db;
pub mod error;
pub mod events;
pub mod executor;
pub mod external_ids;
pub mod imports;
pub mod objects;
pub mod passwords;
pub mod photos;

pub use context::CommandContext;
pub use db::{Db, Dialect};
pub use error::CommandError;
pub use executor::{Commands, Expect, Outcome};
