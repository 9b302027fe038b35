use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type CompanyTest = TestFramework<Company>;

fn company_id() -> CompanyId {
    CompanyId(Uuid::from_u128(1))
}

fn founder() -> UserId {
    UserId(Uuid::from_u128(10))
}

fn second_admin() -> UserId {
    UserId(Uuid::from_u128(11))
}

fn plain_user() -> UserId {
    UserId(Uuid::from_u128(12))
}

fn name(raw: &str) -> CompanyName {
    CompanyName::parse(raw).unwrap()
}

fn registered() -> CompanyEvent {
    CompanyEvent::CompanyRegistered {
        company_id: company_id(),
        name: name("Acme"),
        founding_admin: founder(),
    }
}

fn granted(user_id: UserId) -> CompanyEvent {
    CompanyEvent::AdminGranted { user_id }
}

fn revoked(user_id: UserId) -> CompanyEvent {
    CompanyEvent::AdminRevoked { user_id }
}

#[test]
fn registering_a_company_records_it_with_its_founding_admin() {
    CompanyTest::with(())
        .given_no_previous_events()
        .when(CompanyCommand::Register {
            company_id: company_id(),
            name: name("Acme"),
            founding_admin: founder(),
        })
        .then_expect_events(vec![registered()]);
}

#[test]
fn an_existing_company_cannot_be_registered_again() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::Register {
            company_id: company_id(),
            name: name("Other"),
            founding_admin: plain_user(),
        })
        .then_expect_error(CompanyError::AlreadyRegistered);
}

#[test]
fn an_unknown_company_cannot_be_renamed() {
    CompanyTest::with(())
        .given_no_previous_events()
        .when(CompanyCommand::Rename { name: name("Acme") })
        .then_expect_error(CompanyError::NotFound);
}

#[test]
fn an_unknown_company_cannot_grant_admin() {
    CompanyTest::with(())
        .given_no_previous_events()
        .when(CompanyCommand::GrantAdmin { user_id: founder() })
        .then_expect_error(CompanyError::NotFound);
}

#[test]
fn an_unknown_company_cannot_revoke_admin() {
    CompanyTest::with(())
        .given_no_previous_events()
        .when(CompanyCommand::RevokeAdmin { user_id: founder() })
        .then_expect_error(CompanyError::NotFound);
}

#[test]
fn renaming_records_the_new_name() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::Rename {
            name: name("Acme Corp"),
        })
        .then_expect_events(vec![CompanyEvent::CompanyRenamed {
            name: name("Acme Corp"),
        }]);
}

#[test]
fn renaming_to_the_same_name_emits_nothing() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::Rename {
            name: name("  Acme "),
        })
        .then_expect_events(vec![]);
}

#[test]
fn renaming_to_the_name_given_by_the_last_rename_emits_nothing() {
    CompanyTest::with(())
        .given(vec![registered()])
        .and(vec![CompanyEvent::CompanyRenamed {
            name: name("Acme Corp"),
        }])
        .when(CompanyCommand::Rename {
            name: name("Acme Corp"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn renaming_back_to_an_earlier_name_is_a_real_change() {
    CompanyTest::with(())
        .given(vec![
            registered(),
            CompanyEvent::CompanyRenamed {
                name: name("Acme Corp"),
            },
        ])
        .when(CompanyCommand::Rename { name: name("Acme") })
        .then_expect_events(vec![CompanyEvent::CompanyRenamed { name: name("Acme") }]);
}

#[test]
fn granting_admin_to_a_user_records_it() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::GrantAdmin {
            user_id: second_admin(),
        })
        .then_expect_events(vec![granted(second_admin())]);
}

#[test]
fn granting_admin_to_an_existing_admin_emits_nothing() {
    CompanyTest::with(())
        .given(vec![registered(), granted(second_admin())])
        .when(CompanyCommand::GrantAdmin {
            user_id: second_admin(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn granting_admin_to_the_founding_admin_emits_nothing() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::GrantAdmin { user_id: founder() })
        .then_expect_events(vec![]);
}

#[test]
fn last_admin_cannot_be_revoked() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::RevokeAdmin { user_id: founder() })
        .then_expect_error(CompanyError::LastAdmin);
}

#[test]
fn given_two_admins_revoking_one_works() {
    CompanyTest::with(())
        .given(vec![registered(), granted(second_admin())])
        .when(CompanyCommand::RevokeAdmin { user_id: founder() })
        .then_expect_events(vec![revoked(founder())]);
}

#[test]
fn given_one_admin_left_after_a_revoke_revoking_the_other_fails() {
    CompanyTest::with(())
        .given(vec![
            registered(),
            granted(second_admin()),
            revoked(founder()),
        ])
        .when(CompanyCommand::RevokeAdmin {
            user_id: second_admin(),
        })
        .then_expect_error(CompanyError::LastAdmin);
}

#[test]
fn revoking_a_user_who_is_not_an_admin_emits_nothing() {
    CompanyTest::with(())
        .given(vec![registered()])
        .when(CompanyCommand::RevokeAdmin {
            user_id: plain_user(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn revoking_an_already_revoked_admin_emits_nothing() {
    CompanyTest::with(())
        .given(vec![
            registered(),
            granted(second_admin()),
            revoked(second_admin()),
        ])
        .when(CompanyCommand::RevokeAdmin {
            user_id: second_admin(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_revoked_admin_can_be_granted_admin_again() {
    CompanyTest::with(())
        .given(vec![
            registered(),
            granted(second_admin()),
            revoked(founder()),
        ])
        .when(CompanyCommand::GrantAdmin { user_id: founder() })
        .then_expect_events(vec![granted(founder())]);
}

#[test]
fn company_errors_are_classified_for_callers() {
    assert_eq!(CompanyError::NotFound.kind(), DomainErrorKind::NotFound);
    assert_eq!(
        CompanyError::AlreadyRegistered.kind(),
        DomainErrorKind::Conflict
    );
    assert_eq!(CompanyError::LastAdmin.kind(), DomainErrorKind::Conflict);
}
