//! Events on the bus: a message carries one event (a JSON object) or a run
//! of consecutive events of one aggregate type (a JSON array), in commit
//! order. With `sync_interval: always`, JetStream syncs its file once per
//! message, so a page of events published as a few messages instead of one
//! each is what lets the bus keep up with the event store. Readers accept
//! both shapes: a stream written before runs existed stays readable.
use bytes::Bytes;
use commands::events::StoredEvent;

use super::subject::{subject_of, subject_with};

/// At most this many bytes of events in one message (NATS refuses payloads
/// over its `max_payload`, 1 MiB by default).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// One message to publish.
#[derive(Debug)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: the event's own id, or `<first>..<last>` for a run.
    pub id: String,
    pub payload: Bytes,
    pub events: usize,
}

/// The messages for `events` (in commit order): each maximal run of
/// consecutive events of one aggregate type, cut at [`MAX_MESSAGE_BYTES`].
/// The stream stays in commit order; a consumer, which filters on one
/// aggregate type, sees its events in that order.
pub fn encode(prefix: &str, events: &[StoredEvent]) -> Result<Vec<Outgoing>, serde_json::Error> {
    let mut out = vec![];
    let mut run: Vec<(&StoredEvent, Vec<u8>)> = vec![];
    let mut run_bytes = 0;
    for event in events {
        let json = serde_json::to_vec(event)?;
        let same_type = run
            .first()
            .is_none_or(|(first, _)| first.aggregate_type == event.aggregate_type);
        if !same_type || run_bytes + json.len() + 1 > MAX_MESSAGE_BYTES {
            out.extend(finish(prefix, std::mem::take(&mut run)));
            run_bytes = 0;
        }
        run_bytes += json.len() + 1;
        run.push((event, json));
    }
    out.extend(finish(prefix, run));
    Ok(out)
}

fn finish(prefix: &str, run: Vec<(&StoredEvent, Vec<u8>)>) -> Option<Outgoing> {
    let (first, _) = run.first()?;
    let (last, _) = run.last()?;
    if run.len() == 1 {
        let (event, json) = run.into_iter().next()?;
        return Some(Outgoing {
            subject: subject_with(prefix, event),
            id: event.message_id(),
            payload: json.into(),
            events: 1,
        });
    }
    let subject = run_subject(prefix, &run);
    let id = format!("{}..{}", first.message_id(), last.message_id());
    let events = run.len();
    let mut payload = Vec::with_capacity(run.iter().map(|(_, j)| j.len() + 1).sum::<usize>() + 1);
    payload.push(b'[');
    for (i, (_, json)) in run.into_iter().enumerate() {
        if i > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(&json);
    }
    payload.push(b']');
    Some(Outgoing {
        subject,
        id,
        payload: payload.into(),
        events,
    })
}

/// The subject of one event, where a company or an id the run's events do
/// not share reads `mixed` (no UUID does).
fn run_subject(prefix: &str, run: &[(&StoredEvent, Vec<u8>)]) -> String {
    fn company(event: &StoredEvent) -> &str {
        event
            .meta(commands::context::META_COMPANY_ID)
            .unwrap_or("none")
    }
    fn shared_or_mixed(value: &str, shared: bool) -> &str {
        if shared {
            value
        } else {
            "mixed"
        }
    }
    let first = run[0].0;
    let one_company = run.iter().all(|(e, _)| company(e) == company(first));
    let one_id = run
        .iter()
        .all(|(e, _)| e.aggregate_id == first.aggregate_id);
    subject_of(
        prefix,
        shared_or_mixed(company(first), one_company),
        &first.aggregate_type,
        shared_or_mixed(&first.aggregate_id, one_id),
    )
}

/// The events in a message's payload, in order; at least one (an empty run
/// is no message of ours, and nothing would ever acknowledge it).
pub fn decode(payload: &[u8]) -> Result<Vec<StoredEvent>, serde_json::Error> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let events: Vec<StoredEvent> = serde_json::from_slice(payload)?;
            if events.is_empty() {
                return Err(serde::de::Error::custom("a run without events"));
            }
            Ok(events)
        }
        _ => serde_json::from_slice(payload).map(|event| vec![event]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, id: &str, sequence: i64, company: &str) -> StoredEvent {
        StoredEvent {
            position: sequence,
            transaction_id: 1,
            aggregate_type: kind.to_owned(),
            aggregate_id: id.to_owned(),
            sequence,
            event_type: "Happened".to_owned(),
            event_version: "1".to_owned(),
            payload: json!({"note": "x".repeat(100)}),
            metadata: json!({ commands::context::META_COMPANY_ID: company }),
        }
    }

    #[test]
    fn runs_of_one_type_share_a_message_and_decode_in_order() {
        let events = vec![
            event("customer", "a", 1, "c1"),
            event("customer", "b", 1, "c1"),
            event("user", "u", 1, "c1"),
            event("customer", "a", 2, "c2"),
        ];
        let messages = encode("crm", &events).unwrap();
        assert_eq!(
            messages.iter().map(|m| m.events).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        assert_eq!(messages[0].subject, "crm.c1.customer.mixed");
        assert_eq!(messages[0].id, "customer:a:1..customer:b:1");
        assert_eq!(messages[1].subject, "crm.c1.user.u");
        assert_eq!(messages[1].id, "user:u:1");
        let decoded: Vec<StoredEvent> = messages
            .iter()
            .flat_map(|m| decode(&m.payload).unwrap())
            .collect();
        assert_eq!(decoded, events);
    }

    #[test]
    fn a_long_run_is_cut_below_the_size_limit() {
        let events: Vec<StoredEvent> = (1..=3000)
            .map(|n| event("customer", &format!("id{n}"), 1, "c"))
            .collect();
        let messages = encode("crm", &events).unwrap();
        assert!(messages.len() > 1);
        assert!(messages
            .iter()
            .all(|m| m.payload.len() <= MAX_MESSAGE_BYTES));
        assert_eq!(messages.iter().map(|m| m.events).sum::<usize>(), 3000);
    }

    #[test]
    fn a_single_event_message_is_still_read() {
        let one = event("customer", "a", 1, "c");
        let payload = serde_json::to_vec(&one).unwrap();
        assert_eq!(decode(&payload).unwrap(), vec![one]);
        assert!(decode(b"not json").is_err());
        assert!(decode(b"[]").is_err(), "an empty run");
    }
}
