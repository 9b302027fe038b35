//! The contract of a projection and the driver that applies one event to one
//! view exactly once in effect.
//!
//! Every view row carries `last_seq`, the last event sequence of its aggregate
//! it has applied. Each write is guarded by it (`... WHERE last_seq = seq - 1`,
//! or `INSERT ... ON CONFLICT DO NOTHING` for the first event), so:
//! - a duplicate (redelivery, a second worker) changes nothing;
//! - an event whose predecessor is not applied yet is refused as
//!   [`Applied::NotYet`], to be retried later, never dropped.
use async_trait::async_trait;
use commands::events::StoredEvent;
use sqlx::{AnyConnection, AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event {0} cannot be read: {1}")]
    BadEvent(String, String),
}

impl ProjectionError {
    pub fn bad_event(event: &StoredEvent, error: impl std::fmt::Display) -> Self {
        Self::BadEvent(event.message_id(), error.to_string())
    }
}

/// What happened to one event at one view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied before: nothing changed.
    Duplicate,
    /// Its predecessor is not applied yet; retry later.
    NotYet,
    /// Not an event this view is about.
    Ignored,
}

/// One read model, fed by the events of one aggregate type.
#[async_trait]
pub trait Projection: Send + Sync {
    /// The name operators use (`crm projections rebuild customers`).
    fn name(&self) -> &'static str;
    fn aggregate_type(&self) -> &'static str;
    /// The table whose rows (keyed by aggregate id) carry `last_seq`.
    fn table(&self) -> &str;
    /// Every table this view writes (for rebuilds).
    fn tables(&self) -> Vec<String>;
    /// The same view writing into other tables (a rebuild's shadow copy).
    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection>;
    /// Writes the event, guarded by `last_seq`; returns the rows the guarded
    /// write changed (0 means another writer got there first, and then
    /// nothing at all was changed). An aggregate's first event is an
    /// `INSERT ... ON CONFLICT DO NOTHING`: drivers skip the guard read for it.
    async fn write(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<u64, ProjectionError>;

    /// Whether [`Projection::replay`] writes in bulk without reading the
    /// shadow back (every aggregate of a page is new to it): a rebuild then
    /// adds the shadow's indexes after the bulk load rather than before.
    fn loads_in_bulk(&self) -> bool {
        false
    }

    /// Applies a run of this view's events, each aggregate's in sequence
    /// order, to tables nobody else writes (a rebuild's shadow), inside the
    /// caller's transaction. The default writes them one by one behind the
    /// `last_seq` guard; a view may fold the run in memory and write it in
    /// bulk (on `db`'s own connections), with the same result.
    async fn replay(
        &self,
        db: &commands::Db,
        conn: &mut AnyConnection,
        events: &[StoredEvent],
    ) -> Result<Replayed, ProjectionError> {
        let _ = db;
        let mut replayed = Replayed::default();
        for event in events
            .iter()
            .filter(|e| e.aggregate_type == self.aggregate_type())
        {
            let last = last_applied(&mut *conn, self.table(), &event.aggregate_id).await?;
            if event.sequence == last + 1 {
                match self.write(&mut *conn, event).await {
                    Ok(rows) => replayed.applied += rows,
                    // Raised before anything is written: the transaction is clean.
                    Err(error @ ProjectionError::BadEvent(..)) => {
                        replayed.unreadable.push((event.clone(), error.to_string()))
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(replayed)
    }
}

/// What a replay made of a run of events.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Rows written.
    pub applied: u64,
    /// Events the view cannot read, and the error: the caller parks them.
    pub unreadable: Vec<(StoredEvent, String)>,
}

/// The `last_seq` of one row, 0 when the row does not exist.
pub async fn last_applied(
    conn: &mut AnyConnection,
    table: &str,
    id: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT last_seq FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get::<i64, _>(0))
        .transpose()
        .map(|v| v.unwrap_or(0))
}

/// The `last_seq` an event is checked against. An aggregate's first event
/// needs no read: every view writes it as `INSERT ... ON CONFLICT DO
/// NOTHING`, which changes nothing (a duplicate) when the row is there.
async fn guard(
    conn: &mut AnyConnection,
    view: &dyn Projection,
    event: &StoredEvent,
) -> Result<i64, sqlx::Error> {
    if event.sequence == 1 {
        return Ok(0);
    }
    last_applied(conn, view.table(), &event.aggregate_id).await
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
    pool: &AnyPool,
    view: &dyn Projection,
    event: &StoredEvent,
) -> Result<Applied, ProjectionError> {
    if event.aggregate_type != view.aggregate_type() {
        return Ok(Applied::Ignored);
    }
    let mut tx = begin_write(pool).await?;
    let last = guard(&mut tx, view, event).await?;
    let verdict = if event.sequence <= last {
        Applied::Duplicate
    } else if event.sequence > last + 1 {
        Applied::NotYet
    } else if view.write(&mut tx, event).await? == 0 {
        // Another writer applied it between our read and our write.
        Applied::Duplicate
    } else {
        Applied::Applied
    };
    if verdict == Applied::Applied {
        tx.commit().await?;
        metrics::counter!("crm_projection_events_total", "projection" => view.name()).increment(1);
    } else {
        tx.rollback().await?;
    }
    Ok(verdict)
}

/// [`apply`] for a run of events in delivery order, in one transaction (one
/// commit for the run): each event gets the verdict `apply` would give it.
/// A database error or an unreadable event rolls the whole run back.
pub async fn apply_batch(
    pool: &AnyPool,
    view: &dyn Projection,
    events: &[StoredEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    let mut verdicts = Vec::with_capacity(events.len());
    let mut tx = begin_write(pool).await?;
    // The last_seq of rows this run already read or wrote.
    let mut known: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for event in events {
        if event.aggregate_type != view.aggregate_type() {
            verdicts.push(Applied::Ignored);
            continue;
        }
        let id = event.aggregate_id.as_str();
        let last = match known.get(id) {
            Some(last) => *last,
            None => guard(&mut tx, view, event).await?,
        };
        let verdict = if event.sequence <= last {
            Applied::Duplicate
        } else if event.sequence > last + 1 {
            Applied::NotYet
        } else if view.write(&mut tx, event).await? == 0 {
            Applied::Duplicate
        } else {
            Applied::Applied
        };
        match verdict {
            Applied::Applied => {
                known.insert(id, event.sequence);
            }
            // Another writer got there: read the row again if it comes up.
            Applied::Duplicate if event.sequence > last => {
                known.remove(id);
            }
            _ => {
                known.insert(id, last);
            }
        }
        verdicts.push(verdict);
    }
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

/// The event's time as stored text: projections use event time, never
/// `now()`, so a rebuilt view equals the live one.
pub fn event_time(event: &StoredEvent) -> Result<String, ProjectionError> {
    event
        .meta(commands::context::META_OCCURRED_AT)
        .map(str::to_owned)
        .ok_or_else(|| ProjectionError::bad_event(event, "no occurred_at in metadata"))
}

pub fn typed<E: serde::de::DeserializeOwned>(event: &StoredEvent) -> Result<E, ProjectionError> {
    // From the borrowed value: no copy of the payload per event.
    E::deserialize(&event.payload).map_err(|e| ProjectionError::bad_event(event, e))
}
