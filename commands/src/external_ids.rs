//! A customer's `external_id` is unique in its company. The customer holds it
//! through an [`ExternalIdClaim`]: claimed before the customer records it,
//! released once the customer records another one (or none). A step that
//! fails after its claim releases the claim again. A deleted customer keeps
//! its external id, so restoring it never meets a conflict.
use domain::customer::{Customer, CustomerCommand, CustomerError, DetailsChange};
use domain::external_id_claim::{
    ExternalIdClaim, ExternalIdClaimCommand, ExternalIdClaimError, ExternalIdClaimEvent,
};
use domain::values::{ExternalId, FieldChange};
use domain::{CompanyId, CustomerId};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;

use crate::{CommandContext, CommandError, Commands, Expect, Outcome};

/// A refusal of the customer or of its external id's claim.
#[derive(Debug, thiserror::Error)]
pub enum DetailsChangeError {
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    ExternalId(#[from] ExternalIdClaimError),
}

impl crate::error::Classified for DetailsChangeError {
    fn kind(&self) -> domain::DomainErrorKind {
        match self {
            Self::Customer(e) => e.kind(),
            Self::ExternalId(e) => e.kind(),
        }
    }
}

fn lift<E: std::error::Error + Into<DetailsChangeError>>(
    error: CommandError<E>,
) -> CommandError<DetailsChangeError> {
    error.map_domain(Into::into)
}

/// Claims `external_id` for `customer` in the caller's company; `true` when
/// this call took it (and so must release it if the customer's step fails),
/// `false` when the customer held it already.
pub async fn claim(
    commands: &Commands,
    ctx: &CommandContext,
    external_id: &ExternalId,
    customer: CustomerId,
) -> Result<bool, CommandError<ExternalIdClaimError>> {
    let command = ExternalIdClaimCommand::Claim {
        company_id: ctx.company_id,
        customer_id: customer,
    };
    let id = ExternalIdClaim::id_of(ctx.company_id, external_id);
    let outcome = commands
        .execute::<ExternalIdClaim>(&id, command, ctx, Expect::Any)
        .await?;
    Ok(!outcome.events.is_empty())
}

/// Gives `external_id` up; a failure leaves it reserved (and says so).
pub async fn release(
    commands: &Commands,
    ctx: &CommandContext,
    external_id: &ExternalId,
    customer: CustomerId,
) {
    let release = ExternalIdClaimCommand::Release {
        customer_id: customer,
    };
    let id = ExternalIdClaim::id_of(ctx.company_id, external_id);
    if let Err(error) = commands
        .execute::<ExternalIdClaim>(&id, release, ctx, Expect::Any)
        .await
    {
        tracing::warn!(%error, "could not release an external id claim; it stays reserved");
    }
}

/// How often a change of external id without an expected version is tried
/// again after another write moved the customer between its read and write.
const ATTEMPTS: usize = 3;

/// Changes a customer's details. A change of its external id claims the new
/// one first and releases the old one after, and is made against the
/// version the old one was read at (so two racing changes cannot both
/// release the same old id).
pub async fn change_details(
    commands: &Commands,
    ctx: &CommandContext,
    customer: CustomerId,
    change: DetailsChange,
    expect: Expect,
) -> Result<Outcome<Customer>, CommandError<DetailsChangeError>> {
    let mut attempt = 1;
    loop {
        let result = change_once(commands, ctx, customer, change.clone(), expect).await;
        match result {
            Err(CommandError::Stale { .. }) if expect == Expect::Any && attempt < ATTEMPTS => {
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn change_once(
    commands: &Commands,
    ctx: &CommandContext,
    customer: CustomerId,
    change: DetailsChange,
    expect: Expect,
) -> Result<Outcome<Customer>, CommandError<DetailsChangeError>> {
    let id = customer.to_string();
    let command = |change| CustomerCommand::ChangeDetails {
        change,
        by: ctx.user_id,
    };
    let Some(moved) = change.external_id.clone() else {
        return commands
            .execute::<Customer>(&id, command(change), ctx, expect)
            .await
            .map_err(lift);
    };
    let (current, version) = commands
        .load_existing::<Customer>(&id, ctx.company_id)
        .await
        .map_err(lift)?;
    if !expect.admits(version) {
        return Err(CommandError::Stale { current: version });
    }
    let old = current.details.and_then(|details| details.external_id);
    let new = match moved {
        FieldChange::Set(new) if Some(&new) != old.as_ref() => Some(new),
        _ => None,
    };
    let claimed = match &new {
        Some(new) => claim(commands, ctx, new, customer).await.map_err(lift)?,
        None => false,
    };
    match commands
        .execute::<Customer>(&id, command(change), ctx, Expect::Version(version))
        .await
    {
        Ok(outcome) => {
            let now = outcome
                .state
                .details
                .as_ref()
                .and_then(|d| d.external_id.as_ref());
            if let Some(old) = old.as_ref().filter(|old| Some(*old) != now) {
                release(commands, ctx, old, customer).await;
            }
            Ok(outcome)
        }
        Err(error) => {
            if let (Some(new), true) = (&new, claimed) {
                release(commands, ctx, new, customer).await;
            }
            Err(lift(error))
        }
    }
}

/// Who holds a claim now, and the claim stream's last sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub holder: Option<CustomerId>,
    pub sequence: i64,
}

/// The state of each of `external_ids`' claims in `company` that has ever
/// been claimed, by external id, read from the event store in one query.
pub async fn holders(
    pool: &AnyPool,
    company: CompanyId,
    external_ids: &[&ExternalId],
) -> Result<HashMap<String, Held>, sqlx::Error> {
    let mut held = HashMap::new();
    if external_ids.is_empty() {
        return Ok(held);
    }
    let ids: Vec<String> = external_ids
        .iter()
        .map(|e| ExternalIdClaim::id_of(company, e))
        .collect();
    // The last event of each claim stream says who holds it.
    let last = "FROM events e WHERE e.aggregate_type = $1 AND e.aggregate_id = wanted_key \
                ORDER BY e.sequence DESC LIMIT 1";
    let sql = format!(
        "{} SELECT aggregate_id, sequence, payload FROM (SELECT wanted_key AS aggregate_id, \
         (SELECT e.sequence {last}) AS sequence, \
         (SELECT CAST(e.payload AS TEXT) {last}) AS payload FROM wanted) AS claims \
         WHERE sequence IS NOT NULL",
        crate::db::wanted_keys(2, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(<ExternalIdClaim as cqrs_es::Aggregate>::TYPE);
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let prefix = format!("{company}/");
    for row in query.fetch_all(pool).await? {
        let id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let payload: String = row.try_get("payload")?;
        let event: ExternalIdClaimEvent =
            serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let holder = match event {
            ExternalIdClaimEvent::ExternalIdClaimed { customer_id, .. } => Some(customer_id),
            ExternalIdClaimEvent::ExternalIdReleased { .. } => None,
        };
        let external_id = id.strip_prefix(&prefix).unwrap_or(&id).to_owned();
        held.insert(external_id, Held { holder, sequence });
    }
    Ok(held)
}
