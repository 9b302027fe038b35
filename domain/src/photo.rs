//! An uploaded photo. Its bytes are in the object store before `PhotoUploaded`
//! is written, so no event points at a missing object. A photo uploaded for a
//! customer is attached later by a policy, or rejected with a reason.
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::{emit, DomainErrorKind, Tenanted};
use crate::values::{ImageType, ObjectKey, Sha256Hex};
use crate::{CompanyId, CustomerId, PhotoId, UserId};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredImage {
    pub object_key: ObjectKey,
    pub content_type: ImageType,
    pub size: u64,
    pub sha256: Sha256Hex,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PhotoCommand {
    Upload {
        photo_id: PhotoId,
        company_id: CompanyId,
        image: StoredImage,
        /// Upload flow option 2: attach to this customer once it is stored.
        for_customer: Option<CustomerId>,
        by: UserId,
    },
    /// Records that the customer now shows this photo, at that customer version.
    Attach {
        customer_id: CustomerId,
        customer_version: u64,
    },
    Detach {
        customer_id: CustomerId,
    },
    Reject {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PhotoEvent {
    PhotoUploaded {
        company_id: CompanyId,
        image: StoredImage,
        for_customer: Option<CustomerId>,
        by: UserId,
    },
    PhotoAttached {
        customer_id: CustomerId,
        customer_version: u64,
    },
    PhotoDetached {
        customer_id: CustomerId,
    },
    PhotoRejected {
        reason: String,
    },
}

impl DomainEvent for PhotoEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PhotoUploaded { .. } => "PhotoUploaded",
            Self::PhotoAttached { .. } => "PhotoAttached",
            Self::PhotoDetached { .. } => "PhotoDetached",
            Self::PhotoRejected { .. } => "PhotoRejected",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("a photo with this id already exists")]
    AlreadyExists,
    #[error("photo not found")]
    NotFound,
    #[error("the photo is attached to another customer")]
    AttachedElsewhere,
    #[error("the photo was rejected: {0}")]
    Rejected(String),
}

impl PhotoError {
    pub fn kind(&self) -> DomainErrorKind {
        match self {
            Self::NotFound => DomainErrorKind::NotFound,
            _ => DomainErrorKind::Conflict,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Photo {
    pub company_id: Option<CompanyId>,
    pub image: Option<StoredImage>,
    pub for_customer: Option<CustomerId>,
    pub attached_to: Option<CustomerId>,
    /// The customer version recorded as showing this photo.
    #[serde(default)]
    pub attached_at: Option<u64>,
    pub rejected: Option<String>,
}

impl Photo {
    pub fn decide(&self, command: PhotoCommand) -> Result<Vec<PhotoEvent>, PhotoError> {
        use PhotoCommand as C;
        use PhotoEvent as E;
        if self.company_id.is_none() {
            return match command {
                C::Upload {
                    company_id,
                    image,
                    for_customer,
                    by,
                    ..
                } => Ok(vec![E::PhotoUploaded {
                    company_id,
                    image,
                    for_customer,
                    by,
                }]),
                _ => Err(PhotoError::NotFound),
            };
        }
        match command {
            C::Upload { .. } => Err(PhotoError::AlreadyExists),
            _ if self.rejected.is_some() => Err(PhotoError::Rejected(
                self.rejected.clone().unwrap_or_default(),
            )),
            // The same customer: a later version that shows it is recorded
            // (the photo was claimed before the customer's own write landed).
            C::Attach {
                customer_id,
                customer_version,
            } if self.attached_to == Some(customer_id) => {
                Ok(if self.attached_at < Some(customer_version) {
                    vec![E::PhotoAttached {
                        customer_id,
                        customer_version,
                    }]
                } else {
                    vec![]
                })
            }
            C::Attach { .. } if self.attached_to.is_some() => Err(PhotoError::AttachedElsewhere),
            C::Attach {
                customer_id,
                customer_version,
            } => Ok(vec![E::PhotoAttached {
                customer_id,
                customer_version,
            }]),
            C::Detach { customer_id } if self.attached_to == Some(customer_id) => {
                Ok(vec![E::PhotoDetached { customer_id }])
            }
            C::Detach { .. } => Ok(vec![]),
            C::Reject { .. } if self.attached_to.is_some() => Err(PhotoError::AttachedElsewhere),
            C::Reject { reason } => Ok(vec![E::PhotoRejected { reason }]),
        }
    }
}

impl Tenanted for Photo {
    fn company_id(&self) -> Option<CompanyId> {
        self.company_id
    }

    fn registers(command: &PhotoCommand) -> bool {
        matches!(command, PhotoCommand::Upload { .. })
    }
}

impl Aggregate for Photo {
    const TYPE: &'static str = "photo";
    type Command = PhotoCommand;
    type Event = PhotoEvent;
    type Error = PhotoError;
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
            PhotoEvent::PhotoUploaded {
                company_id,
                image,
                for_customer,
                ..
            } => {
                self.company_id = Some(company_id);
                self.image = Some(image);
                self.for_customer = for_customer;
            }
            PhotoEvent::PhotoAttached {
                customer_id,
                customer_version,
            } => {
                self.attached_to = Some(customer_id);
                self.attached_at = Some(customer_version);
            }
            PhotoEvent::PhotoDetached { .. } => {
                self.attached_to = None;
                self.attached_at = None;
            }
            PhotoEvent::PhotoRejected { reason } => self.rejected = Some(reason),
        }
    }
}

#[cfg(test)]
#[path = "photo_tests.rs"]
mod tests;
