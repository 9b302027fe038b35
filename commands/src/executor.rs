//! [`Commands`]: the one way to run a command against an aggregate.
//!
//! This is the plain event-store mode of cqrs-es (no snapshots: its snapshot
//! modes applied events twice here). We drive `load_aggregate` / `handle` /
//! `commit` ourselves rather than through `CqrsFramework::execute` so that the
//! tenant check, the `If-Match` version check and the resulting state and
//! version are handled in this one place.
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use domain::Tenanted;
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::db::{Db, EventPool};
use crate::error::{from_aggregate_error, CommandError};
use crate::CommandContext;

/// What the caller expects the aggregate's version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever it is now: a lost race is retried against fresh state.
    Any,
    /// Exactly this version (`If-Match`): a mismatch is [`CommandError::Stale`].
    Version(u64),
}

impl Expect {
    /// Whether an aggregate at `version` is what the caller expects.
    pub fn admits(self, version: u64) -> bool {
        match self {
            Expect::Any => true,
            Expect::Version(expected) => expected == version,
        }
    }
}

/// The aggregate after the command, and its version (its last event sequence).
#[derive(Debug)]
pub struct Outcome<A: Aggregate> {
    pub state: A,
    pub version: u64,
    pub events: Vec<A::Event>,
}

/// How many times a command without an expected version is re-decided after
/// losing an optimistic-lock race.
const RETRIES_ON_CONFLICT: usize = 12;

#[derive(Clone)]
pub struct Commands {
    db: Db,
    committed: Arc<Notify>,
    applied: Arc<crate::applied::AppliedHub>,
}

enum Store<A: Aggregate> {
    Postgres(
        PersistedEventStore<PostgresEventRepository, A>,
        sqlx::PgPool,
    ),
    Sqlite(PersistedEventStore<SqliteEventRepository, A>),
}

impl<A: Aggregate> Store<A> {
    fn new(pool: &EventPool) -> Self {
        match pool {
            EventPool::Postgres(pool) => Self::Postgres(
                PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
                    .with_upcasters(domain::upcasters::all()),
                pool.clone(),
            ),
            EventPool::Sqlite(pool) => Self::Sqlite(
                PersistedEventStore::new_event_store(SqliteEventRepository::new(pool.clone()))
                    .with_upcasters(domain::upcasters::all()),
            ),
        }
    }

    async fn load(
        &self,
        id: &str,
    ) -> Result<cqrs_es::persist::EventStoreAggregateContext<A>, AggregateError<A::Error>> {
        match self {
            Self::Postgres(store, _) => store.load_aggregate(id).await,
            Self::Sqlite(store) => store.load_aggregate(id).await,
        }
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: cqrs_es::persist::EventStoreAggregateContext<A>,
        metadata: std::collections::HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>> {
        match self {
            Self::Postgres(_, pool) => {
                insert_events::<A>(
                    pool,
                    &context.aggregate_id,
                    context.current_sequence,
                    &events,
                    &metadata,
                )
                .await
            }
            Self::Sqlite(store) => store.commit(events, context, metadata).await.map(drop),
        }
    }
}

/// Commits `events` after sequence `after` of aggregate `id` on Postgres as
/// one multi-row `INSERT` ([`crate::append::insert`]): one round trip, atomic
/// as its own transaction. postgres-es would open a transaction and insert
/// them one by one (three round trips for one event); the rows are the same
/// as its own, and a taken sequence is the same optimistic-lock conflict.
async fn insert_events<A: Aggregate>(
    pool: &sqlx::PgPool,
    id: &str,
    after: usize,
    events: &[A::Event],
    metadata: &std::collections::HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>> {
    let unexpected = |e: serde_json::Error| AggregateError::UnexpectedError(Box::new(e));
    let metadata = crate::append::metadata(metadata).map_err(unexpected)?;
    let rows = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let sequence = (after + 1 + i) as i64;
            crate::append::NewEvent::new::<A>(id, sequence, event, metadata.clone())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(unexpected)?;
    match crate::append::insert(pool, &rows).await {
        Ok(()) => Ok(()),
        // As postgres-es classifies them.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            Err(AggregateError::AggregateConflict)
        }
        Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Tls(_))) => {
            Err(AggregateError::DatabaseConnectionError(Box::new(e)))
        }
        Err(e) => Err(AggregateError::UnexpectedError(Box::new(e))),
    }
}

impl Commands {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            committed: Arc::new(Notify::new()),
            applied: Arc::new(crate::applied::AppliedHub::default()),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Woken after every commit of this process: the embedded mode's
    /// in-process bus.
    pub fn commit_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// What the views of this process applied, for the read-your-writes
    /// waits of this process.
    pub fn applied(&self) -> &Arc<crate::applied::AppliedHub> {
        &self.applied
    }

