//! Durable JetStream consumers feeding handlers.
//!
//! Each handler has one durable pull consumer (`crm-<handler>`) filtered to
//! its aggregate type; any number of worker processes may pull from it, and
//! JetStream hands each message to one of them at a time. Acks are explicit:
//! - `Done` is acked and the server confirms the ack (a lost ack would only
//!   redeliver, which the views' `last_seq` guard absorbs, but it costs a
//!   30 s wait);
//! - `RetryLater` is nak'ed with a delay growing with the delivery count, and
//!   parked once the redeliveries are nearly used up, so it is never dropped
//!   silently;
//! - `Poison` (and a message that is not an event at all) is parked and
//!   terminated.
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Context, Message};
use commands::events::StoredEvent;
use futures::StreamExt;
use sqlx::AnyPool;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

use super::relay::{self, pause};
use super::subject::{token, SUBJECT_PREFIX};
use super::{park, Handled, Handler};

/// Deliveries of one message before JetStream gives up on it.
pub const MAX_DELIVER: i64 = 20;
/// How long a delivered message may stay unacknowledged before redelivery.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Delay before the n-th redelivery of a `RetryLater` (the last repeats).
const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];
/// Messages per pull and how long a pull waits for them in [`Worker::run`].
const BATCH: usize = 500;
/// How long a group waits for more messages after its first one; longer
/// (BUSY_GATHER) right after a group of at least BUSY messages, so that under
/// load a view commits dozens of events at a time instead of a few, for at
/// most that much added lag.
const GATHER: Duration = Duration::from_millis(2);
const BUSY_GATHER: Duration = Duration::from_millis(10);
const BUSY: usize = 8;
const WAIT: Duration = Duration::from_millis(500);
/// How long after a pull's `wait` the worker gives up on it by itself. The
/// server ends a pull at `wait`; but when the server holding the pull dies
/// (a node of a NATS cluster), nothing ends it, and async-nats waits 5 s
/// more: every view would stall that long on each node failure.
const PULL_GRACE: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the NATS connection is down")]
    BusDown,
    #[error("{what}: {source}")]
    Nats {
        what: &'static str,
        source: async_nats::Error,
    },
}

