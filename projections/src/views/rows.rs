//! Set-based reads and writes of view rows, the same for every [`Fold`]:
//! a run's rows are loaded with one query, folded in memory, and written with
//! one multi-row upsert per table that only ever moves a row forward
//! (`WHERE last_seq < excluded.last_seq`). A row at a given `last_seq` is the
//! same whoever folded it, so duplicates, redeliveries and several workers
//! racing on one view change nothing twice and never move a row back.
//!
//! The SQL is the same text on Postgres and SQLite; rebuilds bulk-load a
//! fresh shadow table with `COPY` on Postgres ([`load_new`]).
use commands::db::{numbered, placeholders, EventPool};
use commands::events::StoredEvent;
use commands::{Db, Dialect};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

use super::fold::{fold_run, Touched};
use super::Fold;
use crate::view::{Applied, ProjectionError};

/// Bound parameters per statement, under SQLite's limit (32,766) and Postgres's (65,535).
const MAX_PARAMETERS: usize = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

pub const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}

pub const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
    }
}

/// One value of a row, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

/// A loaded row's cells, read back in column order by [`Fold::from_cells`].
pub struct Cells(std::vec::IntoIter<Cell>);

impl Cells {
    #[cfg(test)]
    pub(crate) fn for_tests(cells: Vec<Cell>) -> Self {
        Self(cells.into_iter())
    }

    fn next(&mut self) -> Cell {
        self.0.next().unwrap_or(Cell::Text(None))
    }

    fn missing(what: &str) -> sqlx::Error {
        sqlx::Error::Decode(format!("a view row has no {what} where one is required").into())
    }

    pub fn text(&mut self) -> Result<String, sqlx::Error> {
        self.opt_text()?.ok_or_else(|| Self::missing("text"))
    }

    pub fn opt_text(&mut self) -> Result<Option<String>, sqlx::Error> {
        match self.next() {
            Cell::Text(value) => Ok(value),
            Cell::Int(_) => Err(Self::missing("text")),
        }
    }

    pub fn int(&mut self) -> Result<i64, sqlx::Error> {
        self.opt_int()?.ok_or_else(|| Self::missing("integer"))
    }

    pub fn opt_int(&mut self) -> Result<Option<i64>, sqlx::Error> {
        match self.next() {
            Cell::Int(value) => Ok(value),
            Cell::Text(_) => Err(Self::missing("integer")),
        }
    }
}

fn column_list(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_cell(query: Query<'_>, cell: Cell) -> Query<'_> {
    match cell {
        Cell::Text(value) => query.bind(value),
        Cell::Int(value) => query.bind(value),
    }
}

/// The rows of `ids` in `table`, by id. Not locked: reading takes no
/// transaction id, so a view's transaction holds one only from its first
/// write to its commit, and the relay's horizon (the oldest transaction
/// still running) waits on it that much less. Concurrent writers of a row
/// stay correct without the lock: a fold of the same events gives the same
/// row, the upsert's `last_seq` guard lets only the furthest one in, and its
/// row lock orders the search-word rewrites.
async fn load<F: Fold>(
    conn: &mut AnyConnection,
    table: &str,
    ids: &[&str],
    lock: bool,
) -> Result<HashMap<String, F::Row>, sqlx::Error> {
    let mut rows = HashMap::with_capacity(ids.len());
    // Locked in id order, so that two writers never wait on each other in a cycle.
    let lock = if lock { " ORDER BY id FOR UPDATE" } else { "" };
    for chunk in ids.chunks(MAX_PARAMETERS / 4) {
        let sql = format!(
            "SELECT {} FROM {table} WHERE id IN ({}){lock}",
            column_list(F::COLUMNS),
            numbered(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let (id, row) = decode::<F>(&row)?;
            rows.insert(id, row);
        }
    }
    Ok(rows)
}

fn decode<F: Fold>(row: &sqlx::any::AnyRow) -> Result<(String, F::Row), sqlx::Error> {
    let mut cells = Vec::with_capacity(F::COLUMNS.len());
    for (i, column) in F::COLUMNS.iter().enumerate() {
        cells.push(match column.kind {
            Kind::Text => Cell::Text(row.try_get(i)?),
            Kind::Int => Cell::Int(row.try_get(i)?),
        });
    }
    Ok((row.try_get(0)?, F::from_cells(Cells(cells.into_iter()))?))
}

/// Every row of the view's live table, by id (for checks: compare with a fold).
pub async fn load_all<F: Fold>(db: &Db) -> Result<BTreeMap<String, F::Row>, sqlx::Error> {
    let sql = format!("SELECT {} FROM {}", column_list(F::COLUMNS), F::TABLE);
    sqlx::query(&sql)
        .fetch_all(&db.any)
        .await?
        .iter()
        .map(decode::<F>)
        .collect()
}

/// Writes `rows` with multi-row upserts that only move a row forward;
/// returns the ids actually written (a row already at or past the folded
/// `last_seq`, written meanwhile by another worker, is left alone), each
/// with whether this statement inserted it (SQLite answers yes: with its
/// single writer that only matters for rows missing at load time, which it
/// did insert).
async fn upsert<F: Fold>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    rows: &[&F::Row],
) -> Result<HashMap<String, bool>, sqlx::Error> {
    let width = F::COLUMNS.len();
    let updates = F::COLUMNS[1..]
        .iter()
        .map(|c| format!("{0} = excluded.{0}", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    // A row version that replaced none (xmax 0) was inserted here.
    let inserted = match dialect {
        Dialect::Postgres => "(xmax = 0)::int4::int8",
        Dialect::Sqlite => "1",
    };
    let mut written = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_PARAMETERS / width) {
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET {updates} \
             WHERE {table}.last_seq < excluded.last_seq RETURNING id, {inserted}",
            column_list(F::COLUMNS),
            placeholders(1, chunk.len(), width)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for cell in F::cells(row) {
                query = bind_cell(query, cell);
            }
        }
        for row in query.fetch_all(&mut *conn).await? {
            written.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)? == 1);
        }
    }
    Ok(written)
}

