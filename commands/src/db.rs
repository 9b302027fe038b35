//! The database that holds the event store and the read models: Postgres on
//! the full stack, one SQLite file in the data directory when embedded.
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AnyPool, Executor, PgPool, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// The typed pool for the cqrs-es repository and the event readers.
#[derive(Clone, Debug)]
pub enum EventPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Both pools over one database: `events` for the event store (typed, as the
/// cqrs-es repositories need), `any` for the read models, whose SQL is the
/// same text in both dialects.
#[derive(Clone, Debug)]
pub struct Db {
    pub events: EventPool,
    pub any: AnyPool,
}

/// Statements may not wait on locks or idle transactions forever: a session
/// left idle in a transaction is cut off instead of blocking writers.
const PG_SESSION_SETTINGS: &str = "SET statement_timeout = '15s'; \
     SET lock_timeout = '5s'; \
     SET idle_in_transaction_session_timeout = '30s'";

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self.events {
            EventPool::Postgres(_) => Dialect::Postgres,
            EventPool::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let events = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(PG_SESSION_SETTINGS).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::any::install_default_drivers();
        let any = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(PG_SESSION_SETTINGS).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Self {
            events: EventPool::Postgres(events),
            any,
        })
    }

    /// Opens (creating if needed) `crm.db` in `data_dir`.
    pub async fn connect_sqlite(data_dir: &Path) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("crm.db");
        let url = format!("sqlite://{}", path.display());
        // WAL lets readers run beside the one writer; FULL keeps every
        // acknowledged commit across a power loss.
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let events = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::any::install_default_drivers();
        let any = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL")
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self {
            events: EventPool::Sqlite(events),
            any,
        })
    }

    /// Applies the embedded migrations of this dialect (idempotent).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match &self.events {
            EventPool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
            EventPool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        }
    }

    /// Answers whether the database is reachable right now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.any).await.is_ok()
    }
}

/// `$first, $first+1, …`: `count` numbered placeholders.
pub fn numbered(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, …), (…)`: `rows` groups of `width` numbered placeholders, for a
/// multi-row `VALUES`.
pub fn placeholders(first: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", numbered(first + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `WITH wanted(wanted_key) AS (VALUES ($first), …)`: `count` keys bound
/// from parameter `first` on, as a table to look each one up from.
///
/// A lookup is then a correlated subquery per key, which both dialects run
/// as one index probe per key. An `IN ($2, …)` list is not safe on Postgres:
/// while the statistics of a fast-growing table are stale, the planner may
/// scan the whole index range and test every row against the list, one
/// parameter at a time (seconds per thousand keys at 100k rows).
pub fn wanted_keys(first: usize, count: usize) -> String {
    format!(
        "WITH wanted(wanted_key) AS (VALUES {})",
        placeholders(first, count, 1)
    )
}

#[cfg(test)]
mod placeholder_tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value_once() {
        assert_eq!(placeholders(1, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(numbered(1, 3), "$1, $2, $3");
        assert_eq!(
            wanted_keys(2, 2),
            "WITH wanted(wanted_key) AS (VALUES ($2), ($3))"
        );
    }
}
