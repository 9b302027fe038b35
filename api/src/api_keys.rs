//! API keys: server-to-server credentials an admin creates for its company.
//! A key acts as an admin-level client of that company, named by the key;
//! only its digest is stored, and deleting the row ends it at once (every
//! request looks the key up).
use domain::CompanyId;
use projections::read::Keyset;
use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::secrets;

/// Keys start with this, which tells them from access and refresh tokens.
pub const PREFIX: &str = "crmk_";

#[derive(sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Creates a key; returns its row and the key itself (shown once).
pub async fn create(
    pool: &AnyPool,
    company: CompanyId,
    created_by: Uuid,
    name: &str,
) -> Result<(ApiKeyRow, String), sqlx::Error> {
    let key = secrets::generate(PREFIX);
    let row = ApiKeyRow {
        id: Uuid::now_v7().to_string(),
        name: name.to_owned(),
        created_at: now_text(),
        last_used_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, company_id, name, key_hash, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.id)
    .bind(company.to_string())
    .bind(&row.name)
    .bind(secrets::digest(&key))
    .bind(created_by.to_string())
    .bind(&row.created_at)
    .execute(pool)
    .await?;
    Ok((row, key))
}

/// A page of the company's keys, oldest first.
pub async fn list(
    pool: &AnyPool,
    company: CompanyId,
    after: Option<&Keyset>,
    limit: i64,
) -> Result<(Vec<ApiKeyRow>, Option<Keyset>), sqlx::Error> {
    let after = after.map_or_else(String::new, |k| k.id.clone());
    let rows: Vec<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, created_at, last_used_at FROM api_keys \
         WHERE company_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(company.to_string())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(projections::read::users::page(rows, limit, |row| Keyset {
        key: String::new(),
        id: row.id.clone(),
    }))
}

/// Deletes a key of the company; `false` when there is none.
pub async fn delete(pool: &AnyPool, company: CompanyId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM api_keys WHERE id = $1 AND company_id = $2")
        .bind(id.to_string())
        .bind(company.to_string())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0)
}

/// The key's id and company, if it exists.
pub async fn authenticate(
    pool: &AnyPool,
    key: &str,
) -> Result<Option<(Uuid, CompanyId)>, sqlx::Error> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, company_id FROM api_keys WHERE key_hash = $1")
            .bind(secrets::digest(key))
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(id, company)| {
        Some((
            Uuid::parse_str(&id).ok()?,
            CompanyId(Uuid::parse_str(&company).ok()?),
        ))
    }))
}

/// Writes `last_used_at` at most once a minute per key, off the request's
/// path, so a busy key does not add a write to every request.
pub struct UsageRecorder {
    recorded: Mutex<HashMap<Uuid, Instant>>,
}

const USAGE_RESOLUTION: Duration = Duration::from_secs(60);

impl UsageRecorder {
    pub fn new() -> Self {
        Self {
            recorded: Mutex::new(HashMap::new()),
        }
    }

    pub fn used(&self, pool: &AnyPool, id: Uuid) {
        let due = match self.recorded.lock() {
            Ok(mut recorded) => {
                if recorded.len() > 10_000 {
                    recorded.retain(|_, at| at.elapsed() < USAGE_RESOLUTION);
                }
                match recorded.get(&id) {
                    Some(at) if at.elapsed() < USAGE_RESOLUTION => false,
                    _ => {
                        recorded.insert(id, Instant::now());
                        true
                    }
                }
            }
            Err(_) => false,
        };
        if due {
            let pool = pool.clone();
            tokio::spawn(async move {
                let done = sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(now_text())
                    .bind(id.to_string())
                    .execute(&pool)
                    .await;
                if let Err(error) = done {
                    tracing::warn!(%error, "could not record an API key's use");
                }
            });
        }
    }
}

impl Default for UsageRecorder {
    fn default() -> Self {
        Self::new()
    }
}
