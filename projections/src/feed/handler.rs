//! The consumer side of a feed: a [`Handler`] takes events and gives a
//! verdict for each; [`ViewHandler`] is a view as one.
use async_trait::async_trait;
use commands::applied::{AppliedEvent, AppliedHub};
use commands::events::StoredEvent;
use std::sync::Arc;

use crate::view::{self, Applied, Projection};

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
