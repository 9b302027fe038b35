//! Reading stored events directly: in commit order for the relay, the
//! embedded feed and replays, and one stream for the audit history. These
//! readers return errors instead of panicking (the cqrs-es replay stream
//! unwraps database errors, so we do not use it).
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::db::{Db, EventPool};

/// One event as stored, payload already upcast to the current version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Commit-order position: `global_position` on Postgres, `rowid` on SQLite.
    pub position: i64,
    /// The writing transaction (Postgres `xid8`); 0 on SQLite.
    pub transaction_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

impl StoredEvent {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// The deduplication id on the bus: `<aggregate_type>:<id>:<sequence>`.
    pub fn message_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }

    /// How long ago the command that wrote it ran (its `occurred_at`), in
    /// seconds; `None` without a readable time. For the delay metrics.
    pub fn age_seconds(&self) -> Option<f64> {
        let at = self.meta(crate::context::META_OCCURRED_AT)?;
        let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
        let age = chrono::Utc::now().signed_duration_since(at);
        Some(age.num_microseconds()? as f64 / 1e6)
    }

    /// Where this event is in commit order.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// A point in commit order: everything at or before it has been handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Checkpoint {
    pub transaction_id: u64,
    pub position: i64,
}

impl Checkpoint {
    /// A checkpoint as the checkpoint tables store it (the transaction id as
    /// text); `None`, a feed that has none yet, is the start.
    pub fn stored(row: Option<(String, i64)>) -> Result<Self, sqlx::Error> {
        let Some((transaction_id, position)) = row else {
            return Ok(Self::default());
        };
        Ok(Self {
            transaction_id: transaction_id.parse().map_err(|e| {
                sqlx::Error::Decode(format!("checkpoint {transaction_id:?}: {e}").into())
            })?,
            position,
        })
    }
}

const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";

fn from_pg_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    let transaction_id: String = row.try_get("transaction_id")?;
    let event_type: String = row.try_get("event_type")?;
    let event_version: String = row.try_get("event_version")?;
    let payload: Value = row.try_get("payload")?;
    Ok(StoredEvent {
        position: row.try_get("global_position")?,
        transaction_id: transaction_id
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        payload: domain::upcasters::upcast(&event_type, &event_version, payload),
        event_type,
        event_version,
        metadata: row.try_get("metadata")?,
    })
}

fn from_sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    let parse = |column: &str| -> Result<Value, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let event_type: String = row.try_get("event_type")?;
    let event_version: String = row.try_get("event_version")?;
    Ok(StoredEvent {
        position: row.try_get("position")?,
        transaction_id: 0,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        payload: domain::upcasters::upcast(&event_type, &event_version, parse("payload")?),
        event_type,
        event_version,
        metadata: parse("metadata")?,
    })
}

/// Which committed events a reader wants: one company's, of some event
/// types (the public feed and webhook dispatch read this way).
#[derive(Clone, Copy, Debug)]
pub struct EventFilter<'a> {
    pub company_id: &'a str,
    /// Stored `event_type` names; their names are unique across aggregates.
    pub event_types: &'a [&'a str],
}

/// Events committed after `after`, in commit order, at most `limit`.
///
/// On Postgres this never passes a transaction still in flight: it stops
/// below the oldest running transaction (`pg_snapshot_xmin`), so an event
/// whose transaction commits after a later-numbered one is read in its turn,
/// never skipped.
pub async fn read_committed_after(
    db: &Db,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    read_committed(db, after, limit, None).await
}

/// [`read_committed_after`], keeping only the events `filter` names: the
/// same commit order and horizon, so a reader of one company's events skips
/// no late commit either.
pub async fn read_committed_matching(
    db: &Db,
    after: Checkpoint,
    limit: i64,
    filter: EventFilter<'_>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    read_committed(db, after, limit, Some(filter)).await
}

async fn read_committed(
    db: &Db,
    after: Checkpoint,
    limit: i64,
    filter: Option<EventFilter<'_>>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    match &db.events {
        EventPool::Postgres(pool) => {
            // The expression matches the index `events_company_commit_order`.
            let matching = if filter.is_some() {
                "AND metadata->>'company_id' = $4 AND event_type = ANY($5) "
            } else {
                ""
            };
            let sql = format!(
                "SELECT {COLUMNS}, global_position, transaction_id::text AS transaction_id \
                 FROM events \
                 WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
                   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) {matching}\
                 ORDER BY events.transaction_id, events.global_position LIMIT $3"
            );
            let mut query = sqlx::query(&sql)
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .bind(limit);
            if let Some(filter) = filter {
                query = query.bind(filter.company_id).bind(filter.event_types);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(from_pg_row).collect()
        }
        EventPool::Sqlite(pool) => {
            // The expression matches the index `events_company_order`.
            let matching = if filter.is_some() {
                "AND json_extract(metadata, '$.company_id') = $3 \
                 AND event_type IN (SELECT value FROM json_each($4)) "
            } else {
                ""
            };
            let sql = format!(
                "SELECT {COLUMNS}, rowid AS position FROM events \
                 WHERE rowid > $1 {matching}ORDER BY rowid LIMIT $2"
            );
            let mut query = sqlx::query(&sql).bind(after.position).bind(limit);
            if let Some(filter) = filter {
                let types = serde_json::to_string(filter.event_types)
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                query = query.bind(filter.company_id).bind(types);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(from_sqlite_row).collect()
        }
    }
}

