//! Users of the caller's company, and the lookups authentication needs.
use domain::{CompanyId, UserId};
use sqlx::{AnyPool, FromRow};

use super::Keyset;

#[derive(Clone, Debug, FromRow)]
pub struct UserRow {
    pub id: String,
    pub company_id: String,
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
        id: row.id.clone(),
    }))
}

/// Cuts a `limit + 1` fetch to `limit` rows and the keyset of the last one.
pub(crate) fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    keyset: impl Fn(&T) -> Keyset,
) -> (Vec<T>, Option<Keyset>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next = if more { rows.last().map(keyset) } else { None };
    (rows, next)
}

/// What authentication needs to know about a user.
#[derive(Clone, Debug, FromRow)]
pub struct Credentials {
    pub id: String,
    pub company_id: String,
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

/// The user as its own events say, with its security stamp: the row the
/// users view will hold once it has caught up (see
/// [`super::customers::from_events`]). `None` when the events register no
/// user, or it was removed.
pub fn from_events(
    events: &[commands::events::StoredEvent],
) -> Result<Option<(UserRow, i64)>, crate::view::ProjectionError> {
    use crate::view::{event_time, typed};
    use domain::user::UserEvent as E;
    let mut user: Option<(UserRow, i64)> = None;
    let mut removed = false;
    for event in events {
        let at = event_time(event)?;
        let current = match (typed::<E>(event)?, user.as_mut()) {
            (
                E::UserRegistered {
                    company_id,
                    email,
                    name,
                    surname,
                    title,
                    role,
                    ..
                },
                _,
            ) => {
                user = Some((
                    UserRow {
                        id: event.aggregate_id.clone(),
                        company_id: company_id.to_string(),
                        email: email.as_str().to_owned(),
                        name: name.as_str().to_owned(),
                        surname: surname.map(|s| s.as_str().to_owned()),
                        title: title.map(|t| t.as_str().to_owned()),
                        role: role.as_str().to_owned(),
                        created_at: at.clone(),
                        updated_at: at,
                        last_seq: event.sequence,
                    },
                    0,
                ));
                continue;
            }
            (_, None) => continue,
            (other, Some((row, stamp))) => {
                match other {
                    E::UserRegistered { .. } => {}
                    E::UserProfileChanged {
                        name,
                        surname,
                        title,
                    } => {
                        if let Some(name) = name {
                            row.name = name.as_str().to_owned();
                        }
                        if let Some(surname) = surname {
                            row.surname = surname.into_option().map(|s| s.as_str().to_owned());
                        }
                        if let Some(title) = title {
                            row.title = title.into_option().map(|t| t.as_str().to_owned());
                        }
                    }
                    E::UserEmailChanged { email } => row.email = email.as_str().to_owned(),
                    E::UserPasswordChanged { .. } => *stamp += 1,
                    E::UserRoleChanged { role } => {
                        row.role = role.as_str().to_owned();
                        *stamp += 1;
                    }
                    E::UserRemoved => {
                        removed = true;
                        *stamp += 1;
                    }
                }
                row
            }
        };
        current.updated_at = at;
        current.last_seq = event.sequence;
    }
    Ok(user.filter(|_| !removed))
}
