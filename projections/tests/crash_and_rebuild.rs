//! A worker killed mid-batch loses nothing and applies nothing twice; a
//! rebuild while writes continue swaps in a view equal to a fresh fold of
//! the store. Real Postgres and NATS (and SQLite for the rebuild).
mod common;

use async_trait::async_trait;
use commands::events::StoredEvent;
use commands::{Commands, Db};
use common::*;
use domain::CompanyId;
use projections::feed::embedded::EmbeddedFeed;
use projections::feed::{Handled, Handler, ViewHandler};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The customers view, slowed down and counting what it applies, so a
/// batch is still in flight when its worker is killed.
struct SlowCountingView {
    inner: ViewHandler,
    applied: Arc<Mutex<HashMap<String, usize>>>,
}

#[async_trait]
impl Handler for SlowCountingView {
    fn name(&self) -> &str {
        "customers"
    }

    fn aggregate_type(&self) -> &str {
        "customer"
    }

    async fn handle(&self, event: &StoredEvent) -> Handled {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let verdict = self.inner.handle(event).await;
        if verdict == Handled::Done {
            *self
                .applied
                .lock()
                .expect("counter")
                .entry(event.message_id())
                .or_default() += 1;
        }
        verdict
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice() {
    let env = Env::new().await;
    write_history(&env.commands).await;
    write_history(&env.commands).await;
    env.publish_all(&env.relay()).await;
    let applied = Arc::new(Mutex::new(HashMap::new()));
    let worker = |applied: Arc<Mutex<HashMap<String, usize>>>| {
        let view = projections::views::by_name("customers").expect("customers view");
        env.worker(Box::new(SlowCountingView {
            inner: ViewHandler::new(env.db.clone(), view),
            applied,
        }))
        .with_ack_wait(Duration::from_secs(2))
    };

    // Kill the first worker (abort: no graceful stop) while it is inside a batch.
    let (_stop, shutdown) = watch::channel(false);
    let first = tokio::spawn(worker(applied.clone()).run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.abort();
    let _ = first.await;
    // A killed process's connections die with it; an aborted task's stay in
    // the pool, possibly idle inside its transaction, which would hold the
    // cluster-wide read horizon (and so every other test's feed) back.
    let commands::db::EventPool::Postgres(pg) = &env.db.events else {
        panic!("a Postgres test database");
    };
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .execute(pg)
    .await
    .expect("end the killed worker's sessions");
    let done_before_kill = applied.lock().expect("counter").len();
    let total = event_counts(&env.db, "customer")
        .await
        .iter()
        .map(|(_, n)| *n as usize)
        .sum::<usize>();
    assert!(done_before_kill < total, "the kill must interrupt the work");

    // A new worker on the same durable consumer finishes the job.
    let second = worker(applied.clone());
    eventually(Duration::from_secs(30), "the view to catch up", || async {
        let _ = second
            .process_next_batch(50, Duration::from_millis(200))
            .await;
        last_seqs(&env.db).await == event_counts(&env.db, "customer").await
    })
    .await;
    let applied = applied.lock().expect("counter").clone();
    assert_eq!(applied.len(), total, "every event applied");
    // Redelivered duplicates are no-ops: the rows equal an in-order fold.
    let reference = TestDb::new().await;
    apply_in_order(&reference.db, &env.all_events().await).await;
    assert_eq!(
        table_rows(&env.db, "customers", "id").await,
        table_rows(&reference.db, "customers", "id").await
    );
    reference.drop_now().await;
    env.cleanup().await;
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Row {
    id: String,
    company_id: String,
    name: String,
    surname: String,
    surname_key: String,
    email: Option<String>,
    phone: Option<String>,
    notes: Option<String>,
    photo_id: Option<String>,
    created_by: String,
    created_at: String,
    updated_by: String,
    updated_at: String,
    deleted: i64,
    deleted_at: Option<String>,
    last_seq: i64,
}

/// Every row of `table` in id order (the same SQL on both dialects).
async fn rows_of(db: &Db, table: &str) -> Vec<Row> {
    sqlx::query_as(&format!(
        "SELECT id, company_id, name, surname, surname_key, email, phone, notes, photo_id, \
         created_by, created_at, updated_by, updated_at, deleted, deleted_at, last_seq FROM {table} ORDER BY id"
    ))
    .fetch_all(&db.any)
    .await
    .expect("read rows")
}

/// Keeps writing customer commands until `stop` turns true.
async fn write_load(commands: Commands, stop: watch::Receiver<bool>) -> usize {
    let company = CompanyId(Uuid::now_v7());
    let mut writes = 0;
    while !*stop.borrow() {
        let id = register(
            &commands,
            company,
            "Load",
            &format!("Surname{writes}"),
            None,
        )
        .await;
        run(&commands, company, id, rename("Renamed")).await;
        writes += 2;
    }
    writes
}

async fn rebuild_during_writes(db: Db) {
    let commands = Commands::new(db.clone());
    let (stop_feed, feed_shutdown) = watch::channel(false);
    let handlers = projections::feed::all_handlers(&commands);
    let feed = tokio::spawn(EmbeddedFeed::new(commands.clone(), handlers).run(feed_shutdown));
    write_history(&commands).await;
    let (stop_writes, writes_stop) = watch::channel(false);
    let writer = tokio::spawn(write_load(commands.clone(), writes_stop));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = projections::views::by_name("customers").expect("customers view");
    projections::rebuild::rebuild(&db, view.as_ref(), false)
        .await
        .expect("rebuild");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_writes.send(true).expect("stop writes");
    let writes = writer.await.expect("writer");
    assert!(writes > 0, "writes ran during the rebuild");

    // Let the live feed apply the tail, then compare with a fresh fold. The
    // fold needs every event: other tests' open transactions hold the
    // (cluster-wide) horizon back, so wait until the reader sees them all.
    let events = all_committed(&db).await;
    let expected: HashMap<String, i64> = events
        .iter()
        .filter(|e| e.aggregate_type == "customer")
        .map(|e| (e.aggregate_id.clone(), e.sequence))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seqs: Vec<(String, i64)> = sqlx::query_as("SELECT id, last_seq FROM customers")
            .fetch_all(&db.any)
            .await
            .expect("last_seq");
        let behind: Vec<_> = seqs
            .iter()
            .filter(|(id, s)| expected.get(id) != Some(s))
            .map(|(id, s)| (id.clone(), *s, expected.get(id).copied()))
            .collect();
        if seqs.len() == expected.len() && behind.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let checkpoint: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT name, transaction_id, position FROM projection_checkpoints")
                    .fetch_all(&db.any)
                    .await
                    .expect("checkpoints");
            let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events")
                .fetch_one(&db.any)
                .await
                .expect("parked");
            panic!(
                "the live feed did not catch up: {} rows of {} expected; behind (id, row, store): {:?}; \
                 checkpoints {checkpoint:?}; parked {parked}",
                seqs.len(),
                expected.len(),
                &behind[..behind.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // `crm projections status` sees the caught-up feed as caught up (on
    // Postgres its checkpoint is in commit order: transaction id included).
    let mut lag = i64::MAX;
    for _ in 0..200 {
        let status = projections::status::status(&db).await.expect("status");
        lag = status
            .feeds
            .iter()
            .find(|f| f.name.starts_with("projections ("))
            .expect("the embedded feed's checkpoint")
            .lag_events;
        if lag == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(lag, 0, "status shows the caught-up feed behind");
    stop_feed.send(true).expect("stop feed");
    feed.await.expect("feed");

    let fold = Db::connect_sqlite(
        &std::env::temp_dir().join(format!("crm-fold-{}", Uuid::new_v4().simple())),
    )
    .await
    .expect("fold db");
    fold.migrate().await.expect("migrate fold db");
    let view = projections::views::by_name("customers").expect("customers view");
    for event in &events {
        projections::view::apply(&fold, view.as_ref(), event)
            .await
            .expect("fold");
    }
    let (rebuilt, folded) = (
        rows_of(&db, "customers").await,
        rows_of(&fold, "customers").await,
    );
    assert_eq!(rebuilt.len(), folded.len(), "as many rows as the fold");
    for (row, expected) in rebuilt.iter().zip(&folded) {
        assert_eq!(row, expected, "the first row that differs from the fold");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_while_writes_continue_on_postgres() {
    let test_db = TestDb::new().await;
    rebuild_during_writes(test_db.db.clone()).await;
    test_db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_while_writes_continue_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("crm-rebuild-{}", Uuid::new_v4().simple()));
    let db = Db::connect_sqlite(&dir).await.expect("sqlite");
    db.migrate().await.expect("migrate");
    rebuild_during_writes(db).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Found by fault drill 7: one undecodable event in the store made every
/// `crm projections rebuild` of its view fail. The rebuild parks it, as the
/// live feed does, and rebuilds everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_parks_a_poison_event_and_goes_on() {
    let test_db = TestDb::new().await;
    let db = test_db.db.clone();
    let commands = Commands::new(db.clone());
    let ids = write_history(&commands).await;
    let poison = Uuid::now_v7().to_string();
    let commands::db::EventPool::Postgres(pg) = &db.events else {
        panic!("a Postgres test database");
    };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('customer', $1, 1, 'CustomerRegistered', '2.0', $2, $3)",
    )
    .bind(&poison)
    .bind(serde_json::json!({"CustomerRegistered": {"name": 42}}))
    .bind(serde_json::json!({"company_id": Uuid::now_v7().to_string(), "occurred_at": "2026-11-25T00:00:00.000000Z"}))
    .execute(pg)
    .await
    .expect("insert the poison event");
    let after = register(
        &commands,
        CompanyId(Uuid::now_v7()),
        "After",
        "Poison",
        None,
    )
    .await;

    // Wait out other tests' transactions older than these events: a rebuild
    // reads below the read horizon (the live feed applies the rest later).
    all_committed(&db).await;
    let view = projections::views::by_name("customers").expect("customers view");
    projections::rebuild::rebuild(&db, view.as_ref(), false)
        .await
        .expect("a rebuild gets past a poison event");

    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM customers")
        .fetch_all(&db.any)
        .await
        .expect("rows");
    let rows: Vec<String> = rows.into_iter().map(|(id,)| id).collect();
    for id in ids.iter().chain([&after]) {
        assert!(rows.contains(&id.to_string()), "{id} rebuilt");
    }
    assert!(!rows.contains(&poison), "the poison event has no row");
    let parked: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT projection, aggregate_id, sequence FROM parked_events")
            .fetch_all(&db.any)
            .await
            .expect("parked");
    assert_eq!(parked, vec![("customers".to_owned(), poison, 1)]);
    test_db.drop_now().await;
}

/// A rebuild reads a view's events a page at a time, cut at an aggregate's
/// boundary; an aggregate longer than a page continues on the next one,
/// where its row is already in the shadow and is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_folds_an_aggregate_longer_than_a_page() {
    let test_db = TestDb::new().await;
    let db = test_db.db.clone();
    let commands = Commands::new(db.clone());
    let company = CompanyId(Uuid::now_v7());
    let id = register(&commands, company, "Long", "Stream", None).await;
    run(&commands, company, id, rename("Renamed")).await;
    let commands::db::EventPool::Postgres(pg) = &db.events else {
        panic!("a Postgres test database");
    };
    // The rename again and again, as sequences 3..=12000: well past a page.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, s, event_type, event_version, payload, metadata \
         FROM events, generate_series(3, 12000) AS s WHERE aggregate_id = $1 AND sequence = 2",
    )
    .bind(id.to_string())
    .execute(pg)
    .await
    .expect("lengthen the stream");
    // As above: every event below the read horizon before the rebuild.
    all_committed(&db).await;

    let view = projections::views::by_name("customers").expect("customers view");
    tokio::time::timeout(
        Duration::from_secs(60),
        projections::rebuild::rebuild(&db, view.as_ref(), false),
    )
    .await
    .expect("the rebuild finishes")
    .expect("rebuild");

    let stream = commands::events::read_stream(&db, "customer", &id.to_string())
        .await
        .expect("read the stream");
    let folded =
        projections::views::fold_events::<projections::views::customers::Customers>(&stream)
            .expect("fold")
            .expect("a row");
    let rows = projections::views::rows::load_all::<projections::views::customers::Customers>(&db)
        .await
        .expect("rows");
    assert_eq!(rows.get(&id.to_string()), Some(&folded));
    assert_eq!(folded.last_seq, 12000);
    test_db.drop_now().await;
}
