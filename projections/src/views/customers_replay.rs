//! The customers view's bulk replay: a run of events is folded into final
//! rows in memory, then written with a few multi-row statements instead of
//! several statements per event. Only for tables nobody else writes (a
//! rebuild's shadow), where the rows the run touches are known exactly.
//!
//! The fold follows [`CustomersView::write`] event by event, behind the same
//! `last_seq` guard, so the rows are the ones the one-by-one path writes.
//! Postgres takes the rows with `COPY` (several times cheaper for it than
//! multi-row `INSERT`s) on a connection of its own, in one transaction per
//! run; SQLite takes multi-row `INSERT`s on the caller's connection.
use commands::db::EventPool;
use commands::events::StoredEvent;
use commands::Db;
use domain::customer::CustomerEvent;
use domain::values::fold_text;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

use super::{set_or_clear, CustomersView, Searchable};
use crate::view::{event_time, typed, ProjectionError, Replayed};

/// Parameters per statement stay well below SQLite's and Postgres's limits.
const ROWS_PER_INSERT: usize = 400;
const WORDS_PER_INSERT: usize = 2_000;
const IDS_PER_STATEMENT: usize = 500;

const COLUMNS: &str = "id, company_id, name, surname, surname_key, email, phone, notes, photo_id, \
     created_by, created_at, updated_by, updated_at, deleted, deleted_at, last_seq";

/// A customer row as the fold builds it.
struct Folded {
    company_id: String,
    name: String,
    surname: String,
    email: Option<String>,
    phone: Option<String>,
    notes: Option<String>,
    photo_id: Option<String>,
    created_by: String,
    created_at: String,
    updated_by: String,
    updated_at: String,
    deleted: i64,
    deleted_at: Option<String>,
    last_seq: i64,
    /// Already in the table before this run (it is replaced, not added).
    existed: bool,
    /// Changed by this run.
    dirty: bool,
    /// Its search words changed.
    words_dirty: bool,
}

impl Folded {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            company_id: row.try_get("company_id")?,
            name: row.try_get("name")?,
            surname: row.try_get("surname")?,
            email: row.try_get("email")?,
            phone: row.try_get("phone")?,
            notes: row.try_get("notes")?,
            photo_id: row.try_get("photo_id")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_by: row.try_get("updated_by")?,
            updated_at: row.try_get("updated_at")?,
            deleted: row.try_get("deleted")?,
            deleted_at: row.try_get("deleted_at")?,
            last_seq: row.try_get("last_seq")?,
            existed: true,
            dirty: false,
            words_dirty: false,
        })
    }

    fn searchable(&self) -> Searchable {
        Searchable {
            name: self.name.clone(),
            surname: self.surname.clone(),
            email: self.email.clone(),
        }
    }
}

