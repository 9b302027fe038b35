//! How far each view is behind the event store, sampled in the background so
//! that writes can be refused (`503`) before the views fall behind for good.
//!
//! A view's lag is the events committed that it has not applied yet, and the
//! age of the oldest of them:
//! - embedded: the events past the feed's checkpoint, by aggregate type;
//! - full stack: the events the relay has not published yet, plus those its
//!   durable consumer has not acknowledged (`num_pending + num_ack_pending`);
//!   the age is the older of the relay's oldest unpublished event and the
//!   stream's first message past the consumer's acknowledged floor.
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use commands::events::{Checkpoint, StoredEvent};
use commands::{Db, Dialect};
use sqlx::Row;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How far one view is behind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewLag {
    pub view: &'static str,
    pub events: u64,
    pub seconds: f64,
}

/// The most a view may lag before writes are refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagBound {
    pub events: u64,
    pub seconds: f64,
}

impl Default for LagBound {
    fn default() -> Self {
        Self {
            events: 100_000,
            seconds: 10.0,
        }
    }
}

/// The latest sample, shared by the sampler and the request handlers.
#[derive(Clone, Default)]
pub struct LagWatch(Arc<RwLock<Vec<ViewLag>>>);

impl LagWatch {
    pub fn latest(&self) -> Vec<ViewLag> {
        self.0.read().map(|lags| lags.clone()).unwrap_or_default()
    }

    /// The view furthest past `bound`, if any is.
    pub fn beyond(&self, bound: LagBound) -> Option<ViewLag> {
        self.latest()
            .into_iter()
            .filter(|lag| lag.events > bound.events || lag.seconds > bound.seconds)
            .max_by(|a, b| a.seconds.total_cmp(&b.seconds))
    }

    fn set(&self, lags: Vec<ViewLag>) {
        for lag in &lags {
            metrics::gauge!("crm_view_lag_events", "view" => lag.view).set(lag.events as f64);
            metrics::gauge!("crm_view_lag_seconds", "view" => lag.view).set(lag.seconds);
        }
        if let Ok(mut latest) = self.0.write() {
            *latest = lags;
        }
    }
}

/// Where the views' events come from.
#[derive(Clone)]
pub enum Source {
    /// The embedded feed's checkpoint.
    Embedded,
    /// The checkpoint of relay `relay` and the views' durable consumers on `stream`.
    JetStream {
        jetstream: Box<Context>,
        stream: String,
        relay: String,
    },
}

fn age_seconds(occurred_at: Option<&str>) -> f64 {
    occurred_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1e3
        })
        .unwrap_or(0.0)
        .max(0.0)
}

async fn checkpoint(
    db: &Db,
    table: &str,
    column: &str,
    name: &str,
) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT transaction_id, {column} FROM {table} WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&db.any)
    .await?;
    Ok(match row {
        Some(row) => Checkpoint {
            transaction_id: row
                .try_get::<Option<String>, _>(0)?
                .and_then(|x| x.parse().ok())
                .unwrap_or(0),
            position: row.try_get(1)?,
        },
        None => Checkpoint::default(),
    })
}

/// Events committed after `after` per aggregate type: how many, and the
/// oldest's age.
/// Counted past the relay's read horizon too: an open transaction that holds
/// the horizon back stalls the views as surely as a dead relay.
async fn behind(db: &Db, after: Checkpoint) -> Result<Vec<(String, u64, f64)>, sqlx::Error> {
    let sql = match db.dialect() {
        Dialect::Postgres => {
            "SELECT aggregate_type, count(*), min(metadata->>'occurred_at') FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) GROUP BY aggregate_type"
        }
        Dialect::Sqlite => {
            "SELECT aggregate_type, count(*), min(json_extract(metadata, '$.occurred_at')) FROM events \
             WHERE rowid > $2 AND $1 = $1 GROUP BY aggregate_type"
        }
    };
    let mut counts = vec![];
    for row in sqlx::query(sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .fetch_all(&db.any)
        .await?
    {
        let oldest: Option<String> = row.try_get(2)?;
        counts.push((
            row.try_get(0)?,
            row.try_get::<i64, _>(1)?.max(0) as u64,
            age_seconds(oldest.as_deref()),
        ));
    }
    Ok(counts)
}

/// One sample of every view's lag.
pub async fn sample(db: &Db, source: &Source) -> Result<Vec<ViewLag>, String> {
    let views = crate::views::all();
    let (table, column, name) = match source {
        Source::Embedded => ("projection_checkpoints", "position", "embedded"),
        Source::JetStream { relay, .. } => ("relay_checkpoint", "global_position", relay.as_str()),
    };
    let after = checkpoint(db, table, column, name)
        .await
        .map_err(|e| e.to_string())?;
    let unpublished = behind(db, after).await.map_err(|e| e.to_string())?;
    let stream = match source {
        Source::JetStream {
            jetstream, stream, ..
        } => Some(
            jetstream
                .get_stream(stream)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Source::Embedded => None,
    };
    let mut lags = vec![];
    for view in &views {
        let (events, seconds) = unpublished
            .iter()
            .find(|(kind, ..)| kind == view.aggregate_type())
            .map_or((0, 0.0), |(_, n, age)| (*n, *age));
        let mut lag = ViewLag {
            view: view.name(),
            events,
            seconds,
        };
        if let Some(stream) = &stream {
            let (first_pending, age) = consumer_lag(stream, view.name()).await?;
            if let Some(first) = first_pending {
                // A message may carry a run of events: count them in the
                // store, from the first one the view has not acknowledged.
                let just_before = Checkpoint {
                    position: first.position - 1,
                    ..first
                };
                lag.events = behind(db, just_before)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|(kind, ..)| kind == view.aggregate_type())
                    .map_or(lag.events, |(_, n, _)| n.max(lag.events));
            }
            lag.seconds = lag.seconds.max(age);
        }
        lags.push(lag);
    }
    Ok(lags)
}

/// Where a view consumer's first unacknowledged event is (`None` when it
/// has none, or it cannot be read) and how long it has waited.
async fn consumer_lag(stream: &Stream, view: &str) -> Result<(Option<Checkpoint>, f64), String> {
    let name = crate::feed::worker::consumer_name(view);
    // No consumer yet (no worker has started): nothing to measure there.
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name)
        .await
    else {
        return Ok((None, 0.0));
    };
    let info = consumer.info().await.map_err(|e| e.to_string())?;
    if info.num_pending + info.num_ack_pending as u64 == 0 {
        return Ok((None, 0.0));
    }
    let first = info.ack_floor.stream_sequence + 1;
    Ok(match stream.get_raw_message(first).await {
        Ok(message) => {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) as i128;
            let age = ((now - message.time.unix_timestamp_nanos()) as f64 / 1e9).max(0.0);
            let at = crate::feed::message::decode(&message.payload)
                .ok()
                .and_then(|events| events.first().map(StoredEvent::checkpoint));
            (at, age)
        }
        // Purged or not there yet: nothing older is waiting.
        Err(_) => (None, 0.0),
    })
}

/// Samples every `every` until `shutdown` turns true. A failed sample keeps
/// the previous one (and is logged): the bus being down is `/readyz`'s news.
pub async fn run(
    db: Db,
    source: Source,
    watch: LagWatch,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match sample(&db, &source).await {
            Ok(lags) => watch.set(lags),
            Err(error) => tracing::debug!(%error, "could not sample the views' lag"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
