//! NATS subjects of events: `<prefix>.<company>.<aggregate_type>.<id>`, so a
//! consumer can filter by company or aggregate type.
use commands::events::StoredEvent;

pub const SUBJECT_PREFIX: &str = "crm.events";

/// One subject token: NATS separates tokens with `.` and gives `*`, `>` and
/// whitespace meaning, so anything outside `[A-Za-z0-9_-]` becomes `_`.
pub(crate) fn token(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_owned();
    }
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `crm.events.<company>.<aggregate_type>.<id>`.
pub fn subject(event: &StoredEvent) -> String {
    subject_with(SUBJECT_PREFIX, event)
}

pub fn subject_with(prefix: &str, event: &StoredEvent) -> String {
    let company = event
        .meta(commands::context::META_COMPANY_ID)
        .unwrap_or("none");
    subject_of(prefix, company, &event.aggregate_type, &event.aggregate_id)
}

/// `<prefix>.<company>.<aggregate_type>.<id>`, each part one token.
pub(crate) fn subject_of(prefix: &str, company: &str, aggregate_type: &str, id: &str) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        token(company),
        token(aggregate_type),
        token(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(company: Option<&str>, aggregate_type: &str, id: &str) -> StoredEvent {
        StoredEvent {
            position: 1,
            transaction_id: 1,
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            sequence: 1,
            event_type: "X".into(),
            event_version: "1.0".into(),
            payload: json!({}),
            metadata: company.map_or(json!({}), |c| json!({ "company_id": c })),
        }
    }

    #[test]
    fn subjects_have_safe_tokens() {
        assert_eq!(
            subject(&event(Some("c-1"), "user", "ada.l@example.com")),
            "crm.events.c-1.user.ada_l_example_com"
        );
        assert_eq!(
            subject(&event(None, "company", "x y*>")),
            "crm.events.none.company.x_y__"
        );
        assert_eq!(
            subject(&event(Some(""), "customer", "id")),
            "crm.events._.customer.id"
        );
    }
}
