use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type CustomerTest = TestFramework<Customer>;

fn customer_id() -> CustomerId {
    CustomerId(Uuid::from_u128(1))
}

fn company_id() -> CompanyId {
    CompanyId(Uuid::from_u128(100))
}

fn clerk() -> UserId {
    UserId(Uuid::from_u128(200))
}

fn photo(n: u128) -> PhotoId {
    PhotoId(Uuid::from_u128(300 + n))
}

fn person(raw: &str) -> PersonName {
    PersonName::parse(raw).unwrap()
}

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn phone(raw: &str) -> Phone {
    Phone::parse(raw).unwrap()
}

fn notes(raw: &str) -> Notes {
    Notes::parse(raw).unwrap()
}

fn details() -> CustomerDetails {
    CustomerDetails {
        name: person("Grace"),
        surname: person("Hopper"),
        email: Some(email("grace@example.com")),
        phone: None,
        notes: Some(notes("Prefers email")),
        external_id: Some(external("ERP-7")),
    }
}

fn external(raw: &str) -> ExternalId {
    ExternalId::parse(raw).unwrap()
}

fn register(photo: Option<PhotoId>) -> CustomerCommand {
    CustomerCommand::Register {
        customer_id: customer_id(),
        company_id: company_id(),
        details: details(),
        photo,
        by: clerk(),
    }
}

fn registered() -> CustomerEvent {
    CustomerEvent::CustomerRegistered {
        company_id: company_id(),
        name: person("Grace"),
        surname: person("Hopper"),
        email: Some(email("grace@example.com")),
        phone: None,
        notes: Some(notes("Prefers email")),
        external_id: Some(external("ERP-7")),
        by: clerk(),
    }
}

fn attached(photo_id: PhotoId, replaced: Option<PhotoId>) -> CustomerEvent {
    CustomerEvent::CustomerPhotoAttached {
        photo_id,
        replaced,
        by: clerk(),
    }
}

fn deleted() -> CustomerEvent {
    CustomerEvent::CustomerDeleted { by: clerk() }
}

fn rename_change() -> DetailsChange {
    DetailsChange {
        name: Some(person("Amazing Grace")),
        ..DetailsChange::default()
    }
}

/// Every command but `Register` and `Restore`, for the existence and
/// deletion rules.
fn commands_on_a_live_customer() -> Vec<CustomerCommand> {
    vec![
        CustomerCommand::ChangeDetails {
            change: rename_change(),
            by: clerk(),
        },
        CustomerCommand::AttachPhoto {
            photo_id: photo(1),
            by: clerk(),
        },
        CustomerCommand::DetachPhoto { by: clerk() },
        CustomerCommand::Delete { by: clerk() },
    ]
}

#[test]
fn registering_a_customer_records_its_details_and_author() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(register(None))
        .then_expect_events(vec![registered()]);
}

#[test]
fn registering_with_a_photo_also_attaches_it() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(register(Some(photo(1))))
        .then_expect_events(vec![registered(), attached(photo(1), None)]);
}

#[test]
fn an_existing_customer_cannot_be_registered_again() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(register(None))
        .then_expect_error(CustomerError::AlreadyExists);
}

#[test]
fn a_deleted_customer_cannot_be_registered_again() {
    CustomerTest::with(())
        .given(vec![registered(), deleted()])
        .when(register(None))
        .then_expect_error(CustomerError::AlreadyExists);
}

#[test]
fn an_unknown_customer_is_not_found_for_every_other_command() {
    let mut commands = commands_on_a_live_customer();
    commands.push(CustomerCommand::Restore { by: clerk() });
    for command in commands {
        CustomerTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(CustomerError::NotFound);
    }
}

#[test]
fn details_change_records_who_changed_what() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange {
                surname: Some(person("Murray")),
                phone: Some(FieldChange::Set(phone("+1 555 0100"))),
                ..DetailsChange::default()
            },
            by: clerk(),
        })
        .then_expect_events(vec![CustomerEvent::CustomerDetailsChanged {
            change: DetailsChange {
                surname: Some(person("Murray")),
                phone: Some(FieldChange::Set(phone("+1 555 0100"))),
                ..DetailsChange::default()
            },
            by: clerk(),
        }]);
}

#[test]
fn details_change_keeps_only_real_changes() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange {
                name: Some(person("Grace")),
                surname: Some(person("Murray")),
                email: Some(FieldChange::Set(email("grace@example.com"))),
                phone: Some(FieldChange::Cleared),
                notes: Some(FieldChange::Set(notes("Call after 5pm"))),
                external_id: Some(FieldChange::Set(external("ERP-8"))),
            },
            by: clerk(),
        })
        .then_expect_events(vec![CustomerEvent::CustomerDetailsChanged {
            change: DetailsChange {
                surname: Some(person("Murray")),
                notes: Some(FieldChange::Set(notes("Call after 5pm"))),
                external_id: Some(FieldChange::Set(external("ERP-8"))),
                ..DetailsChange::default()
            },
            by: clerk(),
        }]);
}

#[test]
fn details_change_to_the_current_values_emits_nothing() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange {
                name: Some(person("Grace")),
                surname: Some(person("Hopper")),
                email: Some(FieldChange::Set(email("grace@example.com"))),
                phone: Some(FieldChange::Cleared),
                notes: Some(FieldChange::Set(notes("Prefers email"))),
                external_id: Some(FieldChange::Set(external("ERP-7"))),
            },
            by: clerk(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_empty_details_change_emits_nothing() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange::default(),
            by: clerk(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn clearing_an_optional_field_records_cleared() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange {
                email: Some(FieldChange::Cleared),
                ..DetailsChange::default()
            },
            by: clerk(),
        })
        .then_expect_events(vec![CustomerEvent::CustomerDetailsChanged {
            change: DetailsChange {
                email: Some(FieldChange::Cleared),
                ..DetailsChange::default()
            },
            by: clerk(),
        }]);
}

