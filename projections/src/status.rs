//! What `crm projections status` prints: how far each feed is, how far
//! behind the store, and the events parked as poison.
use commands::events::{head, read_committed_after, Checkpoint};
use commands::Db;
use sqlx::Row;

#[derive(Debug)]
pub struct Parked {
    pub projection: String,
    pub event: String,
    pub error: String,
    pub parked_at: String,
}

#[derive(Debug)]
pub struct FeedStatus {
    pub name: String,
    /// Position in commit order (rowid embedded, global position on Postgres).
    pub position: i64,
    pub lag_events: i64,
    /// Age of the oldest event not yet handled.
    pub lag_seconds: Option<f64>,
}

#[derive(Debug)]
pub struct Status {
    pub events_in_store: i64,
    pub feeds: Vec<FeedStatus>,
    pub parked: Vec<Parked>,
}

/// How many committed events lie after `after`.
async fn count_after(db: &Db, after: Checkpoint) -> Result<i64, sqlx::Error> {
    let sql = match db.dialect() {
        commands::Dialect::Postgres => {
            "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2)"
        }
        commands::Dialect::Sqlite => "SELECT count(*) FROM events WHERE rowid > $2 AND $1 = $1",
    };
    sqlx::query_scalar(sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .fetch_one(&db.any)
        .await
}

/// Publishes the status as metrics: lag per feed, parked events. Every
/// serving process runs this every few seconds, so it skips the count of the
/// whole store that the CLI's status prints.
pub async fn export_metrics(db: &Db) -> Result<(), sqlx::Error> {
    let feeds = feeds(db).await?;
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events")
        .fetch_one(&db.any)
        .await?;
    for feed in &feeds {
        metrics::gauge!("crm_projection_lag_events", "feed" => feed.name.clone())
            .set(feed.lag_events as f64);
        metrics::gauge!("crm_projection_lag_seconds", "feed" => feed.name.clone())
            .set(feed.lag_seconds.unwrap_or(0.0));
    }
    metrics::gauge!("crm_parked_events").set(parked as f64);
    Ok(())
}

/// Lag of a checkpointed feed (the embedded feed or the relay).
async fn feed_status(db: &Db, name: &str, after: Checkpoint) -> Result<FeedStatus, sqlx::Error> {
    let oldest = read_committed_after(db, after, 1).await?;
    let lag_seconds = oldest
        .first()
        .and_then(|e| e.meta(commands::context::META_OCCURRED_AT))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0
        });
    Ok(FeedStatus {
        name: name.to_owned(),
        position: after.position,
        lag_events: count_after(db, after).await?,
        lag_seconds,
    })
}

/// Where each checkpointed feed is, and how far behind the store.
async fn feeds(db: &Db) -> Result<Vec<FeedStatus>, sqlx::Error> {
    let mut feeds = vec![];
    for row in sqlx::query(
        "SELECT name, transaction_id, position FROM projection_checkpoints ORDER BY name",
    )
    .fetch_all(&db.any)
    .await?
    {
        let name: String = row.try_get("name")?;
        // On Postgres the embedded feed is in commit order too: without its
        // transaction id every event would count as behind.
        let xid: String = row.try_get("transaction_id")?;
        let checkpoint = Checkpoint {
            transaction_id: xid.parse().unwrap_or(0),
            position: row.try_get("position")?,
        };
        feeds.push(feed_status(db, &format!("projections ({name})"), checkpoint).await?);
    }
    if db.dialect() == commands::Dialect::Postgres {
        for row in sqlx::query(
            "SELECT name, transaction_id, global_position FROM relay_checkpoint ORDER BY name",
        )
        .fetch_all(&db.any)
        .await?
        {
            let name: String = row.try_get("name")?;
            let xid: String = row.try_get("transaction_id")?;
            let checkpoint = Checkpoint {
                transaction_id: xid.parse().unwrap_or(0),
                position: row.try_get("global_position")?,
            };
            feeds.push(feed_status(db, &format!("relay ({name})"), checkpoint).await?);
        }
    }
    Ok(feeds)
}

pub async fn status(db: &Db) -> Result<Status, sqlx::Error> {
    let (events_in_store, _) = head(db).await?;
    let feeds = feeds(db).await?;
    let parked = sqlx::query(
        "SELECT projection, aggregate_type, aggregate_id, sequence, error, parked_at FROM parked_events ORDER BY parked_at",
    )
    .fetch_all(&db.any)
    .await?
    .into_iter()
    .map(|row| -> Result<Parked, sqlx::Error> {
        let kind: String = row.try_get("aggregate_type")?;
        let id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        Ok(Parked {
            projection: row.try_get("projection")?,
            event: format!("{kind}:{id}:{sequence}"),
            error: row.try_get("error")?,
            parked_at: row.try_get("parked_at")?,
        })
    })
    .collect::<Result<_, _>>()?;
    Ok(Status {
        events_in_store,
        feeds,
        parked,
    })
}
