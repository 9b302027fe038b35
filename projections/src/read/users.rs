//! Users of the caller's company, and the lookups authentication needs.
use domain::{CompanyId, UserId};
use sqlx::{AnyPool, FromRow};

use super::Keyset;

#[derive(Clone, Debug, FromRow)]
pub struct UserRow {
    #[sqlx(try_from = "String")]
    pub id: UserId,
    #[sqlx(try_from = "String")]
    pub company_id: CompanyId,
    pub email: String,
    pub name: String,
    pub surname: Option<String>,
    pub title: Option<String>,
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_seq: i64,
}

const COLUMNS: &str =
    "id, company_id, email, name, surname, title, role, created_at, updated_at, last_seq";

pub async fn get(
    pool: &AnyPool,
    company: CompanyId,
    id: UserId,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE company_id = $1 AND id = $2 AND removed = 0"
    ))
    .bind(company.to_string())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
}

/// A page of the company's users, oldest first.
pub async fn list(
    pool: &AnyPool,
    company: CompanyId,
    after: Option<&Keyset>,
    limit: i64,
) -> Result<(Vec<UserRow>, Option<Keyset>), sqlx::Error> {
    let (key, id) = after
        .map(|k| (k.key.clone(), k.id.clone()))
        .unwrap_or_default();
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE company_id = $1 AND removed = 0 \
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
        id: row.id.to_string(),
    }))
}

/// Cuts a `limit + 1` fetch to `limit` rows and the keyset of the last one.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    keyset: impl Fn(&T) -> Keyset,
) -> (Vec<T>, Option<Keyset>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next = if more { rows.last().map(keyset) } else { None };
    (rows, next)
}

/// The user of `company` as its stored events leave it (not removed), for
/// when the view may lag behind a write. `Err` when the log cannot be read.
pub async fn from_log(
    db: &commands::Db,
    company: CompanyId,
    id: UserId,
) -> Result<Option<crate::views::users::User>, crate::view::ProjectionError> {
    let events = commands::events::read_stream(db, "user", &id.to_string()).await?;
    Ok(
        crate::views::fold_events::<crate::views::users::Users>(&events)?
            .filter(|row| row.company_id == company.to_string() && !row.removed),
    )
}

/// What authentication needs to know about a user.
#[derive(Clone, Debug, FromRow)]
pub struct Credentials {
    #[sqlx(try_from = "String")]
    pub id: UserId,
    #[sqlx(try_from = "String")]
    pub company_id: CompanyId,
    pub role: String,
    pub password_hash: String,
    pub security_stamp: i64,
}

/// The active user with this normalized email, across all companies (emails
/// are unique service-wide).
pub async fn credentials_by_email(
    pool: &AnyPool,
    email_key: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    // No stored email has a NUL (emails are validated), and Postgres refuses
    // NUL in text parameters: such a login is simply unknown.
    if email_key.contains('\0') {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT id, company_id, role, password_hash, security_stamp FROM users \
         WHERE email_key = $1 AND removed = 0",
    )
    .bind(email_key)
    .fetch_optional(pool)
    .await
}

/// The active user behind a token, to check the token is still good.
pub async fn credentials_by_id(
    pool: &AnyPool,
    company: CompanyId,
    id: UserId,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, company_id, role, password_hash, security_stamp FROM users \
         WHERE id = $1 AND company_id = $2 AND removed = 0",
    )
    .bind(id.to_string())
    .bind(company.to_string())
    .fetch_optional(pool)
    .await
}

impl TryFrom<crate::views::users::User> for UserRow {
    type Error = uuid::Error;

    fn try_from(row: crate::views::users::User) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id.parse()?,
            company_id: row.company_id.parse()?,
            email: row.email,
            name: row.name,
            surname: row.surname,
            title: row.title,
            role: row.role,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_seq: row.last_seq,
        })
    }
}
