//! `customers` (one row per customer, deleted ones flagged) and
//! `customer_words` (the folded words search matches by prefix).
use async_trait::async_trait;
use commands::events::StoredEvent;
use domain::customer::{CustomerEvent, DetailsChange};
use domain::values::{fold_text, search_words, FieldChange};
use sqlx::{AnyConnection, Row};

use crate::view::{event_time, typed, Projection, ProjectionError, Replayed};

#[path = "customers_replay.rs"]
mod replay;

pub struct CustomersView {
    table: String,
    words: String,
}

impl CustomersView {
    pub fn new(suffix: &str) -> Self {
        Self {
            table: format!("customers{suffix}"),
            words: format!("customer_words{suffix}"),
        }
    }
}

/// The searchable text of a customer, as stored in its row.
struct Searchable {
    name: String,
    surname: String,
    email: Option<String>,
}

impl Searchable {
    fn words(&self) -> Vec<String> {
        let mut words = search_words(&self.name);
        words.extend(search_words(&self.surname));
        if let Some(email) = &self.email {
            words.extend(search_words(email));
            // The whole address too, so "ada.l@exa" finds it.
            words.push(fold_text(email));
        }
        words.sort();
        words.dedup();
        words
    }
}

fn set_or_clear<T>(
    change: Option<FieldChange<T>>,
    show: impl Fn(&T) -> &str,
) -> Option<Option<String>> {
    change.map(|c| c.into_option().map(|v| show(&v).to_owned()))
}

