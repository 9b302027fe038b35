//! Rebuilding a view from the event store alone.
//!
//! The view is replayed into shadow tables while the live tables keep
//! serving; then, holding the live tables' lock (writers wait, briefly), the
//! shadow catches up with whatever was committed meanwhile and is swapped in
//! by renaming, in one transaction. Projections use event time only, so the
//! rebuilt rows equal the live ones.
//!
//! - [`bulk`]: the shadow's load, up to what was committed at the start;
//! - [`shadow`]: the shadow tables, and their indexes built after the load;
//! - here: the catch-up in commit order and the swap.
mod bulk;
mod shadow;

use commands::events::{committed_head, read_committed_after, Checkpoint, StoredEvent};
use commands::{Db, Dialect};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::AnyConnection;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::view::{is_sqlite, Applied, Projection, ProjectionError};

const SHADOW: &str = "_rebuild";
/// Events per catch-up run, in commit order.
const BATCH: i64 = bulk::PAGE;

#[derive(Debug)]
pub struct RebuildReport {
    pub view: &'static str,
    pub events: u64,
    pub elapsed: Duration,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `BEGIN` that takes SQLite's write lock up front (see [`crate::view::begin_write`]).
fn begin(db: &Db) -> &'static str {
    if is_sqlite(&db.any) {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    }
}

/// Parks the events of a run the view could not read (as the live feed
/// parks them), so one poison event cannot make every rebuild fail; they
/// changed nothing, and the parking is part of the caller's transaction.
async fn park_unreadable(
    conn: &mut AnyConnection,
    view: &dyn Projection,
    events: &[StoredEvent],
    verdicts: Vec<Applied>,
) -> Result<(), sqlx::Error> {
    for (event, verdict) in events.iter().zip(verdicts) {
        if let Applied::Unreadable(error) = verdict {
            crate::feed::park(&mut *conn, view.name(), event, &error).await?;
        }
    }
    Ok(())
}

/// Applies a run of events to the shadow view inside `conn`'s transaction.
async fn apply_batch(
    db: &Db,
    conn: &mut AnyConnection,
    view: &dyn Projection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let verdicts = view.apply_run(conn, db, events).await?;
    park_unreadable(conn, view, events, verdicts).await?;
    Ok(())
}

/// The next run of committed events after `from`, up to `target` and no
/// further. The catch-up before the swap stops at a fixed target, so it ends
/// even while commands commit faster than the shadow applies them; the swap
/// then applies the rest under the lock (where this process's own write
/// transaction holds the read horizon still, so that loop ends).
async fn read_up_to(
    db: &Db,
    from: Checkpoint,
    target: Checkpoint,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if from >= target {
        return Ok(vec![]);
    }
    let mut events = read_committed_after(db, from, BATCH).await?;
    events.retain(|event| event.checkpoint() <= target);
    Ok(events)
}

/// Replays the events committed after `from`, up to what is committed now.
async fn replay(
    db: &Db,
    conn: &mut AnyConnection,
    view: &dyn Projection,
    mut from: Checkpoint,
    progress: &ProgressBar,
) -> Result<(Checkpoint, u64), ProjectionError> {
    let target = committed_head(db).await?;
    let mut count = 0;
    loop {
        let events = read_up_to(db, from, target).await?;
        let Some(last) = events.last() else {
            return Ok((from, count));
        };
        from = last.checkpoint();
        sqlx::query(begin(db)).execute(&mut *conn).await?;
        apply_batch(db, conn, view, &events).await?;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        count += events.len() as u64;
        progress.inc(events.len() as u64);
    }
}

/// Rebuilds `view` (by name) and swaps it in; `show_progress` draws a bar.
pub async fn rebuild(
    db: &Db,
    view: &dyn Projection,
    show_progress: bool,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let shadow: Arc<dyn Projection> = view.with_suffix(SHADOW).into();
    let mut conn = db.any.acquire().await?;
    let mut deferred = shadow::Deferred::default();
    for (live, copy) in view.tables().iter().zip(shadow.tables()) {
        shadow::create(db, &mut conn, live, &copy, &mut deferred).await?;
    }
    let progress = if show_progress {
        let total: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
                .bind(view.aggregate_type())
                .fetch_one(&mut *conn)
                .await?;
        let bar = ProgressBar::new(total.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(view.name());
        bar
    } else {
        ProgressBar::hidden()
    };
    // In bulk up to what is committed now; then, in commit order, whatever
    // was committed meanwhile.
    let until = committed_head(db).await?;
    let mut events = bulk::replay_in_bulk(db, shadow.clone(), until, &progress).await?;
    let loaded = started.elapsed();
    shadow::finish(db, &deferred).await?;
    tracing::info!(
        view = view.name(),
        events,
        load_secs = loaded.as_secs_f64(),
        index_secs = (started.elapsed() - loaded).as_secs_f64(),
        "shadow loaded and indexed"
    );
    let (checkpoint, caught_up) = replay(db, &mut conn, shadow.as_ref(), until, &progress).await?;
    events += caught_up;

    // Swap: writers of the live view wait on the lock while the shadow
    // catches up with what they committed meanwhile.
    sqlx::query(begin(db)).execute(&mut *conn).await?;
    let swap = async {
        if db.dialect() == Dialect::Postgres {
            let tables = view.tables().join(", ");
            sqlx::query(&format!("LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
                .execute(&mut *conn)
                .await?;
        }
        let mut from = checkpoint;
        loop {
            let batch = read_committed_after(db, from, BATCH).await?;
            let Some(last) = batch.last() else { break };
            from = last.checkpoint();
            apply_batch(db, &mut conn, shadow.as_ref(), &batch).await?;
            events += batch.len() as u64;
            progress.inc(batch.len() as u64);
        }
        for (live, copy) in view.tables().iter().zip(shadow.tables()) {
            let old = format!("{live}_old");
            for statement in [
                format!("DROP TABLE IF EXISTS {old}"),
                format!("ALTER TABLE {live} RENAME TO {old}"),
                format!("ALTER TABLE {copy} RENAME TO {live}"),
                format!("DROP TABLE {old}"),
            ] {
                sqlx::query(&statement).execute(&mut *conn).await?;
            }
        }
        Ok::<_, ProjectionError>(())
    }
    .await;
    match swap {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
        }
        Err(error) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(error);
        }
    }
    progress.finish();
    Ok(RebuildReport {
        view: view.name(),
        events,
        elapsed: started.elapsed(),
    })
}
