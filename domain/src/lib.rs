//! The CRM domain: aggregates, their commands, events and errors, and the value
//! types they are built from. Pure: no I/O, no clock, no random source, no
//! framework types. Time, ids and password hashes come in with the commands.
//!
//! Aggregates (each a cqrs-es [`cqrs_es::Aggregate`], one file each):
//! - [`company::Company`] owns the admin roster, so "a company keeps at least
//!   one admin" is decided inside one consistency boundary.
//! - [`user::User`] is a person who logs in; its role mirrors the roster.
//! - [`email_claim::EmailClaim`] is one aggregate per normalized email: two
//!   concurrent signups with one address race on the same stream and only one
//!   can write its first event, which makes emails unique service-wide.
//! - [`external_id_claim::ExternalIdClaim`] does the same for a customer's
//!   `external_id` within its company.
//! - [`customer::Customer`] and [`photo::Photo`].
//!
//! [`decide`] lets every aggregate be written as a pure `decide` function and
//! an `apply` function; the cqrs-es `handle` only forwards to them.

pub mod company;
pub mod customer;
pub mod decide;
pub mod email_claim;
pub mod external_id_claim;
pub mod ids;
pub mod photo;
pub mod upcasters;
pub mod user;
pub mod values;

pub use decide::{DomainErrorKind, Tenanted};
pub use ids::{aggregate_type, CompanyId, CustomerId, Identified, PhotoId, UserId};
