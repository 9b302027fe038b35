//! Rebuilding a view from the event store alone.
//!
//! The view is replayed into shadow tables while the live tables keep
//! serving; then, holding the live tables' lock (writers wait, briefly), the
//! shadow catches up with whatever was committed meanwhile and is swapped in
//! by renaming, in one transaction. Projections use event time only, so the
//! rebuilt rows equal the live ones.
use commands::events::{
    committed_head, read_committed_after, read_type_until, Checkpoint, StoredEvent, StreamKey,
};
use commands::{Db, Dialect};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{AnyConnection, Row};
use std::time::{Duration, Instant};

use crate::view::{is_sqlite, Applied, Projection, ProjectionError};

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

/// `BEGIN` that takes SQLite's write lock up front (see [`crate::view::begin_write`]).
fn begin(db: &Db) -> &'static str {
    if is_sqlite(&db.any) {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    }
}

/// Creates empty `shadow` with the columns of `live` and only its
/// constraints (on SQLite its inline keys); the statements that add its keys
/// and indexes are returned, to run once the bulk load is in: an index built
/// over loaded rows costs a fraction of one maintained row by row.
async fn create_shadow(
    db: &Db,
    conn: &mut AnyConnection,
    live: &str,
    shadow: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
        .execute(&mut *conn)
        .await?;
    let mut deferred = vec![];
    match db.dialect() {
        Dialect::Postgres => {
            sqlx::query(&format!(
                "CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(&mut *conn)
            .await?;
            // Keys as constraints, as the live table has them...
            let keys = sqlx::query(
                "SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c \
                 WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u') ORDER BY c.conname",
            )
            .bind(live)
            .fetch_all(&mut *conn)
            .await?;
            for key in keys {
                let def: String = key.try_get("def")?;
                deferred.push(format!("ALTER TABLE {shadow} ADD {def}"));
            }
            // ...and the other indexes, named by Postgres as `LIKE` names them.
            let indexes = sqlx::query(
                "SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
                 WHERE i.indrelid = $1::regclass AND NOT EXISTS \
                   (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
            )
            .bind(live)
            .fetch_all(&mut *conn)
            .await?;
            for index in indexes {
                let def: String = index.try_get("def")?;
                let Some(using) = def.find(" USING ") else {
                    continue;
                };
                let unique = if def.starts_with("CREATE UNIQUE") {
                    "UNIQUE "
                } else {
                    ""
                };
                deferred.push(format!("CREATE {unique}INDEX ON {shadow}{}", &def[using..]));
            }
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
                if kind == "table" {
                    sqlx::query(&format!("CREATE TABLE {shadow} {}", &sql[open..]))
                        .execute(&mut *conn)
                        .await?;
                    continue;
                }
                let unique = if sql.to_uppercase().starts_with("CREATE UNIQUE") {
                    "UNIQUE "
                } else {
                    ""
                };
                let statement = format!(
                    "CREATE {unique}INDEX {live}_i{i}_{generation} ON {shadow} {}",
                    &sql[open..]
                );
                deferred.push(statement);
            }
        }
    }
    Ok(deferred)
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

/// One page of the view's events in stream order, cut at an aggregate
/// boundary when it is full (so every aggregate in it is whole and new to the
/// shadow, unless one aggregate fills a page alone).
async fn read_page(
    db: &Db,
    aggregate_type: &str,
    until: Checkpoint,
    after: Option<&StreamKey>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut events = read_type_until(db, aggregate_type, until, after, BATCH).await?;
    if events.len() as i64 == BATCH {
        if let Some(last) = events.last().map(|e| e.aggregate_id.clone()) {
            if let Some(cut) = events.iter().rposition(|e| e.aggregate_id != last) {
                events.truncate(cut + 1);
            }
        }
    }
    Ok(events)
}

/// Writes one page into the shadow in its own transaction, parking the
/// events the view cannot read.
async fn write_page(
    db: &Db,
    conn: &mut AnyConnection,
    view: &dyn Projection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    sqlx::query(begin(db)).execute(&mut *conn).await?;
    let verdicts = view.load_new(conn, db, events).await?;
    park_unreadable(conn, view, events, verdicts).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

/// Replays the view's events committed up to `until` into the empty shadow,
/// a page at a time in stream order (each aggregate's events in sequence
/// order), letting the view write each page in bulk while the next page is
/// read. Returns how many events it read.
async fn replay_in_bulk(
    db: &Db,
    conn: &mut AnyConnection,
    view: &dyn Projection,
    until: Checkpoint,
    progress: &ProgressBar,
) -> Result<u64, ProjectionError> {
    let mut count = 0;
    let mut page = read_page(db, view.aggregate_type(), until, None).await?;
    while let Some(last) = page.last() {
        let after = (last.aggregate_id.clone(), last.sequence);
        let (written, next) = tokio::join!(
            write_page(db, conn, view, &page),
            read_page(db, view.aggregate_type(), until, Some(&after)),
        );
        written?;
        count += page.len() as u64;
        progress.inc(page.len() as u64);
        page = next?;
    }
    Ok(count)
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

/// Builds the shadow's deferred keys and indexes over the loaded rows, then
/// gives the planner the shadow's statistics, so the first reads after the
/// swap plan as well as on the live table. On Postgres the index builds may
/// run past the session's `statement_timeout` (meant for requests, not for
/// sorting a million rows) and get more sort memory than a request.
async fn finish_shadow(
    db: &Db,
    conn: &mut AnyConnection,
    deferred: &[String],
    shadow_tables: &[String],
) -> Result<(), sqlx::Error> {
    if db.dialect() != Dialect::Postgres {
        for statement in deferred {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        return Ok(());
    }
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let built = async {
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        for statement in deferred {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        for table in shadow_tables {
            sqlx::query(&format!("ANALYZE {table}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match built {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(drop),
        Err(error) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(error)
        }
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
    let mut deferred = vec![];
    for (live, copy) in view.tables().iter().zip(shadow.tables()) {
        deferred.extend(create_shadow(db, &mut conn, live, &copy).await?);
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
    let mut events = replay_in_bulk(db, &mut conn, shadow.as_ref(), until, &progress).await?;
    finish_shadow(db, &mut conn, &deferred, &shadow.tables()).await?;
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