/// `($1, $2, ...), (...)`: `rows` groups of `width` numbered placeholders.
fn placeholders(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * width + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

fn id_list(count: usize) -> String {
    (1..=count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folds `events` into rows and writes them: see the module docs.
pub(super) async fn fold_and_write(
    view: &CustomersView,
    db: &Db,
    conn: &mut AnyConnection,
    events: &[StoredEvent],
) -> Result<Replayed, ProjectionError> {
    let ours: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.aggregate_type == "customer")
        .collect();
    let mut rows: HashMap<&str, Folded> = HashMap::with_capacity(ours.len());
    // A customer whose first event here is not its first event has a row already.
    let mut first_seen: HashMap<&str, i64> = HashMap::with_capacity(ours.len());
    for event in &ours {
        first_seen
            .entry(event.aggregate_id.as_str())
            .or_insert(event.sequence);
    }
    let known: Vec<&str> = ours
        .iter()
        .map(|e| e.aggregate_id.as_str())
        .filter(|id| first_seen.get(id).is_some_and(|first| *first > 1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in known.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE id IN ({})",
            view.table,
            id_list(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let id: String = row.try_get("id")?;
            if let Some(key) = chunk.iter().find(|k| **k == id) {
                rows.insert(key, Folded::from_row(&row)?);
            }
        }
    }

    let mut replayed = Replayed::default();
    // First-touch order, so rows are written in the order they arrived.
    let mut order: Vec<&str> = Vec::with_capacity(ours.len());
    for event in ours {
        let id = event.aggregate_id.as_str();
        let last = rows.get(id).map_or(0, |row| row.last_seq);
        if event.sequence != last + 1 {
            continue;
        }
        let (at, change) = match (event_time(event), typed::<CustomerEvent>(event)) {
            (Ok(at), Ok(change)) => (at, change),
            (Err(error), _) | (_, Err(error)) => {
                replayed.unreadable.push((event.clone(), error.to_string()));
                continue;
            }
        };
        let seq = event.sequence;
        if let CustomerEvent::CustomerRegistered {
            company_id,
            name,
            surname,
            email,
            phone,
            notes,
            by,
        } = change
        {
            if rows.contains_key(id) {
                continue;
            }
            let by = by.to_string();
            rows.insert(
                id,
                Folded {
                    company_id: company_id.to_string(),
                    name: name.as_str().to_owned(),
                    surname: surname.as_str().to_owned(),
                    email: email.map(|e| e.as_str().to_owned()),
                    phone: phone.map(|p| p.as_str().to_owned()),
                    notes: notes.map(|n| n.as_str().to_owned()),
                    photo_id: None,
                    created_by: by.clone(),
                    created_at: at.clone(),
                    updated_by: by,
                    updated_at: at,
                    deleted: 0,
                    deleted_at: None,
                    last_seq: seq,
                    existed: false,
                    dirty: true,
                    words_dirty: true,
                },
            );
            order.push(id);
            replayed.applied += 1;
            continue;
        }
        let Some(row) = rows.get_mut(id) else {
            continue;
        };
        let by = match change {
            CustomerEvent::CustomerRegistered { .. } => continue,
            CustomerEvent::CustomerDetailsChanged { change, by } => {
                if let Some(name) = change.name {
                    row.name = name.as_str().to_owned();
                }
                if let Some(surname) = change.surname {
                    row.surname = surname.as_str().to_owned();
                }
                if let Some(email) = set_or_clear(change.email, |e| e.as_str()) {
                    row.email = email;
                }
                if let Some(phone) = set_or_clear(change.phone, |p| p.as_str()) {
                    row.phone = phone;
                }
                if let Some(notes) = set_or_clear(change.notes, |n| n.as_str()) {
                    row.notes = notes;
                }
                row.words_dirty = true;
                by
            }
            CustomerEvent::CustomerPhotoAttached { photo_id, by, .. } => {
                row.photo_id = Some(photo_id.to_string());
                by
            }
            CustomerEvent::CustomerPhotoDetached { by, .. } => {
                row.photo_id = None;
                by
            }
            CustomerEvent::CustomerDeleted { by } => {
                row.deleted = 1;
                row.deleted_at = Some(at.clone());
                by
            }
            CustomerEvent::CustomerRestored { by } => {
                row.deleted = 0;
                row.deleted_at = None;
                by
            }
        };
        row.updated_by = by.to_string();
        row.updated_at = at;
        row.last_seq = seq;
        if !row.dirty {
            row.dirty = true;
            order.push(id);
        }
        replayed.applied += 1;
    }
    match &db.events {
        EventPool::Postgres(pool) => copy(view, pool, &rows, &order).await?,
        EventPool::Sqlite(_) => write(view, conn, &rows, &order).await?,
    }
    Ok(replayed)
}

/// Appends one CSV field: `None` is NULL (nothing), text is quoted.
fn csv_field(out: &mut String, value: Option<&str>) {
    if let Some(text) = value {
        out.push('"');
        for c in text.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }
}

fn csv_row(out: &mut String, fields: &[Option<&str>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, *field);
    }
    out.push('\n');
}

/// [`write`] for Postgres: the replaced rows are deleted and the folded
/// ones copied in, in one transaction on a connection of its own.
async fn copy(
    view: &CustomersView,
    pool: &sqlx::PgPool,
    rows: &HashMap<&str, Folded>,
    order: &[&str],
) -> Result<(), sqlx::Error> {
    if order.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for (table, column, words_only) in [
        (&view.table, "id", false),
        (&view.words, "customer_id", true),
    ] {
        let ids: Vec<&str> = order
            .iter()
            .copied()
            .filter(|id| rows[id].existed && (!words_only || rows[id].words_dirty))
            .collect();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM {table} WHERE {column} IN ({})",
                id_list(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
    }
    let mut data = String::with_capacity(order.len() * 400);
    for id in order {
        let row = &rows[id];
        let surname_key = fold_text(&row.surname);
        let deleted = row.deleted.to_string();
        let last_seq = row.last_seq.to_string();
        csv_row(
            &mut data,
            &[
                Some(id),
                Some(&row.company_id),
                Some(&row.name),
                Some(&row.surname),
                Some(&surname_key),
                row.email.as_deref(),
                row.phone.as_deref(),
                row.notes.as_deref(),
                row.photo_id.as_deref(),
                Some(&row.created_by),
                Some(&row.created_at),
                Some(&row.updated_by),
                Some(&row.updated_at),
                Some(&deleted),
                row.deleted_at.as_deref(),
                Some(&last_seq),
            ],
        );
    }
    let mut sink = tx
        .copy_in_raw(&format!(
            "COPY {} ({COLUMNS}) FROM STDIN (FORMAT csv)",
            view.table
        ))
        .await?;
    sink.send(data.into_bytes()).await?;
    sink.finish().await?;

    let mut data = String::with_capacity(order.len() * 600);
    for id in order {
        let row = &rows[id];
        if row.words_dirty {
            for word in row.searchable().words() {
                csv_row(&mut data, &[Some(&row.company_id), Some(&word), Some(id)]);
            }
        }
    }
    if !data.is_empty() {
        let mut sink = tx
            .copy_in_raw(&format!(
                "COPY {} (company_id, word, customer_id) FROM STDIN (FORMAT csv)",
                view.words
            ))
            .await?;
        sink.send(data.into_bytes()).await?;
        sink.finish().await?;
    }
    tx.commit().await
}

async fn delete_where_in(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            id_list(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Replaces the changed rows (and their words) with their folded state
/// (SQLite: multi-row `INSERT`s inside the caller's transaction).
async fn write(
    view: &CustomersView,
    conn: &mut AnyConnection,
    rows: &HashMap<&str, Folded>,
    order: &[&str],
) -> Result<(), sqlx::Error> {
    let replaced: Vec<&str> = order
        .iter()
        .copied()
        .filter(|id| rows[id].existed)
        .collect();
    delete_where_in(conn, &view.table, "id", &replaced).await?;
    let reworded: Vec<&str> = replaced
        .iter()
        .copied()
        .filter(|id| rows[id].words_dirty)
        .collect();
    delete_where_in(conn, &view.words, "customer_id", &reworded).await?;

    for chunk in order.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO {} ({COLUMNS}) VALUES {}",
            view.table,
            placeholders(chunk.len(), 16)
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            let row = &rows[id];
            query = query
                .bind(*id)
                .bind(row.company_id.as_str())
                .bind(row.name.as_str())
                .bind(row.surname.as_str())
                .bind(fold_text(&row.surname))
                .bind(row.email.as_deref())
                .bind(row.phone.as_deref())
                .bind(row.notes.as_deref())
                .bind(row.photo_id.as_deref())
                .bind(row.created_by.as_str())
                .bind(row.created_at.as_str())
                .bind(row.updated_by.as_str())
                .bind(row.updated_at.as_str())
                .bind(row.deleted)
                .bind(row.deleted_at.as_deref())
                .bind(row.last_seq);
        }
        query.execute(&mut *conn).await?;
    }

    let mut words: Vec<(&str, String, &str)> = vec![];
    for id in order {
        let row = &rows[id];
        if row.words_dirty {
            for word in row.searchable().words() {
                words.push((row.company_id.as_str(), word, id));
            }
        }
    }
    for chunk in words.chunks(WORDS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO {} (company_id, word, customer_id) VALUES {} ON CONFLICT DO NOTHING",
            view.words,
            placeholders(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (company, word, customer) in chunk {
            query = query.bind(*company).bind(word.as_str()).bind(*customer);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value_once() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(id_list(3), "$1, $2, $3");
    }
}
