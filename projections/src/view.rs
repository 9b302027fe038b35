//! The contract of a projection and the driver that applies runs of events
//! to one view exactly once in effect.
//!
//! Every view row carries `last_seq`, the last event sequence of its aggregate
//! it has applied. Each event is judged against it, and each write only moves
//! a row forward (see [`crate::views::rows`]), so:
//! - a duplicate (redelivery, a second worker) changes nothing;
//! - an event whose predecessor is not applied yet is refused as
//!   [`Applied::NotYet`], to be retried later, never dropped.
use async_trait::async_trait;
use commands::events::StoredEvent;
use commands::Db;
use sqlx::{AnyConnection, AnyPool};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event {0} cannot be read: {1}")]
    BadEvent(String, String),
    /// A task of a rebuild's pipeline panicked or was cancelled.
    #[error("rebuild task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ProjectionError {
    pub fn bad_event(event: &StoredEvent, error: impl std::fmt::Display) -> Self {
        Self::BadEvent(event.message_id(), error.to_string())
    }
}

/// What happened to one event at one view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied before: nothing changed.
    Duplicate,
    /// Its predecessor is not applied yet; retry later.
    NotYet,
    /// Not an event this view is about.
    Ignored,
    /// The view cannot read or apply it (why): nothing changed; park it.
    Unreadable(String),
}

/// One read model, fed by the events of one aggregate type. Implemented once,
/// by [`crate::views::FoldView`], over each view's pure fold.
#[async_trait]
pub trait Projection: Send + Sync {
    /// The name operators use (`crm projections rebuild customers`).
    fn name(&self) -> &'static str;
    fn aggregate_type(&self) -> &'static str;
    /// Every table this view writes (for rebuilds).
    fn tables(&self) -> Vec<String>;
    /// The same view writing into other tables (a rebuild's shadow copy).
    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection>;
    /// Applies a run of events in delivery order inside the caller's
    /// transaction, guarded by `last_seq`: one verdict per event.
    async fn apply_run(
        &self,
        conn: &mut AnyConnection,
        db: &Db,
        events: &[StoredEvent],
    ) -> Result<Vec<Applied>, ProjectionError>;
    /// [`Projection::apply_run`] into tables nobody else writes and that have
    /// no indexes yet (a rebuild's shadow), in bulk.
    async fn load_new(
        &self,
        conn: &mut AnyConnection,
        db: &Db,
        events: &[StoredEvent],
    ) -> Result<Vec<Applied>, ProjectionError>;
}

/// Starts a transaction that will write. On SQLite it takes the write lock
/// up front (`BEGIN IMMEDIATE`): a deferred transaction that reads first
/// cannot upgrade once another writer committed, and fails with "database
/// is locked" instead of waiting.
pub async fn begin_write(
    pool: &AnyPool,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    if is_sqlite(pool) {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

pub fn is_sqlite(pool: &AnyPool) -> bool {
    pool.connect_options().database_url.scheme() == "sqlite"
}

/// Applies one event to one view in its own transaction.
pub async fn apply(
    db: &Db,
    view: &dyn Projection,
    event: &StoredEvent,
) -> Result<Applied, ProjectionError> {
    let mut verdicts = apply_batch(db, view, std::slice::from_ref(event)).await?;
    Ok(verdicts.pop().unwrap_or(Applied::Ignored))
}

/// Applies a run of events in delivery order in one transaction (one commit
/// for the run): each event gets its verdict. A database error rolls the
/// whole run back; an unreadable event changes nothing and the rest apply.
#[tracing::instrument(name = "view_apply", skip_all, fields(view = view.name(), events = events.len()))]
pub async fn apply_batch(
    db: &Db,
    view: &dyn Projection,
    events: &[StoredEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    if events
        .iter()
        .all(|e| e.aggregate_type != view.aggregate_type())
    {
        return Ok(vec![Applied::Ignored; events.len()]);
    }
    let mut tx = begin_write(&db.any).await?;
    let verdicts = view.apply_run(&mut tx, db, events).await?;
    let applied = verdicts.iter().filter(|v| **v == Applied::Applied).count();
    if applied > 0 {
        tx.commit().await?;
        metrics::counter!("crm_projection_events_total", "projection" => view.name())
            .increment(applied as u64);
    } else {
        tx.rollback().await?;
    }
    Ok(verdicts)
}
