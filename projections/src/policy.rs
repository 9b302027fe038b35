//! Process managers: they react to events with commands, on the bus, so no
//! service calls another directly.
//!
//! [`PhotoAttachPolicy`] is upload flow option 2: `PhotoUploaded` with a
//! target customer → the same attach as `PUT /v1/customers/{id}/photo`
//! ([`commands::photos::attach_photo`]), or `Reject` with a reason when the
//! customer is gone. Every step is idempotent, so a redelivered event changes
//! nothing the second time.
use async_trait::async_trait;
use commands::context::{META_COMPANY_ID, META_CORRELATION_ID, META_USER_ID};
use commands::events::StoredEvent;
use commands::photos::{self, PhotoChangeError};
use commands::{CommandContext, CommandError, Commands, Expect};
use domain::customer::CustomerError;
use domain::photo::{Photo, PhotoCommand, PhotoError, PhotoEvent};
use domain::{CompanyId, PhotoId, UserId};
use uuid::Uuid;

use crate::feed::handler::{Handled, Handler};

pub struct PhotoAttachPolicy {
    commands: Commands,
}

impl PhotoAttachPolicy {
    pub fn new(commands: Commands) -> Self {
        Self { commands }
    }
}

fn context_of(event: &StoredEvent) -> Option<CommandContext> {
    let uuid = |key| event.meta(key).and_then(|v| Uuid::parse_str(v).ok());
    Some(CommandContext::new(
        CompanyId(uuid(META_COMPANY_ID)?),
        UserId(uuid(META_USER_ID)?),
        uuid(META_CORRELATION_ID).unwrap_or_else(Uuid::now_v7),
    ))
}

fn retry_or_poison<E: std::error::Error>(error: CommandError<E>) -> Handled {
    match error {
        CommandError::Unavailable(_) | CommandError::Contended | CommandError::Stale { .. } => {
            Handled::RetryLater(error.to_string())
        }
        other => Handled::Poison(other.to_string()),
    }
}

#[async_trait]
impl Handler for PhotoAttachPolicy {
    fn name(&self) -> &str {
        "photo-attach-policy"
    }

    fn aggregate_type(&self) -> &str {
        "photo"
    }

    async fn handle(&self, event: &StoredEvent) -> Handled {
        if event.event_type != "PhotoUploaded" {
            return Handled::Done;
        }
        let Ok(PhotoEvent::PhotoUploaded {
            for_customer: Some(customer),
            by,
            ..
        }) = serde_json::from_value::<PhotoEvent>(event.payload.clone())
        else {
            return Handled::Done;
        };
        let Some(ctx) = context_of(event) else {
            return Handled::Poison("event metadata has no company or user".into());
        };
        let Ok(photo) = Uuid::parse_str(&event.aggregate_id).map(PhotoId) else {
            return Handled::Poison("photo id is not a uuid".into());
        };
        // Past its upload, a photo claimed for another customer, or released
        // again (attached and since replaced, or rejected), was settled: a
        // late redelivery must not attach it again over a newer photo. One
        // claimed for this customer may be a crash between the claim and the
        // customer's step: finish it.
        match self
            .commands
            .load::<Photo>(&event.aggregate_id, ctx.company_id)
            .await
        {
            Ok(Some((current, version)))
                if version > 1 && current.attached_to != Some(customer) =>
            {
                return Handled::Done
            }
            Ok(_) => {}
            Err(error) => return retry_or_poison(error),
        }
        let attached =
            photos::attach_photo(&self.commands, &ctx, customer, photo, by, Expect::Any).await;
        let reason = match attached {
            Ok(_) => return Handled::Done,
            // Another customer shows it, or it was rejected: already settled.
            Err(CommandError::Domain(PhotoChangeError::Photo(
                PhotoError::AttachedElsewhere | PhotoError::Rejected(_),
            ))) => return Handled::Done,
            Err(
                CommandError::NotFound
                | CommandError::Domain(PhotoChangeError::Customer(CustomerError::NotFound)),
            ) => "the customer does not exist",
            Err(CommandError::Domain(PhotoChangeError::Customer(CustomerError::Deleted))) => {
                "the customer was deleted before the photo could be attached"
            }
            Err(other) => return retry_or_poison(other),
        };
        let reject = PhotoCommand::Reject {
            reason: reason.into(),
        };
        match self
            .commands
            .execute::<Photo>(&event.aggregate_id, reject, &ctx, Expect::Any)
            .await
        {
            Ok(_) => Handled::Done,
            Err(CommandError::Domain(PhotoError::AttachedElsewhere | PhotoError::Rejected(_))) => {
                Handled::Done
            }
            Err(other) => retry_or_poison(other),
        }
    }
}
