//! The webhooks table and the delivery log. Every function takes the
//! caller's company: another company's webhooks are never found.
use domain::CompanyId;
use sqlx::{AnyPool, FromRow};

use super::stored_time;
use crate::read::users::page;
use crate::read::Keyset;

#[derive(Clone, Debug, FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub company_id: String,
    pub url: String,
    /// JSON array of public event types; `[]` = all.
    pub event_types: String,
    pub description: Option<String>,
    pub enabled: i64,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WebhookRow {
    pub fn event_types(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }

    /// Whether it wants events of public type `t`.
    pub fn wants(&self, t: &str) -> bool {
        let types = self.event_types();
        types.is_empty() || types.iter().any(|wanted| wanted == t)
    }

    /// The secrets that sign a delivery sent at `now`: the current one, and
    /// the one before a rotation until it expires.
    pub fn signing_secrets(&self, now: &str) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, &self.previous_expires_at) {
            if now < until.as_str() {
                secrets.push(previous);
            }
        }
        secrets
    }
}

const COLUMNS: &str = "id, company_id, url, event_types, description, enabled, disabled_reason, \
     secret, previous_secret, previous_expires_at, created_at, updated_at";

/// What a new webhook is.
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub secret: String,
}

pub async fn create(
    pool: &AnyPool,
    company: CompanyId,
    new: NewWebhook,
) -> Result<WebhookRow, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = stored_time(chrono::Utc::now());
    sqlx::query(
        "INSERT INTO webhooks (id, company_id, url, event_types, description, enabled, \
         disabled_reason, secret, previous_secret, previous_expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, NULL, NULL, $8, $8)",
    )
    .bind(&id)
    .bind(company.to_string())
    .bind(&new.url)
    .bind(serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into()))
    .bind(new.description.as_deref())
    .bind(i64::from(new.enabled))
    .bind(&new.secret)
    .bind(&now)
    .execute(pool)
    .await?;
    get(pool, company, &id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn get(
    pool: &AnyPool,
    company: CompanyId,
    id: &str,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE company_id = $1 AND id = $2"
    ))
    .bind(company.to_string())
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A page of the company's webhooks, oldest first.
pub async fn list(
    pool: &AnyPool,
    company: CompanyId,
    after: Option<&Keyset>,
    limit: i64,
) -> Result<(Vec<WebhookRow>, Option<Keyset>), sqlx::Error> {
    let (key, id) = after
        .map(|k| (k.key.clone(), k.id.clone()))
        .unwrap_or_default();
    let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE company_id = $1 \
         AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4"
    ))
    .bind(company.to_string())
    .bind(key)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(page(rows, limit, |row| Keyset {
        key: row.created_at.clone(),
        id: row.id.clone(),
    }))
}

/// Every enabled webhook of these companies (the dispatcher's lookup).
pub async fn enabled_for(
    db: &commands::Db,
    companies: &[String],
) -> Result<Vec<WebhookRow>, sqlx::Error> {
    if companies.is_empty() {
        return Ok(Vec::new());
    }
    let companies = serde_json::to_string(companies).unwrap_or_else(|_| "[]".into());
    // A JSON array bound once serves both dialects.
    let membership = match db.dialect() {
        commands::Dialect::Sqlite => "company_id IN (SELECT value FROM json_each($1))",
        commands::Dialect::Postgres => {
            "company_id IN (SELECT jsonb_array_elements_text($1::jsonb))"
        }
    };
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE enabled = 1 AND {membership}"
    ))
    .bind(companies)
    .fetch_all(&db.any)
    .await
}

/// A change to a webhook; `None` fields stay as they are.
#[derive(Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

