//! `data` of public events: the resource as the event left it, folded from
//! its aggregate's stored events with the view's own [`Fold`] (the same
//! logic the read models use), shaped as the API shows the resource.
//!
//! A page of events needs each touched stream once: the streams are read
//! with one query per aggregate type and folded in order, keeping the rows
//! at the sequences the page names.
use commands::events::{read_streams, StoredEvent};
use commands::Db;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{api_time, event_id, Actor, EventType, PublicEvent, MAX_EVENT_BYTES};
use crate::views::companies::{Companies, Company};
use crate::views::customers::{Customer, Customers};
use crate::views::photos::{Photo, Photos};
use crate::views::users::{User, Users};
use crate::views::{fold_events, Change, Fold};

/// Ids of one aggregate type → the sequences whose rows a page needs.
type Wanted = BTreeMap<String, BTreeSet<i64>>;
/// Rows by `(aggregate id, sequence)`.
type Rows<R> = HashMap<(String, i64), R>;

/// Renders the events of `events` that have a public type, in order; the
/// others are left out. An event whose resource cannot be folded is sent
/// with `data: null` (and logged) rather than blocking every later one.
pub async fn render(db: &Db, events: &[StoredEvent]) -> Result<Vec<PublicEvent>, sqlx::Error> {
    let public: Vec<(&StoredEvent, EventType)> = events
        .iter()
        .filter_map(|event| EventType::of(event).map(|t| (event, t)))
        .collect();
    let mut wanted: HashMap<&str, Wanted> = HashMap::new();
    for (event, public_type) in &public {
        let sequences = wanted
            .entry(event.aggregate_type.as_str())
            .or_default()
            .entry(event.aggregate_id.clone())
            .or_default();
        sequences.insert(event.sequence);
        if is_update(*public_type) {
            sequences.insert(event.sequence - 1);
        }
    }
    let customers = rows_at::<Customers>(db, wanted.get("customer")).await?;
    let users = rows_at::<Users>(db, wanted.get("user")).await?;
    let companies = rows_at::<Companies>(db, wanted.get("company")).await?;
    let photos = rows_at::<Photos>(db, wanted.get("photo")).await?;
    // A customer shows its photo's type and size: the photo's latest row
    // (an image never changes once stored).
    let photo_ids: BTreeSet<String> = customers
        .values()
        .filter_map(|c| c.photo_id.clone())
        .collect();
    let customer_photos = latest::<Photos>(db, photo_ids.into_iter().collect()).await?;

    let mut rendered = Vec::with_capacity(public.len());
    for (event, public_type) in public {
        let key = (event.aggregate_id.clone(), event.sequence);
        let before = (event.aggregate_id.clone(), event.sequence - 1);
        let (data, previous) = match event.aggregate_type.as_str() {
            "customer" => {
                let shape = |c: &Customer| {
                    customer_data(c, c.photo_id.as_ref().and_then(|p| customer_photos.get(p)))
                };
                (
                    customers.get(&key).map(shape),
                    customers.get(&before).map(shape),
                )
            }
            "user" => (
                users.get(&key).map(user_data),
                users.get(&before).map(user_data),
            ),
            "company" => (companies.get(&key).map(company_data), None),
            "photo" => (photos.get(&key).map(photo_data), None),
            _ => (None, None),
        };
        if data.is_none() {
            tracing::error!(event = %event.message_id(), "public event without its resource");
        }
        let changed_fields = match (is_update(public_type), &data, &previous) {
            (true, Some(after), Some(before)) => Some(changed(before, after)),
            _ => None,
        };
        let company_id = event
            .meta(commands::context::META_COMPANY_ID)
            .map(str::to_owned)
            .or_else(|| {
                data.as_ref()
                    .and_then(|d| d.get("company_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let mut public = PublicEvent {
            id: event_id(event),
            event_type: public_type,
            occurred_at: event
                .meta(commands::context::META_OCCURRED_AT)
                .map(api_time)
                .unwrap_or_default(),
            company_id,
            actor: actor(event),
            data: data.unwrap_or(Value::Null),
            changed_fields,
        };
        fit(&mut public);
        rendered.push(public);
    }
    Ok(rendered)
}

/// Who made the change: the user, or the API key whose id the event's
/// `user_id` holds.
fn actor(event: &StoredEvent) -> Actor {
    use commands::context::{ACTOR_API_KEY, META_ACTOR_KIND, META_USER_ID};
    let id = event.meta(META_USER_ID).map(str::to_owned);
    if event.meta(META_ACTOR_KIND) == Some(ACTOR_API_KEY) {
        Actor {
            user_id: None,
            api_key_id: id,
        }
    } else {
        Actor {
            user_id: id,
            api_key_id: None,
        }
    }
}

fn is_update(t: EventType) -> bool {
    matches!(t, EventType::CustomerUpdated | EventType::UserUpdated)
}

/// The fields whose values differ, bookkeeping (`updated_*`, `version`) aside.
fn changed(before: &Value, after: &Value) -> Vec<String> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "updated_at" | "updated_by" | "version"))
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Keeps the event under [`MAX_EVENT_BYTES`]: the only field that can make
/// it larger is a customer's notes (up to 10,000 characters), which are cut
/// and flagged `notes_truncated`.
fn fit(event: &mut PublicEvent) {
    loop {
        let size = serde_json::to_vec(&event).map(|b| b.len()).unwrap_or(0);
        if size <= MAX_EVENT_BYTES {
            return;
        }
        let Some(notes) = event.data.get("notes").and_then(Value::as_str) else {
            return;
        };
        if notes.is_empty() {
            return;
        }
        let mut keep = notes.len().saturating_sub(size - MAX_EVENT_BYTES + 16);
        while !notes.is_char_boundary(keep) {
            keep -= 1;
        }
        let cut = notes[..keep].to_owned();
        event.data["notes"] = Value::String(cut);
        event.data["notes_truncated"] = Value::Bool(true);
    }
}

/// The rows of `wanted`'s aggregates at the sequences it names.
async fn rows_at<F: Fold>(db: &Db, wanted: Option<&Wanted>) -> Result<Rows<F::Row>, sqlx::Error> {
    let Some(wanted) = wanted else {
        return Ok(HashMap::new());
    };
    let ids: Vec<String> = wanted.keys().cloned().collect();
    let stream = read_streams(db, F::AGGREGATE, &ids).await?;
    Ok(fold_at::<F>(&stream, wanted))
}

/// Folds `stream` (several aggregates, each in sequence order) and keeps the
/// rows at the wanted sequences. An aggregate whose fold fails is left out
/// from there on.
pub(crate) fn fold_at<F: Fold>(stream: &[StoredEvent], wanted: &Wanted) -> Rows<F::Row> {
    let mut rows = HashMap::new();
    let mut current: Option<(&str, Option<F::Row>)> = None;
    for event in stream {
        let Some(sequences) = wanted.get(&event.aggregate_id) else {
            continue;
        };
        if sequences.last().is_some_and(|last| event.sequence > *last) {
            continue;
        }
        let previous = match current.take() {
            Some((id, row)) if id == event.aggregate_id => row,
            _ => None,
        };
        let row = Change::<F::Event>::decode(event)
            .and_then(|change| F::evolve(previous, change))
            .map_err(|reason| {
                tracing::error!(event = %event.message_id(), reason, "cannot fold for a public event")
            })
            .ok();
        if let Some(row) = &row {
            if sequences.contains(&event.sequence) {
                rows.insert((event.aggregate_id.clone(), event.sequence), row.clone());
            }
        }
        current = Some((&event.aggregate_id, row));
    }
    rows
}

/// The latest row of each aggregate in `ids`.
async fn latest<F: Fold>(
    db: &Db,
    ids: Vec<String>,
) -> Result<HashMap<String, F::Row>, sqlx::Error> {
    let stream = read_streams(db, F::AGGREGATE, &ids).await?;
    let mut rows = HashMap::new();
    for events in stream.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
        if let Ok(Some(row)) = fold_events::<F>(events) {
            rows.insert(events[0].aggregate_id.clone(), row);
        }
    }
    Ok(rows)
}

