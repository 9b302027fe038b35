//! Shared set-up for the full-stack feed tests: a fresh Postgres database and
//! a JetStream stream of its own per test, and commands to write events.
//! Postgres and NATS must be reachable: a test fails, never skips, without them.
#![allow(dead_code)]

use async_nats::jetstream::{self, Context};
use commands::db::EventPool;
use commands::events::{read_committed_after, Checkpoint, StoredEvent};
use commands::{CommandContext, Commands, Db, Expect};
use domain::customer::{Customer, CustomerCommand, CustomerDetails, DetailsChange};
use domain::values::{Email, ExternalId, FieldChange, PersonName};
use domain::{CompanyId, CustomerId, PhotoId, UserId};
use projections::feed::message;
use projections::feed::relay::Relay;
use projections::feed::worker::Worker;
use projections::feed::Handler;
use sqlx::{Connection, Executor, PgConnection};
use std::future::Future;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4223".into())
}

/// The admin URL with its database replaced by `name`.
fn url_for(name: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (admin.clone(), String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => &base,
    };
    format!("{root}/{name}{query}")
}

/// A database of one test. Dropped explicitly with [`TestDb::drop_now`];
/// if the test panics first, `Drop` removes it (and nothing is left behind).
pub struct TestDb {
    pub db: Db,
    pub name: String,
    dropped: bool,
}

impl TestDb {
    /// A new, migrated database of its own.
    pub async fn new() -> Self {
        let name = format!("crm_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("Postgres at TEST_DATABASE_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        admin.close().await.expect("close admin connection");
        let db = Db::connect_postgres(&url_for(&name), 3)
            .await
            .expect("connect to test database");
        db.migrate().await.expect("migrate");
        Self {
            db,
            name,
            dropped: false,
        }
    }

    pub async fn drop_now(mut self) {
        self.db.any.close().await;
        if let EventPool::Postgres(pool) = &self.db.events {
            pool.close().await;
        }
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            let name = self.name.clone();
            // Drop runs inside the test's runtime: clean up on a runtime of our own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&name));
                }
            })
            .join();
        }
    }
}

async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("Postgres at TEST_DATABASE_URL");
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .expect("drop database");
}

pub async fn jetstream() -> Context {
    let client = async_nats::connect(nats_url())
        .await
        .expect("NATS at TEST_NATS_URL");
    jetstream::new(client)
}

pub fn pg(db: &Db) -> &sqlx::PgPool {
    match &db.events {
        EventPool::Postgres(pool) => pool,
        EventPool::Sqlite(_) => unreachable!("tests run on Postgres"),
    }
}

