//! The baselines, measured right before the system on the same database:
//! a raw single-row INSERT of an event-shaped JSONB row per transaction.
use futures::FutureExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::stats::{closed_loop, Op, Sample};

fn payload(company: &str, user: &str) -> (serde_json::Value, serde_json::Value) {
    let payload = json!({"CustomerRegistered": {
        "company_id": company, "name": "Bench", "surname": "Baseline",
        "email": "bench.baseline@bench.example.com", "phone": "+34 600 000 000",
        "notes": null, "by": user,
    }});
    let metadata = json!({
        "company_id": company, "user_id": user,
        "correlation_id": Uuid::now_v7().to_string(),
        "occurred_at": chrono::Utc::now().to_rfc3339(),
    });
    (payload, metadata)
}

/// Raw INSERTs into a copy of the `events` table (same columns, keys and
/// defaults), autocommit: one transaction per row, through sqlx.
pub async fn postgres_inserts(
    database_url: &str,
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> Sample {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(database_url)
        .await
        .expect("baseline pool");
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await
        .expect("bench_events");
    let company = Uuid::now_v7().to_string();
    let user = Uuid::now_v7().to_string();
    let op: Op = Arc::new(move |_, _| {
        let pool = pool.clone();
        let (payload, metadata) = payload(&company, &user);
        async move {
            sqlx::query(
                "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind("customer")
            .bind(Uuid::now_v7().to_string())
            .bind(1i64)
            .bind("CustomerRegistered")
            .bind("2.0")
            .bind(payload)
            .bind(metadata)
            .execute(&pool)
            .await
            .is_ok()
        }
        .boxed()
    });
    closed_loop(clients, warmup, window, op).await
}

/// The same on the embedded SQLite file (WAL, synchronous=FULL, as `crm`
/// opens it), into a table shaped like its `events`.
pub async fn sqlite_inserts(
    sqlite_url: &str,
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> Sample {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;
    let options = SqliteConnectOptions::from_str(sqlite_url)
        .expect("sqlite url")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(clients.min(8) as u32)
        .connect_with(options)
        .await
        .expect("baseline sqlite pool");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (aggregate_type text NOT NULL, \
         aggregate_id text NOT NULL, sequence integer NOT NULL, event_type text NOT NULL, \
         event_version text NOT NULL, payload text NOT NULL, metadata text NOT NULL, \
         PRIMARY KEY (aggregate_type, aggregate_id, sequence)) STRICT",
    )
    .execute(&pool)
    .await
    .expect("bench_events");
    let company = Uuid::now_v7().to_string();
    let user = Uuid::now_v7().to_string();
    let op: Op = Arc::new(move |_, _| {
        let pool = pool.clone();
        let (payload, metadata) = payload(&company, &user);
        async move {
            sqlx::query(
                "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind("customer")
            .bind(Uuid::now_v7().to_string())
            .bind(1i64)
            .bind("CustomerRegistered")
            .bind("2.0")
            .bind(payload.to_string())
            .bind(metadata.to_string())
            .execute(&pool)
            .await
            .is_ok()
        }
        .boxed()
    });
    closed_loop(clients, warmup, window, op).await
}
