//! How events reach the views and policies.
//!
//! Everything that consumes events is a [`Handler`]: one event in, a verdict
//! out. The feeds decide what a verdict means for delivery:
//! - [`embedded`]: one process, SQLite; reads the event table in commit
//!   order after each commit and keeps a checkpoint.
//! - [`relay`] + [`worker`]: full stack; the relay publishes committed events
//!   to NATS JetStream, workers consume them with durable consumers.
use commands::events::StoredEvent;

pub mod embedded;
pub mod handler;
pub mod message;
pub mod relay;
pub mod subject;
pub mod worker;

pub use handler::{Handled, Handler, ViewHandler};

use commands::events::Checkpoint;
use commands::{Db, Dialect};

/// Where the feed a server runs on this store stands: the relay
/// [`relay::RELAY_NAME`] on Postgres, the embedded feed on SQLite.
pub async fn default_checkpoint(db: &Db) -> Result<Checkpoint, relay::RelayError> {
    match db.dialect() {
        Dialect::Postgres => relay::stored_checkpoint(db, relay::RELAY_NAME).await,
        Dialect::Sqlite => Ok(embedded::stored_checkpoint(db).await?),
    }
}

/// Moves the default feed (as [`default_checkpoint`]) on to `at`, past
/// events whose views were built without it (a bulk load, then rebuilds).
pub async fn skip_default_to(db: &Db, at: Checkpoint) -> Result<(), relay::RelayError> {
    match db.dialect() {
        Dialect::Postgres => relay::advance_checkpoint(db, relay::RELAY_NAME, at).await,
        Dialect::Sqlite => Ok(embedded::save_checkpoint(db, at).await?),
    }
}

/// Every view and policy, as handlers.
pub fn all_handlers(commands: &commands::Commands) -> Vec<Box<dyn Handler>> {
    let mut handlers: Vec<Box<dyn Handler>> = crate::views::all()
        .into_iter()
        .map(|view| {
            let handler = ViewHandler::new(commands.db().clone(), view)
                .with_applied_hub(commands.applied().clone());
            Box::new(handler) as Box<dyn Handler>
        })
        .collect();
    handlers.push(Box::new(crate::policy::PhotoAttachPolicy::new(
        commands.clone(),
    )));
    handlers
}

/// Records an event a handler gave up on, so it is visible (metric and
/// `crm projections status`) rather than lost.
pub async fn park<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    handler: &str,
    event: &StoredEvent,
    error: &str,
) -> Result<(), sqlx::Error> {
    tracing::error!(handler, event = %event.message_id(), error, "parking poison event");
    metrics::counter!("crm_poison_events_total", "handler" => handler.to_owned()).increment(1);
    sqlx::query(
        "INSERT INTO parked_events (projection, aggregate_type, aggregate_id, sequence, error, parked_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(handler)
    .bind(event.aggregate_type.as_str())
    .bind(event.aggregate_id.as_str())
    .bind(event.sequence)
    .bind(error)
    .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .execute(executor)
    .await?;
    Ok(())
}
