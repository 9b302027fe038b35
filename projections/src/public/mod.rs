//! Public events: the versioned, documented events integrations receive
//! (the pull feed `GET /v1/events` and webhooks), kept apart from the
//! internal event types so those stay free to change.
//!
//! A public event is made from one stored event: its type comes from
//! [`EventType::of`], its id from the stored event's place
//! ([`event_id`], so a redelivery carries the same id), and its `data`, the
//! resource as that event left it, from the views' own folds ([`render`]).
use commands::events::StoredEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod render;
pub use render::render;

/// The schema version of [`PublicEvent`]; a breaking change gets a new one.
pub const SCHEMA_VERSION: &str = "2026-12-01";

/// The largest serialized public event, in bytes.
pub const MAX_EVENT_BYTES: usize = 20_000;

/// Every public event type. `customer.erased` is listed for the contract; no
/// internal event maps to it yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "customer.created")]
    CustomerCreated,
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    #[serde(rename = "customer.deleted")]
    CustomerDeleted,
    #[serde(rename = "customer.restored")]
    CustomerRestored,
    #[serde(rename = "customer.photo_attached")]
    CustomerPhotoAttached,
    #[serde(rename = "customer.photo_removed")]
    CustomerPhotoRemoved,
    #[serde(rename = "customer.erased")]
    CustomerErased,
    #[serde(rename = "photo.uploaded")]
    PhotoUploaded,
    #[serde(rename = "photo.rejected")]
    PhotoRejected,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.role_changed")]
    UserRoleChanged,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "company.renamed")]
    CompanyRenamed,
}

/// Which stored events become which public type: `(aggregate_type,
/// event_type, public type)`. Anything not here (password changes, admin
/// grants, a photo's own attach record) stays internal.
const MAPPING: &[(&str, &str, EventType)] = &[
    ("customer", "CustomerRegistered", EventType::CustomerCreated),
    (
        "customer",
        "CustomerDetailsChanged",
        EventType::CustomerUpdated,
    ),
    ("customer", "CustomerDeleted", EventType::CustomerDeleted),
    ("customer", "CustomerRestored", EventType::CustomerRestored),
    (
        "customer",
        "CustomerPhotoAttached",
        EventType::CustomerPhotoAttached,
    ),
    (
        "customer",
        "CustomerPhotoDetached",
        EventType::CustomerPhotoRemoved,
    ),
    ("photo", "PhotoUploaded", EventType::PhotoUploaded),
    ("photo", "PhotoRejected", EventType::PhotoRejected),
    ("user", "UserRegistered", EventType::UserCreated),
    ("user", "UserProfileChanged", EventType::UserUpdated),
    ("user", "UserEmailChanged", EventType::UserUpdated),
    ("user", "UserRoleChanged", EventType::UserRoleChanged),
    ("user", "UserRemoved", EventType::UserDeleted),
    ("company", "CompanyRenamed", EventType::CompanyRenamed),
];

impl EventType {
    pub const ALL: [EventType; 14] = [
        Self::CustomerCreated,
        Self::CustomerUpdated,
        Self::CustomerDeleted,
        Self::CustomerRestored,
        Self::CustomerPhotoAttached,
        Self::CustomerPhotoRemoved,
        Self::CustomerErased,
        Self::PhotoUploaded,
        Self::PhotoRejected,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserRoleChanged,
        Self::UserDeleted,
        Self::CompanyRenamed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::CustomerDeleted => "customer.deleted",
            Self::CustomerRestored => "customer.restored",
            Self::CustomerPhotoAttached => "customer.photo_attached",
            Self::CustomerPhotoRemoved => "customer.photo_removed",
            Self::CustomerErased => "customer.erased",
            Self::PhotoUploaded => "photo.uploaded",
            Self::PhotoRejected => "photo.rejected",
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserRoleChanged => "user.role_changed",
            Self::UserDeleted => "user.deleted",
            Self::CompanyRenamed => "company.renamed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The public type of a stored event, if it has one.
    pub fn of(event: &StoredEvent) -> Option<Self> {
        MAPPING
            .iter()
            .find(|(aggregate, name, _)| {
                *aggregate == event.aggregate_type && *name == event.event_type
            })
            .map(|(_, _, public)| *public)
    }

    /// The stored event types that become one of `types` (all public types
    /// when `types` is empty): what a reader asks the event store for.
    pub fn stored_types(types: &[EventType]) -> Vec<&'static str> {
        MAPPING
            .iter()
            .filter(|(_, _, public)| types.is_empty() || types.contains(public))
            .map(|(_, name, _)| *name)
            .collect()
    }
}

/// Who made the change: a user, or (once API keys exist) an API key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// One public event, as the feed and webhooks send it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: String,
    pub company_id: String,
    pub actor: Actor,
    /// The resource as the change left it.
    pub data: serde_json::Value,
    /// On `*.updated`: the fields of `data` the change touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_fields: Option<Vec<String>>,
}

/// The namespace of public event ids (UUIDv5), fixed forever: changing it
/// would change every id and make integrations deliver twice.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_3f52_8e0b_4d7a_9c41_5b2e_7f90_13d8);

/// The public id of a stored event: derived from its place in its stream
/// (`<aggregate_type>:<id>:<sequence>`), so every rendering of it, now or
/// after a crash, carries the same id.
pub fn event_id(event: &StoredEvent) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, event.message_id().as_bytes())
}

/// A stored time (microseconds) as the API shows it (milliseconds, UTC).
pub fn api_time(stored: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stored)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|_| stored.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_type_round_trips_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        assert_eq!(EventType::parse("customer.nope"), None);
    }

    #[test]
    fn stored_event_names_are_unique_so_a_type_filter_needs_no_aggregate() {
        let mut names: Vec<_> = MAPPING.iter().map(|(_, n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MAPPING.len());
    }

    #[test]
    fn a_type_filter_names_exactly_its_stored_types() {
        assert_eq!(
            EventType::stored_types(&[EventType::UserUpdated]),
            vec!["UserProfileChanged", "UserEmailChanged"]
        );
        assert_eq!(EventType::stored_types(&[]).len(), MAPPING.len());
        assert!(EventType::stored_types(&[EventType::CustomerErased]).is_empty());
    }

    #[test]
    fn the_id_is_stable_and_names_the_stored_event() {
        let stored = crate::views::test_support::stored("customer", 3, &serde_json::json!({}));
        let mut later = stored.clone();
        later.position = 999;
        assert_eq!(event_id(&stored), event_id(&later));
        later.sequence = 4;
        assert_ne!(event_id(&stored), event_id(&later));
    }
}