#[async_trait]
impl Projection for CustomersView {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn aggregate_type(&self) -> &'static str {
        "customer"
    }

    fn table(&self) -> &str {
        &self.table
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone(), self.words.clone()]
    }

    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection> {
        Box::new(Self::new(suffix))
    }

    fn loads_in_bulk(&self) -> bool {
        true
    }

    async fn replay(
        &self,
        db: &commands::Db,
        conn: &mut AnyConnection,
        events: &[StoredEvent],
    ) -> Result<Replayed, ProjectionError> {
        replay::fold_and_write(self, db, conn, events).await
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
        let guarded = |set: &str| {
            format!("UPDATE {table} SET {set}, updated_by = $1, updated_at = $2, last_seq = $3 WHERE id = $4 AND last_seq = $5")
        };
        let changed = match typed::<CustomerEvent>(event)? {
            CustomerEvent::CustomerRegistered {
                company_id,
                name,
                surname,
                email,
                phone,
                notes,
                by,
            } => {
                let sql = format!(
                    "INSERT INTO {table} (id, company_id, name, surname, surname_key, email, phone, notes, \
                     created_by, created_at, updated_by, updated_at, deleted, last_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $10, 0, $11) ON CONFLICT (id) DO NOTHING"
                );
                let changed = sqlx::query(&sql)
                    .bind(id)
                    .bind(company_id.to_string())
                    .bind(name.as_str())
                    .bind(surname.as_str())
                    .bind(fold_text(surname.as_str()))
                    .bind(email.as_ref().map(|e| e.as_str().to_owned()))
                    .bind(phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(notes.as_ref().map(|n| n.as_str().to_owned()))
                    .bind(by.to_string())
                    .bind(&at)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                // Only a row this write created gets words (a duplicate
                // changes nothing); a new row has none to delete first.
                if changed == 1 {
                    let searchable = Searchable {
                        name: name.as_str().to_owned(),
                        surname: surname.as_str().to_owned(),
                        email: email.map(|e| e.as_str().to_owned()),
                    };
                    self.insert_words(conn, id, &company_id.to_string(), &searchable)
                        .await?;
                }
                changed
            }
            CustomerEvent::CustomerDetailsChanged { change, by } => {
                return self
                    .change_details(conn, event, change, by.to_string(), at)
                    .await;
            }
            CustomerEvent::CustomerPhotoAttached { photo_id, by, .. } => {
                sqlx::query(&guarded("photo_id = $6"))
                    .bind_guard(by, &at, seq, id)
                    .bind(photo_id.to_string())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            CustomerEvent::CustomerPhotoDetached { by, .. } => {
                sqlx::query(&guarded("photo_id = NULL"))
                    .bind_guard(by, &at, seq, id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            CustomerEvent::CustomerDeleted { by } => {
                sqlx::query(&guarded("deleted = 1, deleted_at = $2"))
                    .bind_guard(by, &at, seq, id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            CustomerEvent::CustomerRestored { by } => {
                sqlx::query(&guarded("deleted = 0, deleted_at = NULL"))
                    .bind_guard(by, &at, seq, id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        Ok(changed)
    }
}

impl CustomersView {
    async fn change_details(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
        change: DetailsChange,
        by: String,
        at: String,
    ) -> Result<u64, ProjectionError> {
        let table = &self.table;
        let id = event.aggregate_id.as_str();
        let row = sqlx::query(&format!(
            "SELECT company_id, name, surname, email, phone, notes FROM {table} WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(0) };
        let company_id: String = row.try_get("company_id")?;
        let name = change
            .name
            .map(|n| n.as_str().to_owned())
            .unwrap_or(row.try_get("name")?);
        let surname = change
            .surname
            .map(|n| n.as_str().to_owned())
            .unwrap_or(row.try_get("surname")?);
        let email = set_or_clear(change.email, |e| e.as_str()).unwrap_or(row.try_get("email")?);
        let phone = set_or_clear(change.phone, |p| p.as_str()).unwrap_or(row.try_get("phone")?);
        let notes = set_or_clear(change.notes, |n| n.as_str()).unwrap_or(row.try_get("notes")?);
        let changed = sqlx::query(&format!(
            "UPDATE {table} SET name = $1, surname = $2, surname_key = $3, email = $4, phone = $5, notes = $6, \
             updated_by = $7, updated_at = $8, last_seq = $9 WHERE id = $10 AND last_seq = $11"
        ))
        .bind(&name)
        .bind(&surname)
        .bind(fold_text(&surname))
        .bind(&email)
        .bind(&phone)
        .bind(&notes)
        .bind(by)
        .bind(at)
        .bind(event.sequence)
        .bind(id)
        .bind(event.sequence - 1)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 1 {
            let searchable = Searchable {
                name,
                surname,
                email,
            };
            self.replace_words(conn, id, &company_id, &searchable)
                .await?;
        }
        Ok(changed)
    }

    async fn replace_words(
        &self,
        conn: &mut AnyConnection,
        customer_id: &str,
        company_id: &str,
        searchable: &Searchable,
    ) -> Result<(), sqlx::Error> {
        let words = &self.words;
        sqlx::query(&format!("DELETE FROM {words} WHERE customer_id = $1"))
            .bind(customer_id)
            .execute(&mut *conn)
            .await?;
        self.insert_words(conn, customer_id, company_id, searchable)
            .await
    }

    async fn insert_words(
        &self,
        conn: &mut AnyConnection,
        customer_id: &str,
        company_id: &str,
        searchable: &Searchable,
    ) -> Result<(), sqlx::Error> {
        let words = &self.words;
        let words_of = searchable.words();
        if words_of.is_empty() {
            return Ok(());
        }
        // One statement for all the words: ($1, $2, $3), ($1, $4, $3), ...
        let values = (0..words_of.len())
            .map(|i| format!("($1, ${}, $2)", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {words} (company_id, word, customer_id) VALUES {values} ON CONFLICT DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(company_id).bind(customer_id);
        for word in words_of {
            query = query.bind(word);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }
}

/// Binds the parameters every guarded customer update shares:
/// `$1` updated_by, `$2` updated_at, `$3` the new `last_seq`, `$4` the id,
/// `$5` the `last_seq` the row must have now.
trait BindGuard<'q> {
    fn bind_guard(self, by: domain::UserId, at: &'q str, seq: i64, id: &'q str) -> Self;
}

impl<'q> BindGuard<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn bind_guard(self, by: domain::UserId, at: &'q str, seq: i64, id: &'q str) -> Self {
        self.bind(by.to_string())
            .bind(at)
            .bind(seq)
            .bind(id)
            .bind(seq - 1)
    }
}
