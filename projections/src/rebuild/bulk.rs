//! The bulk phase of a rebuild: the view's events up to a committed point,
//! read in stream order a page at a time and loaded into the empty shadow.
//!
//! Reading, folding and loading overlap: one task reads the next pages while
//! up to [`WRITERS`] pages are folded and written at once, each on its own
//! connection, so this process and the database's backends keep both kinds
//! of work going instead of taking turns.
use commands::db::EventPool;
use commands::events::{read_type_until, Checkpoint, StoredEvent, StreamKey};
use commands::{Db, Dialect};
use indicatif::ProgressBar;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{begin, park_unreadable};
use crate::view::{Projection, ProjectionError};

/// Events per page read. Large enough that a page's statements are few
/// against its rows; small enough that a few pages in flight stay a few
/// tens of MiB.
pub(super) const PAGE: i64 = 5_000;

/// Stretches of the stream read at the same time on Postgres: a reader
/// waits on the database for a page and then decodes it, so one alone left
/// both idle half of the time (1M events read in 16.7 s with one, 12.4 s
/// with two, 9.3 s with three).
const READERS: usize = 3;

/// Pages written at the same time on Postgres (SQLite has one writer).
/// Measured on two cores over 1M events: two, three or four writers load
/// in the same time (the cores are busy); the reading is what needed more
/// than one task.
const WRITERS: usize = 3;

/// One page of the view's events in stream order, cut at an aggregate
/// boundary when it is full (so every aggregate in it is whole and new to the
/// shadow, unless one aggregate fills a page alone).
async fn read_page(
    db: &Db,
    aggregate_type: &str,
    until: Checkpoint,
    after: Option<&StreamKey>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut events = read_type_until(db, aggregate_type, until, after, PAGE).await?;
    if events.len() as i64 == PAGE {
        if let Some(last) = events.last().map(|e| e.aggregate_id.clone()) {
            if let Some(cut) = events.iter().rposition(|e| e.aggregate_id != last) {
                events.truncate(cut + 1);
            }
        }
    }
    Ok(events)
}

/// A stretch of the view's aggregates, by id: from `from` (inclusive; the
/// start when `None`) to `to` (exclusive; the end when `None`).
#[derive(Clone, Debug, Default)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// Splits the view's aggregates into about `parts` stretches of similar
/// size, at ids sampled from the store (1% of its pages on Postgres), so
/// several readers can page through them at once. One stretch on SQLite or
/// when the sample is too small to split.
async fn ranges(db: &Db, aggregate_type: &str, parts: usize) -> Result<Vec<Range>, sqlx::Error> {
    let EventPool::Postgres(pool) = &db.events else {
        return Ok(vec![Range::default()]);
    };
    let sample: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events TABLESAMPLE SYSTEM (1) \
         WHERE aggregate_type = $1 ORDER BY aggregate_id",
    )
    .bind(aggregate_type)
    .fetch_all(pool)
    .await?;
    let mut cuts: Vec<String> = (1..parts)
        .filter_map(|i| sample.get(i * sample.len() / parts).cloned())
        .collect();
    cuts.dedup();
    if sample.len() < parts * 10 {
        cuts.clear();
    }
    let mut ranges = vec![];
    let mut from = None;
    for cut in cuts {
        ranges.push(Range {
            from: from.replace(cut.clone()),
            to: Some(cut),
        });
    }
    ranges.push(Range { from, to: None });
    Ok(ranges)
}

/// Reads every page of `range` up to `until` into `pages`, in order, until
/// the range ends, a read fails (sent on as the last item) or nobody listens.
async fn read_pages(
    db: Db,
    aggregate_type: &'static str,
    until: Checkpoint,
    range: Range,
    pages: mpsc::Sender<Result<Vec<StoredEvent>, sqlx::Error>>,
) {
    // Sequences start at 1: after (id, 0) is the first event of `id`.
    let mut after: Option<StreamKey> = range.from.map(|id| (id, 0));
    loop {
        let mut page = read_page(&db, aggregate_type, until, after.as_ref()).await;
        let mut ended = false;
        if let Ok(events) = &mut page {
            if let Some(to) = &range.to {
                if let Some(end) = events.iter().position(|e| &e.aggregate_id >= to) {
                    events.truncate(end);
                    ended = true;
                }
            }
            match events.last() {
                Some(last) => after = Some((last.aggregate_id.clone(), last.sequence)),
                None => return,
            }
        }
        let failed = page.is_err();
        if pages.send(page).await.is_err() || failed || ended {
            return;
        }
    }
}

/// Writes one page into the shadow in its own transaction, parking the
/// events the view cannot read. Returns how many events the page held.
async fn write_page(
    db: Db,
    view: Arc<dyn Projection>,
    events: Vec<StoredEvent>,
) -> Result<u64, ProjectionError> {
    let mut conn = db.any.acquire().await?;
    sqlx::query(begin(&db)).execute(&mut *conn).await?;
    let verdicts = view.load_new(&mut conn, &db, &events).await?;
    park_unreadable(&mut conn, view.as_ref(), &events, verdicts).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(events.len() as u64)
}

/// Waits for one page being written; `false` when none is.
async fn finish_one(
    writing: &mut JoinSet<Result<u64, ProjectionError>>,
    progress: &ProgressBar,
) -> Result<bool, ProjectionError> {
    match writing.join_next().await {
        None => Ok(false),
        Some(joined) => {
            let written = joined??;
            progress.inc(written);
            Ok(true)
        }
    }
}

/// Replays the view's events committed up to `until` into the empty shadow
/// (each aggregate's events in sequence order). Returns how many it read.
pub(super) async fn replay_in_bulk(
    db: &Db,
    view: Arc<dyn Projection>,
    until: Checkpoint,
    progress: &ProgressBar,
) -> Result<u64, ProjectionError> {
    let (readers, writers) = match db.dialect() {
        Dialect::Postgres => (READERS, WRITERS),
        Dialect::Sqlite => (1, 1),
    };
    let (sender, mut pages) = mpsc::channel(writers);
    let mut reading = JoinSet::new();
    for range in ranges(db, view.aggregate_type(), readers).await? {
        reading.spawn(read_pages(
            db.clone(),
            view.aggregate_type(),
            until,
            range,
            sender.clone(),
        ));
    }
    drop(sender);
    let mut writing = JoinSet::new();
    let mut count = 0;
    let outcome = async {
        while let Some(page) = pages.recv().await {
            let page = page?;
            // A page that goes on with an aggregate of the page before folds
            // over the row that page writes: it waits until every earlier
            // page is in.
            if page.first().is_some_and(|event| event.sequence > 1) {
                while finish_one(&mut writing, progress).await? {}
            }
            while writing.len() >= writers {
                finish_one(&mut writing, progress).await?;
            }
            count += page.len() as u64;
            writing.spawn(write_page(db.clone(), view.clone(), page));
        }
        while finish_one(&mut writing, progress).await? {}
        Ok::<_, ProjectionError>(())
    }
    .await;
    // On an error the pages still being written are aborted with `writing`
    // (their transactions roll back), the readers with `reading`.
    drop(pages);
    outcome.map(|()| count)
}
