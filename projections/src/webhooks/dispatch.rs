//! The dispatcher: a durable consumer of the event store that turns each
//! committed public event into one delivery row per matching webhook.
//!
//! One step ([`Dispatcher::dispatch_next_batch`]) reads the events after its
//! checkpoint in commit order (the relay's reader, so a late commit is never
//! skipped), renders the ones some enabled webhook wants, and writes their
//! delivery rows and the new checkpoint in one transaction. A crash before
//! the commit redoes the step; a second dispatcher (another process) only
//! finds its rows there already (`UNIQUE (webhook_id, event_id)`).
use commands::events::{read_committed_after, Checkpoint, StoredEvent};
use commands::Db;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

use super::store::{self, WebhookRow};
use super::stored_time;
use crate::feed::relay::pause;
use crate::public::{self, EventType};

/// The checkpoint row of the dispatcher.
pub const NAME: &str = "webhooks";
/// Events per step.
pub const BATCH: i64 = 500;
/// Between polls when caught up and no commit of this process wakes it.
const POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    db: Db,
    /// Woken after each commit of this process.
    commits: Option<Arc<Notify>>,
    /// Told when new deliveries are due.
    due: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(db: Db, due: Arc<Notify>) -> Self {
        Self {
            db,
            commits: None,
            due,
        }
    }

    pub fn with_commit_signal(mut self, commits: Arc<Notify>) -> Self {
        self.commits = Some(commits);
        self
    }

    pub async fn checkpoint(&self) -> Result<Checkpoint, sqlx::Error> {
        let row = sqlx::query_as(
            "SELECT transaction_id, global_position FROM webhook_checkpoints WHERE name = $1",
        )
        .bind(NAME)
        .fetch_optional(&self.db.any)
        .await?;
        Checkpoint::stored(row)
    }

    /// One step; returns how many events it read.
    pub async fn dispatch_next_batch(&self) -> Result<usize, sqlx::Error> {
        let after = self.checkpoint().await?;
        let events = read_committed_after(&self.db, after, BATCH).await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let typed: Vec<(&StoredEvent, EventType)> = events
            .iter()
            .filter_map(|e| EventType::of(e).map(|t| (e, t)))
            .collect();
        let companies: Vec<String> = typed
            .iter()
            .filter_map(|(e, _)| e.meta(commands::context::META_COMPANY_ID))
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let hooks = store::enabled_for(&self.db, &companies).await?;
        let wanted: Vec<StoredEvent> = typed
            .iter()
            .filter(|(e, t)| hooks.iter().any(|h| matches(h, e, *t)))
            .map(|(e, _)| (*e).clone())
            .collect();
        let rendered = public::render(&self.db, &wanted).await?;

        let mut tx = self.db.any.begin().await?;
        let now = stored_time(chrono::Utc::now());
        let mut created = 0u64;
        for (event, public) in wanted.iter().zip(&rendered) {
            let payload =
                serde_json::to_string(public).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            for hook in hooks
                .iter()
                .filter(|h| matches(h, event, public.event_type))
            {
                created += sqlx::query(
                    "INSERT INTO webhook_deliveries (id, webhook_id, company_id, event_id, \
                     event_type, payload, status, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
                     ON CONFLICT (webhook_id, event_id) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&hook.id)
                .bind(&hook.company_id)
                .bind(public.id.to_string())
                .bind(public.event_type.as_str())
                .bind(&payload)
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        // Never backwards: a slower second dispatcher cannot undo progress.
        let at = last.checkpoint();
        let newer = match self.db.dialect() {
            commands::Dialect::Postgres => {
                "(webhook_checkpoints.transaction_id::xid8, webhook_checkpoints.global_position) \
                 < (excluded.transaction_id::xid8, excluded.global_position)"
            }
            commands::Dialect::Sqlite => {
                "webhook_checkpoints.global_position < excluded.global_position"
            }
        };
        sqlx::query(&format!(
            "INSERT INTO webhook_checkpoints (name, transaction_id, global_position, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
               global_position = excluded.global_position, updated_at = excluded.updated_at \
             WHERE {newer}"
        ))
        .bind(NAME)
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("crm_webhook_deliveries_created_total").increment(created);
        if created > 0 {
            self.due.notify_waiters();
        }
        Ok(events.len())
    }

    /// Dispatches until `shutdown`; database trouble is logged and retried.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = POLL;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Listening before the step, so a commit during it is not missed.
            let committed = self.commits.as_deref().map(Notify::notified);
            let mut committed = std::pin::pin!(committed);
            if let Some(committed) = committed.as_mut().as_pin_mut() {
                committed.enable();
            }
            let woken = async {
                match committed.as_mut().as_pin_mut() {
                    Some(committed) => committed.await,
                    None => std::future::pending().await,
                }
            };
            match self.dispatch_next_batch().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {
                    backoff = POLL;
                    tokio::select! {
                        _ = woken => {}
                        stop = pause(&mut shutdown, POLL) => if stop { break },
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "webhook dispatcher will retry");
                    if pause(&mut shutdown, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Whether `hook` wants `event`: its company's, of a type it asked for, and
/// not from before the webhook existed.
fn matches(hook: &WebhookRow, event: &StoredEvent, t: EventType) -> bool {
    event.meta(commands::context::META_COMPANY_ID) == Some(hook.company_id.as_str())
        && hook.wants(t.as_str())
        && event
            .meta(commands::context::META_OCCURRED_AT)
            .is_some_and(|at| at >= hook.created_at.as_str())
}
