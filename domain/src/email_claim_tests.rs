use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type EmailClaimTest = TestFramework<EmailClaim>;

fn ada() -> UserId {
    UserId(Uuid::from_u128(1))
}

fn bob() -> UserId {
    UserId(Uuid::from_u128(2))
}

fn claimed_by(user_id: UserId) -> EmailClaimEvent {
    EmailClaimEvent::EmailClaimed { user_id }
}

fn released_by(user_id: UserId) -> EmailClaimEvent {
    EmailClaimEvent::EmailReleased { user_id }
}

#[test]
fn an_unclaimed_email_can_be_claimed() {
    EmailClaimTest::with(())
        .given_no_previous_events()
        .when(EmailClaimCommand::Claim { user_id: ada() })
        .then_expect_events(vec![claimed_by(ada())]);
}

#[test]
fn claiming_an_email_you_already_hold_emits_nothing() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada())])
        .when(EmailClaimCommand::Claim { user_id: ada() })
        .then_expect_events(vec![]);
}

#[test]
fn an_email_claimed_by_another_user_is_taken() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada())])
        .when(EmailClaimCommand::Claim { user_id: bob() })
        .then_expect_error(EmailClaimError::Taken);
}

#[test]
fn the_holder_can_release_the_email() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada())])
        .when(EmailClaimCommand::Release { user_id: ada() })
        .then_expect_events(vec![released_by(ada())]);
}

#[test]
fn releasing_an_email_held_by_another_user_emits_nothing() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada())])
        .when(EmailClaimCommand::Release { user_id: bob() })
        .then_expect_events(vec![]);
}

#[test]
fn releasing_an_unclaimed_email_emits_nothing() {
    EmailClaimTest::with(())
        .given_no_previous_events()
        .when(EmailClaimCommand::Release { user_id: ada() })
        .then_expect_events(vec![]);
}

#[test]
fn releasing_an_already_released_email_emits_nothing() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada()), released_by(ada())])
        .when(EmailClaimCommand::Release { user_id: ada() })
        .then_expect_events(vec![]);
}

#[test]
fn a_released_email_can_be_claimed_by_another_user() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(ada()), released_by(ada())])
        .when(EmailClaimCommand::Claim { user_id: bob() })
        .then_expect_events(vec![claimed_by(bob())]);
}

#[test]
fn an_email_reclaimed_by_another_user_is_taken_for_the_first_holder() {
    EmailClaimTest::with(())
        .given(vec![
            claimed_by(ada()),
            released_by(ada()),
            claimed_by(bob()),
        ])
        .when(EmailClaimCommand::Claim { user_id: ada() })
        .then_expect_error(EmailClaimError::Taken);
}

#[test]
fn a_taken_email_is_a_conflict() {
    assert_eq!(EmailClaimError::Taken.kind(), DomainErrorKind::Conflict);
}
