//! What every aggregate shares: how its errors are classified, and how the
//! command side asks it which company it belongs to.
use crate::CompanyId;

/// How a rejected command should be understood by a caller. The HTTP layer
/// maps these to status codes; the domain knows nothing of HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainErrorKind {
    /// The thing the command is about does not exist.
    NotFound,
    /// The command contradicts the current state (already exists, deleted, last admin, ...).
    Conflict,
}

/// An aggregate that belongs to one company. The command side uses this, in
/// one place, to refuse commands from another company's users.
pub trait Tenanted: cqrs_es::Aggregate {
    /// `None` while the aggregate does not exist yet (or for global aggregates).
    fn company_id(&self) -> Option<CompanyId>;

    /// Whether `command` creates the aggregate. A creation that meets an
    /// aggregate of another company is "already exists" (a conflict), not
    /// "not found": ids are global.
    fn registers(command: &Self::Command) -> bool;
}

/// Writes decided events into the cqrs-es sink, which applies each to the
/// aggregate. Every `handle` is `decide` followed by this.
pub async fn emit<A: cqrs_es::Aggregate>(
    aggregate: &mut A,
    sink: &cqrs_es::event_sink::EventSink<A>,
    events: Vec<A::Event>,
) {
    for event in events {
        sink.write(event, aggregate).await;
    }
}
