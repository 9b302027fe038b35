//! Process managers: they react to events with commands, on the bus, so no
//! service calls another directly.
//!
//! [`PhotoAttachPolicy`] is upload flow option 2: `PhotoUploaded` with a
//! target customer → `AttachPhoto` on the customer → `Attach` on the photo
//! (recording the customer version that shows it), or `Reject` with a reason
//! when the customer is gone. Every step is idempotent, so a redelivered
//! event changes nothing the second time.
use async_trait::async_trait;
use commands::context::{META_COMPANY_ID, META_CORRELATION_ID, META_USER_ID};
use commands::events::StoredEvent;
use commands::{CommandContext, CommandError, Commands, Expect};
use domain::customer::{Customer, CustomerCommand, CustomerError};
use domain::photo::{Photo, PhotoCommand, PhotoError, PhotoEvent};
use domain::{CompanyId, PhotoId, UserId};
use uuid::Uuid;

use crate::feed::{Handled, Handler};

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
        let photo_id = event.aggregate_id.clone();
        let Ok(photo) = Uuid::parse_str(&photo_id).map(PhotoId) else {
            return Handled::Poison("photo id is not a uuid".into());
        };
        // A photo with any event after its upload was already settled
        // (attached, rejected, or attached and since replaced): a late
        // redelivery must not attach it again over a newer photo.
        match self.commands.load::<Photo>(&photo_id, ctx.company_id).await {
            Ok(Some((_, version))) if version > 1 => return Handled::Done,
            Ok(_) => {}
            Err(error) => return retry_or_poison(error),
        }
        let attach = CustomerCommand::AttachPhoto {
            photo_id: photo,
            by,
        };
        let attached = self
            .commands
            .execute::<Customer>(&customer.to_string(), attach, &ctx, Expect::Any)
            .await;
        let photo_command = match attached {
            Ok(outcome) => {
                if let Some(domain::customer::CustomerEvent::CustomerPhotoAttached {
                    replaced: Some(old),
                    ..
                }) = outcome.events.first()
                {
                    let detach = PhotoCommand::Detach {
                        customer_id: customer,
                    };
                    if let Err(e) = self
                        .commands
                        .execute::<Photo>(&old.to_string(), detach, &ctx, Expect::Any)
                        .await
                    {
                        tracing::warn!(photo = %old, error = %e, "could not mark the replaced photo detached");
                    }
                }
                PhotoCommand::Attach {
                    customer_id: customer,
                    customer_version: outcome.version,
                }
            }
            Err(CommandError::NotFound | CommandError::Domain(CustomerError::NotFound)) => {
                PhotoCommand::Reject {
                    reason: "the customer does not exist".into(),
                }
            }
            Err(CommandError::Domain(CustomerError::Deleted)) => PhotoCommand::Reject {
                reason: "the customer was deleted before the photo could be attached".into(),
            },
            Err(other) => return retry_or_poison(other),
        };
        match self
            .commands
            .execute::<Photo>(&photo_id, photo_command, &ctx, Expect::Any)
            .await
        {
            Ok(_) => Handled::Done,
            // Already settled by an earlier delivery.
            Err(CommandError::Domain(PhotoError::AttachedElsewhere | PhotoError::Rejected(_))) => {
                Handled::Done
            }
            Err(other) => retry_or_poison(other),
        }
    }
}
