//! The sender: works the due deliveries. Each attempt runs in its own task,
//! at most [`PER_ENDPOINT`] at a time per webhook and [`IN_FLIGHT`] in all,
//! so one slow or dead endpoint holds up no other.
//!
//! A delivery is claimed before it is sent (its `next_attempt_at` pushed
//! [`CLAIM`] ahead, only if nobody moved it first), so two senders do not
//! send it at once, and one that dies mid-attempt leaves it to be sent again
//! when the claim runs out, with the same body and `webhook-id`.
use commands::Db;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::store::{self, DeliveryRow, WebhookRow, DELIVERY_COLUMNS};
use super::{sign, stored_time, target, TargetPolicy};
use crate::feed::relay::pause;

/// The Standard Webhooks retry schedule: the delay before attempt `n + 1`
/// after `n` attempts failed (the first is immediate); after the last, the
/// delivery has failed.
pub const SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// An attempt's time limit (the contract allows 15 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim holds a delivery: longer than any attempt (so no second
/// sender sends it meanwhile), and how long a delivery whose sender died
/// mid-attempt waits to be sent again.
pub const CLAIM: Duration = Duration::from_secs(20);
/// How often an attempt's outcome is written again before it is given up.
const RECORD_TRIES: u64 = 3;
pub const PER_ENDPOINT: usize = 4;
pub const IN_FLIGHT: usize = 64;
/// The most of a response body read (and then dropped).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Why a webhook whose endpoint stayed down through a whole schedule was disabled.
pub const DEAD_ENDPOINT: &str =
    "no delivery succeeded during a whole retry schedule (about 37 hours)";
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
const POLL: Duration = Duration::from_millis(100);

/// What the sender needs to know from the operator.
#[derive(Clone, Copy, Debug)]
pub struct SendSettings {
    pub targets: TargetPolicy,
    /// Multiplies every delay of [`SCHEDULE`] (tests use a tiny factor).
    pub retry_scale: f64,
}

#[derive(Clone)]
pub struct Sender {
    db: Db,
    client: reqwest::Client,
    settings: SendSettings,
    /// Attempts in flight per webhook.
    busy: Arc<Mutex<HashMap<String, usize>>>,
    due: Arc<Notify>,
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub response_status: Option<u16>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

impl Sender {
    pub fn new(db: Db, settings: SendSettings, due: Arc<Notify>) -> Result<Self, reqwest::Error> {
        let mut client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("crm-webhooks/1");
        if !settings.targets.allow_private {
            client = client.dns_resolver(Arc::new(target::GuardedResolver));
        }
        Ok(Self {
            db,
            client: client.build()?,
            settings,
            busy: Arc::default(),
            due,
        })
    }

    /// Claims the due deliveries this sender has room for and starts their
    /// attempts in `tasks`. Returns how many it started.
    pub async fn start_due(&self, tasks: &mut JoinSet<()>) -> Result<usize, sqlx::Error> {
        let room = IN_FLIGHT.saturating_sub(tasks.len());
        if room == 0 {
            return Ok(0);
        }
        let now = stored_time(chrono::Utc::now());
        let due: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {} FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.enabled = 1) \
             ORDER BY d.next_attempt_at LIMIT $2",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(&now)
        .bind((room * 4) as i64)
        .fetch_all(&self.db.any)
        .await?;
        let mut started = 0;
        for delivery in due {
            if started == room {
                break;
            }
            if !self.reserve(&delivery.webhook_id) {
                continue;
            }
            let claimed = self.claim(&delivery).await;
            if !matches!(claimed, Ok(true)) {
                self.release(&delivery.webhook_id);
                claimed?;
                continue;
            }
            let sender = self.clone();
            tasks.spawn(async move {
                let webhook = delivery.webhook_id.clone();
                if let Err(error) = sender.attempt(&delivery).await {
                    tracing::warn!(%error, delivery = %delivery.id, "could not record a webhook attempt");
                }
                sender.release(&webhook);
            });
            started += 1;
        }
        Ok(started)
    }

    fn reserve(&self, webhook: &str) -> bool {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let n = busy.entry(webhook.to_owned()).or_default();
        if *n >= PER_ENDPOINT {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, webhook: &str) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(webhook) {
            *n -= 1;
            if *n == 0 {
                busy.remove(webhook);
            }
        }
    }

