//! Workers and views against real Postgres and NATS: end to end, shuffled
//! and duplicated delivery, two workers on one consumer, retries and parking.
mod common;

use async_trait::async_trait;
use commands::events::StoredEvent;
use common::*;
use projections::feed::{Handled, Handler};
use projections::view::{self, Applied, Projection};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The customers rows and search words of `db` equal those of `reference`.
async fn assert_same_views(db: &commands::Db, reference: &commands::Db) {
    let rows = table_rows(db, "customers", "id").await;
    assert!(!rows.is_empty());
    assert_eq!(
        rows,
        table_rows(reference, "customers", "id").await,
        "customers differ"
    );
    assert_eq!(
        table_rows(db, "customer_words", "company_id, word, customer_id").await,
        table_rows(reference, "customer_words", "company_id, word, customer_id").await,
        "customer_words differ"
    );
}

/// A fresh database with `events` applied in order to its customers view.
async fn reference_of(events: &[StoredEvent]) -> TestDb {
    let reference = TestDb::new().await;
    apply_in_order(&reference.db, events).await;
    reference
}

async fn views_caught_up(env: &Env) -> bool {
    last_seqs(&env.db).await == event_counts(&env.db, "customer").await
}

/// d. Commands → relay → JetStream → worker → the customers view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_customers_view() {
    let env = Env::new().await;
    let ids = write_history(&env.commands).await;
    env.publish_all(&env.relay()).await;

    let worker = env.customers_worker();
    assert_eq!(worker.consumer_name(), "crm-customers");
    eventually(Duration::from_secs(20), "the view to catch up", || async {
        worker
            .process_next_batch(50, Duration::from_millis(200))
            .await
            .expect("worker step");
        views_caught_up(&env).await
    })
    .await;

    let rows: HashMap<String, serde_json::Value> = table_rows(&env.db, "customers", "id")
        .await
        .into_iter()
        .map(|row| (row["id"].as_str().expect("id").to_owned(), row))
        .collect();
    let [ada, alan, grace, edsger] = [0, 1, 2, 3].map(|i| &rows[&ids[i].to_string()]);
    assert_eq!(
        (ada["name"].as_str(), ada["last_seq"].as_i64()),
        (Some("Augusta Ada"), Some(4))
    );
    assert!(ada["email"].is_null() && ada["photo_id"].is_string());
    assert_eq!(
        (alan["email"].as_str(), alan["name"].as_str()),
        (Some("alan@example.com"), Some("Alan M."))
    );
    assert_eq!(
        (grace["name"].as_str(), grace["last_seq"].as_i64()),
        (Some("Grace B."), Some(3))
    );
    assert_eq!(
        (edsger["deleted"].as_i64(), edsger["last_seq"].as_i64()),
        (Some(1), Some(4))
    );

    let reference = reference_of(&env.all_events().await).await;
    assert_same_views(&env.db, &reference.db).await;
    reference.drop_now().await;
    env.cleanup().await;
}

/// e. Shuffled delivery with duplicates ends in the same rows as in-order
/// application; every event takes effect exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_delivery_converges() {
    let env = Env::new().await;
    write_history(&env.commands).await;
    for i in 0..4 {
        let company = domain::CompanyId(uuid::Uuid::new_v4());
        let id = register(
            &env.commands,
            company,
            &format!("Extra{i}"),
            "Person",
            Some("x@example.com"),
        )
        .await;
        run(&env.commands, company, id, rename("Renamed")).await;
        run(&env.commands, company, id, set_email(None)).await;
    }
    let events = env.all_events().await;
    let reference = reference_of(&events).await;

    let view = projections::views::by_name("customers").expect("customers view");
    let mut pending: Vec<StoredEvent> = events
        .iter()
        .chain(events.iter())
        .chain(events.iter().step_by(3))
        .cloned()
        .collect();
    let seed = u64::from(uuid::Uuid::new_v4().as_u128() as u32) | 1;
    let mut applied: HashMap<String, usize> = HashMap::new();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 500, "no progress (seed {seed})");
        shuffle(&mut pending, seed.wrapping_add(rounds));
        let mut later = Vec::new();
        for event in pending {
            match view::apply(&env.db, view.as_ref(), &event)
                .await
                .expect("apply")
            {
                Applied::Applied => *applied.entry(event.message_id()).or_default() += 1,
                Applied::Duplicate => {}
                Applied::NotYet => later.push(event),
                Applied::Ignored => panic!("a customer event was ignored"),
                Applied::Unreadable(why) => panic!("a customer event was unreadable: {why}"),
            }
        }
        pending = later;
    }
    assert_eq!(
        applied.len(),
        events.len(),
        "every event applied (seed {seed})"
    );
    assert!(
        applied.values().all(|&n| n == 1),
        "each event applied once (seed {seed})"
    );
    assert_same_views(&env.db, &reference.db).await;
    reference.drop_now().await;
    env.cleanup().await;
}