fn nats<E>(what: &'static str) -> impl FnOnce(E) -> WorkerError
where
    E: Into<async_nats::Error>,
{
    move |source| WorkerError::Nats {
        what,
        source: source.into(),
    }
}

/// From the command to its handling here: with the relay's histogram, where
/// view lag comes from.
fn record_ages(handler: &str, events: &[StoredEvent]) {
    let histogram =
        metrics::histogram!("crm_handler_event_age_seconds", "handler" => handler.to_owned());
    for age in events.iter().filter_map(StoredEvent::age_seconds) {
        histogram.record(age);
    }
}

/// The delay before redelivering a message delivered `delivered` times.
fn retry_delay(delivered: i64) -> Duration {
    let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
    RETRY_DELAYS[index.min(RETRY_DELAYS.len() - 1)]
}

/// The durable consumer of the handler called `handler`: `crm-<handler>`.
pub fn consumer_name(handler: &str) -> String {
    format!("crm-{}", token(handler))
}

pub struct Worker {
    jetstream: Context,
    /// Where parked events go.
    pool: AnyPool,
    handler: Box<dyn Handler>,
    stream: String,
    subject_prefix: String,
    /// How long a delivered message may stay unacknowledged before it is
    /// redelivered (e.g. after its worker was killed).
    ack_wait: Duration,
    /// Replicas of the stream (if this worker creates it) and of the
    /// durable consumer, on a NATS cluster.
    replicas: usize,
    /// Created on first use, so a worker can start while NATS is down;
    /// forgotten after an error, so a deleted consumer is created again.
    consumer: Mutex<Option<PullConsumer>>,
}

impl Worker {
    pub fn new(jetstream: Context, pool: AnyPool, handler: Box<dyn Handler>) -> Self {
        Self {
            jetstream,
            pool,
            handler,
            stream: relay::STREAM.to_owned(),
            subject_prefix: SUBJECT_PREFIX.to_owned(),
            ack_wait: ACK_WAIT,
            replicas: relay::DEFAULT_REPLICAS,
            consumer: Mutex::new(None),
        }
    }

    /// Consumes another stream, whose subjects start with `subject_prefix`.
    pub fn with_stream(
        mut self,
        stream: impl Into<String>,
        subject_prefix: impl Into<String>,
    ) -> Self {
        self.stream = stream.into();
        self.subject_prefix = subject_prefix.into();
        self
    }

    /// Redelivers unacknowledged messages after `ack_wait` instead of [`ACK_WAIT`].
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Keeps the durable consumer (and the stream, if this worker creates
    /// it) on `replicas` servers of a NATS cluster.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// The durable consumer's name: `crm-<handler name>`.
    pub fn consumer_name(&self) -> String {
        consumer_name(self.handler.name())
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.consumer_name()),
            filter_subject: format!(
                "{}.*.{}.*",
                self.subject_prefix,
                token(self.handler.aggregate_type())
            ),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: MAX_DELIVER,
            num_replicas: self.replicas,
            // No `backoff`: the server replaces ack_wait with its first
            // entry, so short steps would redeliver messages still being
            // handled. RetryLater delays are given with each nak instead.
            ..Default::default()
        }
    }

    /// The durable consumer, created (with the stream) if missing.
    pub async fn consumer(&self) -> Result<PullConsumer, WorkerError> {
        let mut cached = self.consumer.lock().await;
        if let Some(consumer) = cached.as_ref() {
            return Ok(consumer.clone());
        }
        // The worker may start before any relay: make sure the stream exists.
        let stream = relay::ensure_stream_with(
            &self.jetstream,
            &self.stream,
            &self.subject_prefix,
            self.replicas,
        )
        .await
        .map_err(nats("creating the stream"))?;
        let mut consumer: PullConsumer = stream
            .get_or_create_consumer(&self.consumer_name(), self.consumer_config())
            .await
            .map_err(nats("creating the consumer"))?;
        let current = consumer.cached_info().config.num_replicas;
        if current != self.replicas {
            // Made before CRM_NATS_REPLICAS changed: follow the setting.
            match stream.update_consumer(self.consumer_config()).await {
                Ok(updated) => {
                    tracing::warn!(consumer = %self.consumer_name(), from = current, to = self.replicas, "changed the consumer's replica count to CRM_NATS_REPLICAS");
                    consumer = updated;
                }
                Err(error) => {
                    tracing::error!(consumer = %self.consumer_name(), replicas = current, wanted = self.replicas, %error, "the consumer's replica count differs from CRM_NATS_REPLICAS and cannot be changed; using it as it is");
                }
            }
        }
        *cached = Some(consumer.clone());
        Ok(consumer)
    }

    /// One step: pulls up to `max` messages, waiting at most `wait` for them,
    /// and settles each with the handler. Returns how many it processed.
    #[tracing::instrument(name = "worker_batch", skip_all, fields(handler = self.handler.name()))]
    pub async fn process_next_batch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<usize, WorkerError> {
        if !relay::bus_ready(&self.jetstream.client()).await {
            return Err(WorkerError::BusDown);
        }
        let consumer = self.consumer().await?;
        let result = self.pull(&consumer, max, wait).await;
        if result.is_err() {
            // The consumer (or stream) may be gone: look it up again next time.
            *self.consumer.lock().await = None;
        }
        result
    }

    async fn pull(
        &self,
        consumer: &PullConsumer,
        max: usize,
        wait: Duration,
    ) -> Result<usize, WorkerError> {
        let mut messages = consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(nats("pulling messages"))?;
        let mut processed = 0;
        let mut gather = GATHER;
        // Messages already received are still returned after the deadline
        // (the timeout is checked only when none is ready).
        let deadline = tokio::time::Instant::now() + wait + PULL_GRACE;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await {
            // Whatever else arrives within GATHER is handled with it, as one
            // group (one transaction for a view): under load that is one
            // commit for many events instead of one each.
            let mut group = vec![message.map_err(nats("receiving a message"))?];
            let mut failed = None;
            let gathered = tokio::time::Instant::now() + gather;
            while group.len() < max {
                match tokio::time::timeout_at(gathered, messages.next()).await {
                    Ok(Some(Ok(message))) => group.push(message),
                    Ok(Some(Err(error))) => {
                        failed = Some(error);
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            processed += group.len();
            gather = if group.len() >= BUSY {
                BUSY_GATHER
            } else {
                GATHER
            };
            self.settle_group(&group).await;
            if let Some(error) = failed {
                return Err(nats("receiving a message")(error));
            }
        }
        Ok(processed)
    }

    /// Hands the events of `messages` to the handler as one run (one
    /// transaction for a view), then settles each message; the acks go out
    /// together.
    async fn settle_group(&self, messages: &[Message]) {
        let mut events = Vec::new();
        let mut delivered = Vec::with_capacity(messages.len());
        for message in messages {
            let (decoded, count) = self.decode(message).await;
            delivered.push((message, count, events.len()..events.len() + decoded.len()));
            events.extend(decoded);
        }
        if events.is_empty() {
            return;
        }
        let verdicts = if let [event] = events.as_slice() {
            vec![self.handler.handle(event).await]
        } else {
            self.handler.handle_batch(&events).await
        };
        record_ages(self.handler.name(), &events);
        let settled = delivered
            .into_iter()
            .filter(|(_, _, range)| !range.is_empty())
            .map(|(message, count, range)| {
                self.conclude(message, &events[range.clone()], count, &verdicts[range])
            });
        futures::future::join_all(settled).await;
    }

    /// The events in a message and how often it was delivered; a message
    /// that holds no events is given up on here (none returned).
    async fn decode(&self, message: &Message) -> (Vec<StoredEvent>, i64) {
        let handler = self.handler.name();
        let (delivered, stream_sequence) = message
            .info()
            .map(|info| (info.delivered, info.stream_sequence))
            .unwrap_or((1, 0));
        if delivered > 1 {
            metrics::counter!("crm_worker_redeliveries_total", "handler" => handler.to_owned())
                .increment(1);
        }
        match super::message::decode(&message.payload) {
            Ok(events) => (events, delivered),
            Err(error) => {
                // Not events at all: no retry can help. Park what we know of
                // it so it is visible, then drop it.
                let stand_in = StoredEvent {
                    position: 0,
                    transaction_id: 0,
                    aggregate_type: self.handler.aggregate_type().to_owned(),
                    aggregate_id: message.subject.to_string(),
                    sequence: i64::try_from(stream_sequence).unwrap_or(i64::MAX),
                    event_type: String::new(),
                    event_version: String::new(),
                    payload: serde_json::Value::Null,
                    metadata: serde_json::Value::Null,
                };
                let reason =
                    format!("undecodable message at stream sequence {stream_sequence}: {error}");
                self.give_up(message, &[(&stand_in, reason)], delivered)
                    .await;
                (vec![], delivered)
            }
        }
    }

    /// Tells JetStream what the handler made of a message's events: done
    /// when each is done or parked; otherwise redelivered later (the events
    /// already applied are then duplicates, which views drop), or given up
    /// on after [`MAX_DELIVER`] deliveries.
    async fn conclude(
        &self,
        message: &Message,
        events: &[StoredEvent],
        delivered: i64,
        verdicts: &[Handled],
    ) {
        let handler = self.handler.name();
        let mut poisoned = vec![];
        let mut retrying = vec![];
        for (event, verdict) in events.iter().zip(verdicts) {
            match verdict {
                Handled::Done => {}
                Handled::RetryLater(reason) => retrying.push((event, reason.clone())),
                Handled::Poison(reason) => poisoned.push((event, reason.clone())),
            }
        }
        let outcome = if retrying.is_empty() && poisoned.is_empty() {
            // A plain ack (no round trip): if it is lost, the message comes
            // back after ack_wait and the view's `last_seq` guard drops it.
            message.ack().await
        } else if retrying.is_empty() || delivered >= MAX_DELIVER - 1 {
            let retrying = retrying.into_iter().map(|(event, reason)| {
                (
                    event,
                    format!("still failing after {delivered} deliveries: {reason}"),
                )
            });
            poisoned.extend(retrying);
            return self.give_up(message, &poisoned, delivered).await;
        } else {
            if !poisoned.is_empty() {
                // Parked now, so that a redelivery finds them already handled.
                if let Err(error) = self.park_all(&poisoned).await {
                    tracing::warn!(handler, %error, "cannot park; will retry");
                }
            }
            let (event, reason) = &retrying[0];
            let delay = retry_delay(delivered);
            tracing::debug!(handler, event = %event.message_id(), %reason, ?delay, "retrying later");
            message.ack_with(AckKind::Nak(Some(delay))).await
        };
        if let Err(error) = outcome {
            tracing::warn!(handler, message = %message.subject, %error, "ack failed; the message will be redelivered");
        }
    }

    async fn park_all(&self, events: &[(&StoredEvent, String)]) -> Result<(), sqlx::Error> {
        for (event, reason) in events {
            park(&self.pool, self.handler.name(), event, reason).await?;
        }
        Ok(())
    }

    /// Parks the events, then terminates the message's delivery. If parking
    /// fails (database down) the message is nak'ed instead, so it is not lost.
    async fn give_up(&self, message: &Message, events: &[(&StoredEvent, String)], delivered: i64) {
        let handler = self.handler.name();
        let outcome = match self.park_all(events).await {
            Ok(()) => message.double_ack_with(AckKind::Term).await,
            Err(error) => {
                tracing::warn!(handler, message = %message.subject, %error, "cannot park; will retry");
                message
                    .ack_with(AckKind::Nak(Some(retry_delay(delivered))))
                    .await
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(handler, message = %message.subject, %error, "ack failed; the message will be redelivered");
        }
    }

    /// Consumes until `shutdown` turns true; the batch in progress is
    /// finished first. NATS trouble is logged and retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        while !*shutdown.borrow() {
            match self.process_next_batch(BATCH, WAIT).await {
                Ok(_) => backoff = MIN_BACKOFF,
                Err(error) => {
                    tracing::warn!(handler = self.handler.name(), %error, "worker will retry");
                    if pause(&mut shutdown, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(500));
        assert_eq!(retry_delay(0), Duration::from_millis(100));
        assert_eq!(retry_delay(19), Duration::from_secs(30));
    }
}
