//! Customer imports: the job records and the batch write.
//!
//! A batch's new customers, its rejected rows and the job's counts are
//! committed in one transaction, so a job's counts are exactly what the
//! store holds, also after a crash. Each row's customer id is derived from
//! the job and the row's line, so a resumed job finds the rows an earlier
//! attempt wrote ([`already_written`]) and writes each row once.
use chrono::{SecondsFormat, Utc};
use domain::{CompanyId, CustomerId, UserId};
use sqlx::{AnyPool, Row};
use std::time::Duration;
use uuid::Uuid;

use crate::append::{self, NewEvent};
use crate::db::{Db, EventPool};

/// A job's state as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "succeeded" => Self::Succeeded,
            "cancelled" => Self::Cancelled,
            "running" => Self::Running,
            _ => Self::Failed,
        }
    }
}

/// A running job whose heartbeat is older than this was interrupted (its
/// process stopped); sending the file again resumes it.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// How often a running job renews its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// The counts of a job, as of its last committed batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub rows_read: i64,
    pub created: i64,
    pub updated: i64,
    pub rejected: i64,
}

/// A job record.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: Uuid,
    pub company_id: CompanyId,
    pub created_by: UserId,
    pub format: String,
    pub upsert_on: Option<String>,
    pub digest: String,
    pub state: JobState,
    pub counts: Counts,
    pub detail: Option<String>,
    pub created_at: String,
    pub heartbeat_at: String,
    pub finished_at: Option<String>,
}

impl Job {
    /// Running, but no process has renewed it lately.
    pub fn heartbeat_stopped(&self) -> bool {
        let Ok(beat) = chrono::DateTime::parse_from_rfc3339(&self.heartbeat_at) else {
            return true;
        };
        let age = Utc::now().signed_duration_since(beat);
        self.state == JobState::Running && age.to_std().is_ok_and(|age| age > STALE_AFTER)
    }
}

/// One reason a row was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The 1-based line of the file the row starts on.
    pub line: i64,
    /// The invalid field, `None` when the row itself is malformed.
    pub field: Option<String>,
    pub message: String,
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The id of the customer that line `line` of job `job` creates.
pub fn row_customer_id(job: Uuid, line: i64) -> CustomerId {
    CustomerId(Uuid::new_v5(&job, line.to_string().as_bytes()))
}

const JOB_COLUMNS: &str = "id, company_id, created_by, format, upsert_on, digest, state, \
    rows_read, created, updated, rejected, detail, created_at, heartbeat_at, finished_at";

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    let parse = |column: &str, text: String| {
        Uuid::parse_str(&text).map_err(|error| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(error),
        })
    };
    Ok(Job {
        id: parse("id", row.try_get("id")?)?,
        company_id: CompanyId(parse("company_id", row.try_get("company_id")?)?),
        created_by: UserId(parse("created_by", row.try_get("created_by")?)?),
        format: row.try_get("format")?,
        upsert_on: row.try_get("upsert_on")?,
        digest: row.try_get("digest")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        counts: Counts {
            rows_read: row.try_get("rows_read")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            rejected: row.try_get("rejected")?,
        },
        detail: row.try_get("detail")?,
        created_at: row.try_get("created_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// The job `id` of `company`, if it has one.
pub async fn find(
    pool: &AnyPool,
    company: CompanyId,
    id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM customer_imports WHERE id = $1 AND company_id = $2"
    ))
    .bind(id.to_string())
    .bind(company.to_string())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(job_from_row).transpose()
}

/// What a new job is asked to do.
pub struct NewJob<'a> {
    pub id: Uuid,
    pub company_id: CompanyId,
    pub created_by: UserId,
    pub format: &'a str,
    pub upsert_on: Option<&'a str>,
    pub digest: &'a str,
}