#[test]
fn clearing_a_field_cleared_earlier_emits_nothing() {
    CustomerTest::with(())
        .given(vec![
            registered(),
            CustomerEvent::CustomerDetailsChanged {
                change: DetailsChange {
                    notes: Some(FieldChange::Cleared),
                    ..DetailsChange::default()
                },
                by: clerk(),
            },
        ])
        .when(CustomerCommand::ChangeDetails {
            change: DetailsChange {
                notes: Some(FieldChange::Cleared),
                ..DetailsChange::default()
            },
            by: clerk(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn attaching_a_photo_to_a_customer_without_one_replaces_nothing() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::AttachPhoto {
            photo_id: photo(1),
            by: clerk(),
        })
        .then_expect_events(vec![attached(photo(1), None)]);
}

#[test]
fn attaching_a_new_photo_records_the_replaced_one() {
    CustomerTest::with(())
        .given(vec![registered(), attached(photo(1), None)])
        .when(CustomerCommand::AttachPhoto {
            photo_id: photo(2),
            by: clerk(),
        })
        .then_expect_events(vec![attached(photo(2), Some(photo(1)))]);
}

#[test]
fn attaching_the_current_photo_again_emits_nothing() {
    CustomerTest::with(())
        .given(vec![registered(), attached(photo(1), None)])
        .when(CustomerCommand::AttachPhoto {
            photo_id: photo(1),
            by: clerk(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn detaching_the_photo_records_which_one_was_detached() {
    CustomerTest::with(())
        .given(vec![registered(), attached(photo(1), None)])
        .when(CustomerCommand::DetachPhoto { by: clerk() })
        .then_expect_events(vec![CustomerEvent::CustomerPhotoDetached {
            photo_id: photo(1),
            by: clerk(),
        }]);
}

#[test]
fn a_customer_without_a_photo_cannot_detach_one() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::DetachPhoto { by: clerk() })
        .then_expect_error(CustomerError::NoPhoto);
}

#[test]
fn a_detached_photo_cannot_be_detached_again() {
    CustomerTest::with(())
        .given(vec![
            registered(),
            attached(photo(1), None),
            CustomerEvent::CustomerPhotoDetached {
                photo_id: photo(1),
                by: clerk(),
            },
        ])
        .when(CustomerCommand::DetachPhoto { by: clerk() })
        .then_expect_error(CustomerError::NoPhoto);
}

#[test]
fn deleting_a_customer_records_who_deleted_it() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::Delete { by: clerk() })
        .then_expect_events(vec![deleted()]);
}

#[test]
fn deleted_customer_cannot_change_details() {
    CustomerTest::with(())
        .given(vec![registered(), deleted()])
        .when(CustomerCommand::ChangeDetails {
            change: rename_change(),
            by: clerk(),
        })
        .then_expect_error(CustomerError::Deleted);
}

#[test]
fn deleted_customer_refuses_every_command_but_restore() {
    for command in commands_on_a_live_customer() {
        CustomerTest::with(())
            .given(vec![registered(), attached(photo(2), None), deleted()])
            .when(command)
            .then_expect_error(CustomerError::Deleted);
    }
}

#[test]
fn restoring_a_deleted_customer_records_who_restored_it() {
    CustomerTest::with(())
        .given(vec![registered(), deleted()])
        .when(CustomerCommand::Restore { by: clerk() })
        .then_expect_events(vec![CustomerEvent::CustomerRestored { by: clerk() }]);
}

#[test]
fn a_customer_that_is_not_deleted_cannot_be_restored() {
    CustomerTest::with(())
        .given(vec![registered()])
        .when(CustomerCommand::Restore { by: clerk() })
        .then_expect_error(CustomerError::NotDeleted);
}

#[test]
fn a_restored_customer_cannot_be_restored_again() {
    CustomerTest::with(())
        .given(vec![
            registered(),
            deleted(),
            CustomerEvent::CustomerRestored { by: clerk() },
        ])
        .when(CustomerCommand::Restore { by: clerk() })
        .then_expect_error(CustomerError::NotDeleted);
}

#[test]
fn a_restored_customer_can_change_details_again() {
    CustomerTest::with(())
        .given(vec![
            registered(),
            deleted(),
            CustomerEvent::CustomerRestored { by: clerk() },
        ])
        .when(CustomerCommand::ChangeDetails {
            change: rename_change(),
            by: clerk(),
        })
        .then_expect_events(vec![CustomerEvent::CustomerDetailsChanged {
            change: rename_change(),
            by: clerk(),
        }]);
}

#[test]
fn customer_errors_are_classified_for_callers() {
    assert_eq!(CustomerError::NotFound.kind(), DomainErrorKind::NotFound);
    for conflict in [
        CustomerError::AlreadyExists,
        CustomerError::Deleted,
        CustomerError::NotDeleted,
        CustomerError::NoPhoto,
    ] {
        assert_eq!(conflict.kind(), DomainErrorKind::Conflict);
    }
}

#[test]
fn a_registration_stored_before_external_ids_reads_without_one() {
    let stored = serde_json::json!({"CustomerRegistered": {
        "company_id": company_id(), "name": "Grace", "surname": "Hopper",
        "email": null, "phone": null, "notes": null, "by": clerk(),
    }});
    let event: CustomerEvent = serde_json::from_value(stored).unwrap();
    let CustomerEvent::CustomerRegistered { external_id, .. } = event else {
        panic!("a registration");
    };
    assert_eq!(external_id, None);
}