/// Applies through the customers view and records what each worker did.
struct Counting {
    db: commands::Db,
    view: Box<dyn Projection>,
    worker: usize,
    applied: Arc<Mutex<HashMap<String, usize>>>,
    handled_by: Arc<Mutex<[usize; 2]>>,
}

#[async_trait]
impl Handler for Counting {
    fn name(&self) -> &str {
        "customers"
    }

    fn aggregate_type(&self) -> &str {
        "customer"
    }

    async fn handle(&self, event: &StoredEvent) -> Handled {
        self.handled_by.lock().expect("lock")[self.worker] += 1;
        match view::apply(&self.db, self.view.as_ref(), event).await {
            Ok(Applied::Applied) => {
                *self
                    .applied
                    .lock()
                    .expect("lock")
                    .entry(event.message_id())
                    .or_default() += 1;
                Handled::Done
            }
            Ok(Applied::Duplicate | Applied::Ignored) => Handled::Done,
            Ok(Applied::NotYet) => Handled::RetryLater("predecessor not applied yet".into()),
            Ok(Applied::Unreadable(why)) => Handled::Poison(why),
            Err(e) => Handled::RetryLater(e.to_string()),
        }
    }
}

/// f. Two workers on one durable consumer: the same views as one worker
/// would build, each event applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_one_durable_consumer() {
    let env = Env::new().await;
    write_history(&env.commands).await;
    let relay = env.relay();
    for i in 0..12 {
        let company = domain::CompanyId(uuid::Uuid::new_v4());
        let id = register(
            &env.commands,
            company,
            &format!("Many{i}"),
            "Customers",
            None,
        )
        .await;
        run(
            &env.commands,
            company,
            id,
            set_email(Some("many@example.com")),
        )
        .await;
        run(&env.commands, company, id, rename("Renamed")).await;
        // A message per company (a run of its events), so there are
        // messages enough for both workers.
        env.publish_all(&relay).await;
    }
    let events = env.all_events().await;

    let applied = Arc::new(Mutex::new(HashMap::new()));
    let handled_by = Arc::new(Mutex::new([0; 2]));
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            env.worker(Box::new(Counting {
                db: env.db.clone(),
                view: projections::views::by_name("customers").expect("customers view"),
                worker,
                applied: applied.clone(),
                handled_by: handled_by.clone(),
            }))
        })
        .collect();
    assert_eq!(workers[0].consumer_name(), workers[1].consumer_name());
    // Create the consumer once up front, so the two pulls race on messages,
    // not on creating the consumer.
    workers[0].consumer().await.expect("consumer");

    let (stop, shutdown) = watch::channel(false);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            let shutdown = shutdown.clone();
            // Small pulls, so both workers get a share.
            tokio::spawn(async move {
                while !*shutdown.borrow() {
                    worker
                        .process_next_batch(3, Duration::from_millis(100))
                        .await
                        .expect("worker step");
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(30), "both workers to finish", || {
        views_caught_up(&env)
    })
    .await;
    stop.send(true).expect("stop workers");
    for task in tasks {
        task.await.expect("worker task");
    }

    let applied = applied.lock().expect("lock").clone();
    assert_eq!(applied.len(), events.len(), "every event applied");
    assert!(applied.values().all(|&n| n == 1), "each event applied once");
    let handled_by = *handled_by.lock().expect("lock");
    assert!(
        handled_by.iter().all(|&n| n > 0),
        "both workers took part: {handled_by:?}"
    );

    let reference = reference_of(&events).await;
    assert_same_views(&env.db, &reference.db).await;
    reference.drop_now().await;
    env.cleanup().await;
}

/// Fails each event once before accepting it, and rejects one customer's
/// events as poison.
struct Scripted {
    poison: String,
    seen: Mutex<HashSet<String>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

#[async_trait]
impl Handler for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn aggregate_type(&self) -> &str {
        "customer"
    }

    async fn handle(&self, event: &StoredEvent) -> Handled {
        *self
            .calls
            .lock()
            .expect("lock")
            .entry(event.message_id())
            .or_default() += 1;
        if event.aggregate_id == self.poison {
            return Handled::Poison("scripted poison".into());
        }
        if self.seen.lock().expect("lock").insert(event.message_id()) {
            Handled::RetryLater("scripted first failure".into())
        } else {
            Handled::Done
        }
    }
}

/// RetryLater comes back after a short delay; Poison and undecodable
/// messages are parked and not redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_redelivered_and_poison_is_parked() {
    let env = Env::new().await;
    let ids = write_history(&env.commands).await;
    env.publish_all(&env.relay()).await;
    env.js
        .publish(
            format!("{}.c1.customer.junk", env.prefix),
            "not json".into(),
        )
        .await
        .expect("publish junk")
        .await
        .expect("junk ack");
    env.js
        .publish(format!("{}.c1.customer.empty", env.prefix), "[]".into())
        .await
        .expect("publish an empty run")
        .await
        .expect("empty run ack");
    let events = env.all_events().await;
    let poison = ids[3].to_string();
    let poisoned = events.iter().filter(|e| e.aggregate_id == poison).count();

    let calls = Arc::new(Mutex::new(HashMap::new()));
    let worker = env.worker(Box::new(Scripted {
        poison: poison.clone(),
        seen: Mutex::new(HashSet::new()),
        calls: calls.clone(),
    }));
    assert_eq!(worker.consumer_name(), "crm-scripted");
    let consumer = worker.consumer().await.expect("consumer");
    eventually(Duration::from_secs(20), "every message settled", || async {
        worker
            .process_next_batch(50, Duration::from_millis(200))
            .await
            .expect("worker step");
        let info = consumer.get_info().await.expect("consumer info");
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    let config = consumer.get_info().await.expect("consumer info").config;
    assert_eq!(
        (config.max_deliver, config.ack_wait),
        (20, Duration::from_secs(30))
    );
    assert_eq!(
        config.filter_subject,
        format!("{}.*.customer.*", env.prefix)
    );

    let calls = calls.lock().expect("lock").clone();
    for event in &events {
        let calls = calls[&event.message_id()];
        // A poison event is handled again only when other events of its
        // message are retried (then parking it again changes nothing).
        let expected = if event.aggregate_id == poison {
            1..=2
        } else {
            2..=2
        };
        assert!(
            expected.contains(&calls),
            "{}: {calls} calls",
            event.message_id()
        );
    }
    let parked: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT projection, aggregate_id, sequence FROM parked_events ORDER BY aggregate_id, sequence",
    )
    .fetch_all(pg(&env.db))
    .await
    .expect("parked events");
    assert_eq!(parked.len(), poisoned + 2, "{parked:?}");
    assert!(parked
        .iter()
        .all(|(projection, _, _)| projection == "scripted"));
    assert!(
        parked.iter().any(|(_, id, _)| id.ends_with(".junk")),
        "the undecodable message is parked"
    );
    assert!(
        parked.iter().any(|(_, id, _)| id.ends_with(".empty")),
        "a message without events is parked, not left unacknowledged"
    );
    env.cleanup().await;
}
