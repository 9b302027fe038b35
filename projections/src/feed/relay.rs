//! The relay: Postgres event store → NATS JetStream.
//!
//! One step ([`Relay::publish_next_batch`]) reads the events committed after
//! the checkpoint, below the oldest in-flight transaction (so a late commit is
//! never skipped), publishes them with `Nats-Msg-Id`, waits for every ack and
//! only then moves the checkpoint. A crash in between republishes the batch;
//! JetStream's duplicate window drops the copies, and the views' `last_seq`
//! guard drops anything older than that window.
//!
//! Several relays may run; the one holding the [`Lease`] (a Postgres session
//! advisory lock) publishes, the others wait. Writers never take a lock here.
use async_nats::jetstream::context::CreateStreamError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream, Context};
use commands::db::EventPool;
use commands::events::{read_committed_after, Checkpoint, StoredEvent};
use commands::Db;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

use super::subject::SUBJECT_PREFIX;

pub const STREAM: &str = "CRM_EVENTS";
/// Events per step.
pub const BATCH: usize = 500;
/// JetStream drops a second message with the same `Nats-Msg-Id` within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// First key of the two-key advisory lock: a namespace, so our lock cannot
/// collide with another application's advisory locks ("crmr").
const LEASE_NAMESPACE: i32 = 0x6372_6d72;
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the holder checks that its lease session is still there.
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// Between polls when caught up: the publish latency floor.
const POLL: Duration = Duration::from_millis(25);
/// After a commit wakes it, how long the relay lets more commits gather, so
/// that under load a step publishes a page rather than an event or two (each
/// step costs a read and a checkpoint write); longer (BUSY_GATHER) after a
/// step that published at least BUSY events.
const GATHER: Duration = Duration::from_millis(2);
const BUSY_GATHER: Duration = Duration::from_millis(10);
const BUSY: usize = 8;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the relay needs the Postgres event store")]
    NotPostgres,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the NATS connection is down")]
    BusDown,
    #[error("publishing to JetStream: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("creating the JetStream stream: {0}")]
    Stream(#[from] CreateStreamError),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the stored checkpoint is unreadable: {0}")]
    BadCheckpoint(String),
}

/// Replicas of the stream and of the durable consumers when the operator
/// sets none: a single NATS server.
pub const DEFAULT_REPLICAS: usize = 1;

/// Creates the events stream if it is missing, with one replica.
pub async fn ensure_stream(js: &Context) -> Result<stream::Stream, CreateStreamError> {
    ensure_stream_with(js, STREAM, SUBJECT_PREFIX, DEFAULT_REPLICAS).await
}

/// [`ensure_stream`] for another stream name and subject prefix (tests keep
/// one stream each), kept on `replicas` servers of a NATS cluster. An
/// existing stream with another replica count is changed to `replicas`
/// (JetStream moves the data); if the cluster refuses (e.g. 3 replicas on a
/// single server), the stream is used as it is and the mismatch logged.
pub async fn ensure_stream_with(
    js: &Context,
    name: &str,
    subject_prefix: &str,
    replicas: usize,
) -> Result<stream::Stream, CreateStreamError> {
    let replicas = replicas.max(1);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{subject_prefix}.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: replicas,
            ..Default::default()
        })
        .await?;
    let config = &stream.cached_info().config;
    if config.num_replicas != replicas {
        let from = config.num_replicas;
        let changed = stream::Config {
            num_replicas: replicas,
            ..config.clone()
        };
        match js.update_stream(&changed).await {
            Ok(_) => tracing::warn!(
                stream = name,
                from,
                to = replicas,
                "changed the stream's replica count to CRM_NATS_REPLICAS"
            ),
            Err(error) => tracing::error!(
                stream = name,
                replicas = from,
                wanted = replicas,
                %error,
                "the stream's replica count differs from CRM_NATS_REPLICAS and cannot be changed; using it as it is"
            ),
        }
    }
    Ok(stream)
}

/// Connects to NATS without waiting for it: the client keeps retrying in the
/// background, so a relay or worker can start (and writes go on) while NATS
/// is down. `urls` may list several servers of a cluster, comma-separated;
/// the client connects to one and reconnects to the others (and to the
/// servers the cluster announces) when it goes.
pub async fn connect_bus(urls: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server_urls(urls))
        .await
}

