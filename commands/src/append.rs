//! Appending events to the store: the one place that writes event rows.
//!
//! - [`insert`]: one command's events on Postgres, as one multi-row `INSERT`
//!   (the executor's path; a taken sequence is its optimistic-lock conflict);
//! - [`load`]: many streams' events at once (`crm seed`, bulk imports), in
//!   one transaction: `COPY` on Postgres, multi-row `INSERT`s on SQLite.
//!
//! Rows are serialized as the cqrs-es event repositories serialize them
//! (payload: the event enum as JSON; type and version from `DomainEvent`;
//! metadata: the command context's map), so every reader sees one format.
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::Value;
use std::collections::HashMap;

use crate::db::{Db, EventPool};

/// The columns an appended event fills; the store fills the rest
/// (`global_position`, `transaction_id`).
const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";
/// Bound values per appended event.
const WIDTH: usize = 7;
/// Rows per multi-row `INSERT` on SQLite (under its 32,766 parameters).
const SQLITE_ROWS_PER_INSERT: usize = 1_000;

/// A command's metadata map as stored.
pub fn metadata(map: &HashMap<String, String>) -> Result<Value, serde_json::Error> {
    serde_json::to_value(map)
}

/// An event as it will be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

impl NewEvent {
    /// `event` at `sequence` of aggregate `id` of type `A`, with `metadata`
    /// as [`metadata`] serializes a command's context map (once per command,
    /// however many events it writes).
    pub fn new<A: Aggregate>(
        id: impl Into<String>,
        sequence: i64,
        event: &A::Event,
        metadata: Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            aggregate_type: A::TYPE,
            aggregate_id: id.into(),
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event)?,
            metadata,
        })
    }

    /// One line of `COPY ... (FORMAT csv)`.
    fn push_csv(&self, out: &mut String) {
        fn field(out: &mut String, text: &str) {
            out.push('"');
            for c in text.chars() {
                if c == '"' {
                    out.push('"');
                }
                out.push(c);
            }
            out.push('"');
        }
        field(out, self.aggregate_type);
        out.push(',');
        field(out, &self.aggregate_id);
        out.push(',');
        out.push_str(&self.sequence.to_string());
        out.push(',');
        field(out, &self.event_type);
        out.push(',');
        field(out, &self.event_version);
        out.push(',');
        field(out, &self.payload.to_string());
        out.push(',');
        field(out, &self.metadata.to_string());
        out.push('\n');
    }
}

/// `INSERT INTO events (...) VALUES ($1, ..., $7), ...` for `rows` events.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO events ({COLUMNS}) VALUES {}",
        crate::db::placeholders(1, rows, WIDTH)
    )
}

/// A JSON value bound as `jsonb` (Postgres) or as its text (SQLite).
type JsonParam<'q> = sqlx::types::Json<&'q Value>;

fn bind_all<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    events: &'q [NewEvent],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    JsonParam<'q>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for event in events {
        query = query
            .bind(event.aggregate_type)
            .bind(event.aggregate_id.as_str())
            .bind(event.sequence)
            .bind(event.event_type.as_str())
            .bind(event.event_version.as_str())
            .bind(sqlx::types::Json(&event.payload))
            .bind(sqlx::types::Json(&event.metadata));
    }
    query
}

/// Commits `events` (one command's, consecutive sequences of one aggregate)
/// as one multi-row `INSERT`: one round trip, atomic as its own transaction.
pub async fn insert(pool: &sqlx::PgPool, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = insert_sql(events.len());
    bind_all(sqlx::query(&sql), events)
        .execute(pool)
        .await
        .map(drop)
}

/// Appends `events` of any streams in one transaction. For streams nobody
/// else writes meanwhile: a sequence already taken fails the whole load.
pub async fn load(db: &Db, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    match &db.events {
        EventPool::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            copy_in(&mut conn, events).await
        }
        EventPool::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            insert_sqlite(&mut tx, events).await?;
            tx.commit().await
        }
    }
}

/// `events` as one `COPY` on `conn` (inside the caller's transaction, if any).
pub async fn copy_in(
    conn: &mut sqlx::PgConnection,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut csv = String::with_capacity(events.len() * 700);
    for event in events {
        event.push_csv(&mut csv);
    }
    let mut copy = conn
        .copy_in_raw(&format!("COPY events ({COLUMNS}) FROM STDIN (FORMAT csv)"))
        .await?;
    copy.send(csv.into_bytes()).await?;
    copy.finish().await.map(drop)
}

/// `events` as multi-row `INSERT`s on `conn` (inside the caller's transaction).
pub async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(SQLITE_ROWS_PER_INSERT) {
        let sql = insert_sql(chunk.len());
        bind_all(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_numbers_every_value_once() {
        assert_eq!(
            insert_sql(2),
            format!(
                "INSERT INTO events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7), \
                 ($8, $9, $10, $11, $12, $13, $14)"
            )
        );
    }

    #[test]
    fn copy_lines_quote_every_text_field() {
        let event = NewEvent {
            aggregate_type: "customer",
            aggregate_id: "c\"1".into(),
            sequence: 3,
            event_type: "T".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"a": "b"}),
            metadata: serde_json::json!({}),
        };
        let mut line = String::new();
        event.push_csv(&mut line);
        assert_eq!(
            line,
            "\"customer\",\"c\"\"1\",3,\"T\",\"1.0\",\"{\"\"a\"\":\"\"b\"\"}\",\"{}\"\n"
        );
    }
}
