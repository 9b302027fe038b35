//! One aggregate per external id in a company (its id is
//! [`ExternalIdClaim::id_of`]): as with emails, two customers racing for one
//! external id both try to write event 1 of the same stream, and the event
//! store's unique key lets exactly one of them win.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::{emit, DomainErrorKind};
use crate::values::ExternalId;
use crate::{CompanyId, CustomerId};

#[derive(Clone, Debug, PartialEq)]
pub enum ExternalIdClaimCommand {
    Claim {
        company_id: CompanyId,
        customer_id: CustomerId,
    },
    Release {
        customer_id: CustomerId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExternalIdClaimEvent {
    ExternalIdClaimed {
        company_id: CompanyId,
        customer_id: CustomerId,
    },
    ExternalIdReleased {
        customer_id: CustomerId,
    },
}

impl DomainEvent for ExternalIdClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ExternalIdClaimed { .. } => "ExternalIdClaimed",
            Self::ExternalIdReleased { .. } => "ExternalIdReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExternalIdClaimError {
    #[error("another customer of the company has this external_id")]
    Taken,
}

impl ExternalIdClaimError {
    pub fn kind(&self) -> DomainErrorKind {
        DomainErrorKind::Conflict
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalIdClaim {
    pub company_id: Option<CompanyId>,
    pub holder: Option<CustomerId>,
}

impl ExternalIdClaim {
    /// The claim's stream id: the company, then the external id as written
    /// (external ids are compared exactly: other systems' keys are often
    /// case-sensitive).
    pub fn id_of(company_id: CompanyId, external_id: &ExternalId) -> String {
        format!("{company_id}/{}", external_id.as_str())
    }

    pub fn decide(
        &self,
        command: ExternalIdClaimCommand,
    ) -> Result<Vec<ExternalIdClaimEvent>, ExternalIdClaimError> {
        use ExternalIdClaimCommand as C;
        use ExternalIdClaimEvent as E;
        Ok(match (command, self.holder) {
            (
                C::Claim {
                    company_id,
                    customer_id,
                },
                None,
            ) => vec![E::ExternalIdClaimed {
                company_id,
                customer_id,
            }],
            (C::Claim { customer_id, .. }, Some(holder)) if holder == customer_id => vec![],
            (C::Claim { .. }, Some(_)) => return Err(ExternalIdClaimError::Taken),
            (C::Release { customer_id }, Some(holder)) if holder == customer_id => {
                vec![E::ExternalIdReleased { customer_id }]
            }
            // Releasing what one does not hold changes nothing.
            (C::Release { .. }, _) => vec![],
        })
    }
}

impl crate::Tenanted for ExternalIdClaim {
    fn company_id(&self) -> Option<CompanyId> {
        self.company_id
    }

    fn registers(command: &ExternalIdClaimCommand) -> bool {
        matches!(command, ExternalIdClaimCommand::Claim { .. })
    }
}

impl Aggregate for ExternalIdClaim {
    const TYPE: &'static str = "external_id_claim";
    type Command = ExternalIdClaimCommand;
    type Event = ExternalIdClaimEvent;
    type Error = ExternalIdClaimError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        emit(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ExternalIdClaimEvent::ExternalIdClaimed {
                company_id,
                customer_id,
            } => {
                self.company_id = Some(company_id);
                self.holder = Some(customer_id);
            }
            ExternalIdClaimEvent::ExternalIdReleased { .. } => self.holder = None,
        }
    }
}

#[cfg(test)]
#[path = "external_id_claim_tests.rs"]
mod tests;
