//! The read models. Each view is one pure fold, `evolve(row, event) -> row`
//! ([`Fold`]), in its own file; nothing else knows how an event changes a
//! row. Everything that turns events into rows goes through it:
//! - the live feeds (JetStream workers, the embedded feed) and rebuilds apply
//!   runs of events with [`FoldView`]: the rows a run touches are loaded with
//!   one query, folded in memory ([`fold::fold_run`]), and written back with
//!   one multi-row upsert per table, guarded by `last_seq` ([`rows`]);
//! - a write's reply folds the events it just committed
//!   ([`fold::fold_events`], [`fold_new`]), so it never waits for a view.
pub mod companies;
pub mod customers;
pub mod fold;
pub use fold::fold_events;
pub mod photos;
pub mod rows;
pub mod users;

use async_trait::async_trait;
use commands::events::StoredEvent;
use commands::Db;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;
use std::marker::PhantomData;

use crate::view::{Applied, Projection, ProjectionError};
use rows::{Cell, Column};

/// One event as a view sees it: whose, which, when, and what.
#[derive(Clone, Debug)]
pub struct Change<'a, E> {
    pub id: &'a str,
    pub sequence: i64,
    /// The event's time as stored: views use event time, never `now()`, so
    /// a rebuilt view equals the live one.
    pub at: &'a str,
    pub event: E,
}

impl<'a, E: DeserializeOwned> Change<'a, E> {
    /// The typed event; `Err` says why it cannot be read.
    pub fn decode(event: &'a StoredEvent) -> Result<Self, String> {
        let at = event
            .meta(commands::context::META_OCCURRED_AT)
            .ok_or("no occurred_at in metadata")?;
        // From the borrowed value: no copy of the payload per event.
        let typed = E::deserialize(&event.payload).map_err(|e| e.to_string())?;
        Ok(Self {
            id: &event.aggregate_id,
            sequence: event.sequence,
            at,
            event: typed,
        })
    }
}

/// A view's logic: how one event of its aggregate changes its row, and how a
/// row is laid out in its table.
pub trait Fold: Send + Sync + 'static {
    type Event: DeserializeOwned;
    type Row: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;
    /// The name operators use (`crm projections rebuild customers`).
    const NAME: &'static str;
    /// The aggregate whose events the view folds.
    type Aggregate: domain::Identified;
    /// Its events' stored `aggregate_type`.
    const AGGREGATE: &'static str = domain::aggregate_type::<Self::Aggregate>();
    const TABLE: &'static str;
    /// The table's columns in [`Fold::cells`] order: `id` first, `last_seq` among them.
    const COLUMNS: &'static [Column];
    /// The search-word table, if the view has one: `(company_id, word,
    /// customer_id)` rows from [`Fold::words`].
    const WORDS: Option<&'static str> = None;

    /// The row after `change`; `row` is `None` for an aggregate's first event.
    /// `Err` when the event cannot apply to it (e.g. a change with no row).
    fn evolve(row: Option<Self::Row>, change: Change<'_, Self::Event>)
        -> Result<Self::Row, String>;
    fn last_seq(row: &Self::Row) -> i64;
    fn cells(row: &Self::Row) -> Vec<Cell>;
    fn from_cells(cells: rows::Cells) -> Result<Self::Row, sqlx::Error>;
    /// The company and the folded search words of a row ([`Fold::WORDS`]).
    fn words(_row: &Self::Row) -> Option<(String, Vec<String>)> {
        None
    }
}

/// A [`Fold`] as a [`Projection`], writing into its tables (with a suffix for
/// a rebuild's shadow copy).
pub struct FoldView<F> {
    table: String,
    words: Option<String>,
    fold: PhantomData<F>,
}

impl<F: Fold> FoldView<F> {
    pub fn new(suffix: &str) -> Self {
        Self {
            table: format!("{}{suffix}", F::TABLE),
            words: F::WORDS.map(|words| format!("{words}{suffix}")),
            fold: PhantomData,
        }
    }
}

#[async_trait]
impl<F: Fold> Projection for FoldView<F> {
    fn name(&self) -> &'static str {
        F::NAME
    }

    fn aggregate_type(&self) -> &'static str {
        F::AGGREGATE
    }

    fn tables(&self) -> Vec<String> {
        std::iter::once(self.table.clone())
            .chain(self.words.clone())
            .collect()
    }

    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection> {
        Box::new(Self::new(suffix))
    }

    async fn apply_run(
        &self,
        conn: &mut AnyConnection,
        db: &Db,
        events: &[StoredEvent],
    ) -> Result<Vec<Applied>, ProjectionError> {
        rows::apply_run::<F>(conn, db, &self.table, self.words.as_deref(), events).await
    }

    async fn load_new(
        &self,
        conn: &mut AnyConnection,
        db: &Db,
        events: &[StoredEvent],
    ) -> Result<Vec<Applied>, ProjectionError> {
        rows::load_new::<F>(conn, db, &self.table, self.words.as_deref(), events).await
    }
}

/// The row a new aggregate's first events leave, as a write just committed
/// them (sequences from 1, at the command's time): its reply needs no read.
pub fn fold_new<F: Fold>(
    id: &str,
    at: &str,
    events: Vec<F::Event>,
) -> Result<Option<F::Row>, String> {
    let mut row = None;
    for (i, event) in events.into_iter().enumerate() {
        let change = Change {
            id,
            sequence: i as i64 + 1,
            at,
            event,
        };
        row = Some(F::evolve(row, change)?);
    }
    Ok(row)
}

/// Every view, writing into its live tables.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(FoldView::<companies::Companies>::new("")),
        Box::new(FoldView::<users::Users>::new("")),
        Box::new(FoldView::<customers::Customers>::new("")),
        Box::new(FoldView::<photos::Photos>::new("")),
    ]
}

/// The view called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Projection>> {
    all().into_iter().find(|view| view.name() == name)
}

#[cfg(test)]
pub(crate) mod test_support {
    use commands::events::StoredEvent;

    /// The aggregate id the fold tests use.
    pub const ID: &str = "00000000-0000-0000-0000-000000000042";

    /// `event` as stored at `sequence` of aggregate [`ID`], `sequence` seconds
    /// into 2026.
    pub fn stored(aggregate: &str, sequence: i64, event: &impl serde::Serialize) -> StoredEvent {
        StoredEvent {
            position: sequence,
            transaction_id: 0,
            aggregate_type: aggregate.to_owned(),
            aggregate_id: ID.to_owned(),
            sequence,
            event_type: String::new(),
            event_version: "1.0".to_owned(),
            payload: serde_json::to_value(event).unwrap(),
            metadata: serde_json::json!({
                "occurred_at": format!("2026-01-01T00:00:{sequence:02}.000000Z"),
                "company_id": "00000000-0000-0000-0000-000000000064",
            }),
        }
    }
}
