//! Upcasters turn stored payloads of older event versions into the current
//! shape when they are read, so aggregates and projections only know the
//! current events.
use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

/// `CustomerRegistered` 1.0 named the actor `created_by` and had no `phone`.
fn customer_registered_v1_to_v2(mut payload: Value) -> Value {
    if let Some(body) = payload
        .get_mut("CustomerRegistered")
        .and_then(Value::as_object_mut)
    {
        if let Some(by) = body.remove("created_by") {
            body.insert("by".to_owned(), by);
        }
        body.entry("phone").or_insert(Value::Null);
    }
    payload
}

/// Every upcaster, for the event store and for the read side's own readers.
pub fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "CustomerRegistered",
        "2.0",
        Box::new(customer_registered_v1_to_v2),
    ))]
}

/// Applies every upcaster that matches to one stored payload.
pub fn upcast(event_type: &str, event_version: &str, payload: Value) -> Value {
    let mut payload = payload;
    for upcaster in all() {
        if upcaster.can_upcast(event_type, event_version) {
            let event = cqrs_es::persist::SerializedEvent::new(
                String::new(),
                0,
                String::new(),
                event_type.to_owned(),
                event_version.to_owned(),
                payload,
                Value::Null,
            );
            payload = upcaster.upcast(event).payload;
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerEvent;
    use serde_json::json;

    #[test]
    fn customer_registered_v1_payload_reads_as_the_current_event() {
        let company = "0193a0a0-0000-7000-8000-000000000001";
        let user = "0193a0a0-0000-7000-8000-000000000002";
        let old = json!({"CustomerRegistered": {
            "company_id": company, "name": "Ada", "surname": "Lovelace",
            "email": null, "notes": null, "created_by": user
        }});
        let event: CustomerEvent =
            serde_json::from_value(upcast("CustomerRegistered", "1.0", old)).unwrap();
        match event {
            CustomerEvent::CustomerRegistered {
                by, phone, name, ..
            } => {
                assert_eq!(by.to_string(), user);
                assert_eq!(phone, None);
                assert_eq!(name.as_str(), "Ada");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn current_version_payload_is_left_alone() {
        let payload = json!({"CustomerRegistered": {"by": "x"}});
        assert_eq!(
            upcast("CustomerRegistered", "2.0", payload.clone()),
            payload
        );
    }
}
