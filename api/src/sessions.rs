//! Refresh tokens: long-lived, rotating, revocable. Each use spends the
//! token and issues the next one of its family (one login); a spent token
//! used again means it leaked, so the whole family is revoked. A family also
//! ends when the user's security stamp changes (role, password, removal) or
//! at logout.
use domain::{CompanyId, UserId};
use sqlx::AnyPool;
use uuid::Uuid;

use crate::secrets;

/// Refresh tokens start with this, so a leaked one is recognisable (e.g. by
/// secret scanners) and never mistaken for an access token or an API key.
pub const PREFIX: &str = "crmr_";

/// Who a refresh token was issued to.
pub struct Session {
    pub family: String,
    pub user_id: UserId,
    pub company_id: CompanyId,
    pub security_stamp: i64,
}

/// Why a refresh token is refused (the client is told only `401`).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    /// Spent before: its family is now revoked.
    Reused,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stores a new refresh token of `family` (a new login when `None`).
pub async fn issue(
    pool: &AnyPool,
    family: Option<&str>,
    user: UserId,
    company: CompanyId,
    security_stamp: i64,
    ttl_secs: u64,
) -> Result<String, sqlx::Error> {
    let token = secrets::generate(PREFIX);
    let family = family.map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let now = now();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, company_id, \
         security_stamp, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(secrets::digest(&token))
    .bind(family)
    .bind(user.to_string())
    .bind(company.to_string())
    .bind(security_stamp)
    .bind(now)
    .bind(now + ttl_secs as i64)
    .execute(pool)
    .await?;
    // Now and then, not on a timer: whichever process issues tokens cleans up.
    if rand::random::<u8>() == 0 {
        purge_expired(pool).await?;
    }
    Ok(token)
}

/// Spends `token` (once: concurrent uses race on the row, one wins) and
/// returns its session, or why it is refused.
pub async fn spend(pool: &AnyPool, token: &str) -> Result<Result<Session, Refused>, sqlx::Error> {
    let hash = secrets::digest(token);
    let now = now();
    let spent: Option<(String, String, String, i64)> = sqlx::query_as(
        "UPDATE refresh_tokens SET spent_at = $1 \
         WHERE token_hash = $2 AND spent_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
         RETURNING family_id, user_id, company_id, security_stamp",
    )
    .bind(now)
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    if let Some((family, user, company, security_stamp)) = spent {
        let (Ok(user), Ok(company)) = (Uuid::parse_str(&user), Uuid::parse_str(&company)) else {
            return Ok(Err(Refused::Unknown));
        };
        return Ok(Ok(Session {
            family,
            user_id: UserId(user),
            company_id: CompanyId(company),
            security_stamp,
        }));
    }
    let reused: Option<(String,)> = sqlx::query_as(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND spent_at IS NOT NULL",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    match reused {
        Some((family,)) => {
            tracing::warn!(%family, "a spent refresh token was used again; its family is revoked");
            revoke_family(pool, &family).await?;
            Ok(Err(Refused::Reused))
        }
        None => Ok(Err(Refused::Unknown)),
    }
}

/// Ends every token of a family.
pub async fn revoke_family(pool: &AnyPool, family: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now())
    .bind(family)
    .execute(pool)
    .await
    .map(drop)
}

/// Logout: ends the family of `token` if `user` holds it; `false` if not.
pub async fn revoke_for(pool: &AnyPool, token: &str, user: UserId) -> Result<bool, sqlx::Error> {
    let family: Option<(String,)> = sqlx::query_as(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
    )
    .bind(secrets::digest(token))
    .bind(user.to_string())
    .fetch_optional(pool)
    .await?;
    match family {
        Some((family,)) => revoke_family(pool, &family).await.map(|()| true),
        None => Ok(false),
    }
}

/// Forgets tokens that expired more than a day ago (they can no longer be
/// used; keeping a spent one a while longer still catches late reuse).
pub async fn purge_expired(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
        .bind(now() - 86_400)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
}
