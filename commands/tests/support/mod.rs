//! A fresh event-store database per test, on either backend.
//!
//! Postgres: a new database `crm_test_<uuid>` on the server at
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped afterwards. The tests fail, not skip, when the server is down: a
//! silently skipped suite would hide a broken event store.
//!
//! SQLite: a new data directory under the system temp dir, removed afterwards.
#![allow(dead_code)]

use std::future::Future;

use commands::db::EventPool;
use commands::Db;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn admin_connection() -> PgConnection {
    let url = admin_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "cannot reach the test Postgres at {url} ({e}); start it or set TEST_DATABASE_URL"
        ),
    }
}

async fn close(db: &Db) {
    db.any.close().await;
    match &db.events {
        EventPool::Postgres(pool) => pool.close().await,
        EventPool::Sqlite(pool) => pool.close().await,
    }
}

/// Runs `scenario` in its own task so that its panic can be re-raised after
/// the cleanup.
async fn run<Fut>(db: Db, scenario: impl FnOnce(Db) -> Fut) -> Result<(), tokio::task::JoinError>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(scenario(db.clone())).await;
    close(&db).await;
    result
}

fn reraise(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("the scenario task failed: {error}");
    }
}

/// Runs `scenario` against a fresh, migrated Postgres database.
pub async fn on_postgres<Fut>(scenario: impl FnOnce(Db) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("crm_test_{}", Uuid::new_v4().simple());
    let mut admin = admin_connection().await;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let url = with_database(&admin_url(), &name);
    let db = Db::connect_postgres(&url, 16)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    db.migrate().await.expect("postgres migrations");
    let result = run(db, scenario).await;
    if let Err(e) = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
    {
        eprintln!("could not drop the test database {name}: {e}");
    }
    reraise(result);
}

/// Runs `scenario` against a fresh, migrated SQLite database.
pub async fn on_sqlite<Fut>(scenario: impl FnOnce(Db) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("crm-test-{}", Uuid::new_v4().simple()));
    let db = Db::connect_sqlite(&dir)
        .await
        .unwrap_or_else(|e| panic!("cannot open SQLite in {}: {e}", dir.display()));
    db.migrate().await.expect("sqlite migrations");
    let result = run(db, scenario).await;
    let _ = std::fs::remove_dir_all(&dir);
    reraise(result);
}

/// The typed Postgres pool of `db` (for raw SQL in Postgres-only tests).
pub fn pg_pool(db: &Db) -> PgPool {
    match &db.events {
        EventPool::Postgres(pool) => pool.clone(),
        EventPool::Sqlite(_) => panic!("this test needs Postgres"),
    }
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
