//! The relay against real Postgres and NATS: commit-order horizon, dedup on
//! republish, NATS outages, and the lease.
mod common;

use common::*;
use projections::feed::relay::{connect_bus, ensure_stream_with, Lease, RelayError};
use sqlx::Executor;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

/// Inserts one probe event as the given executor (a transaction or the pool).
async fn insert_probe<'e>(executor: impl sqlx::PgExecutor<'e>, id: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('probe', $1, 1, 'Probed', '1.0', '{}'::jsonb, '{\"company_id\": \"c1\"}'::jsonb)",
    )
    .bind(id)
    .execute(executor)
    .await
    .expect("insert probe event");
}

fn ids(messages: &[(String, commands::events::StoredEvent)]) -> Vec<String> {
    messages
        .iter()
        .map(|(_, event)| event.message_id())
        .collect()
}

/// Commit order is numeric in the transaction id: `99` before `100` (read as
/// text they sort the other way, and a full page cut there would skip the
/// smaller one for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_ids_of_different_lengths_keep_commit_order() {
    let env = Env::new().await;
    for (id, xid) in [("late", "100"), ("early", "99")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata, transaction_id) \
             VALUES ('probe', $1, 1, 'Probed', '1.0', '{}'::jsonb, '{\"company_id\": \"c1\"}'::jsonb, $2::text::xid8)",
        )
        .bind(id)
        .bind(xid)
        .execute(pg(&env.db))
        .await
        .expect("insert probe event");
    }
    let first = commands::events::read_committed_after(&env.db, Default::default(), 1)
        .await
        .expect("read");
    assert_eq!(ids_of(&first), ["probe:early:1"], "a page of one");
    let all = commands::events::read_committed_after(&env.db, Default::default(), 10)
        .await
        .expect("read");
    assert_eq!(ids_of(&all), ["probe:early:1", "probe:late:1"]);
    let head = commands::events::committed_head(&env.db)
        .await
        .expect("head");
    assert_eq!(head, all[1].checkpoint());
    env.cleanup().await;
}

fn ids_of(events: &[commands::events::StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.message_id()).collect()
}

/// a. A transaction that commits late is neither skipped nor passed: the
/// relay stops below it, then publishes it in its (transaction) turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_horizon_never_skips_a_late_commit() {
    let env = Env::new().await;
    let relay = env.relay();
    let pool = pg(&env.db);

    insert_probe(pool, "c").await;
    // T1 takes its transaction id first but writes (and commits) last.
    let mut t1 = pool.begin().await.expect("begin T1");
    t1.execute("SELECT pg_current_xact_id()")
        .await
        .expect("T1 xid");
    // T2 commits a later-numbered transaction while T1 is in flight.
    insert_probe(pool, "b").await;

    eventually(Duration::from_secs(20), "the event before T1", || async {
        relay.publish_next_batch().await.expect("publish");
        env.stream_count().await == 1
    })
    .await;
    for _ in 0..3 {
        relay.publish_next_batch().await.expect("publish");
    }
    assert_eq!(
        ids(&env.stream_messages().await),
        ["probe:c:1"],
        "nothing past the in-flight T1"
    );

    insert_probe(&mut *t1, "a").await;
    t1.commit().await.expect("commit T1");
    env.publish_all(&relay).await;

    let messages = env.stream_messages().await;
    // T1's event has the higher global_position but the lower transaction id.
    assert_eq!(ids(&messages), ["probe:c:1", "probe:a:1", "probe:b:1"]);
    let a = &messages[1].1;
    let b = &messages[2].1;
    assert!(a.position > b.position && a.transaction_id < b.transaction_id);
    for pair in messages.windows(2) {
        assert!(
            pair[0].1.checkpoint() < pair[1].1.checkpoint(),
            "stream is in commit order"
        );
    }
    assert_eq!(
        messages.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        env.all_events().await,
        "every committed event, once, in commit order"
    );
    assert_eq!(
        messages[0].0,
        messages[0].1.message_id(),
        "Nats-Msg-Id is the event's message id"
    );
    env.cleanup().await;
}

/// b. A crash after the acks but before the checkpoint: the next relay goes
/// on from the last event on the stream (one of this store's), so nothing
/// reaches the stream twice, and the checkpoint catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_resumes_after_the_last_event_on_the_stream() {
    let env = Env::new().await;
    let relay = env.relay();
    write_history(&env.commands).await;
    let total = env.all_events().await.len();

    assert_eq!(env.publish_all(&relay).await, total);
    assert_eq!(env.stream_count().await, total as u64);
    let reached = relay.checkpoint().await.expect("checkpoint");

    // The crash: the checkpoint write never happened.
    sqlx::query("UPDATE relay_checkpoint SET transaction_id = '0', global_position = 0 WHERE name = 'relay'")
        .execute(pg(&env.db))
        .await
        .expect("reset checkpoint");
    assert_eq!(
        env.publish_all(&relay).await,
        0,
        "nothing is published again"
    );
    assert_eq!(env.stream_count().await, total as u64, "no copies");
    assert_eq!(relay.checkpoint().await.expect("checkpoint"), reached);

    // New events still get through.
    register(
        &env.commands,
        domain::CompanyId(uuid::Uuid::new_v4()),
        "New",
        "One",
        None,
    )
    .await;
    env.publish_all(&relay).await;
    assert_eq!(env.stream_count().await, total as u64 + 1);
    env.cleanup().await;
}

