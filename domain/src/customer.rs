//! A customer of a company. Soft-deleted, restorable; every event records the
//! user who caused it.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::{emit, DomainErrorKind, Tenanted};
use crate::values::{Email, ExternalId, FieldChange, Notes, PersonName, Phone};
use crate::{CompanyId, CustomerId, PhotoId, UserId};

/// The writable details of a new customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerDetails {
    pub name: PersonName,
    pub surname: PersonName,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub notes: Option<Notes>,
    /// Unique in the company (see `external_id_claim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
}

/// A partial update: `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DetailsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<FieldChange<Email>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<FieldChange<Phone>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<FieldChange<Notes>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<FieldChange<ExternalId>>,
}

impl DetailsChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Drops the parts that would not change `current`.
    fn effective(self, current: &CustomerDetails) -> Self {
        fn differs<T: PartialEq + Clone>(change: &FieldChange<T>, now: &Option<T>) -> bool {
            change.clone().into_option() != *now
        }
        Self {
            name: self.name.filter(|n| *n != current.name),
            surname: self.surname.filter(|s| *s != current.surname),
            email: self.email.filter(|c| differs(c, &current.email)),
            phone: self.phone.filter(|c| differs(c, &current.phone)),
            notes: self.notes.filter(|c| differs(c, &current.notes)),
            external_id: self
                .external_id
                .filter(|c| differs(c, &current.external_id)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CustomerCommand {
    /// `photo` attaches an already uploaded photo in the same step.
    Register {
        customer_id: CustomerId,
        company_id: CompanyId,
        details: CustomerDetails,
        photo: Option<PhotoId>,
        by: UserId,
    },
    ChangeDetails {
        change: DetailsChange,
        by: UserId,
    },
    AttachPhoto {
        photo_id: PhotoId,
        by: UserId,
    },
    DetachPhoto {
        by: UserId,
    },
    Delete {
        by: UserId,
    },
    Restore {
        by: UserId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// Version 2.0: version 1.0 called `by` `created_by` and had no `phone`.
    /// `external_id` came later, optional, so older 2.0 events lack it.
    CustomerRegistered {
        company_id: CompanyId,
        name: PersonName,
        surname: PersonName,
        email: Option<Email>,
        phone: Option<Phone>,
        notes: Option<Notes>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<ExternalId>,
        by: UserId,
    },
    CustomerDetailsChanged {
        change: DetailsChange,
        by: UserId,
    },
    CustomerPhotoAttached {
        photo_id: PhotoId,
        /// The photo this one replaced, if any.
        replaced: Option<PhotoId>,
        by: UserId,
    },
    CustomerPhotoDetached {
        photo_id: PhotoId,
        by: UserId,
    },
    CustomerDeleted {
        by: UserId,
    },
    CustomerRestored {
        by: UserId,
    },
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CustomerRegistered { .. } => "CustomerRegistered",
            Self::CustomerDetailsChanged { .. } => "CustomerDetailsChanged",
            Self::CustomerPhotoAttached { .. } => "CustomerPhotoAttached",
            Self::CustomerPhotoDetached { .. } => "CustomerPhotoDetached",
            Self::CustomerDeleted { .. } => "CustomerDeleted",
            Self::CustomerRestored { .. } => "CustomerRestored",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::CustomerRegistered { .. } => "2.0",
            _ => "1.0",
        }
        .to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("a customer with this id already exists")]
    AlreadyExists,
    #[error("customer not found")]
    NotFound,
    #[error("the customer is deleted; restore it first")]
    Deleted,
    #[error("the customer is not deleted")]
    NotDeleted,
    #[error("the customer has no photo")]
    NoPhoto,
}

impl CustomerError {
    pub fn kind(&self) -> DomainErrorKind {
        match self {
            Self::NotFound => DomainErrorKind::NotFound,
            _ => DomainErrorKind::Conflict,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub company_id: Option<CompanyId>,
    pub details: Option<CustomerDetails>,
    pub photo: Option<PhotoId>,
    pub deleted: bool,
}

impl Customer {
    pub fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        use CustomerCommand as C;
        use CustomerEvent as E;
        let Some(details) = &self.details else {
            let C::Register {
                company_id,
                details,
                photo,
                by,
                ..
            } = command
            else {
                return Err(CustomerError::NotFound);
            };
            let mut events = vec![E::CustomerRegistered {
                company_id,
                name: details.name,
                surname: details.surname,
                email: details.email,
                phone: details.phone,
                notes: details.notes,
                external_id: details.external_id,
                by,
            }];
            if let Some(photo_id) = photo {
                events.push(E::CustomerPhotoAttached {
                    photo_id,
                    replaced: None,
                    by,
                });
            }
            return Ok(events);
        };
        match command {
            C::Register { .. } => Err(CustomerError::AlreadyExists),
            C::Restore { by } if self.deleted => Ok(vec![E::CustomerRestored { by }]),
            C::Restore { .. } => Err(CustomerError::NotDeleted),
            _ if self.deleted => Err(CustomerError::Deleted),
            C::ChangeDetails { change, by } => {
                let change = change.effective(details);
                Ok(if change.is_empty() {
                    vec![]
                } else {
                    vec![E::CustomerDetailsChanged { change, by }]
                })
            }
            C::AttachPhoto { photo_id, .. } if self.photo == Some(photo_id) => Ok(vec![]),
            C::AttachPhoto { photo_id, by } => Ok(vec![E::CustomerPhotoAttached {
                photo_id,
                replaced: self.photo,
                by,
            }]),
            C::DetachPhoto { by } => match self.photo {
                Some(photo_id) => Ok(vec![E::CustomerPhotoDetached { photo_id, by }]),
                None => Err(CustomerError::NoPhoto),
            },
            C::Delete { by } => Ok(vec![E::CustomerDeleted { by }]),
        }
    }
}

impl Tenanted for Customer {
    fn company_id(&self) -> Option<CompanyId> {
        self.company_id
    }

    fn registers(command: &CustomerCommand) -> bool {
        matches!(command, CustomerCommand::Register { .. })
    }
}

impl Aggregate for Customer {
    const TYPE: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
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
            CustomerEvent::CustomerRegistered {
                company_id,
                name,
                surname,
                email,
                phone,
                notes,
                external_id,
                ..
            } => {
                self.company_id = Some(company_id);
                self.details = Some(CustomerDetails {
                    name,
                    surname,
                    email,
                    phone,
                    notes,
                    external_id,
                });
            }
            CustomerEvent::CustomerDetailsChanged { change, .. } => {
                if let Some(details) = &mut self.details {
                    change.apply_to(details);
                }
            }
            CustomerEvent::CustomerPhotoAttached { photo_id, .. } => self.photo = Some(photo_id),
            CustomerEvent::CustomerPhotoDetached { .. } => self.photo = None,
            CustomerEvent::CustomerDeleted { .. } => self.deleted = true,
            CustomerEvent::CustomerRestored { .. } => self.deleted = false,
        }
    }
}

impl DetailsChange {
    /// Folds this change into `details` (also used by the read side).
    pub fn apply_to(self, details: &mut CustomerDetails) {
        if let Some(name) = self.name {
            details.name = name;
        }
        if let Some(surname) = self.surname {
            details.surname = surname;
        }
        if let Some(email) = self.email {
            details.email = email.into_option();
        }
        if let Some(phone) = self.phone {
            details.phone = phone.into_option();
        }
        if let Some(notes) = self.notes {
            details.notes = notes.into_option();
        }
        if let Some(external_id) = self.external_id {
            details.external_id = external_id.into_option();
        }
    }
}

#[cfg(test)]
#[path = "customer_tests.rs"]
mod tests;
