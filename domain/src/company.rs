//! A company (the tenant). It owns the roster of its admins, so that the rule
//! "a company always keeps at least one admin" is decided inside this one
//! aggregate: two admins demoting each other at once write to the same stream,
//! and the optimistic lock lets only one of them decide against fresh state.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::decide::{emit, DomainErrorKind, Tenanted};
use crate::values::CompanyName;
use crate::{CompanyId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub enum CompanyCommand {
    Register {
        company_id: CompanyId,
        name: CompanyName,
        founding_admin: UserId,
    },
    Rename {
        name: CompanyName,
    },
    GrantAdmin {
        user_id: UserId,
    },
    /// Used both to demote an admin and before removing one.
    RevokeAdmin {
        user_id: UserId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CompanyEvent {
    CompanyRegistered {
        company_id: CompanyId,
        name: CompanyName,
        founding_admin: UserId,
    },
    CompanyRenamed {
        name: CompanyName,
    },
    AdminGranted {
        user_id: UserId,
    },
    AdminRevoked {
        user_id: UserId,
    },
}

impl DomainEvent for CompanyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CompanyRegistered { .. } => "CompanyRegistered",
            Self::CompanyRenamed { .. } => "CompanyRenamed",
            Self::AdminGranted { .. } => "AdminGranted",
            Self::AdminRevoked { .. } => "AdminRevoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompanyError {
    #[error("the company already exists")]
    AlreadyRegistered,
    #[error("company not found")]
    NotFound,
    #[error("a company must keep at least one admin")]
    LastAdmin,
}

impl CompanyError {
    pub fn kind(&self) -> DomainErrorKind {
        match self {
            Self::NotFound => DomainErrorKind::NotFound,
            Self::AlreadyRegistered | Self::LastAdmin => DomainErrorKind::Conflict,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub id: Option<CompanyId>,
    pub name: Option<CompanyName>,
    pub admins: BTreeSet<UserId>,
}

impl Company {
    pub fn decide(&self, command: CompanyCommand) -> Result<Vec<CompanyEvent>, CompanyError> {
        use CompanyCommand as C;
        use CompanyEvent as E;
        if self.id.is_none() && !matches!(command, C::Register { .. }) {
            return Err(CompanyError::NotFound);
        }
        Ok(match command {
            C::Register { .. } if self.id.is_some() => return Err(CompanyError::AlreadyRegistered),
            C::Register {
                company_id,
                name,
                founding_admin,
            } => vec![E::CompanyRegistered {
                company_id,
                name,
                founding_admin,
            }],
            C::Rename { name } if self.name.as_ref() == Some(&name) => vec![],
            C::Rename { name } => vec![E::CompanyRenamed { name }],
            C::GrantAdmin { user_id } if self.admins.contains(&user_id) => vec![],
            C::GrantAdmin { user_id } => vec![E::AdminGranted { user_id }],
            C::RevokeAdmin { user_id } if !self.admins.contains(&user_id) => vec![],
            C::RevokeAdmin { .. } if self.admins.len() == 1 => return Err(CompanyError::LastAdmin),
            C::RevokeAdmin { user_id } => vec![E::AdminRevoked { user_id }],
        })
    }
}

impl Tenanted for Company {
    fn company_id(&self) -> Option<CompanyId> {
        self.id
    }

    fn registers(command: &CompanyCommand) -> bool {
        matches!(command, CompanyCommand::Register { .. })
    }
}

impl Aggregate for Company {
    const TYPE: &'static str = "company";
    type Command = CompanyCommand;
    type Event = CompanyEvent;
    type Error = CompanyError;
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
            CompanyEvent::CompanyRegistered {
                company_id,
                name,
                founding_admin,
            } => {
                self.id = Some(company_id);
                self.name = Some(name);
                self.admins.insert(founding_admin);
            }
            CompanyEvent::CompanyRenamed { name } => self.name = Some(name),
            CompanyEvent::AdminGranted { user_id } => {
                self.admins.insert(user_id);
            }
            CompanyEvent::AdminRevoked { user_id } => {
                self.admins.remove(&user_id);
            }
        }
    }
}

#[cfg(test)]
#[path = "company_tests.rs"]
mod tests;