/// The servers of a comma-separated `NATS_URL` (async-nats parses a single
/// string as one address).
pub fn server_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// Whether the NATS connection is up right now (for readiness checks).
pub async fn bus_ready(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// The right to publish: a session advisory lock held on a connection of its
/// own. Postgres releases it when that session ends, so a relay that dies or
/// loses its connection frees it for the next one.
pub struct Lease {
    conn: PgConnection,
}

impl Lease {
    /// Takes the lease of relay `name` if nobody holds it.
    pub async fn try_acquire(db: &Db, name: &str) -> Result<Option<Lease>, RelayError> {
        let pool = pg_pool(db)?;
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let row = sqlx::query("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LEASE_NAMESPACE)
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if row.try_get::<bool, _>(0)? {
            Ok(Some(Lease { conn }))
        } else {
            // Closing is a courtesy; a dropped connection ends the session anyway.
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Whether the session holding the lock is still there. A lost session
    /// means the lock is gone (another relay may hold it now).
    pub async fn alive(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.conn.ping()).await,
            Ok(Ok(()))
        )
    }

    /// Gives the lease up now rather than when the connection times out.
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

/// The name of the relay `crm serve` and `crm relay` run: the one checkpoint
/// of the store's stream.
pub const RELAY_NAME: &str = "main";

/// Relay `name`'s stored checkpoint: the last event whose publication was
/// acknowledged (the start when it has none).
pub async fn stored_checkpoint(db: &Db, name: &str) -> Result<Checkpoint, RelayError> {
    let row = sqlx::query_as(
        "SELECT transaction_id, global_position FROM relay_checkpoint WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pg_pool(db)?)
    .await?;
    Checkpoint::stored(row).map_err(|e| RelayError::BadCheckpoint(e.to_string()))
}

/// Moves relay `name`'s checkpoint to `at`. Never backwards: a relay that
/// lost its lease unnoticed cannot undo the progress of the one that took it
/// over.
pub async fn advance_checkpoint(db: &Db, name: &str, at: Checkpoint) -> Result<(), RelayError> {
    sqlx::query(
        "INSERT INTO relay_checkpoint (name, transaction_id, global_position, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
           global_position = excluded.global_position, updated_at = excluded.updated_at \
         WHERE (relay_checkpoint.transaction_id::xid8, relay_checkpoint.global_position) \
             < (excluded.transaction_id::xid8, excluded.global_position)",
    )
    .bind(name)
    .bind(at.transaction_id.to_string())
    .bind(at.position)
    .bind(chrono::Utc::now().to_rfc3339())
    .execute(pg_pool(db)?)
    .await?;
    Ok(())
}

fn pg_pool(db: &Db) -> Result<&PgPool, RelayError> {
    match &db.events {
        EventPool::Postgres(pool) => Ok(pool),
        EventPool::Sqlite(_) => Err(RelayError::NotPostgres),
    }
}

pub struct Relay {
    db: Db,
    jetstream: Context,
    name: String,
    stream: String,
    subject_prefix: String,
    replicas: usize,
    /// Commits of this process: [`Relay::run`] wakes on them instead of
    /// waiting for its next poll.
    commit_signal: Option<Arc<Notify>>,
}

impl Relay {
    /// A relay whose checkpoint row (and lease) is `name`.
    pub fn new(db: Db, jetstream: Context, name: impl Into<String>) -> Self {
        Self {
            db,
            jetstream,
            name: name.into(),
            stream: STREAM.to_owned(),
            subject_prefix: SUBJECT_PREFIX.to_owned(),
            replicas: DEFAULT_REPLICAS,
            commit_signal: None,
        }
    }

    /// Wakes on `signal` (the executor's commit signal, when the writers
    /// run in this process) as well as every poll interval.
    pub fn with_commit_signal(mut self, signal: Arc<Notify>) -> Self {
        self.commit_signal = Some(signal);
        self
    }

    /// Publishes to another stream and subject prefix.
    pub fn with_stream(
        mut self,
        stream: impl Into<String>,
        subject_prefix: impl Into<String>,
    ) -> Self {
        self.stream = stream.into();
        self.subject_prefix = subject_prefix.into();
        self
    }

    /// Keeps the stream on `replicas` servers of a NATS cluster.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn ensure_stream(&self) -> Result<stream::Stream, CreateStreamError> {
        ensure_stream_with(
            &self.jetstream,
            &self.stream,
            &self.subject_prefix,
            self.replicas,
        )
        .await
    }

    /// Where this relay is: the last event whose publication was acknowledged.
    pub async fn checkpoint(&self) -> Result<Checkpoint, RelayError> {
        stored_checkpoint(&self.db, &self.name).await
    }

    /// Where to go on from when this relay does not know: the stored
    /// checkpoint, or the last event on the stream if that is further (a
    /// relay that died between JetStream's ack and its checkpoint write, or
    /// a step that failed half-way, published events the checkpoint does not
    /// cover; a run republished with other bounds would get another message
    /// id and reach the stream twice).
    async fn resume_point(&self) -> Result<Checkpoint, RelayError> {
        let stored = self.checkpoint().await?;
        let Some(tail) = self.stream_tail().await else {
            return Ok(stored);
        };
        if tail.checkpoint() <= stored {
            return Ok(stored);
        }
        // Only an event this store holds, at that very place: after a
        // restore from an older backup the stream is ahead of the store, and
        // trusting it would skip the events written since.
        let ours: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events WHERE global_position = $1 \
               AND transaction_id = $2::text::xid8 AND aggregate_type = $3 \
               AND aggregate_id = $4 AND sequence = $5",
        )
        .bind(tail.position)
        .bind(tail.transaction_id.to_string())
        .bind(&tail.aggregate_type)
        .bind(&tail.aggregate_id)
        .bind(tail.sequence)
        .fetch_optional(pg_pool(&self.db)?)
        .await?;
        if ours.is_none() {
            return Ok(stored);
        }
        // Stored now: the lag figures and `projections status` read it.
        self.save_checkpoint(tail.checkpoint()).await?;
        Ok(tail.checkpoint())
    }

    /// The stream's last event, if its last message is one of ours.
    async fn stream_tail(&self) -> Option<StoredEvent> {
        let stream = self.jetstream.get_stream(&self.stream).await.ok()?;
        let last = stream.cached_info().state.last_sequence;
        if stream.cached_info().state.messages == 0 {
            return None;
        }
        let raw = stream.get_raw_message(last).await.ok()?;
        super::message::decode(&raw.payload).ok()?.pop()
    }

    async fn save_checkpoint(&self, at: Checkpoint) -> Result<(), RelayError> {
        advance_checkpoint(&self.db, &self.name, at).await
    }

    /// One step: publishes the next batch of committed events and moves the
    /// checkpoint past them. Returns how many events it published. The
    /// caller should hold the [`Lease`] ([`Relay::run`] does); without it,
    /// two relays only publish duplicates, which JetStream drops.
    #[tracing::instrument(name = "relay_batch", skip_all)]
    pub async fn publish_next_batch(&self) -> Result<usize, RelayError> {
        self.publish_after(None)
            .await
            .map(|(published, _)| published)
    }

    /// [`Relay::publish_next_batch`] from a checkpoint the caller remembers
    /// (`None`: read the stored one). Returns how many events it published
    /// and the checkpoint after them.
    async fn publish_after(
        &self,
        known: Option<Checkpoint>,
    ) -> Result<(usize, Checkpoint), RelayError> {
        // Fail fast: a disconnected client would queue the messages and
        // time out on every ack instead.
        if !bus_ready(&self.jetstream.client()).await {
            return Err(RelayError::BusDown);
        }
        let after = match known {
            Some(at) => at,
            None => self.resume_point().await?,
        };
        let events = read_committed_after(&self.db, after, BATCH as i64).await?;
        // Events per step (not a lag: `crm_projection_lag_*` and the age
        // summaries are).
        metrics::histogram!("crm_relay_step_events").record(events.len() as f64);
        let Some(last) = events.last() else {
            return Ok((0, after));
        };

        let messages = super::message::encode(&self.subject_prefix, &events)?;
        let mut acks = Vec::with_capacity(messages.len());
        for message in &messages {
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.id);
            acks.push(
                self.jetstream
                    .send_publish(message.subject.clone(), publish)
                    .await?,
            );
        }
        // Every ack before the checkpoint moves: an unacknowledged event is
        // published again next time, never skipped.
        let mut fresh = 0u64;
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for (ack, message) in futures::future::try_join_all(acks)
            .await?
            .iter()
            .zip(&messages)
        {
            if !ack.duplicate {
                fresh += message.events as u64;
            }
        }
        self.save_checkpoint(last.checkpoint()).await?;
        // From the command to the bus: where the relay's share of view lag shows.
        let ages = metrics::histogram!("crm_relay_event_age_seconds");
        for age in events.iter().filter_map(StoredEvent::age_seconds) {
            ages.record(age);
        }

        metrics::counter!("crm_relay_published_total").increment(fresh);
        metrics::counter!("crm_relay_duplicates_total").increment(events.len() as u64 - fresh);
        tracing::debug!(relay = %self.name, events = events.len(), duplicates = events.len() as u64 - fresh, "published");
        Ok((events.len(), last.checkpoint()))
    }

    /// Publishes until `shutdown` turns true, while holding the lease; waits
    /// for it otherwise. A batch in progress is finished first. NATS or
    /// database trouble is logged and retried with backoff: it never reaches
    /// the writers.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut lease: Option<Lease> = None;
        let mut last_check = Instant::now();
        let mut stream_ready = false;
        let mut backoff = MIN_BACKOFF;
        // Where this relay is, while it holds the lease (its own writes are
        // the only ones that move the stored checkpoint then).
        let mut position: Option<Checkpoint> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if !bus_ready(&self.jetstream.client()).await {
                // This relay cannot publish: leave the lease to one that can.
                if let Some(held) = lease.take() {
                    tracing::warn!(relay = %self.name, "NATS is down; giving up the relay lease");
                    held.release().await;
                }
                if pause(&mut shutdown, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            // Checked about once a second, not every poll: a lease lost
            // unnoticed for that long only republishes (deduplicated), and
            // the checkpoint never moves back.
            let holding = match lease.as_mut() {
                Some(_) if last_check.elapsed() < LEASE_CHECK => true,
                Some(held) => {
                    last_check = Instant::now();
                    held.alive().await
                }
                None => false,
            };
            if !holding {
                if lease.take().is_some() {
                    tracing::warn!(relay = %self.name, "lost the relay lease; stopped publishing");
                }
                match Lease::try_acquire(&self.db, &self.name).await {
                    Ok(Some(acquired)) => {
                        tracing::info!(relay = %self.name, "holding the relay lease");
                        lease = Some(acquired);
                        last_check = Instant::now();
                        position = None;
                    }
                    Ok(None) => {
                        if pause(&mut shutdown, LEASE_RETRY).await {
                            break;
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(relay = %self.name, %error, "cannot take the relay lease");
                        if pause(&mut shutdown, LEASE_RETRY).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            if !stream_ready {
                match self.ensure_stream().await {
                    Ok(_) => stream_ready = true,
                    Err(error) => {
                        tracing::warn!(relay = %self.name, %error, "cannot reach the JetStream stream");
                        if pause(&mut shutdown, backoff).await {
                            break;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            // Listening before the step, so a commit during it is not missed.
            let committed = self.commit_signal.as_deref().map(Notify::notified);
            let mut committed = std::pin::pin!(committed);
            if let Some(committed) = committed.as_mut().as_pin_mut() {
                committed.enable();
            }
            match self.publish_after(position).await {
                Ok((n, at)) => {
                    position = Some(at);
                    backoff = MIN_BACKOFF;
                    if n == BATCH {
                        continue;
                    }
                    let gather = if n >= BUSY { BUSY_GATHER } else { GATHER };
                    let woken = async {
                        match committed.as_mut().as_pin_mut() {
                            Some(committed) => committed.await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = woken => {
                            if pause(&mut shutdown, gather).await {
                                break;
                            }
                        }
                        stop = pause(&mut shutdown, POLL) => if stop { break },
                    }
                }
                Err(error) => {
                    position = None;
                    tracing::warn!(relay = %self.name, %error, "relay will retry");
                    // The stream may have been deleted: check it again.
                    stream_ready = false;
                    if pause(&mut shutdown, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(held) = lease {
            held.release().await;
        }
    }
}

/// Sleeps for `duration` unless shutdown comes first; true means stop.
pub(crate) async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        changed = shutdown.changed() => {
            // A dropped sender can never say "go on": treat it as shutdown.
            if changed.is_err() {
                return true;
            }
        }
    }
    *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_url_may_list_several_servers() {
        assert_eq!(server_urls("nats://a:4222"), vec!["nats://a:4222"]);
        assert_eq!(
            server_urls(" nats://a:4222, nats://b:4222 ,,nats://c:4222"),
            vec!["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert!(server_urls(" , ").is_empty());
    }
}
