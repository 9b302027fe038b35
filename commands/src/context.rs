//! Who runs a command, for which company, and when: the metadata stored
//! beside every event.
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{CompanyId, UserId};
use std::collections::HashMap;
use uuid::Uuid;

pub const META_COMPANY_ID: &str = "company_id";
pub const META_USER_ID: &str = "user_id";
pub const META_CORRELATION_ID: &str = "correlation_id";
pub const META_OCCURRED_AT: &str = "occurred_at";
/// A digest of the request that an `Idempotency-Key` named, so a repeat of
/// the key with another body can be told from a retry.
pub const META_REQUEST_DIGEST: &str = "request_digest";
/// `api_key` when the actor (`user_id`) is an API key's id, absent for a user:
/// public events name the actor by its kind.
pub const META_ACTOR_KIND: &str = "actor_kind";
pub const ACTOR_API_KEY: &str = "api_key";

/// The caller of a command. Built by the API from the verified token only.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub company_id: CompanyId,
    pub user_id: UserId,
    pub correlation_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub request_digest: Option<String>,
    /// Whether `user_id` is an API key's id rather than a user's.
    pub api_key: bool,
}

impl CommandContext {
    pub fn new(company_id: CompanyId, user_id: UserId, correlation_id: Uuid) -> Self {
        Self {
            company_id,
            user_id,
            correlation_id,
            occurred_at: Utc::now(),
            request_digest: None,
            api_key: false,
        }
    }

    /// Marks the actor as an API key (its id is in `user_id`).
    pub fn by_api_key(mut self, api_key: bool) -> Self {
        self.api_key = api_key;
        self
    }

    /// Stores `digest` (of the request an `Idempotency-Key` named) with the events.
    pub fn with_request_digest(mut self, digest: Option<String>) -> Self {
        self.request_digest = digest;
        self
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::from([
            (META_COMPANY_ID.to_owned(), self.company_id.to_string()),
            (META_USER_ID.to_owned(), self.user_id.to_string()),
            (
                META_CORRELATION_ID.to_owned(),
                self.correlation_id.to_string(),
            ),
            (META_OCCURRED_AT.to_owned(), self.occurred_at_text()),
        ]);
        if let Some(digest) = &self.request_digest {
            metadata.insert(META_REQUEST_DIGEST.to_owned(), digest.clone());
        }
        if self.api_key {
            metadata.insert(META_ACTOR_KIND.to_owned(), ACTOR_API_KEY.to_owned());
        }
        metadata
    }

    /// The command's time as its events store it.
    pub fn occurred_at_text(&self) -> String {
        self.occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}
