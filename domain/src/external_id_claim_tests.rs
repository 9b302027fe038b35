use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type ClaimTest = TestFramework<ExternalIdClaim>;

fn acme() -> CompanyId {
    CompanyId(Uuid::from_u128(10))
}

fn grace() -> CustomerId {
    CustomerId(Uuid::from_u128(1))
}

fn alan() -> CustomerId {
    CustomerId(Uuid::from_u128(2))
}

fn claim(customer_id: CustomerId) -> ExternalIdClaimCommand {
    ExternalIdClaimCommand::Claim {
        company_id: acme(),
        customer_id,
    }
}

fn claimed_by(customer_id: CustomerId) -> ExternalIdClaimEvent {
    ExternalIdClaimEvent::ExternalIdClaimed {
        company_id: acme(),
        customer_id,
    }
}

fn released_by(customer_id: CustomerId) -> ExternalIdClaimEvent {
    ExternalIdClaimEvent::ExternalIdReleased { customer_id }
}

#[test]
fn a_free_external_id_can_be_claimed() {
    ClaimTest::with(())
        .given_no_previous_events()
        .when(claim(grace()))
        .then_expect_events(vec![claimed_by(grace())]);
}

#[test]
fn claiming_what_the_customer_holds_emits_nothing() {
    ClaimTest::with(())
        .given(vec![claimed_by(grace())])
        .when(claim(grace()))
        .then_expect_events(vec![]);
}

#[test]
fn an_external_id_of_another_customer_is_taken() {
    ClaimTest::with(())
        .given(vec![claimed_by(grace())])
        .when(claim(alan()))
        .then_expect_error(ExternalIdClaimError::Taken);
}

#[test]
fn a_released_external_id_can_be_claimed_again() {
    ClaimTest::with(())
        .given(vec![claimed_by(grace()), released_by(grace())])
        .when(claim(alan()))
        .then_expect_events(vec![claimed_by(alan())]);
}

#[test]
fn only_the_holder_releases() {
    ClaimTest::with(())
        .given(vec![claimed_by(grace())])
        .when(ExternalIdClaimCommand::Release {
            customer_id: alan(),
        })
        .then_expect_events(vec![]);
    ClaimTest::with(())
        .given(vec![claimed_by(grace())])
        .when(ExternalIdClaimCommand::Release {
            customer_id: grace(),
        })
        .then_expect_events(vec![released_by(grace())]);
}

#[test]
fn the_stream_id_keeps_the_external_id_as_written() {
    let id = ExternalIdClaim::id_of(acme(), &ExternalId::parse("  SAP-0042 ").unwrap());
    assert_eq!(id, format!("{}/SAP-0042", acme()));
}
