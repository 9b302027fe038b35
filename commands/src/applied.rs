//! What the views of this process have applied, told to the read-your-writes
//! waits of this process: a write's response learns that its view row is in
//! as soon as it is, instead of polling the view for it.
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// One event a view applied (and committed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    /// From the event's metadata: the company whose row it is.
    pub company_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

/// The events of one commit of one view.
pub type AppliedBatch = Arc<Vec<AppliedEvent>>;

/// Views publish what they applied; waits subscribe.
pub struct AppliedHub {
    sender: broadcast::Sender<AppliedBatch>,
    /// Aggregate types a view of this process applies.
    served: RwLock<HashSet<String>>,
}

impl Default for AppliedHub {
    fn default() -> Self {
        // A waiter that falls this far behind re-reads the view instead.
        let (sender, _) = broadcast::channel(256);
        Self {
            sender,
            served: RwLock::new(HashSet::new()),
        }
    }
}

impl AppliedHub {
    /// Records that a view of this process applies `aggregate_type` events.
    pub fn serve(&self, aggregate_type: &str) {
        if let Ok(mut served) = self.served.write() {
            served.insert(aggregate_type.to_owned());
        }
    }

    /// Whether a view of this process applies `aggregate_type` events (it
    /// may not be the only one: waits still poll, less often).
    pub fn serves(&self, aggregate_type: &str) -> bool {
        self.served
            .read()
            .map(|served| served.contains(aggregate_type))
            .unwrap_or(false)
    }

    pub fn publish(&self, batch: Vec<AppliedEvent>) {
        if !batch.is_empty() {
            // No subscriber is fine: nobody waits.
            let _ = self.sender.send(Arc::new(batch));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AppliedBatch> {
        self.sender.subscribe()
    }
}