/// Records a new running job; `false` if a job of that id exists already.
pub async fn insert(pool: &AnyPool, job: &NewJob<'_>) -> Result<bool, sqlx::Error> {
    let now = now_text();
    let inserted = sqlx::query(
        "INSERT INTO customer_imports (id, company_id, created_by, format, upsert_on, digest, \
         state, created_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(job.id.to_string())
    .bind(job.company_id.to_string())
    .bind(job.created_by.to_string())
    .bind(job.format)
    .bind(job.upsert_on)
    .bind(job.digest)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Takes over an interrupted job to run it again from its first row: counts
/// and reasons start afresh (the rows written before count again, as they
/// are found). `false` if another process took it first.
pub async fn restart(pool: &AnyPool, job: &Job) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let taken = sqlx::query(
        "UPDATE customer_imports SET rows_read = 0, created = 0, updated = 0, rejected = 0, \
         detail = NULL, heartbeat_at = $1 WHERE id = $2 AND state = 'running' AND heartbeat_at = $3",
    )
    .bind(now_text())
    .bind(job.id.to_string())
    .bind(&job.heartbeat_at)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM customer_import_errors WHERE import_id = $1")
        .bind(job.id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Renews a running job's heartbeat; `false` once it no longer runs.
pub async fn heartbeat(pool: &AnyPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE customer_imports SET heartbeat_at = $1 WHERE id = $2 AND state = 'running'",
    )
    .bind(now_text())
    .bind(id.to_string())
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends a running job in `state`; a job already ended keeps its state.
pub async fn finish(
    pool: &AnyPool,
    id: Uuid,
    state: JobState,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customer_imports SET state = $1, detail = $2, finished_at = $3 \
         WHERE id = $4 AND state = 'running'",
    )
    .bind(state.as_str())
    .bind(detail)
    .bind(now_text())
    .bind(id.to_string())
    .execute(pool)
    .await
    .map(drop)
}

/// The reasons of job `id`'s rejected rows after `(line, position)`, in
/// file order, at most `limit`.
pub async fn errors_after(
    pool: &AnyPool,
    id: Uuid,
    after: (i64, i64),
    limit: i64,
) -> Result<Vec<(i64, i64, RowError)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT line, position, field, message FROM customer_import_errors \
         WHERE import_id = $1 AND (line > $2 OR (line = $3 AND position > $4)) \
         ORDER BY line, position LIMIT $5",
    )
    .bind(id.to_string())
    .bind(after.0)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let line: i64 = row.try_get("line")?;
            Ok((
                line,
                row.try_get("position")?,
                RowError {
                    line,
                    field: row.try_get("field")?,
                    message: row.try_get("message")?,
                },
            ))
        })
        .collect()
}

/// Which of `ids` (customers a job's rows create) the store already holds.
pub async fn already_written(
    pool: &AnyPool,
    ids: &[CustomerId],
) -> Result<Vec<CustomerId>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "{} SELECT wanted_key AS aggregate_id FROM wanted WHERE (SELECT 1 FROM events e \
         WHERE e.aggregate_type = $1 AND e.aggregate_id = wanted_key AND e.sequence = 1) \
         IS NOT NULL",
        crate::db::wanted_keys(2, ids.len())
    );
    let mut query = sqlx::query(&sql).bind("customer");
    for id in ids {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("aggregate_id")?;
            id.parse().map_err(|_| sqlx::Error::ColumnDecode {
                index: "aggregate_id".into(),
                source: "not a customer id".into(),
            })
        })
        .collect()
}

/// One batch's effect on its job.
pub struct Batch<'a> {
    pub job: Uuid,
    /// The new customers' events.
    pub events: &'a [NewEvent],
    pub errors: &'a [RowError],
    pub counts: Counts,
}

/// Commits a batch: its events, its rejected rows and the job's new counts,
/// in one transaction.
pub async fn commit(db: &Db, batch: &Batch<'_>) -> Result<(), sqlx::Error> {
    match &db.events {
        EventPool::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            append::copy_in(&mut tx, batch.events).await?;
            record::<sqlx::Postgres>(&mut tx, batch).await?;
            tx.commit().await
        }
        EventPool::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            append::insert_sqlite(&mut tx, batch.events).await?;
            record::<sqlx::Sqlite>(&mut tx, batch).await?;
            tx.commit().await
        }
    }
}

/// Rows of reasons per multi-row `INSERT` (5 values each).
const ERRORS_PER_INSERT: usize = 1_000;

async fn record<DB>(conn: &mut DB::Connection, batch: &Batch<'_>) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut position = 0i64;
    let mut last_line = None;
    let numbered: Vec<(i64, &RowError)> = batch
        .errors
        .iter()
        .map(|error| {
            position = if last_line == Some(error.line) {
                position + 1
            } else {
                0
            };
            last_line = Some(error.line);
            (position, error)
        })
        .collect();
    for chunk in numbered.chunks(ERRORS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO customer_import_errors (import_id, line, position, field, message) \
             VALUES {} ON CONFLICT DO NOTHING",
            crate::db::placeholders(1, chunk.len(), 5)
        );
        let mut query = sqlx::query::<DB>(&sql);
        for (position, error) in chunk {
            query = query
                .bind(batch.job.to_string())
                .bind(error.line)
                .bind(*position)
                .bind(error.field.clone())
                .bind(error.message.clone());
        }
        query.execute(&mut *conn).await?;
    }
    let counts = batch.counts;
    sqlx::query::<DB>(
        "UPDATE customer_imports SET rows_read = rows_read + $1, created = created + $2, \
         updated = updated + $3, rejected = rejected + $4, heartbeat_at = $5 WHERE id = $6",
    )
    .bind(counts.rows_read)
    .bind(counts.created)
    .bind(counts.updated)
    .bind(counts.rejected)
    .bind(now_text())
    .bind(batch.job.to_string())
    .execute(&mut *conn)
    .await
    .map(drop)
}
