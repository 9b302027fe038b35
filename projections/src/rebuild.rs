//! Rebuilding a view from the event store alone.
//!
//! The view is replayed into shadow tables while the live tables keep
//! serving; then, holding the live tables' lock (writers wait, briefly), the
//! shadow catches up with whatever was committed meanwhile and is swapped in
//! by renaming, in one transaction. Projections use event time only, so the
//! rebuilt rows equal the live ones.
use commands::events::{read_committed_after, Checkpoint, StoredEvent};
use commands::{Db, Dialect};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{AnyConnection, Row};
use std::time::{Duration, Instant};

use crate::view::{last_applied, Projection, ProjectionError};

const SHADOW: &str = "_rebuild";
const BATCH: i64 = 5_000;

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

/// Creates empty `shadow` with the columns and indexes of `live`.
async fn create_shadow(
    db: &Db,
    conn: &mut AnyConnection,
    live: &str,
    shadow: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
        .execute(&mut *conn)
        .await?;
    match db.dialect() {
        Dialect::Postgres => {
            sqlx::query(&format!(
                "CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL)"
            ))
            .execute(&mut *conn)
            .await?;
        }
        Dialect::Sqlite => {
            let rows = sqlx::query("SELECT type, sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL ORDER BY type DESC")
                .bind(live)
                .fetch_all(&mut *conn)
                .await?;
            let generation = chrono::Utc::now().timestamp_millis();
            for (i, row) in rows.iter().enumerate() {
                let kind: String = row.try_get("type")?;
                let sql: String = row.try_get("sql")?;
                let Some(open) = sql.find('(') else { continue };
                let statement = if kind == "table" {
                    format!("CREATE TABLE {shadow} {}", &sql[open..])
                } else {
                    let unique = if sql.to_uppercase().starts_with("CREATE UNIQUE") {
                        "UNIQUE "
                    } else {
                        ""
                    };
                    format!(
                        "CREATE {unique}INDEX {live}_i{i}_{generation} ON {shadow} {}",
                        &sql[open..]
                    )
                };
                sqlx::query(&statement).execute(&mut *conn).await?;
            }
        }
    }
    Ok(())
}

/// Applies a run of events to the shadow view inside `conn`'s transaction.
async fn apply_batch(
    conn: &mut AnyConnection,
    view: &dyn Projection,
    events: &[StoredEvent],
) -> Result<u64, ProjectionError> {
    let mut applied = 0;
    for event in events
        .iter()
        .filter(|e| e.aggregate_type == view.aggregate_type())
    {
        let last = last_applied(&mut *conn, view.table(), &event.aggregate_id).await?;
        if event.sequence == last + 1 {
            applied += view.write(&mut *conn, event).await?;
        }
    }
    Ok(applied)
}

/// Replays events after `from` into the shadow until none are left.
async fn replay(
    db: &Db,
    conn: &mut AnyConnection,
    view: &dyn Projection,
    mut from: Checkpoint,
    progress: &ProgressBar,
) -> Result<(Checkpoint, u64), ProjectionError> {
    let mut count = 0;
    loop {
        let events = read_committed_after(db, from, BATCH).await?;
        let Some(last) = events.last() else {
            return Ok((from, count));
        };
        from = last.checkpoint();
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        apply_batch(conn, view, &events).await?;
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
    let shadow = view.with_suffix(SHADOW);
    let mut conn = db.any.acquire().await?;
    for (live, copy) in view.tables().iter().zip(shadow.tables()) {
        create_shadow(db, &mut conn, live, &copy).await?;
    }
    let (total, _) = commands::events::head(db).await?;
    let progress = if show_progress {
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
    let (checkpoint, mut events) = replay(
        db,
        &mut conn,
        shadow.as_ref(),
        Checkpoint::default(),
        &progress,
    )
    .await?;

    // Swap: writers of the live view wait on the lock while the shadow
    // catches up with what they committed meanwhile.
    sqlx::query("BEGIN").execute(&mut *conn).await?;
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
            apply_batch(&mut conn, shadow.as_ref(), &batch).await?;
            events += batch.len() as u64;
            progress.inc(batch.len() as u64);
        }
        for (live, copy) in view.tables().iter().zip(shadow.tables()) {
            let old = format!("{live}_old");
            sqlx::query(&format!("DROP TABLE IF EXISTS {old}"))
                .execute(&mut *conn)
                .await?;
            sqlx::query(&format!("ALTER TABLE {live} RENAME TO {old}"))
                .execute(&mut *conn)
                .await?;
            sqlx::query(&format!("ALTER TABLE {copy} RENAME TO {live}"))
                .execute(&mut *conn)
                .await?;
            sqlx::query(&format!("DROP TABLE {old}"))
                .execute(&mut *conn)
                .await?;
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