    /// Runs `command` against aggregate `id` on behalf of `ctx`.
    // No aggregate id in the span: an email claim's id is an address.
    #[tracing::instrument(name = "command", skip_all, fields(aggregate = A::TYPE, company = %ctx.company_id))]
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
        expect: Expect,
    ) -> Result<Outcome<A>, CommandError<A::Error>>
    where
        A: Tenanted<Services = ()> + Clone,
        A::Command: Clone,
    {
        let store = Store::<A>::new(&self.db.events);
        let attempts = match expect {
            Expect::Any => RETRIES_ON_CONFLICT,
            Expect::Version(_) => 1,
        };
        // A creation is first decided against an empty stream without reading
        // it (one round trip less on the hot path): a taken id is then a
        // conflict on sequence 1, and the retry reads the stream and decides
        // again, so the outcome is the same as loading first.
        let mut assume_new = expect == Expect::Any && A::registers(&command);
        for attempt in 0..attempts {
            if attempt > 0 && !assume_new {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let result = self
                .attempt(&store, id, command.clone(), ctx, expect, assume_new)
                .await;
            assume_new = false;
            match result {
                Ok(outcome) => {
                    record_command(A::TYPE, "ok");
                    return Ok(outcome);
                }
                Err(Some(error)) => {
                    record_command(A::TYPE, outcome_label(&error));
                    return Err(error);
                }
                Err(None) => continue,
            }
        }
        record_command(A::TYPE, "conflict");
        Err(match expect {
            Expect::Any => CommandError::Contended,
            // Someone committed between our load and our commit: our version is stale.
            Expect::Version(v) => CommandError::Stale { current: v + 1 },
        })
    }

    /// One load-decide-commit. `Err(None)` is a lost optimistic-lock race.
    async fn attempt<A>(
        &self,
        store: &Store<A>,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
        expect: Expect,
        assume_new: bool,
    ) -> Result<Outcome<A>, Option<CommandError<A::Error>>>
    where
        A: Tenanted<Services = ()> + Clone,
    {
        let mut context = if assume_new {
            cqrs_es::persist::EventStoreAggregateContext {
                aggregate_id: id.to_owned(),
                aggregate: A::default(),
                current_sequence: 0,
                current_snapshot: None,
            }
        } else {
            store.load(id).await.map_err(from_aggregate_error)?
        };
        let current = context.current_sequence as u64;
        if let Some(owner) = context.aggregate.company_id() {
            if owner != ctx.company_id && !A::registers(&command) {
                return Err(Some(CommandError::NotFound));
            }
        }
        if let Expect::Version(expected) = expect {
            if expected != current {
                return Err(Some(CommandError::Stale { current }));
            }
        }
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(|e| Some(CommandError::Domain(e)))?;
        let events = sink.collect().await;
        let state = context.aggregate.clone();
        if events.is_empty() {
            return Ok(Outcome {
                state,
                version: current,
                events,
            });
        }
        let version = current + events.len() as u64;
        store
            .commit(events.clone(), context, ctx.metadata())
            .await
            .map_err(from_aggregate_error)?;
        for event in &events {
            metrics::counter!("crm_events_total", "type" => cqrs_es::DomainEvent::event_type(event))
                .increment(1);
        }
        self.committed.notify_waiters();
        Ok(Outcome {
            state,
            version,
            events,
        })
    }

    /// [`Commands::load`] for an aggregate that must exist: a missing one (or
    /// another company's) is [`CommandError::NotFound`].
    pub async fn load_existing<A>(
        &self,
        id: &str,
        company: domain::CompanyId,
    ) -> Result<(A, u64), CommandError<A::Error>>
    where
        A: Tenanted<Services = ()>,
    {
        self.load(id, company).await?.ok_or(CommandError::NotFound)
    }

    /// The current state and version of an aggregate of the caller's company,
    /// for checks a command needs beyond its own aggregate. `None` when it
    /// does not exist or belongs to another company.
    pub async fn load<A>(
        &self,
        id: &str,
        company: domain::CompanyId,
    ) -> Result<Option<(A, u64)>, CommandError<A::Error>>
    where
        A: Tenanted<Services = ()>,
    {
        let store = Store::<A>::new(&self.db.events);
        let context = store
            .load(id)
            .await
            .map_err(|e| from_aggregate_error(e).unwrap_or(CommandError::Contended))?;
        Ok(match context.aggregate.company_id() {
            Some(owner) if owner == company => {
                Some((context.aggregate, context.current_sequence as u64))
            }
            _ => None,
        })
    }
}

/// A random pause before re-deciding after the `attempt`-th lost race, its
/// ceiling doubling with each loss (2 ms, 4 ms, ... up to 128 ms), so that the
/// losers of one race do not all reload and collide again at once.
fn backoff(attempt: usize) -> Duration {
    let ceiling_us = 1_000u64 << attempt.clamp(1, 7);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % (ceiling_us + 1))
}

fn record_command(aggregate: &'static str, outcome: &'static str) {
    metrics::counter!("crm_commands_total", "aggregate" => aggregate, "outcome" => outcome)
        .increment(1);
}

fn outcome_label<E: std::error::Error>(error: &CommandError<E>) -> &'static str {
    match error {
        CommandError::Domain(_) => "rejected",
        CommandError::NotFound => "not_found",
        CommandError::Stale { .. } => "stale",
        CommandError::Contended => "conflict",
        CommandError::Unavailable(_) => "unavailable",
        CommandError::Internal(_) => "error",
    }
}