/// Deletes the given `(company_id, word, customer_id)` keys, along the key:
/// the words table has no index by customer, so a stale word is found by the
/// words its row had.
async fn delete_word_keys(
    conn: &mut AnyConnection,
    words: &str,
    keys: &[[String; 3]],
) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(MAX_PARAMETERS / 3) {
        let sql = format!(
            "DELETE FROM {words} WHERE (company_id, word, customer_id) IN ({})",
            placeholders(1, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for [company, word, owner] in chunk {
            query = query
                .bind(company.as_str())
                .bind(word.as_str())
                .bind(owner.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes every word of rows whose stored words this writer never saw (a
/// row another worker inserted after the load). Along the company's part of
/// the key: rare, and bounded by the company's words.
async fn delete_unseen_words(
    conn: &mut AnyConnection,
    words: &str,
    rows: &[[String; 2]],
) -> Result<(), sqlx::Error> {
    for [company, owner] in rows {
        sqlx::query(&format!(
            "DELETE FROM {words} WHERE company_id = $1 AND customer_id = $2"
        ))
        .bind(company.as_str())
        .bind(owner.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How a run changes the words table.
#[derive(Debug, Default, PartialEq)]
struct WordChanges {
    gone: Vec<[String; 3]>,
    new: Vec<[String; 3]>,
    unseen: Vec<[String; 2]>,
}

/// The words to delete and insert for the rows a run wrote (`written`: by
/// id, whether the upsert inserted the row): for a loaded row, only the
/// words that differ between before and after; for a row that was missing
/// at load time but that the upsert found (another worker inserted it since),
/// all of its stored words go and all of its new ones come.
fn word_changes<F: Fold>(
    touched: &BTreeMap<String, Touched<F::Row>>,
    written: &HashMap<String, bool>,
) -> WordChanges {
    let mut changes = WordChanges::default();
    for (id, row) in touched {
        let Some(&inserted) = written.get(id) else {
            continue;
        };
        let before = row.before.as_ref().and_then(F::words);
        let after = F::words(&row.after);
        if before == after && row.before.is_some() {
            continue;
        }
        let old: HashSet<&String> = before.iter().flat_map(|(_, w)| w).collect();
        let kept: HashSet<&String> = after.iter().flat_map(|(_, w)| w).collect();
        if let Some((company, words)) = &before {
            for word in words.iter().filter(|w| !kept.contains(w)) {
                changes
                    .gone
                    .push([company.clone(), word.clone(), id.clone()]);
            }
        }
        let unseen = row.before.is_none() && !inserted;
        if let Some((company, words)) = &after {
            if unseen {
                changes.unseen.push([company.clone(), id.clone()]);
            }
            for word in words.iter().filter(|w| unseen || !old.contains(w)) {
                changes
                    .new
                    .push([company.clone(), word.clone(), id.clone()]);
            }
        }
    }
    changes
}

/// One `(company_id, word, customer_id)` row per word of each row in `owners`.
/// Calls `each(company, word, id)` for every search word of the rows `owners`
/// as they are after the run.
fn each_word<'r, F: Fold>(
    touched: &'r BTreeMap<String, Touched<F::Row>>,
    owners: impl IntoIterator<Item = &'r str>,
    mut each: impl FnMut(&str, &str, &str),
) {
    for id in owners {
        if let Some((company, words)) = F::words(&touched[id].after) {
            for word in words {
                each(&company, &word, id);
            }
        }
    }
}

async fn insert_words(
    conn: &mut AnyConnection,
    words: &str,
    rows: Vec<[String; 3]>,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(MAX_PARAMETERS / 3) {
        let sql = format!(
            "INSERT INTO {words} (company_id, word, customer_id) VALUES {} ON CONFLICT DO NOTHING",
            placeholders(1, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for [company, word, owner] in chunk {
            query = query
                .bind(company.as_str())
                .bind(word.as_str())
                .bind(owner.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The distinct ids of the fold's events in `events`.
fn ids_of<F: Fold>(events: &[StoredEvent]) -> Vec<&str> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|e| e.aggregate_type == F::AGGREGATE)
        .map(|e| e.aggregate_id.as_str())
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Applies a run of events to the view inside the caller's transaction: one
/// load, the fold, one upsert per table. Returns one verdict per event; an
/// event the view cannot read is [`Applied::Unreadable`] and changes nothing.
pub async fn apply_run<F: Fold>(
    conn: &mut AnyConnection,
    db: &Db,
    table: &str,
    words: Option<&str>,
    events: &[StoredEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    let ids = ids_of::<F>(events);
    if ids.is_empty() {
        return Ok(vec![Applied::Ignored; events.len()]);
    }
    // A row with words is locked from its load to the commit on Postgres
    // (SQLite has one writer): the words deleted are those of the row as
    // loaded, so no other writer may move it meanwhile. Locking no rows
    // (a run of new customers) costs nothing.
    let lock = words.is_some() && db.dialect() == Dialect::Postgres;
    let loaded = load::<F>(conn, table, &ids, lock).await?;
    let run = fold_run::<F>(loaded, events);
    if run.touched.is_empty() {
        return Ok(run.verdicts);
    }
    // In id order (a BTreeMap's): concurrent writers lock rows in one order.
    let rows: Vec<&F::Row> = run.touched.values().map(|t| &t.after).collect();
    let written = upsert::<F>(conn, db.dialect(), table, &rows).await?;
    if let Some(words) = words {
        let changes = word_changes::<F>(&run.touched, &written);
        delete_word_keys(conn, words, &changes.gone).await?;
        delete_unseen_words(conn, words, &changes.unseen).await?;
        insert_words(conn, words, changes.new).await?;
    }
    // An event whose row another writer moved past it meanwhile: a duplicate.
    Ok(events
        .iter()
        .zip(run.verdicts)
        .map(|(event, verdict)| match verdict {
            Applied::Applied if !written.contains_key(&event.aggregate_id) => Applied::Duplicate,
            other => other,
        })
        .collect())
}

/// [`apply_run`] for a rebuild's bulk phase: the tables are nobody else's
/// and have no indexes yet, and the run holds whole aggregates (but for one
/// longer than a page). On Postgres the folded rows are `COPY`ed in on a
/// connection of the event pool, in a transaction of their own; on SQLite
/// this is [`apply_run`].
pub async fn load_new<F: Fold>(
    conn: &mut AnyConnection,
    db: &Db,
    table: &str,
    words: Option<&str>,
    events: &[StoredEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    let EventPool::Postgres(pool) = &db.events else {
        return apply_run::<F>(conn, db, table, words, events).await;
    };
    // Only an aggregate whose first event here is not its first has a row already.
    let mut first: HashMap<&str, i64> = HashMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == F::AGGREGATE) {
        first.entry(&event.aggregate_id).or_insert(event.sequence);
    }
    let known: Vec<&str> = first
        .iter()
        .filter(|(_, seq)| **seq > 1)
        .map(|(id, _)| *id)
        .collect();
    let loaded = load::<F>(conn, table, &known, false).await?;
    let run = fold_run::<F>(loaded, events);
    if run.touched.is_empty() {
        return Ok(run.verdicts);
    }
    let mut tx = pool.begin().await?;
    // Rows of an aggregate longer than a page: replaced, with their words.
    let replaced: Vec<String> = run
        .touched
        .iter()
        .filter(|(_, t)| t.before.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    if !replaced.is_empty() {
        for (target, column) in
            std::iter::once((table, "id")).chain(words.map(|w| (w, "customer_id")))
        {
            sqlx::query(&format!("DELETE FROM {target} WHERE {column} = ANY($1)"))
                .bind(&replaced)
                .execute(&mut *tx)
                .await?;
        }
    }
    let mut data = String::with_capacity(run.touched.len() * 300);
    for touched in run.touched.values() {
        csv_row(&mut data, F::cells(&touched.after));
    }
    copy_in(&mut tx, table, &column_list(F::COLUMNS), data).await?;
    if let Some(words) = words {
        let mut data = String::with_capacity(run.touched.len() * 600);
        // Straight from the folded words: millions of rows in a rebuild.
        let owners = run.touched.keys().map(String::as_str);
        each_word::<F>(&run.touched, owners, |company, word, id| {
            for (i, text) in [company, word, id].into_iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                csv_text(&mut data, text);
            }
            data.push('\n');
        });
        copy_in(&mut tx, words, "company_id, word, customer_id", data).await?;
    }
    tx.commit().await?;
    Ok(run.verdicts)
}

async fn copy_in(
    tx: &mut sqlx::PgConnection,
    table: &str,
    columns: &str,
    data: String,
) -> Result<(), sqlx::Error> {
    if data.is_empty() {
        return Ok(());
    }
    let mut sink = tx
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN (FORMAT csv)"))
        .await?;
    sink.send(data.into_bytes()).await?;
    sink.finish().await?;
    Ok(())
}

/// Appends one quoted CSV field.
fn csv_text(out: &mut String, text: &str) {
    out.push('"');
    // Whole pieces between quotes, each quote doubled.
    let mut pieces = text.split('"');
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        out.push_str("\"\"");
        out.push_str(piece);
    }
    out.push('"');
}

/// Appends one CSV line: NULL is an empty unquoted field, text is quoted.
fn csv_row(out: &mut String, cells: Vec<Cell>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Text(Some(text)) => csv_text(out, &text),
            Cell::Int(Some(n)) => {
                use std::fmt::Write;
                let _ = write!(out, "{n}");
            }
            Cell::Text(None) | Cell::Int(None) => {}
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_text_and_leaves_null_empty() {
        let mut out = String::new();
        csv_row(
            &mut out,
            vec![
                Cell::from("a \"b\""),
                Cell::Text(None),
                Cell::from(7),
                Cell::Int(None),
            ],
        );
        assert_eq!(out, "\"a \"\"b\"\"\",,7,\n");
    }

    use crate::views::customers::{Customer, Customers};

    fn customer(surname: &str, email: Option<&str>, last_seq: i64) -> Customer {
        Customer {
            id: "c1".into(),
            company_id: "k".into(),
            name: "Ada".into(),
            surname: surname.into(),
            email: email.map(Into::into),
            phone: None,
            notes: None,
            external_id: None,
            photo_id: None,
            created_by: "u".into(),
            created_at: "t".into(),
            updated_by: "u".into(),
            updated_at: "t".into(),
            deleted_at: None,
            last_seq,
        }
    }

    fn changes(before: Option<Customer>, after: Customer, inserted: Option<bool>) -> WordChanges {
        let touched = BTreeMap::from([("c1".to_owned(), Touched { before, after })]);
        let written = inserted
            .map(|i| HashMap::from([("c1".to_owned(), i)]))
            .unwrap_or_default();
        word_changes::<Customers>(&touched, &written)
    }

    fn keys(words: &[&str]) -> Vec<[String; 3]> {
        words
            .iter()
            .map(|w| ["k".to_owned(), (*w).to_owned(), "c1".to_owned()])
            .collect()
    }

    #[test]
    fn a_changed_row_deletes_only_the_words_it_lost_and_inserts_only_new_ones() {
        let before = customer("Lovelace", Some("ada@example.com"), 1);
        let after = customer("Byron", None, 2);
        let got = changes(Some(before), after, Some(false));
        assert_eq!(
            got.gone,
            keys(&["ada@example.com", "com", "example", "lovelace"])
        );
        assert_eq!(got.new, keys(&["byron"]));
        assert!(got.unseen.is_empty());
    }

    #[test]
    fn a_row_with_the_same_words_changes_no_words() {
        let before = customer("Lovelace", None, 1);
        let mut after = customer("Lovelace", None, 2);
        after.phone = Some("+44 1".into());
        assert_eq!(
            changes(Some(before), after, Some(false)),
            WordChanges::default()
        );
    }

    #[test]
    fn a_new_row_inserts_all_its_words() {
        let got = changes(None, customer("Lovelace", None, 1), Some(true));
        assert_eq!(got.new, keys(&["ada", "lovelace"]));
        assert!(got.gone.is_empty() && got.unseen.is_empty());
    }

    #[test]
    fn a_row_another_writer_inserted_after_the_load_replaces_all_its_words() {
        let got = changes(None, customer("Lovelace", None, 2), Some(false));
        assert_eq!(got.unseen, vec![["k".to_owned(), "c1".to_owned()]]);
        assert_eq!(got.new, keys(&["ada", "lovelace"]));
    }

    #[test]
    fn a_row_the_upsert_did_not_write_changes_no_words() {
        let before = customer("Lovelace", None, 3);
        let after = customer("Byron", None, 4);
        assert_eq!(changes(Some(before), after, None), WordChanges::default());
    }
}