    /// Pushes the delivery's next attempt [`CLAIM`] ahead, if nobody else
    /// moved it since it was read.
    async fn claim(&self, delivery: &DeliveryRow) -> Result<bool, sqlx::Error> {
        let until = chrono::Utc::now() + CLAIM;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $2 \
             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $3",
        )
        .bind(&delivery.id)
        .bind(stored_time(until))
        .bind(delivery.next_attempt_at.as_deref())
        .execute(&self.db.any)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sends one claimed delivery and records the outcome.
    pub async fn attempt(&self, delivery: &DeliveryRow) -> Result<(), sqlx::Error> {
        let webhook: Option<WebhookRow> = sqlx::query_as(
            "SELECT id, company_id, url, event_types, description, enabled, disabled_reason, \
             secret, previous_secret, previous_expires_at, created_at, updated_at \
             FROM webhooks WHERE id = $1",
        )
        .bind(&delivery.webhook_id)
        .fetch_optional(&self.db.any)
        .await?;
        let Some(webhook) = webhook else {
            return Ok(());
        };
        let outcome = self.post(&webhook, delivery).await;
        self.record(&webhook, delivery, &outcome).await
    }

    async fn post(&self, webhook: &WebhookRow, delivery: &DeliveryRow) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            response_status: None,
            error: Some(error),
            retry_after: None,
            latency: started.elapsed(),
        };
        // Checked again at delivery: the URL may name an address literal
        // (which no resolver sees), or the operator may have tightened the policy.
        let url = match target::parse(&webhook.url, self.settings.targets) {
            Ok(url) => url,
            Err(error) => return failed(format!("target refused: {error}")),
        };
        if let Err(error) = target::check(&url, self.settings.targets).await {
            return failed(format!("target refused: {error}"));
        }
        let now = chrono::Utc::now();
        let timestamp = now.timestamp();
        let body = delivery.payload.as_bytes();
        let signature = sign::header(
            &webhook.signing_secrets(&stored_time(now)),
            &delivery.event_id,
            timestamp,
            body,
        );
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return failed(describe(&error)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Read a little of the body (so the connection can be reused), then drop it.
        let mut read = 0usize;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        Outcome {
            response_status: Some(status.as_u16()),
            error: None,
            retry_after,
            latency: started.elapsed(),
        }
    }

    async fn record(
        &self,
        webhook: &WebhookRow,
        delivery: &DeliveryRow,
        outcome: &Outcome,
    ) -> Result<(), sqlx::Error> {
        let now = chrono::Utc::now();
        let attempts = delivery.attempts + 1;
        let (status, next) = next_step(attempts, outcome, self.settings.retry_scale);
        let next_at = next.map(|delay| stored_time(now + delay));
        // The attempt has been made: a lost record would resend it only when
        // the claim expires, counted as a first attempt. The same UPDATE is
        // tried again over a moment of contention.
        let mut tries = 0;
        loop {
            let recorded = sqlx::query(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, last_response_status = $4, \
                 last_error = $5, last_latency_ms = $6, last_attempt_at = $7, next_attempt_at = $8 \
                 WHERE id = $1",
            )
            .bind(&delivery.id)
            .bind(status)
            .bind(attempts)
            .bind(outcome.response_status.map(i64::from))
            .bind(outcome.error.as_deref())
            .bind(outcome.latency.as_millis() as i64)
            .bind(stored_time(now))
            .bind(next_at.as_deref())
            .execute(&self.db.any)
            .await;
            match recorded {
                Ok(_) => break,
                Err(error) if tries < RECORD_TRIES => {
                    tries += 1;
                    tracing::warn!(%error, delivery = %delivery.id, "recording a webhook attempt failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(error) => return Err(error),
            }
        }
        metrics::counter!("crm_webhook_attempts_total", "status" => status).increment(1);
        metrics::histogram!("crm_webhook_attempt_seconds").record(outcome.latency.as_secs_f64());
        if outcome.response_status == Some(410) {
            tracing::warn!(webhook = %webhook.id, "endpoint answered 410 Gone; disabling the webhook");
            store::disable(&self.db.any, &webhook.id, "the endpoint answered 410 Gone").await?;
        } else if status == "failed" && self.dead_since(webhook, &delivery.created_at).await? {
            tracing::warn!(webhook = %webhook.id, "endpoint failed for the whole retry schedule; disabling the webhook");
            store::disable(&self.db.any, &webhook.id, DEAD_ENDPOINT).await?;
        }
        Ok(())
    }

    /// Whether no delivery to `webhook` has succeeded since `since`: an
    /// endpoint that failed one delivery for the whole schedule and nothing
    /// else in that time is dead, not refusing one event.
    async fn dead_since(&self, webhook: &WebhookRow, since: &str) -> Result<bool, sqlx::Error> {
        let alive: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'succeeded' \
             AND last_attempt_at >= $2 LIMIT 1",
        )
        .bind(&webhook.id)
        .bind(since)
        .fetch_optional(&self.db.any)
        .await?;
        Ok(alive.is_none())
    }

    /// Sends until `shutdown`; attempts under way are finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let due = self.due.clone();
            let mut woken = std::pin::pin!(due.notified());
            woken.as_mut().enable();
            if let Err(error) = self.start_due(&mut tasks).await {
                tracing::warn!(%error, "webhook sender will retry");
            }
            tokio::select! {
                _ = woken => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                stop = pause(&mut shutdown, POLL) => if stop { break },
            }
        }
        let _ = tokio::time::timeout(TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// After `attempts` attempts ending in `outcome`: the delivery's status and,
/// if it goes on, the delay before the next attempt.
pub fn next_step(attempts: i64, outcome: &Outcome, scale: f64) -> (&'static str, Option<Duration>) {
    match outcome.response_status {
        Some(s) if (200..300).contains(&s) => return ("succeeded", None),
        Some(410) => return ("failed", None),
        _ => {}
    }
    let Some(delay) = SCHEDULE.get(attempts as usize) else {
        return ("failed", None);
    };
    let mut delay = delay.mul_f64(scale.max(0.0));
    if matches!(outcome.response_status, Some(429 | 503)) {
        if let Some(asked) = outcome.retry_after {
            delay = delay.max(asked.min(MAX_RETRY_AFTER));
        }
    }
    ("pending", Some(delay))
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(raw: &str) -> Option<Duration> {
    if let Ok(secs) = raw.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A transport error in a few words (the delivery log shows it).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        let mut source: Option<&dyn std::error::Error> = Some(error);
        let mut text = "could not connect".to_owned();
        while let Some(e) = source {
            if e.to_string().contains("loopback, private") {
                text = format!("target refused: {e}");
            }
            source = e.source();
        }
        text
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, retry_after: Option<u64>) -> Outcome {
        Outcome {
            response_status: Some(status),
            error: None,
            retry_after: retry_after.map(Duration::from_secs),
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn any_2xx_succeeds_and_410_fails_for_good() {
        assert_eq!(next_step(1, &answered(204, None), 1.0), ("succeeded", None));
        assert_eq!(next_step(1, &answered(410, None), 1.0), ("failed", None));
    }

    #[test]
    fn failures_follow_the_standard_webhooks_schedule_scaled() {
        assert_eq!(
            next_step(1, &answered(500, None), 1.0),
            ("pending", Some(Duration::from_secs(5)))
        );
        assert_eq!(
            next_step(2, &answered(500, None), 1.0),
            ("pending", Some(Duration::from_secs(300)))
        );
        assert_eq!(
            next_step(2, &answered(500, None), 0.01),
            ("pending", Some(Duration::from_secs(3)))
        );
        assert_eq!(next_step(8, &answered(500, None), 1.0), ("failed", None));
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        assert_eq!(
            next_step(1, &answered(429, Some(60)), 1.0),
            ("pending", Some(Duration::from_secs(60)))
        );
        assert_eq!(
            next_step(1, &answered(503, Some(60)), 1.0),
            ("pending", Some(Duration::from_secs(60)))
        );
        assert_eq!(
            next_step(1, &answered(500, Some(60)), 1.0),
            ("pending", Some(Duration::from_secs(5)))
        );
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