/// A replica count the server cannot give (3 on a single server) leaves an
/// existing stream as it is, and the relay still publishes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_count_the_server_cannot_give_leaves_the_stream_usable() {
    let env = Env::new().await;
    let stream = ensure_stream_with(&env.js, &env.stream, &env.prefix, 3)
        .await
        .expect("the existing stream");
    assert_eq!(stream.cached_info().config.num_replicas, 1);
    let relay = env.relay().with_replicas(3);
    write_history(&env.commands).await;
    let total = env.all_events().await.len();
    assert_eq!(env.publish_all(&relay).await, total);
    assert_eq!(env.stream_count().await, total as u64);
    env.cleanup().await;
}

/// c. With NATS unreachable writes go on and the relay reports an error;
/// a relay that can reach NATS catches up with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_does_not_stop_writes_and_the_relay_catches_up() {
    let env = Env::new().await;
    // Nothing listens on port 1; the client keeps retrying in the background.
    let down = async_nats::jetstream::new(connect_bus("nats://127.0.0.1:1").await.expect("client"));
    let stranded = env.relay_on(down);

    write_history(&env.commands).await;
    let events = env.all_events().await;
    assert!(!events.is_empty());
    let error = stranded
        .publish_next_batch()
        .await
        .expect_err("NATS is down");
    assert!(matches!(error, RelayError::BusDown), "{error}");

    // Both run: the stranded one must not keep the lease from the healthy one.
    let (stop, shutdown) = watch::channel(false);
    let stranded_task = tokio::spawn(stranded.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let healthy_task = tokio::spawn(env.relay().run(shutdown));
    eventually(
        Duration::from_secs(20),
        "the healthy relay to catch up",
        || async { env.stream_count().await == events.len() as u64 },
    )
    .await;
    stop.send(true).expect("stop relays");
    stranded_task.await.expect("stranded relay ends cleanly");
    healthy_task.await.expect("healthy relay ends cleanly");

    let published: Vec<String> = env
        .stream_messages()
        .await
        .into_iter()
        .map(|(_, event)| event.message_id())
        .collect();
    let expected: Vec<String> = events.iter().map(|e| e.message_id()).collect();
    assert_eq!(published, expected);
    env.cleanup().await;
}

/// The backend holding an advisory lock in this test's database.
async fn lease_holder(env: &Env) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(pg(&env.db))
    .await
    .expect("pg_locks")
}

/// One relay publishes at a time; when it stops, a waiting one takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_passes_to_a_waiting_relay() {
    let env = Env::new().await;

    let first = Lease::try_acquire(&env.db, "relay")
        .await
        .expect("lease")
        .expect("free");
    assert!(
        Lease::try_acquire(&env.db, "relay")
            .await
            .expect("lease")
            .is_none(),
        "held"
    );
    assert!(
        Lease::try_acquire(&env.db, "other")
            .await
            .expect("lease")
            .is_some(),
        "per name"
    );
    first.release().await;
    let again = Lease::try_acquire(&env.db, "relay")
        .await
        .expect("lease")
        .expect("released");
    again.release().await;

    let (stop_first, first_shutdown) = watch::channel(false);
    let (stop_second, second_shutdown) = watch::channel(false);
    let first = tokio::spawn(env.relay().run(first_shutdown));
    write_history(&env.commands).await;
    let n = env.all_events().await.len() as u64;
    eventually(Duration::from_secs(20), "the first relay", || async {
        env.stream_count().await == n
    })
    .await;

    let second = tokio::spawn(env.relay().run(second_shutdown));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        Lease::try_acquire(&env.db, "relay")
            .await
            .expect("lease")
            .is_none(),
        "the first still holds it"
    );

    stop_first.send(true).expect("stop first");
    first.await.expect("first relay ends");
    register(
        &env.commands,
        domain::CompanyId(uuid::Uuid::new_v4()),
        "Late",
        "Comer",
        None,
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the second relay to take over",
        || async { env.stream_count().await == n + 1 },
    )
    .await;

    // The lease session dies (e.g. a network cut): the relay notices, takes
    // the lease again on a new session and goes on publishing.
    let holder = lease_holder(&env).await.expect("someone holds the lease");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(holder)
        .execute(pg(&env.db))
        .await
        .expect("terminate the lease session");
    register(
        &env.commands,
        domain::CompanyId(uuid::Uuid::new_v4()),
        "After",
        "Cut",
        None,
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "publishing under a new lease",
        || async {
            env.stream_count().await == n + 2
                && lease_holder(&env).await.is_some_and(|pid| pid != holder)
        },
    )
    .await;
    stop_second.send(true).expect("stop second");
    second.await.expect("second relay ends");

    let ids: HashSet<String> = env
        .stream_messages()
        .await
        .into_iter()
        .map(|(_, event)| event.message_id())
        .collect();
    assert_eq!(ids.len() as u64, n + 2);
    env.cleanup().await;
}