pub async fn update(
    pool: &AnyPool,
    company: CompanyId,
    id: &str,
    change: WebhookChange,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    let Some(mut row) = get(pool, company, id).await? else {
        return Ok(None);
    };
    if let Some(url) = change.url {
        row.url = url;
    }
    if let Some(types) = change.event_types {
        row.event_types = serde_json::to_string(&types).unwrap_or_else(|_| "[]".into());
    }
    if let Some(description) = change.description {
        row.description = description;
    }
    if let Some(enabled) = change.enabled {
        row.enabled = i64::from(enabled);
        if enabled {
            row.disabled_reason = None;
        }
    }
    sqlx::query(
        "UPDATE webhooks SET url = $3, event_types = $4, description = $5, enabled = $6, \
         disabled_reason = $7, updated_at = $8 WHERE company_id = $1 AND id = $2",
    )
    .bind(company.to_string())
    .bind(id)
    .bind(&row.url)
    .bind(&row.event_types)
    .bind(row.description.as_deref())
    .bind(row.enabled)
    .bind(row.disabled_reason.as_deref())
    .bind(stored_time(chrono::Utc::now()))
    .execute(pool)
    .await?;
    get(pool, company, id).await
}

/// Deletes a webhook and its delivery log; `false` if there was none.
pub async fn delete(pool: &AnyPool, company: CompanyId, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM webhooks WHERE company_id = $1 AND id = $2")
        .bind(company.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM webhook_deliveries WHERE company_id = $1 AND webhook_id = $2")
        .bind(company.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted > 0)
}

/// Replaces the secret; the old one keeps signing until `previous_until`.
pub async fn rotate_secret(
    pool: &AnyPool,
    company: CompanyId,
    id: &str,
    secret: &str,
    previous_until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhooks SET previous_secret = secret, previous_expires_at = $3, secret = $4, \
         updated_at = $5 WHERE company_id = $1 AND id = $2",
    )
    .bind(company.to_string())
    .bind(id)
    .bind(stored_time(previous_until))
    .bind(secret)
    .bind(stored_time(chrono::Utc::now()))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Turns a webhook off on the server's own account (a `410 Gone`).
pub async fn disable(pool: &AnyPool, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks SET enabled = 0, disabled_reason = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(stored_time(chrono::Utc::now()))
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub company_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub last_response_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, webhook_id, company_id, event_id, event_type, \
     payload, status, attempts, last_response_status, last_error, last_latency_ms, \
     last_attempt_at, next_attempt_at, created_at";

/// A page of a webhook's deliveries, newest first.
pub async fn deliveries(
    pool: &AnyPool,
    company: CompanyId,
    webhook: &str,
    after: Option<&Keyset>,
    limit: i64,
) -> Result<(Vec<DeliveryRow>, Option<Keyset>), sqlx::Error> {
    let (key, id) = after
        .map(|k| (k.key.clone(), k.id.clone()))
        .unwrap_or_else(|| ("\u{10FFFF}".to_owned(), String::new()));
    let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
         WHERE company_id = $1 AND webhook_id = $2 AND (created_at, id) < ($3, $4) \
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(company.to_string())
    .bind(webhook)
    .bind(key)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(page(rows, limit, |row| Keyset {
        key: row.created_at.clone(),
        id: row.id.clone(),
    }))
}

/// Makes a delivery due now again, whatever became of it; `false` if the
/// company has no such delivery of that webhook.
pub async fn retry(
    pool: &AnyPool,
    company: CompanyId,
    webhook: &str,
    delivery: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4 \
         WHERE company_id = $1 AND webhook_id = $2 AND id = $3",
    )
    .bind(company.to_string())
    .bind(webhook)
    .bind(delivery)
    .bind(stored_time(chrono::Utc::now()))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Queues a test event for a webhook (type `webhook.test`, whatever its
/// filter); `None` if the company has no such webhook.
pub async fn ping(
    pool: &AnyPool,
    company: CompanyId,
    webhook: &str,
    actor: &str,
) -> Result<Option<String>, sqlx::Error> {
    if get(pool, company, webhook).await?.is_none() {
        return Ok(None);
    }
    let now = chrono::Utc::now();
    let event_id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::json!({
        "id": event_id,
        "type": "webhook.test",
        "occurred_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "company_id": company.to_string(),
        "actor": {"user_id": actor},
        "data": {"webhook_id": webhook},
    });
    let id = uuid::Uuid::now_v7().to_string();
    let now = stored_time(now);
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, company_id, event_id, event_type, \
         payload, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, 'webhook.test', $5, 'pending', 0, $6, $6)",
    )
    .bind(&id)
    .bind(webhook)
    .bind(company.to_string())
    .bind(&event_id)
    .bind(payload.to_string())
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(Some(id))
}
