//! Which photo a customer shows: the one implementation behind the photo
//! routes, a create with a photo, and the attach policy (upload option 2).
//!
//! A photo is shown by at most one customer, and the photo aggregate is
//! where that is decided. So the photo is claimed first (`Attach`, recording
//! the customer version that will show it), and only then does the customer
//! record it. Two customers racing for one photo: one claim wins, the other
//! is refused before its customer changes. A customer step that fails after
//! its claim releases the claim again.
use domain::customer::{Customer, CustomerCommand, CustomerError, CustomerEvent};
use domain::photo::{Photo, PhotoCommand, PhotoError};
use domain::{CustomerId, PhotoId, UserId};

use crate::{CommandContext, CommandError, Commands, Expect, Outcome};

/// A refusal of either aggregate.
#[derive(Debug, thiserror::Error)]
pub enum PhotoChangeError {
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    Photo(#[from] PhotoError),
}

impl crate::error::Classified for PhotoChangeError {
    fn kind(&self) -> domain::DomainErrorKind {
        match self {
            Self::Customer(e) => e.kind(),
            Self::Photo(e) => e.kind(),
        }
    }
}

pub type PhotoChangeResult<T> = Result<T, CommandError<PhotoChangeError>>;

fn lift<E: std::error::Error + Into<PhotoChangeError>>(
    error: CommandError<E>,
) -> CommandError<PhotoChangeError> {
    error.map_domain(Into::into)
}

/// The customer after a photo change, and each photo's version after it
/// (what a reply's consistency token covers).
#[derive(Debug)]
pub struct PhotoChange {
    pub customer: Outcome<Customer>,
    pub photos: Vec<(PhotoId, u64)>,
}

/// A claim on a photo for a customer.
struct Claim {
    photo: PhotoId,
    version: u64,
    /// Whether this claim wrote the attachment (and so must undo it on
    /// failure); a photo this customer already held at that version needs none.
    new: bool,
}

/// Claims `photo` for `customer`, to be shown from `customer_version` on.
/// A photo of another company is not found; a rejected one, or one shown by
/// another customer, is refused.
async fn claim(
    commands: &Commands,
    ctx: &CommandContext,
    photo: PhotoId,
    customer: CustomerId,
    customer_version: u64,
) -> PhotoChangeResult<Claim> {
    let attach = PhotoCommand::Attach {
        customer_id: customer,
        customer_version,
    };
    let outcome = commands
        .execute::<Photo>(&photo.to_string(), attach, ctx, Expect::Any)
        .await
        .map_err(lift)?;
    Ok(Claim {
        photo,
        version: outcome.version,
        new: !outcome.events.is_empty(),
    })
}

/// Undoes a claim whose customer step failed.
async fn release(commands: &Commands, ctx: &CommandContext, claim: &Claim, customer: CustomerId) {
    if !claim.new {
        return;
    }
    let detach = PhotoCommand::Detach {
        customer_id: customer,
    };
    if let Err(error) = commands
        .execute::<Photo>(&claim.photo.to_string(), detach, ctx, Expect::Any)
        .await
    {
        tracing::warn!(photo = %claim.photo, %error, "could not release a photo claim");
    }
}

/// Records on `photo` the customer version that actually shows it, when
/// concurrent writes moved the customer past the claimed one.
async fn confirm(
    commands: &Commands,
    ctx: &CommandContext,
    claim: &mut Claim,
    customer: CustomerId,
    claimed_at: u64,
    shown_at: u64,
) -> PhotoChangeResult<()> {
    if shown_at <= claimed_at {
        return Ok(());
    }
    let attach = PhotoCommand::Attach {
        customer_id: customer,
        customer_version: shown_at,
    };
    claim.version = commands
        .execute::<Photo>(&claim.photo.to_string(), attach, ctx, Expect::Any)
        .await
        .map_err(lift)?
        .version;
    Ok(())
}

/// Marks `old` as no longer shown by `customer`. A photo rejected meanwhile
/// needs no mark.
async fn detach(
    commands: &Commands,
    ctx: &CommandContext,
    old: PhotoId,
    customer: CustomerId,
) -> PhotoChangeResult<Option<(PhotoId, u64)>> {
    let detach = PhotoCommand::Detach {
        customer_id: customer,
    };
    match commands
        .execute::<Photo>(&old.to_string(), detach, ctx, Expect::Any)
        .await
    {
        Ok(outcome) => Ok(Some((old, outcome.version))),
        Err(CommandError::Domain(PhotoError::Rejected(_))) => Ok(None),
        Err(error) => Err(lift(error)),
    }
}

/// Registers a customer (`CustomerCommand::Register`), claiming its photo
/// first when it names one.
pub async fn register_customer(
    commands: &Commands,
    ctx: &CommandContext,
    id: CustomerId,
    register: CustomerCommand,
) -> PhotoChangeResult<PhotoChange> {
    let photo = match &register {
        CustomerCommand::Register { photo, .. } => *photo,
        _ => None,
    };
    // A registration with a photo is two events: the photo shows from version 2.
    let claim = match photo {
        Some(photo) => Some(claim(commands, ctx, photo, id, 2).await?),
        None => None,
    };
    let registered = commands
        .execute::<Customer>(&id.to_string(), register, ctx, Expect::Any)
        .await;
    match registered {
        Ok(customer) => Ok(PhotoChange {
            customer,
            photos: claim.map(|c| (c.photo, c.version)).into_iter().collect(),
        }),
        Err(error) => {
            if let Some(claim) = &claim {
                release(commands, ctx, claim, id).await;
            }
            Err(lift(error))
        }
    }
}

/// Shows `photo` on `customer` (replacing any photo it showed).
pub async fn attach_photo(
    commands: &Commands,
    ctx: &CommandContext,
    customer: CustomerId,
    photo: PhotoId,
    by: UserId,
    expect: Expect,
) -> PhotoChangeResult<PhotoChange> {
    let id = customer.to_string();
    let (current, version) = commands
        .load_existing::<Customer>(&id, ctx.company_id)
        .await
        .map_err(lift)?;
    if !expect.admits(version) {
        return Err(CommandError::Stale { current: version });
    }
    if current.deleted {
        return Err(CommandError::Domain(CustomerError::Deleted.into()));
    }
    if current.photo == Some(photo) {
        return Ok(PhotoChange {
            customer: Outcome {
                state: current,
                version,
                events: vec![],
            },
            photos: vec![],
        });
    }
    let claimed_at = version + 1;
    let mut claim = claim(commands, ctx, photo, customer, claimed_at).await?;
    let attach = CustomerCommand::AttachPhoto {
        photo_id: photo,
        by,
    };
    let outcome = match commands.execute::<Customer>(&id, attach, ctx, expect).await {
        Ok(outcome) => outcome,
        Err(error) => {
            release(commands, ctx, &claim, customer).await;
            return Err(lift(error));
        }
    };
    let replaced = match outcome.events.first() {
        Some(CustomerEvent::CustomerPhotoAttached { replaced, .. }) => *replaced,
        _ => None,
    };
    if !outcome.events.is_empty() {
        confirm(
            commands,
            ctx,
            &mut claim,
            customer,
            claimed_at,
            outcome.version,
        )
        .await?;
    }
    let mut photos = vec![(claim.photo, claim.version)];
    if let Some(old) = replaced.filter(|old| *old != photo) {
        photos.extend(detach(commands, ctx, old, customer).await?);
    }
    Ok(PhotoChange {
        customer: outcome,
        photos,
    })
}

/// Takes the customer's photo away; a customer without one stays as it is.
pub async fn remove_photo(
    commands: &Commands,
    ctx: &CommandContext,
    customer: CustomerId,
    by: UserId,
    expect: Expect,
) -> PhotoChangeResult<PhotoChange> {
    let id = customer.to_string();
    let outcome = match commands
        .execute::<Customer>(&id, CustomerCommand::DetachPhoto { by }, ctx, expect)
        .await
    {
        Ok(outcome) => outcome,
        Err(CommandError::Domain(CustomerError::NoPhoto)) => {
            let (state, version) = commands
                .load_existing::<Customer>(&id, ctx.company_id)
                .await
                .map_err(lift)?;
            Outcome {
                state,
                version,
                events: vec![],
            }
        }
        Err(error) => return Err(lift(error)),
    };
    let mut photos = vec![];
    if let Some(CustomerEvent::CustomerPhotoDetached { photo_id, .. }) = outcome.events.first() {
        photos.extend(detach(commands, ctx, *photo_id, customer).await?);
    }
    Ok(PhotoChange {
        customer: outcome,
        photos,
    })
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Command(#[from] CommandError<PhotoChangeError>),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectStoreError),
}

/// Stores an uploaded image as photo `photo_id` and returns the photo's
/// version. `for_customer` (upload option 2) must be a live customer of the
/// caller's company; the attach itself follows from the event, through the
/// policy. The object is written before the event, so an event never names
/// a missing object.
pub async fn upload_photo(
    commands: &Commands,
    objects: &dyn crate::objects::ObjectStore,
    ctx: &CommandContext,
    photo_id: PhotoId,
    image: domain::photo::StoredImage,
    bytes: bytes::Bytes,
    for_customer: Option<CustomerId>,
) -> Result<u64, UploadError> {
    if let Some(customer) = for_customer {
        let (customer, _) = commands
            .load_existing::<Customer>(&customer.to_string(), ctx.company_id)
            .await
            .map_err(lift)?;
        if customer.deleted {
            return Err(CommandError::Domain(CustomerError::Deleted.into()).into());
        }
    }
    objects
        .put(image.object_key.as_str(), image.content_type.mime(), bytes)
        .await?;
    let upload = PhotoCommand::Upload {
        photo_id,
        company_id: ctx.company_id,
        image,
        for_customer,
        by: ctx.user_id,
    };
    let outcome = commands
        .execute::<Photo>(&photo_id.to_string(), upload, ctx, Expect::Any)
        .await
        .map_err(lift)?;
    Ok(outcome.version)
}