fn customer_data(row: &Customer, photo: Option<&Photo>) -> Value {
    let photo = row.photo_id.as_ref().map(|id| {
        json!({
            "id": id,
            "url": format!("/v1/photos/{id}"),
            "content_type": photo.map(|p| p.content_type.as_str()),
            "size": photo.map(|p| p.size),
        })
    });
    json!({
        "id": row.id,
        "company_id": row.company_id,
        "name": row.name,
        "surname": row.surname,
        "email": row.email,
        "phone": row.phone,
        "notes": row.notes,
        "external_id": row.external_id,
        "photo": photo,
        "created_by": row.created_by,
        "created_at": api_time(&row.created_at),
        "updated_by": row.updated_by,
        "updated_at": api_time(&row.updated_at),
        "deleted_at": row.deleted_at.as_deref().map(api_time),
        "version": row.last_seq,
    })
}

/// A user as the API shows it: never the password hash or security stamp.
fn user_data(row: &User) -> Value {
    json!({
        "id": row.id,
        "company_id": row.company_id,
        "email": row.email,
        "name": row.name,
        "surname": row.surname,
        "title": row.title,
        "role": row.role,
        "created_at": api_time(&row.created_at),
        "updated_at": api_time(&row.updated_at),
        "version": row.last_seq,
    })
}

fn company_data(row: &Company) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "created_at": api_time(&row.created_at),
    })
}

fn photo_data(row: &Photo) -> Value {
    json!({
        "id": row.id,
        "url": format!("/v1/photos/{}", row.id),
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "for_customer": row.for_customer,
        "customer_id": row.customer_id,
        "status": row.status,
        "rejected_reason": row.rejected_reason,
        "created_at": api_time(&row.created_at),
        "version": row.last_seq,
    })
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
