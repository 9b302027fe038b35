//! One aggregate per normalized email address (its id is the address). Two
//! signups racing for one address both try to write event 1 of the same
//! stream; the event store's unique key lets exactly one of them win, which is
//! the set-based uniqueness check without any global lock.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::{emit, DomainErrorKind};
use crate::UserId;

#[derive(Clone, Debug, PartialEq)]
pub enum EmailClaimCommand {
    Claim { user_id: UserId },
    Release { user_id: UserId },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EmailClaimEvent {
    EmailClaimed { user_id: UserId },
    EmailReleased { user_id: UserId },
}

impl DomainEvent for EmailClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EmailClaimed { .. } => "EmailClaimed",
            Self::EmailReleased { .. } => "EmailReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailClaimError {
    #[error("this email is already in use")]
    Taken,
}

impl EmailClaimError {
    pub fn kind(&self) -> DomainErrorKind {
        DomainErrorKind::Conflict
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailClaim {
    pub holder: Option<UserId>,
}

impl EmailClaim {
    pub fn decide(
        &self,
        command: EmailClaimCommand,
    ) -> Result<Vec<EmailClaimEvent>, EmailClaimError> {
        use EmailClaimCommand as C;
        use EmailClaimEvent as E;
        Ok(match (command, self.holder) {
            (C::Claim { user_id }, None) => vec![E::EmailClaimed { user_id }],
            (C::Claim { user_id }, Some(holder)) if holder == user_id => vec![],
            (C::Claim { .. }, Some(_)) => return Err(EmailClaimError::Taken),
            (C::Release { user_id }, Some(holder)) if holder == user_id => {
                vec![E::EmailReleased { user_id }]
            }
            // Releasing what one does not hold changes nothing.
            (C::Release { .. }, _) => vec![],
        })
    }
}

/// Emails are unique across companies, so a claim belongs to none.
impl crate::Tenanted for EmailClaim {
    fn company_id(&self) -> Option<crate::CompanyId> {
        None
    }

    fn registers(command: &EmailClaimCommand) -> bool {
        matches!(command, EmailClaimCommand::Claim { .. })
    }
}

impl Aggregate for EmailClaim {
    const TYPE: &'static str = "email_claim";
    type Command = EmailClaimCommand;
    type Event = EmailClaimEvent;
    type Error = EmailClaimError;
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
            EmailClaimEvent::EmailClaimed { user_id } => self.holder = Some(user_id),
            EmailClaimEvent::EmailReleased { .. } => self.holder = None,
        }
    }
}

#[cfg(test)]
#[path = "email_claim_tests.rs"]
mod tests;
