//! One fold, three paths: for random customer histories, the live batched
//! apply (random batch splits, duplicated and reordered deliveries), a
//! rebuild and the pure fold give the same rows and search words, row for
//! row, on Postgres and on SQLite.
mod common;

use commands::events::StoredEvent;
use commands::{Commands, Db, Expect};
use common::*;
use domain::customer::{Customer, CustomerCommand};
use domain::{CompanyId, CustomerId};
use projections::view::Applied;
use projections::views::customers::Customers;
use projections::views::rows::load_all;
use projections::views::{fold_events, Fold};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A xorshift step: deterministic randomness from a seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A random history of valid commands on a few customers of two companies
/// (commands the domain refuses, like deleting twice, are simply skipped).
async fn random_history(commands: &Commands, mut seed: u64) {
    let companies = [CompanyId(Uuid::new_v4()), CompanyId(Uuid::new_v4())];
    let mut customers: Vec<(CompanyId, CustomerId)> = vec![];
    for i in 0..6 {
        let company = companies[i % 2];
        let email = (i % 3 == 0).then_some("first@example.com");
        let id = register(commands, company, "Ada", &format!("Surname{i}"), email).await;
        customers.push((company, id));
    }
    for step in 0..60 {
        let (company, id) = customers[(next(&mut seed) % customers.len() as u64) as usize];
        let first = format!("Name{step}");
        let email = format!("e{step}@example.com");
        let external_id = format!("ERP-{step}");
        let command: Box<dyn FnOnce(domain::UserId) -> CustomerCommand> = match next(&mut seed) % 8
        {
            0 => Box::new(rename(&first)),
            1 => Box::new(set_email(Some(&email))),
            2 => Box::new(set_email(None)),
            3 => Box::new(attach_photo()),
            4 => Box::new(delete()),
            5 => Box::new(set_external_id(Some(&external_id))),
            6 => Box::new(set_external_id(None)),
            _ => Box::new(restore()),
        };
        let ctx = ctx(company);
        let _ = commands
            .execute::<Customer>(&id.to_string(), command(ctx.user_id), &ctx, Expect::Any)
            .await;
    }
}

/// The rows the pure fold makes of each customer's stream.
fn folded(events: &[StoredEvent]) -> BTreeMap<String, <Customers as Fold>::Row> {
    let mut streams: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == "customer") {
        streams
            .entry(event.aggregate_id.clone())
            .or_default()
            .push(event.clone());
    }
    streams
        .into_iter()
        .map(|(id, stream)| {
            let row = fold_events::<Customers>(&stream)
                .expect("fold")
                .expect("a row");
            (id, row)
        })
        .collect()
}

/// Delivers `events` as a broker might: some twice, neighbours swapped, in
/// random batches; what is not applicable yet comes back later.
async fn deliver_live(db: &Db, events: &[StoredEvent], mut seed: u64) {
    let view = projections::views::by_name("customers").expect("customers view");
    let mut queue: Vec<StoredEvent> = vec![];
    for event in events {
        queue.push(event.clone());
        if next(&mut seed).is_multiple_of(4) {
            queue.push(event.clone());
        }
    }
    for i in 1..queue.len() {
        if next(&mut seed).is_multiple_of(3) {
            queue.swap(i - 1, i);
        }
    }
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        assert!(rounds < 10_000, "deliveries never settled");
        let size = 1 + (next(&mut seed) % 25) as usize;
        let batch: Vec<StoredEvent> = queue.drain(..size.min(queue.len())).collect();
        let verdicts = projections::view::apply_batch(db, view.as_ref(), &batch)
            .await
            .expect("apply a batch");
        for (event, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Applied::NotYet => queue.push(event),
                Applied::Unreadable(why) => panic!("{} unreadable: {why}", event.message_id()),
                Applied::Applied | Applied::Duplicate | Applied::Ignored => {}
            }
        }
    }
}

async fn words(db: &Db) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT company_id, word, customer_id FROM customer_words ORDER BY customer_id, word",
    )
    .fetch_all(&db.any)
    .await
    .expect("read words")
}

fn expected_words(
    rows: &BTreeMap<String, <Customers as Fold>::Row>,
) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = rows
        .values()
        .flat_map(|row| {
            row.search_words()
                .into_iter()
                .map(|w| (row.company_id.clone(), w, row.id.clone()))
        })
        .collect();
    out.sort_by(|a, b| (&a.2, &a.1).cmp(&(&b.2, &b.1)));
    out
}

async fn check_paths_agree(db: &Db, seed: u64) {
    let commands = Commands::new(db.clone());
    random_history(&commands, seed).await;
    let events = all_committed(db).await;
    let expected = folded(&events);
    assert!(expected.len() >= 6, "the history registers customers");

    deliver_live(db, &events, seed ^ 0x9e37_79b9).await;
    let live = load_all::<Customers>(db).await.expect("live rows");
    assert_eq!(
        live, expected,
        "live batched apply == pure fold (seed {seed})"
    );
    assert_eq!(
        words(db).await,
        expected_words(&expected),
        "live words (seed {seed})"
    );

    let view = projections::views::by_name("customers").expect("customers view");
    projections::rebuild::rebuild(db, view.as_ref(), false)
        .await
        .expect("rebuild");
    let rebuilt = load_all::<Customers>(db).await.expect("rebuilt rows");
    assert_eq!(rebuilt, expected, "rebuild == pure fold (seed {seed})");
    assert_eq!(
        words(db).await,
        expected_words(&expected),
        "rebuilt words (seed {seed})"
    );
}

#[tokio::test]
async fn live_rebuild_and_fold_agree_on_postgres() {
    for seed in [7, 1_234_567, 0xdead_beef] {
        let test_db = TestDb::new().await;
        check_paths_agree(&test_db.db, seed).await;
        test_db.drop_now().await;
    }
}

#[tokio::test]
async fn live_rebuild_and_fold_agree_on_sqlite() {
    for seed in [7, 1_234_567, 0xdead_beef] {
        let dir = std::env::temp_dir().join(format!("crm-fold-{}", Uuid::new_v4().simple()));
        let db = Db::connect_sqlite(&dir).await.expect("sqlite");
        db.migrate().await.expect("migrate");
        check_paths_agree(&db, seed).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
