//! The pure part of applying a run of events to a view: which events apply,
//! and the rows they leave. No I/O: the caller loads the rows the run touches
//! and writes back the ones it changed.
use commands::events::StoredEvent;
use std::collections::{BTreeMap, HashMap};

use super::{Change, Fold};
use crate::view::{Applied, ProjectionError};

/// A row a run changed: as it was loaded (`None`: not in the table) and as
/// the run leaves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Touched<R> {
    pub before: Option<R>,
    pub after: R,
}

/// What a run of events makes of the loaded rows.
#[derive(Debug)]
pub struct FoldedRun<R> {
    /// One per event, in delivery order.
    pub verdicts: Vec<Applied>,
    /// The rows the run changed, by id (sorted, so writers lock in one order).
    pub touched: BTreeMap<String, Touched<R>>,
}

/// Folds `events` (in delivery order, any mix of aggregates, duplicates and
/// gaps) over `loaded`, the current rows of the ids they name. Each event is
/// judged against its row's `last_seq` as the run has left it: already
/// applied ([`Applied::Duplicate`]), next ([`Applied::Applied`], folded in),
/// or ahead of a missing predecessor ([`Applied::NotYet`]).
pub fn fold_run<F: Fold>(
    mut loaded: HashMap<String, F::Row>,
    events: &[StoredEvent],
) -> FoldedRun<F::Row> {
    let mut verdicts = Vec::with_capacity(events.len());
    let mut touched: BTreeMap<String, Touched<F::Row>> = BTreeMap::new();
    for event in events {
        if event.aggregate_type != F::AGGREGATE {
            verdicts.push(Applied::Ignored);
            continue;
        }
        let id = event.aggregate_id.as_str();
        let current = match touched.get(id) {
            Some(row) => Some(&row.after),
            None => loaded.get(id),
        };
        let last = current.map_or(0, F::last_seq);
        if event.sequence <= last {
            verdicts.push(Applied::Duplicate);
            continue;
        }
        if event.sequence > last + 1 {
            verdicts.push(Applied::NotYet);
            continue;
        }
        let evolved = Change::<F::Event>::decode(event)
            .and_then(|change| F::evolve(current.cloned(), change));
        match evolved {
            Ok(after) => {
                match touched.get_mut(id) {
                    Some(row) => row.after = after,
                    None => {
                        let before = loaded.remove(id);
                        touched.insert(id.to_owned(), Touched { before, after });
                    }
                }
                verdicts.push(Applied::Applied);
            }
            Err(reason) => verdicts.push(Applied::Unreadable(reason)),
        }
    }
    FoldedRun { verdicts, touched }
}

/// The row an aggregate's stored events leave (its whole stream, as a
/// write's reply reads it). `Err` names the event that cannot be read or
/// applied.
pub fn fold_events<F: Fold>(events: &[StoredEvent]) -> Result<Option<F::Row>, ProjectionError> {
    let mut row = None;
    for event in events.iter().filter(|e| e.aggregate_type == F::AGGREGATE) {
        let change = Change::decode(event).map_err(|why| ProjectionError::bad_event(event, why))?;
        row = Some(F::evolve(row, change).map_err(|why| ProjectionError::bad_event(event, why))?);
    }
    Ok(row)
}
