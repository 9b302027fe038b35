//! How events reach the views and policies.
//!
//! Everything that consumes events is a [`Handler`]: one event in, a verdict
//! out. The feeds decide what a verdict means for delivery:
//! - [`embedded`]: one process, SQLite; reads the event table in commit
//!   order after each commit and keeps a checkpoint.
//! - [`relay`] + [`worker`]: full stack; the relay publishes committed events
//!   to NATS JetStream, workers consume them with durable consumers.
use async_trait::async_trait;
use commands::applied::{AppliedEvent, AppliedHub};
use commands::events::StoredEvent;
use std::sync::Arc;

use crate::view::{self, Applied, Projection};

pub mod embedded;
pub mod message;
pub mod relay;
pub mod worker;

/// What a handler made of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    Done,
    /// Not now (a predecessor is missing, the database is down): redeliver later.
    RetryLater(String),
    /// Can never succeed: park it where operators see it, and move on.
    Poison(String),
}

#[async_trait]
pub trait Handler: Send + Sync {
    /// Names its durable consumer and its checkpoint.
    fn name(&self) -> &str;
    /// The aggregate type whose events it wants.
    fn aggregate_type(&self) -> &str;
    async fn handle(&self, event: &StoredEvent) -> Handled;
    /// A run of events in delivery order, one verdict each. The default
    /// hands them over one by one; a view applies the run in one transaction.
    async fn handle_batch(&self, events: &[StoredEvent]) -> Vec<Handled> {
        let mut verdicts = Vec::with_capacity(events.len());
        for event in events {
            verdicts.push(self.handle(event).await);
        }
        verdicts
    }
}

/// A view as a handler.
pub struct ViewHandler {
    db: commands::Db,
    view: Box<dyn Projection>,
    applied: Option<Arc<AppliedHub>>,
}

impl ViewHandler {
    pub fn new(db: commands::Db, view: Box<dyn Projection>) -> Self {
        Self {
            db,
            view,
            applied: None,
        }
    }
}

#[async_trait]
impl Handler for ViewHandler {
    fn name(&self) -> &str {
        self.view.name()
    }

    fn aggregate_type(&self) -> &str {
        self.view.aggregate_type()
    }

    async fn handle(&self, event: &StoredEvent) -> Handled {
        let mut verdicts = self.handle_batch(std::slice::from_ref(event)).await;
        verdicts.pop().unwrap_or(Handled::Done)
    }

    async fn handle_batch(&self, events: &[StoredEvent]) -> Vec<Handled> {
        match view::apply_batch(&self.db, self.view.as_ref(), events).await {
            Ok(applied) => {
                self.signal_applied(
                    events
                        .iter()
                        .zip(&applied)
                        .filter(|(_, a)| **a == Applied::Applied)
                        .map(|(event, _)| event),
                );
                applied.into_iter().map(handled).collect()
            }
            Err(error) => vec![Handled::RetryLater(error.to_string()); events.len()],
        }
    }
}

impl ViewHandler {
    /// Tells this process's read-your-writes waits (see
    /// [`commands::Commands::applied`]) what was applied, if it has them.
    fn signal_applied<'a>(&self, events: impl Iterator<Item = &'a StoredEvent>) {
        if let Some(hub) = &self.applied {
            hub.publish(
                events
                    .map(|event| AppliedEvent {
                        company_id: event
                            .meta(commands::context::META_COMPANY_ID)
                            .unwrap_or_default()
                            .to_owned(),
                        aggregate_type: event.aggregate_type.clone(),
                        aggregate_id: event.aggregate_id.clone(),
                        sequence: event.sequence,
                    })
                    .collect(),
            );
        }
    }

    /// Publishes what this view applies on `hub`.
    pub fn with_applied_hub(mut self, hub: Arc<AppliedHub>) -> Self {
        hub.serve(self.view.aggregate_type());
        self.applied = Some(hub);
        self
    }
}

fn handled(applied: Applied) -> Handled {
    match applied {
        Applied::Applied | Applied::Duplicate | Applied::Ignored => Handled::Done,
        Applied::NotYet => Handled::RetryLater("its predecessor is not applied yet".into()),
        Applied::Unreadable(reason) => Handled::Poison(reason),
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
