use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type PhotoTest = TestFramework<Photo>;

fn photo_id() -> PhotoId {
    PhotoId(Uuid::from_u128(1))
}

fn company_id() -> CompanyId {
    CompanyId(Uuid::from_u128(100))
}

fn uploader() -> UserId {
    UserId(Uuid::from_u128(200))
}

fn customer(n: u128) -> CustomerId {
    CustomerId(Uuid::from_u128(300 + n))
}

fn image() -> StoredImage {
    StoredImage {
        object_key: ObjectKey::for_photo(company_id(), photo_id()),
        content_type: ImageType::Png,
        size: 2048,
        sha256: Sha256Hex::parse(&"ab".repeat(32)).unwrap(),
    }
}

fn upload(for_customer: Option<CustomerId>) -> PhotoCommand {
    PhotoCommand::Upload {
        photo_id: photo_id(),
        company_id: company_id(),
        image: image(),
        for_customer,
        by: uploader(),
    }
}

fn uploaded(for_customer: Option<CustomerId>) -> PhotoEvent {
    PhotoEvent::PhotoUploaded {
        company_id: company_id(),
        image: image(),
        for_customer,
        by: uploader(),
    }
}

fn attached(customer_id: CustomerId, customer_version: u64) -> PhotoEvent {
    PhotoEvent::PhotoAttached {
        customer_id,
        customer_version,
    }
}

fn rejected(reason: &str) -> PhotoEvent {
    PhotoEvent::PhotoRejected {
        reason: reason.to_owned(),
    }
}

fn reject(reason: &str) -> PhotoCommand {
    PhotoCommand::Reject {
        reason: reason.to_owned(),
    }
}

#[test]
fn uploading_a_photo_records_where_it_is_stored() {
    PhotoTest::with(())
        .given_no_previous_events()
        .when(upload(None))
        .then_expect_events(vec![uploaded(None)]);
}

#[test]
fn uploading_for_a_customer_records_the_intended_customer() {
    PhotoTest::with(())
        .given_no_previous_events()
        .when(upload(Some(customer(1))))
        .then_expect_events(vec![uploaded(Some(customer(1)))]);
}

#[test]
fn an_uploaded_photo_cannot_be_uploaded_again() {
    PhotoTest::with(())
        .given(vec![uploaded(None)])
        .when(upload(None))
        .then_expect_error(PhotoError::AlreadyExists);
}

#[test]
fn an_unknown_photo_is_not_found_for_every_other_command() {
    let commands = vec![
        PhotoCommand::Attach {
            customer_id: customer(1),
            customer_version: 1,
        },
        PhotoCommand::Detach {
            customer_id: customer(1),
        },
        reject("not a face"),
    ];
    for command in commands {
        PhotoTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(PhotoError::NotFound);
    }
}

#[test]
fn attaching_records_the_customer_and_its_version() {
    PhotoTest::with(())
        .given(vec![uploaded(Some(customer(1)))])
        .when(PhotoCommand::Attach {
            customer_id: customer(1),
            customer_version: 2,
        })
        .then_expect_events(vec![attached(customer(1), 2)]);
}

#[test]
fn attaching_again_to_the_same_customer_at_its_version_emits_nothing() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(PhotoCommand::Attach {
            customer_id: customer(1),
            customer_version: 2,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_later_version_of_the_same_customer_is_recorded() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(PhotoCommand::Attach {
            customer_id: customer(1),
            customer_version: 5,
        })
        .then_expect_events(vec![attached(customer(1), 5)]);
}

#[test]
fn photo_attached_elsewhere_cannot_be_attached_again() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(PhotoCommand::Attach {
            customer_id: customer(2),
            customer_version: 3,
        })
        .then_expect_error(PhotoError::AttachedElsewhere);
}

#[test]
fn detaching_from_its_customer_records_it() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(PhotoCommand::Detach {
            customer_id: customer(1),
        })
        .then_expect_events(vec![PhotoEvent::PhotoDetached {
            customer_id: customer(1),
        }]);
}

#[test]
fn detaching_from_another_customer_emits_nothing() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(PhotoCommand::Detach {
            customer_id: customer(2),
        })
        .then_expect_events(vec![]);
}

#[test]
fn detaching_an_unattached_photo_emits_nothing() {
    PhotoTest::with(())
        .given(vec![uploaded(None)])
        .when(PhotoCommand::Detach {
            customer_id: customer(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_detached_photo_can_be_attached_to_another_customer() {
    PhotoTest::with(())
        .given(vec![
            uploaded(None),
            attached(customer(1), 2),
            PhotoEvent::PhotoDetached {
                customer_id: customer(1),
            },
        ])
        .when(PhotoCommand::Attach {
            customer_id: customer(2),
            customer_version: 7,
        })
        .then_expect_events(vec![attached(customer(2), 7)]);
}

#[test]
fn rejecting_an_unattached_photo_records_the_reason() {
    PhotoTest::with(())
        .given(vec![uploaded(Some(customer(1)))])
        .when(reject("customer was deleted"))
        .then_expect_events(vec![rejected("customer was deleted")]);
}

#[test]
fn an_attached_photo_cannot_be_rejected() {
    PhotoTest::with(())
        .given(vec![uploaded(None), attached(customer(1), 2)])
        .when(reject("too late"))
        .then_expect_error(PhotoError::AttachedElsewhere);
}

#[test]
fn rejected_photo_cannot_be_attached() {
    PhotoTest::with(())
        .given(vec![
            uploaded(Some(customer(1))),
            rejected("customer was deleted"),
        ])
        .when(PhotoCommand::Attach {
            customer_id: customer(1),
            customer_version: 3,
        })
        .then_expect_error(PhotoError::Rejected("customer was deleted".to_owned()));
}

#[test]
fn rejected_photo_cannot_be_rejected_again() {
    PhotoTest::with(())
        .given(vec![uploaded(None), rejected("first reason")])
        .when(reject("second reason"))
        .then_expect_error(PhotoError::Rejected("first reason".to_owned()));
}

#[test]
fn rejected_photo_cannot_be_detached() {
    PhotoTest::with(())
        .given(vec![uploaded(None), rejected("first reason")])
        .when(PhotoCommand::Detach {
            customer_id: customer(1),
        })
        .then_expect_error(PhotoError::Rejected("first reason".to_owned()));
}

#[test]
fn a_rejected_photo_still_cannot_be_uploaded_again() {
    PhotoTest::with(())
        .given(vec![uploaded(None), rejected("first reason")])
        .when(upload(None))
        .then_expect_error(PhotoError::AlreadyExists);
}

#[test]
fn photo_errors_are_classified_for_callers() {
    assert_eq!(PhotoError::NotFound.kind(), DomainErrorKind::NotFound);
    for conflict in [
        PhotoError::AlreadyExists,
        PhotoError::AttachedElsewhere,
        PhotoError::Rejected("reason".to_owned()),
    ] {
        assert_eq!(conflict.kind(), DomainErrorKind::Conflict);
    }
}
