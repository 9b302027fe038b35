//! Given-when-then for the customers fold, without a database.
use domain::customer::{CustomerEvent, DetailsChange};
use domain::values::{Email, ExternalId, FieldChange, PersonName};
use domain::{CompanyId, PhotoId, UserId};
use uuid::Uuid;

use super::*;
use crate::view::Applied;
use crate::views::fold::{fold_events, fold_run};
use crate::views::test_support::{stored, ID};

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(n))
}

fn registered() -> CustomerEvent {
    CustomerEvent::CustomerRegistered {
        company_id: CompanyId(Uuid::from_u128(100)),
        name: PersonName::parse("Ada").unwrap(),
        surname: PersonName::parse("Lovelace").unwrap(),
        email: Some(Email::parse("ada@example.com").unwrap()),
        phone: None,
        notes: None,
        external_id: None,
        by: user(1),
    }
}

fn renamed(surname: &str) -> CustomerEvent {
    CustomerEvent::CustomerDetailsChanged {
        change: DetailsChange {
            surname: Some(PersonName::parse(surname).unwrap()),
            email: Some(FieldChange::Cleared),
            ..Default::default()
        },
        by: user(2),
    }
}

/// The row `events` (sequence 1, 2, ...) leave.
fn given(events: Vec<CustomerEvent>) -> Customer {
    let stored: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| stored("customer", i as i64 + 1, &e))
        .collect();
    fold_events::<Customers>(&stored).unwrap().unwrap()
}

#[test]
fn registration_creates_the_row_with_creator_and_time() {
    let row = given(vec![registered()]);
    assert_eq!(row.id, ID);
    assert_eq!(row.surname, "Lovelace");
    assert_eq!(row.surname_key(), "lovelace");
    assert_eq!(row.created_by, user(1).to_string());
    assert_eq!(row.updated_by, row.created_by);
    assert_eq!(row.created_at, "2026-01-01T00:00:01.000000Z");
    assert_eq!(row.last_seq, 1);
    assert_eq!(row.deleted_at, None);
}

#[test]
fn details_change_sets_and_clears_fields_and_moves_updated() {
    let row = given(vec![registered(), renamed("Byron")]);
    assert_eq!(row.name, "Ada");
    assert_eq!(row.surname, "Byron");
    assert_eq!(row.email, None);
    assert_eq!(row.updated_by, user(2).to_string());
    assert_eq!(row.updated_at, "2026-01-01T00:00:02.000000Z");
    assert_eq!(row.created_at, "2026-01-01T00:00:01.000000Z");
    assert_eq!(row.last_seq, 2);
}

#[test]
fn search_words_follow_the_details() {
    let row = given(vec![registered()]);
    assert!(row.search_words().contains(&"ada@example.com".to_owned()));
    let row = given(vec![registered(), renamed("Byron")]);
    assert_eq!(
        row.search_words(),
        vec!["ada".to_owned(), "byron".to_owned()]
    );
}

#[test]
fn photo_attach_and_detach_show_on_the_row() {
    let photo = PhotoId(Uuid::from_u128(7));
    let attached = CustomerEvent::CustomerPhotoAttached {
        photo_id: photo,
        replaced: None,
        by: user(1),
    };
    let row = given(vec![registered(), attached.clone()]);
    assert_eq!(row.photo_id, Some(photo.to_string()));
    let detached = CustomerEvent::CustomerPhotoDetached {
        photo_id: photo,
        by: user(1),
    };
    assert_eq!(given(vec![registered(), attached, detached]).photo_id, None);
}

#[test]
fn the_external_id_is_set_moved_and_cleared() {
    let moved = |to: Option<&str>| CustomerEvent::CustomerDetailsChanged {
        change: DetailsChange {
            external_id: Some(match to {
                Some(id) => FieldChange::Set(ExternalId::parse(id).unwrap()),
                None => FieldChange::Cleared,
            }),
            ..Default::default()
        },
        by: user(2),
    };
    assert_eq!(given(vec![registered()]).external_id, None);
    let row = given(vec![registered(), moved(Some("ERP-1"))]);
    assert_eq!(row.external_id.as_deref(), Some("ERP-1"));
    let row = given(vec![registered(), moved(Some("ERP-1")), moved(None)]);
    assert_eq!(row.external_id, None);
}

#[test]
fn delete_flags_the_row_and_restore_clears_it() {
    let deleted = CustomerEvent::CustomerDeleted { by: user(3) };
    let row = given(vec![registered(), deleted.clone()]);
    assert_eq!(
        row.deleted_at.as_deref(),
        Some("2026-01-01T00:00:02.000000Z")
    );
    let deleted_flag = Customers::COLUMNS
        .iter()
        .position(|column| column.name == "deleted")
        .unwrap();
    assert_eq!(Customers::cells(&row)[deleted_flag], Cell::Int(Some(1)));
    let restored = CustomerEvent::CustomerRestored { by: user(3) };
    assert_eq!(
        given(vec![registered(), deleted, restored]).deleted_at,
        None
    );
}

#[test]
fn a_change_without_a_row_cannot_apply() {
    let event = stored("customer", 1, &renamed("Byron"));
    assert!(fold_events::<Customers>(&[event]).is_err());
}

#[test]
fn a_run_skips_duplicates_and_holds_back_events_after_a_gap() {
    let one = stored("customer", 1, &registered());
    let two = stored("customer", 2, &renamed("Byron"));
    let three = stored(
        "customer",
        3,
        &CustomerEvent::CustomerDeleted { by: user(3) },
    );
    let run = fold_run::<Customers>(
        Default::default(),
        &[one.clone(), three.clone(), one.clone(), two.clone()],
    );
    assert_eq!(
        run.verdicts,
        vec![
            Applied::Applied,
            Applied::NotYet,
            Applied::Duplicate,
            Applied::Applied
        ]
    );
    assert_eq!(run.touched[ID].after.last_seq, 2);
    assert_eq!(run.touched[ID].before, None);
}

#[test]
fn cells_round_trip() {
    let row = given(vec![registered(), renamed("Byron")]);
    let cells = super::super::rows::Cells::for_tests(Customers::cells(&row));
    assert_eq!(Customers::from_cells(cells).unwrap(), row);
}
