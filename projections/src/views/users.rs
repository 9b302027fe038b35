//! `users`: profiles for the API and what login needs (email key, password
//! hash, security stamp). A user created a moment ago can log in once this
//! row exists; the API waits for it before answering a user-creating write.
use async_trait::async_trait;
use commands::events::StoredEvent;
use domain::user::UserEvent;
use domain::values::FieldChange;
use sqlx::AnyConnection;

use crate::view::{event_time, typed, Projection, ProjectionError};

pub struct UsersView {
    table: String,
}

impl UsersView {
    pub fn new(suffix: &str) -> Self {
        Self {
            table: format!("users{suffix}"),
        }
    }
}

fn optional<T>(change: FieldChange<T>, show: impl Fn(&T) -> &str) -> Option<String> {
    change.into_option().map(|v| show(&v).to_owned())
}

#[async_trait]
impl Projection for UsersView {
    fn name(&self) -> &'static str {
        "users"
    }

    fn aggregate_type(&self) -> &'static str {
        "user"
    }

    fn table(&self) -> &str {
        &self.table
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection> {
        Box::new(Self::new(suffix))
    }

    async fn write(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<u64, ProjectionError> {
        let at = event_time(event)?;
        let id = event.aggregate_id.as_str();
        let seq = event.sequence;
        let table = &self.table;
        // $1 = updated_at, $2 = last_seq, $3 = id, $4 = expected last_seq, $5.. = the change
        let guarded = |set: &str| {
            format!("UPDATE {table} SET {set}, updated_at = $1, last_seq = $2 WHERE id = $3 AND last_seq = $4")
        };
        let changed = match typed::<UserEvent>(event)? {
            UserEvent::UserRegistered {
                company_id,
                email,
                name,
                surname,
                title,
                role,
                password_hash,
            } => {
                let sql = format!(
                    "INSERT INTO {table} (id, company_id, email, email_key, name, surname, title, role, \
                     password_hash, security_stamp, removed, created_at, updated_at, last_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0, $10, $10, $11) ON CONFLICT (id) DO NOTHING"
                );
                sqlx::query(&sql)
                    .bind(id)
                    .bind(company_id.to_string())
                    .bind(email.as_str())
                    .bind(email.normalized())
                    .bind(name.as_str())
                    .bind(surname.map(|s| s.as_str().to_owned()))
                    .bind(title.map(|t| t.as_str().to_owned()))
                    .bind(role.as_str())
                    .bind(password_hash.as_str())
                    .bind(&at)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            UserEvent::UserProfileChanged {
                name,
                surname,
                title,
            } => {
                let mut sets = vec![];
                let mut values: Vec<Option<String>> = vec![];
                if let Some(name) = name {
                    values.push(Some(name.as_str().to_owned()));
                    sets.push(format!("name = ${}", 4 + values.len()));
                }
                if let Some(surname) = surname {
                    values.push(optional(surname, |s| s.as_str()));
                    sets.push(format!("surname = ${}", 4 + values.len()));
                }
                if let Some(title) = title {
                    values.push(optional(title, |t| t.as_str()));
                    sets.push(format!("title = ${}", 4 + values.len()));
                }
                sets.push("security_stamp = security_stamp".to_owned());
                let sql = guarded(&sets.join(", "));
                let mut query = sqlx::query(&sql).bind(&at).bind(seq).bind(id).bind(seq - 1);
                for value in values {
                    query = query.bind(value);
                }
                query.execute(&mut *conn).await?.rows_affected()
            }
            UserEvent::UserEmailChanged { email } => {
                sqlx::query(&guarded("email = $5, email_key = $6"))
                    .bind(&at)
                    .bind(seq)
                    .bind(id)
                    .bind(seq - 1)
                    .bind(email.as_str())
                    .bind(email.normalized())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            UserEvent::UserPasswordChanged { password_hash } => sqlx::query(&guarded(
                "password_hash = $5, security_stamp = security_stamp + 1",
            ))
            .bind(&at)
            .bind(seq)
            .bind(id)
            .bind(seq - 1)
            .bind(password_hash.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            UserEvent::UserRoleChanged { role } => {
                sqlx::query(&guarded("role = $5, security_stamp = security_stamp + 1"))
                    .bind(&at)
                    .bind(seq)
                    .bind(id)
                    .bind(seq - 1)
                    .bind(role.as_str())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            UserEvent::UserRemoved => {
                sqlx::query(&guarded("removed = 1, security_stamp = security_stamp + 1"))
                    .bind(&at)
                    .bind(seq)
                    .bind(id)
                    .bind(seq - 1)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        Ok(changed)
    }
}
