//! The embedded feed: after each commit (the executor's in-process signal),
//! read the event table past our checkpoint in commit order and hand every
//! event to every handler. At start it simply catches up from the checkpoint.
use commands::events::{read_committed_after, Checkpoint, StoredEvent};
use commands::{Commands, Db};
use sqlx::Row;
use std::time::Duration;
use tokio::sync::watch;

use super::{park, Handled, Handler};

const CHECKPOINT: &str = "embedded";
const BATCH: i64 = 500;

/// The embedded feed's stored checkpoint: the last event every handler is
/// done with (the start when it has none).
pub async fn stored_checkpoint(db: &Db) -> Result<Checkpoint, sqlx::Error> {
    let row =
        sqlx::query("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(CHECKPOINT)
            .fetch_optional(&db.any)
            .await?;
    Ok(match row {
        Some(row) => Checkpoint {
            transaction_id: row.try_get::<String, _>(0)?.parse().unwrap_or(0),
            position: row.try_get(1)?,
        },
        None => Checkpoint::default(),
    })
}

/// Stores `at` as the embedded feed's checkpoint.
pub async fn save_checkpoint(db: &Db, at: Checkpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
         position = excluded.position, updated_at = excluded.updated_at",
    )
    .bind(CHECKPOINT)
    .bind(at.transaction_id.to_string())
    .bind(at.position)
    .bind(chrono::Utc::now().to_rfc3339())
    .execute(&db.any)
    .await?;
    Ok(())
}

pub struct EmbeddedFeed {
    commands: Commands,
    handlers: Vec<Box<dyn Handler>>,
}

impl EmbeddedFeed {
    pub fn new(commands: Commands, handlers: Vec<Box<dyn Handler>>) -> Self {
        Self { commands, handlers }
    }

    /// Hands a run of events to every handler, each getting the ones it
    /// wants as one batch. Returns how many events, from the start, every
    /// handler is done with, and why it stopped short of all of them (the
    /// rest are retried later; handlers take repeats as duplicates).
    async fn deliver(&self, events: &[StoredEvent]) -> (usize, Option<String>) {
        let mut done = events.len();
        let mut stopped = None;
        for handler in &self.handlers {
            let (indexes, wanted): (Vec<usize>, Vec<StoredEvent>) = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.aggregate_type == handler.aggregate_type())
                .map(|(i, e)| (i, e.clone()))
                .unzip();
            if wanted.is_empty() {
                continue;
            }
            let verdicts = handler.handle_batch(&wanted).await;
            for ((index, event), verdict) in indexes.into_iter().zip(&wanted).zip(verdicts) {
                let retry = match verdict {
                    Handled::Done => None,
                    Handled::RetryLater(reason) => Some(reason),
                    Handled::Poison(reason) => {
                        park(&self.commands.db().any, handler.name(), event, &reason)
                            .await
                            .err()
                            .map(|e| e.to_string())
                    }
                };
                if let Some(reason) = retry {
                    if index < done {
                        done = index;
                        stopped = Some(reason);
                    }
                }
            }
        }
        (done, stopped)
    }

    /// One step: process the next batch; returns how many events it handled.
    #[tracing::instrument(name = "embedded_batch", skip_all)]
    pub async fn process_next_batch(&self) -> Result<usize, String> {
        let after = stored_checkpoint(self.commands.db())
            .await
            .map_err(|e| e.to_string())?;
        let events = read_committed_after(self.commands.db(), after, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let (done, stopped) = self.deliver(&events).await;
        if done > 0 {
            save_checkpoint(self.commands.db(), events[done - 1].checkpoint())
                .await
                .map_err(|e| e.to_string())?;
        }
        match stopped {
            Some(reason) => Err(reason),
            None => Ok(done),
        }
    }

    /// Runs until `shutdown` turns true; a batch in progress is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let signal = self.commands.commit_signal();
        let mut backoff = Duration::from_millis(50);
        loop {
            let notified = signal.notified();
            match self.process_next_batch().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => backoff = Duration::from_millis(50),
                Err(reason) => {
                    tracing::warn!(%reason, "embedded feed will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            tokio::select! {
                _ = notified => {}
                // A commit from another process (e.g. `crm migrate` tools) is seen within a second.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