/// The events of several aggregates of one type, in stream order (by id,
/// then sequence): one query where a page of the public feed needs the
/// streams its events belong to.
pub async fn read_streams(
    db: &Db,
    aggregate_type: &str,
    ids: &[String],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match &db.events {
        EventPool::Postgres(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, global_position, transaction_id::text AS transaction_id \
                 FROM events WHERE aggregate_type = $1 AND aggregate_id = ANY($2) \
                 ORDER BY aggregate_id, sequence"
            );
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(ids)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_pg_row).collect()
        }
        EventPool::Sqlite(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, rowid AS position FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id IN (SELECT value FROM json_each($2)) \
                 ORDER BY aggregate_id, sequence"
            );
            let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(ids)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_sqlite_row).collect()
        }
    }
}

/// One aggregate's events, oldest first.
pub async fn read_stream(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    match &db.events {
        EventPool::Postgres(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, global_position, transaction_id::text AS transaction_id \
                 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
            );
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_pg_row).collect()
        }
        EventPool::Sqlite(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, rowid AS position FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
            );
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_sqlite_row).collect()
        }
    }
}

/// The events of aggregate `id` of type `A` when it belongs to `company`
/// (its first event was written for that company), oldest first; another
/// company's aggregate reads as none, as a missing one does.
pub async fn read_company_stream<A: cqrs_es::Aggregate>(
    db: &Db,
    company: domain::CompanyId,
    id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let events = read_stream(db, A::TYPE, id).await?;
    let owner = events
        .first()
        .and_then(|first| first.meta(crate::context::META_COMPANY_ID));
    if owner != Some(company.to_string().as_str()) {
        return Ok(Vec::new());
    }
    Ok(events)
}

/// How many events the store holds, and the time of the newest (for lag).
pub async fn head(db: &Db) -> Result<(i64, Option<String>), sqlx::Error> {
    let sql = match db.dialect() {
        crate::Dialect::Postgres => {
            "SELECT count(*) AS n, (SELECT metadata->>'occurred_at' FROM events \
             ORDER BY global_position DESC LIMIT 1) AS newest FROM events"
        }
        crate::Dialect::Sqlite => {
            "SELECT count(*) AS n, (SELECT json_extract(metadata, '$.occurred_at') FROM events \
             ORDER BY rowid DESC LIMIT 1) AS newest FROM events"
        }
    };
    let row = sqlx::query(sql).fetch_one(&db.any).await?;
    Ok((row.try_get("n")?, row.try_get("newest")?))
}

/// The newest event in commit order that no transaction in flight can
/// precede: everything at or before it is committed and final. The default
/// checkpoint when the store is empty.
pub async fn committed_head(db: &Db) -> Result<Checkpoint, sqlx::Error> {
    let row = match &db.events {
        EventPool::Postgres(pool) => sqlx::query(
            "SELECT transaction_id::text AS transaction_id, global_position FROM events \
                 WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await?
        .map(|row| {
            let transaction_id: String = row.try_get("transaction_id")?;
            Ok::<_, sqlx::Error>(Checkpoint {
                transaction_id: transaction_id
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                position: row.try_get("global_position")?,
            })
        }),
        EventPool::Sqlite(pool) => {
            let row = sqlx::query("SELECT max(rowid) AS position FROM events")
                .fetch_one(pool)
                .await?;
            Some(Ok(Checkpoint {
                transaction_id: 0,
                position: row.try_get::<Option<i64>, _>("position")?.unwrap_or(0),
            }))
        }
    };
    row.transpose().map(Option::unwrap_or_default)
}

/// Where a read in stream order stopped: the last `(aggregate_id, sequence)`.
pub type StreamKey = (String, i64);

/// Events of one aggregate type at or before `until` (commit order), in
/// stream order (by aggregate id, then sequence), after `after`, at most
/// `limit`. Replays read this way: each aggregate's events come in sequence
/// order, along the primary key, without scanning other types.
pub async fn read_type_until(
    db: &Db,
    aggregate_type: &str,
    until: Checkpoint,
    after: Option<&StreamKey>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let (after_id, after_sequence) = after.map(|(id, s)| (id.as_str(), *s)).unwrap_or(("", 0));
    match &db.events {
        EventPool::Postgres(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, global_position, transaction_id::text AS transaction_id \
                 FROM events \
                 WHERE aggregate_type = $1 \
                   AND (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
                   AND (transaction_id, global_position) <= ($4::text::xid8, $5) \
                 ORDER BY aggregate_type, aggregate_id, sequence LIMIT $6"
            );
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(after_id)
                .bind(after_sequence)
                .bind(until.transaction_id.to_string())
                .bind(until.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_pg_row).collect()
        }
        EventPool::Sqlite(pool) => {
            let sql = format!(
                "SELECT {COLUMNS}, rowid AS position FROM events \
                 WHERE aggregate_type = $1 \
                   AND (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
                   AND rowid <= $4 \
                 ORDER BY aggregate_type, aggregate_id, sequence LIMIT $5"
            );
            let rows = sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(after_id)
                .bind(after_sequence)
                .bind(until.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_sqlite_row).collect()
        }
    }
}