/// Every committed event, in commit order. Other tests' open transactions
/// hold the horizon back (it is cluster-wide), so this waits until the
/// reader sees as many events as the table holds.
pub async fn all_committed(db: &Db) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&db.any)
            .await
            .expect("count events");
        let events = read_committed_after(db, Checkpoint::default(), 1_000_000)
            .await
            .expect("read events");
        if events.len() as i64 == total {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "events stayed behind the horizon"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One test's database, stream and subject prefix.
pub struct Env {
    pub db: Db,
    test_db: Option<TestDb>,
    pub js: Context,
    pub stream: String,
    pub prefix: String,
    pub commands: Commands,
}

impl Env {
    pub async fn new() -> Self {
        let test_db = TestDb::new().await;
        let db = test_db.db.clone();
        let js = jetstream().await;
        let id = Uuid::new_v4().simple().to_string();
        let stream = format!("TEST_{}", id.to_uppercase());
        let prefix = format!("test.{id}");
        projections::feed::relay::ensure_stream_with(&js, &stream, &prefix, 1)
            .await
            .expect("create the test stream");
        let commands = Commands::new(db.clone());
        Self {
            db,
            test_db: Some(test_db),
            js,
            stream,
            prefix,
            commands,
        }
    }

    pub fn relay(&self) -> Relay {
        self.relay_on(self.js.clone())
    }

    pub fn relay_on(&self, js: Context) -> Relay {
        Relay::new(self.db.clone(), js, "relay").with_stream(&self.stream, &self.prefix)
    }

    pub fn worker(&self, handler: Box<dyn Handler>) -> Worker {
        Worker::new(self.js.clone(), self.db.any.clone(), handler)
            .with_stream(&self.stream, &self.prefix)
    }

    pub fn customers_worker(&self) -> Worker {
        let view = projections::views::by_name("customers").expect("customers view");
        self.worker(Box::new(projections::feed::ViewHandler::new(
            self.db.clone(),
            view,
        )))
    }

    /// Every event on the stream, in stream order, each with the
    /// `Nats-Msg-Id` of the message that carried it (a run of events shares
    /// one message).
    pub async fn stream_messages(&self) -> Vec<(String, StoredEvent)> {
        let stream = self.js.get_stream(&self.stream).await.expect("test stream");
        let info = stream.get_info().await.expect("stream info");
        let mut messages = Vec::new();
        if info.state.messages == 0 {
            return messages;
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let raw = stream.get_raw_message(seq).await.expect("stream message");
            let id = raw
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .expect("Nats-Msg-Id header");
            for event in message::decode(&raw.payload).expect("events JSON") {
                messages.push((id.clone(), event));
            }
        }
        messages
    }

    /// How many events the stream holds.
    pub async fn stream_count(&self) -> u64 {
        self.stream_messages().await.len() as u64
    }

    /// Every committed event, in commit order (see [`all_committed`]).
    pub async fn all_events(&self) -> Vec<StoredEvent> {
        all_committed(&self.db).await
    }

    /// Runs relay steps until its checkpoint reaches the last committed
    /// event; returns how many events the steps published.
    pub async fn publish_all(&self, relay: &Relay) -> usize {
        let last = self
            .all_events()
            .await
            .last()
            .map(StoredEvent::checkpoint)
            .unwrap_or_default();
        let mut published = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            published += relay.publish_next_batch().await.expect("publish");
            if relay.checkpoint().await.expect("checkpoint") >= last {
                return published;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not catch up after {published} events"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn cleanup(mut self) {
        let _ = self.js.delete_stream(&self.stream).await;
        if let Some(test_db) = self.test_db.take() {
            test_db.drop_now().await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Only a failed test gets here with its database: remove the stream
        // too, over a connection of our own (the test's runtime is unwinding).
        if self.test_db.is_some() {
            let stream = self.stream.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(client) = async_nats::connect(nats_url()).await {
                            let _ = jetstream::new(client).delete_stream(&stream).await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Polls `check` until it holds, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn ctx(company: CompanyId) -> CommandContext {
    CommandContext::new(company, UserId(Uuid::new_v4()), Uuid::new_v4())
}

pub fn name(raw: &str) -> PersonName {
    PersonName::parse(raw).expect("valid name")
}

pub async fn register(
    commands: &Commands,
    company: CompanyId,
    first: &str,
    surname: &str,
    email: Option<&str>,
) -> CustomerId {
    let id = CustomerId(Uuid::new_v4());
    let ctx = ctx(company);
    commands
        .execute::<Customer>(
            &id.to_string(),
            CustomerCommand::Register {
                customer_id: id,
                company_id: company,
                details: CustomerDetails {
                    name: name(first),
                    surname: name(surname),
                    email: email.map(|e| Email::parse(e).expect("valid email")),
                    phone: None,
                    notes: None,
                    external_id: None,
                },
                photo: None,
                by: ctx.user_id,
            },
            &ctx,
            Expect::Any,
        )
        .await
        .expect("register customer");
    id
}

pub async fn run(
    commands: &Commands,
    company: CompanyId,
    id: CustomerId,
    command: impl FnOnce(UserId) -> CustomerCommand,
) {
    let ctx = ctx(company);
    commands
        .execute::<Customer>(&id.to_string(), command(ctx.user_id), &ctx, Expect::Any)
        .await
        .expect("customer command");
}

pub fn rename(first: &str) -> impl FnOnce(UserId) -> CustomerCommand + '_ {
    move |by| CustomerCommand::ChangeDetails {
        change: DetailsChange {
            name: Some(name(first)),
            ..Default::default()
        },
        by,
    }
}

pub fn set_email(email: Option<&str>) -> impl FnOnce(UserId) -> CustomerCommand + '_ {
    move |by| CustomerCommand::ChangeDetails {
        change: DetailsChange {
            email: Some(match email {
                Some(e) => FieldChange::Set(Email::parse(e).expect("valid email")),
                None => FieldChange::Cleared,
            }),
            ..Default::default()
        },
        by,
    }
}

/// Sets the customer's external id on the aggregate alone (uniqueness is
/// the claim's, which the views do not read).
pub fn set_external_id(external_id: Option<&str>) -> impl FnOnce(UserId) -> CustomerCommand + '_ {
    move |by| CustomerCommand::ChangeDetails {
        change: DetailsChange {
            external_id: Some(match external_id {
                Some(e) => FieldChange::Set(ExternalId::parse(e).expect("valid external id")),
                None => FieldChange::Cleared,
            }),
            ..Default::default()
        },
        by,
    }
}

pub fn attach_photo() -> impl FnOnce(UserId) -> CustomerCommand {
    |by| CustomerCommand::AttachPhoto {
        photo_id: PhotoId(Uuid::new_v4()),
        by,
    }
}

pub fn delete() -> impl FnOnce(UserId) -> CustomerCommand {
    |by| CustomerCommand::Delete { by }
}

pub fn restore() -> impl FnOnce(UserId) -> CustomerCommand {
    |by| CustomerCommand::Restore { by }
}

/// A few customers with a varied history (renames, email set and cleared,
/// photo, delete and restore) in two companies. Returns the customer ids.
pub async fn write_history(commands: &Commands) -> Vec<CustomerId> {
    let (a, b) = (CompanyId(Uuid::new_v4()), CompanyId(Uuid::new_v4()));
    let ada = register(commands, a, "Ada", "Lovelace", Some("ada.l@example.com")).await;
    let alan = register(commands, a, "Alan", "Turing", None).await;
    let grace = register(commands, b, "Grace", "Hopper", Some("grace@example.com")).await;
    let edsger = register(commands, b, "Edsger", "Dijkstra", None).await;
    run(commands, a, ada, rename("Augusta Ada")).await;
    run(commands, a, alan, set_email(Some("alan@example.com"))).await;
    run(commands, b, grace, attach_photo()).await;
    run(commands, a, ada, set_email(None)).await;
    run(commands, b, edsger, delete()).await;
    run(commands, a, alan, rename("Alan M.")).await;
    run(commands, b, grace, rename("Grace B.")).await;
    run(commands, b, edsger, restore()).await;
    run(commands, a, ada, attach_photo()).await;
    run(commands, b, edsger, delete()).await;
    vec![ada, alan, grace, edsger]
}

/// A table's rows as JSON (every column), in a stable order.
pub async fn table_rows(db: &Db, table: &str, order: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar::<_, serde_json::Value>(&format!(
        "SELECT to_jsonb(t) FROM {table} t ORDER BY {order}"
    ))
    .fetch_all(pg(db))
    .await
    .expect("read table")
}

/// How many events each aggregate has in the store: the `last_seq` its row must reach.
pub async fn event_counts(db: &Db, aggregate_type: &str) -> Vec<(String, i64)> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT aggregate_id, max(sequence) FROM events WHERE aggregate_type = $1 GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .bind(aggregate_type)
    .fetch_all(pg(db))
    .await
    .expect("count events")
}

pub async fn last_seqs(db: &Db) -> Vec<(String, i64)> {
    sqlx::query_as::<_, (String, i64)>("SELECT id, last_seq FROM customers ORDER BY id")
        .fetch_all(pg(db))
        .await
        .expect("read last_seq")
}

/// Applies `events` in order to the customers view of `db` (the reference).
pub async fn apply_in_order(db: &Db, events: &[StoredEvent]) {
    let view = projections::views::by_name("customers").expect("customers view");
    for event in events {
        let applied = projections::view::apply(db, view.as_ref(), event)
            .await
            .expect("apply");
        assert!(
            matches!(
                applied,
                projections::view::Applied::Applied | projections::view::Applied::Ignored
            ),
            "in-order apply of {} gave {applied:?}",
            event.message_id()
        );
    }
}

/// A small deterministic shuffle (no rand dependency needed).
pub fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
