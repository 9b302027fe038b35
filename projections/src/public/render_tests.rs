//! The pure parts of rendering public events, without a database.
use domain::customer::{CustomerEvent, DetailsChange};
use domain::values::{Email, FieldChange, Notes, PersonName};
use domain::{CompanyId, UserId};
use uuid::Uuid;

use super::*;
use crate::views::test_support::{stored, ID};

fn registered(notes: Option<&str>) -> CustomerEvent {
    CustomerEvent::CustomerRegistered {
        company_id: CompanyId(Uuid::from_u128(100)),
        name: PersonName::parse("Ada").unwrap(),
        surname: PersonName::parse("Lovelace").unwrap(),
        email: Some(Email::parse("ada@example.com").unwrap()),
        phone: None,
        notes: notes.map(|n| Notes::parse(n).unwrap()),
        external_id: None,
        by: UserId(Uuid::from_u128(1)),
    }
}

fn renamed() -> CustomerEvent {
    CustomerEvent::CustomerDetailsChanged {
        change: DetailsChange {
            surname: Some(PersonName::parse("Byron").unwrap()),
            email: Some(FieldChange::Cleared),
            ..Default::default()
        },
        by: UserId(Uuid::from_u128(2)),
    }
}

fn stream() -> Vec<StoredEvent> {
    vec![
        stored("customer", 1, &registered(None)),
        stored("customer", 2, &renamed()),
        stored(
            "customer",
            3,
            &CustomerEvent::CustomerDeleted {
                by: UserId(Uuid::from_u128(2)),
            },
        ),
    ]
}

fn wanting(sequences: &[i64]) -> Wanted {
    BTreeMap::from([(ID.to_owned(), sequences.iter().copied().collect())])
}

#[test]
fn each_event_gets_the_row_as_it_left_it_not_the_latest() {
    let rows = fold_at::<Customers>(&stream(), &wanting(&[1, 2]));
    assert_eq!(rows[&(ID.to_owned(), 1)].surname, "Lovelace");
    assert_eq!(rows[&(ID.to_owned(), 2)].surname, "Byron");
    assert_eq!(rows[&(ID.to_owned(), 2)].deleted_at, None);
    assert!(!rows.contains_key(&(ID.to_owned(), 3)));
}

#[test]
fn an_update_names_the_fields_it_changed() {
    let rows = fold_at::<Customers>(&stream(), &wanting(&[1, 2]));
    let before = customer_data(&rows[&(ID.to_owned(), 1)], None);
    let after = customer_data(&rows[&(ID.to_owned(), 2)], None);
    assert_eq!(changed(&before, &after), vec!["email", "surname"]);
}

#[test]
fn an_unreadable_stream_is_left_out_instead_of_failing_the_page() {
    let mut events = stream();
    events[0].payload = serde_json::json!({"Nonsense": {}});
    let rows = fold_at::<Customers>(&events, &wanting(&[1, 2, 3]));
    assert!(rows.is_empty());
}

#[test]
fn the_largest_customer_fits_the_size_limit() {
    // 10,000 four-byte characters: 40 KB of notes.
    let notes = "😀".repeat(Notes::MAX_CHARS);
    let events = vec![stored("customer", 1, &registered(Some(&notes)))];
    let row = &fold_at::<Customers>(&events, &wanting(&[1]))[&(ID.to_owned(), 1)];
    let mut event = PublicEvent {
        id: event_id(&events[0]),
        event_type: EventType::CustomerCreated,
        occurred_at: "2026-01-01T00:00:01.000Z".into(),
        company_id: row.company_id.clone(),
        actor: Actor::default(),
        data: customer_data(row, None),
        changed_fields: None,
    };
    fit(&mut event);
    let size = serde_json::to_vec(&event).unwrap().len();
    assert!(size <= MAX_EVENT_BYTES, "{size} bytes");
    assert!(size > MAX_EVENT_BYTES - 200, "cut more than needed: {size}");
    assert_eq!(event.data["notes_truncated"], serde_json::json!(true));
    assert!(notes.starts_with(event.data["notes"].as_str().unwrap()));
}

#[test]
fn a_user_never_shows_its_password_hash() {
    let user = User {
        id: ID.into(),
        company_id: "c".into(),
        email: "a@example.com".into(),
        email_key: "a@example.com".into(),
        name: "A".into(),
        surname: None,
        title: None,
        role: "admin".into(),
        password_hash: "$argon2id$secret".into(),
        security_stamp: 7,
        removed: false,
        created_at: "2026-01-01T00:00:01.000000Z".into(),
        updated_at: "2026-01-01T00:00:01.000000Z".into(),
        last_seq: 1,
    };
    let text = user_data(&user).to_string();
    assert!(!text.contains("argon2") && !text.contains("security_stamp"));
}
