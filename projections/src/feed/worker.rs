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

use super::relay::{self, pause, token};
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
/// How long a group waits for more messages after its first one.
const GATHER: Duration = Duration::from_millis(2);
const WAIT: Duration = Duration::from_millis(500);
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
            subject_prefix: relay::SUBJECT_PREFIX.to_owned(),
            ack_wait: ACK_WAIT,
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
        let stream = relay::ensure_stream_with(&self.jetstream, &self.stream, &self.subject_prefix)
            .await
            .map_err(nats("creating the stream"))?;
        let consumer = stream
            .get_or_create_consumer(&self.consumer_name(), self.consumer_config())
            .await
            .map_err(nats("creating the consumer"))?;
        *cached = Some(consumer.clone());
        Ok(consumer)
    }

    /// One step: pulls up to `max` messages, waiting at most `wait` for them,
    /// and settles each with the handler. Returns how many it processed.
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
        while let Some(message) = messages.next().await {
            // Whatever else arrives within GATHER is handled with it, as one
            // group (one transaction for a view): under load that is one
            // commit for many events instead of one each.
            let mut group = vec![message.map_err(nats("receiving a message"))?];
            let mut failed = None;
            let gathered = tokio::time::Instant::now() + GATHER;
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
            self.settle_group(&group).await;
            if let Some(error) = failed {
                return Err(nats("receiving a message")(error));
            }
        }
        Ok(processed)
    }

    /// [`Worker::settle`] for several messages: the handler gets the events
    /// as one run, and the acks go out together.
    async fn settle_group(&self, messages: &[Message]) {
        if let [message] = messages {
            return self.settle(message).await;
        }
        let mut events = Vec::with_capacity(messages.len());
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some((event, delivered)) = self.decode(message).await {
                events.push(event);
                deliveries.push((message, delivered));
            }
        }
        let verdicts = self.handler.handle_batch(&events).await;
        let acks = deliveries.iter().zip(&events).zip(verdicts).map(
            |(((message, delivered), event), verdict)| {
                self.conclude(message, event, *delivered, verdict)
            },
        );
        futures::future::join_all(acks).await;
    }

    /// Hands one message to the handler and tells JetStream the outcome. An
    /// ack that fails is only logged: the message comes back after ack_wait,
    /// and handlers are idempotent.
    async fn settle(&self, message: &Message) {
        if let Some((event, delivered)) = self.decode(message).await {
            let verdict = self.handler.handle(&event).await;
            self.conclude(message, &event, delivered, verdict).await;
        }
    }

    /// The event in a message and how often it was delivered; a message that
    /// is not an event is given up on here (`None`).
    async fn decode(&self, message: &Message) -> Option<(StoredEvent, i64)> {
        let handler = self.handler.name();
        let (delivered, stream_sequence) = message
            .info()
            .map(|info| (info.delivered, info.stream_sequence))
            .unwrap_or((1, 0));
        if delivered > 1 {
            metrics::counter!("crm_worker_redeliveries_total", "handler" => handler.to_owned())
                .increment(1);
        }
        match serde_json::from_slice(&message.payload) {
            Ok(event) => Some((event, delivered)),
            Err(error) => {
                // Not an event at all: no retry can help. Park what we know of
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
                self.give_up(message, &stand_in, &reason, delivered).await;
                None
            }
        }
    }

    /// Tells JetStream what the handler made of the event.
    async fn conclude(
        &self,
        message: &Message,
        event: &StoredEvent,
        delivered: i64,
        verdict: Handled,
    ) {
        let handler = self.handler.name();
        let outcome = match verdict {
            Handled::Done => message.double_ack().await,
            Handled::RetryLater(reason) if delivered >= MAX_DELIVER - 1 => {
                let reason = format!("still failing after {delivered} deliveries: {reason}");
                self.give_up(message, event, &reason, delivered).await;
                return;
            }
            Handled::RetryLater(reason) => {
                let delay = retry_delay(delivered);
                tracing::debug!(handler, event = %event.message_id(), %reason, ?delay, "retrying later");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Handled::Poison(reason) => {
                self.give_up(message, event, &reason, delivered).await;
                return;
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(handler, event = %event.message_id(), %error, "ack failed; the message will be redelivered");
        }
    }

    /// Parks the event, then terminates its delivery. If parking fails
    /// (database down) the message is nak'ed instead, so it is not lost.
    async fn give_up(&self, message: &Message, event: &StoredEvent, reason: &str, delivered: i64) {
        let handler = self.handler.name();
        let outcome = match park(&self.pool, handler, event, reason).await {
            Ok(()) => message.double_ack_with(AckKind::Term).await,
            Err(error) => {
                tracing::warn!(handler, event = %event.message_id(), %error, "cannot park; will retry");
                message
                    .ack_with(AckKind::Nak(Some(retry_delay(delivered))))
                    .await
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(handler, event = %event.message_id(), %error, "ack failed; the message will be redelivered");
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
