//! The checker: every write the load saw acknowledged must be in the event
//! store exactly once and in the read models, and the read models must equal
//! a fold of the event store.
//!
//! 1. Wait until the views have caught up with the store (every customer
//!    and photo row at its aggregate's last sequence, option-2 photos
//!    settled by the policy), bounded.
//! 2. The store (the drill's own Postgres database): a create's key is its
//!    customer's surname, an update's marker its notes, a photo's sha256 is
//!    in its `PhotoUploaded`; each must be there, once.
//! 3. The read models: each acknowledged write's row at (at least) its
//!    version; every customer row equal to the fold of its events; no row
//!    without events.
//! 4. The API: a GET with each write's `X-Consistency-Token` answers fresh,
//!    at (at least) the acknowledged version; a photo's bytes hash to what
//!    was uploaded.
//! 5. The bus: JetStream holds each event once.
use futures::StreamExt;
use serde_json::Value;
use sqlx::{PgPool, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::load::{sha256_hex, Ack, Outcome, Target};
use crate::procs::Stack;

/// One drill's row of the table.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub drill: String,
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub s503: u64,
    pub other_5xx: u64,
    /// The longest time without an acknowledged write during the load.
    pub stall: Duration,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(drill: &str) -> Self {
        Self {
            drill: drill.to_owned(),
            ..Self::default()
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn fail(&mut self, text: impl Into<String>) {
        self.failures.push(text.into());
    }
}

/// What a drill adds to the standard checks.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    /// Aggregates deliberately broken (poison): not in the views.
    pub poisoned: HashSet<String>,
    /// Parked events the drill expects (exactly).
    pub parked: usize,
    /// Customers written behind the API's back that must reach the view.
    pub extra_customers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub aggregate_type: String,
    pub id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
}

pub async fn events(pool: &PgPool) -> Result<Vec<Event>, String> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, payload FROM events \
         WHERE aggregate_type IN ('customer', 'photo', 'user') ORDER BY aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| format!("reading events: {e}"))?;
    rows.iter()
        .map(|row| {
            Ok(Event {
                aggregate_type: row.try_get("aggregate_type")?,
                id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| format!("decoding events: {e}"))
}

/// A customer as its events say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub company_id: String,
    pub name: String,
    pub surname: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub notes: Option<String>,
    pub photo_id: Option<String>,
    pub deleted: bool,
    pub last_seq: i64,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// `{"set": v}` or `"cleared"`; `None` when the change leaves the field.
fn field_change(v: &Value) -> Option<Option<String>> {
    match v {
        Value::Null => None,
        Value::String(s) if s == "cleared" => Some(None),
        Value::Object(o) => o.get("set").map(text),
        _ => None,
    }
}

/// Folds one customer's events; `Err` for an event we cannot read.
pub fn fold(events: &[&Event]) -> Result<Customer, String> {
    let mut state: Option<Customer> = None;
    for event in events {
        let body = event.payload.get(&event.event_type).ok_or_else(|| {
            format!(
                "{}:{} has no {} body",
                event.id, event.sequence, event.event_type
            )
        })?;
        if event.event_type == "CustomerRegistered" {
            state = Some(Customer {
                company_id: text(&body["company_id"]).unwrap_or_default(),
                name: text(&body["name"]).ok_or("no name")?,
                surname: text(&body["surname"]).ok_or("no surname")?,
                email: text(&body["email"]),
                phone: text(&body["phone"]),
                notes: text(&body["notes"]),
                photo_id: None,
                deleted: false,
                last_seq: event.sequence,
            });
            continue;
        }
        let customer = state
            .as_mut()
            .ok_or_else(|| format!("{}:{} before registration", event.id, event.sequence))?;
        match event.event_type.as_str() {
            "CustomerDetailsChanged" => {
                let change = &body["change"];
                if let Some(name) = text(&change["name"]) {
                    customer.name = name;
                }
                if let Some(surname) = text(&change["surname"]) {
                    customer.surname = surname;
                }
                if let Some(email) = field_change(&change["email"]) {
                    customer.email = email;
                }
                if let Some(phone) = field_change(&change["phone"]) {
                    customer.phone = phone;
                }
                if let Some(notes) = field_change(&change["notes"]) {
                    customer.notes = notes;
                }
            }
            "CustomerPhotoAttached" => customer.photo_id = text(&body["photo_id"]),
            "CustomerPhotoDetached" => customer.photo_id = None,
            "CustomerDeleted" => customer.deleted = true,
            "CustomerRestored" => customer.deleted = false,
            other => return Err(format!("unknown customer event {other}")),
        }
        customer.last_seq = event.sequence;
    }
    state.ok_or_else(|| "no events".to_owned())
}

async fn customer_rows(pool: &PgPool) -> Result<HashMap<String, Customer>, String> {
    let rows = sqlx::query(
        "SELECT id, company_id, name, surname, email, phone, notes, photo_id, deleted, last_seq \
         FROM customers",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| format!("reading the customers view: {e}"))?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("id")?,
                Customer {
                    company_id: row.try_get("company_id")?,
                    name: row.try_get("name")?,
                    surname: row.try_get("surname")?,
                    email: row.try_get("email")?,
                    phone: row.try_get("phone")?,
                    notes: row.try_get("notes")?,
                    photo_id: row.try_get("photo_id")?,
                    deleted: row.try_get::<i64, _>("deleted")? != 0,
                    last_seq: row.try_get("last_seq")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| format!("decoding the customers view: {e}"))
}

/// Rows of the customers, photos and users views behind their store, plus
/// option-2 photos the policy has not settled yet.
async fn lagging(pool: &PgPool, poisoned: &HashSet<String>) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.aggregate_id FROM (SELECT aggregate_type, aggregate_id, max(sequence) AS last \
           FROM events WHERE aggregate_type IN ('customer', 'photo', 'user') GROUP BY 1, 2) e \
         LEFT JOIN customers c ON e.aggregate_type = 'customer' AND c.id = e.aggregate_id \
         LEFT JOIN photos p ON e.aggregate_type = 'photo' AND p.id = e.aggregate_id \
         LEFT JOIN users u ON e.aggregate_type = 'user' AND u.id = e.aggregate_id \
         WHERE coalesce(c.last_seq, p.last_seq, u.last_seq) IS DISTINCT FROM e.last \
         UNION ALL \
         SELECT id FROM photos WHERE status = 'pending' AND for_customer IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .filter(|id| !poisoned.contains(id))
        .count())
}

/// Waits for the views to catch up; how long it took.
pub async fn wait_caught_up(
    pool: &PgPool,
    poisoned: &HashSet<String>,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let last = match lagging(pool, poisoned).await {
            Ok(0) => return Ok(started.elapsed()),
            Ok(n) => format!("{n} aggregates behind"),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > timeout {
            return Err(format!(
                "the views did not catch up within {timeout:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn find_sha(v: &Value) -> Option<String> {
    match v {
        Value::Object(o) => o
            .get("sha256")
            .and_then(text)
            .or_else(|| o.values().find_map(find_sha)),
        _ => None,
    }
}

/// The events the drill's JetStream stream holds (a message carries one or
/// a run of them): how many, and how many distinct.
async fn stream_events(nats_url: &str, stream: &str) -> Result<(u64, u64), String> {
    // A cluster's NATS_URL lists its servers, comma-separated.
    let client = async_nats::connect(projections::feed::relay::server_urls(nats_url))
        .await
        .map_err(|e| format!("nats: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("stream: {e}"))?;
    let state = stream
        .info()
        .await
        .map_err(|e| format!("stream info: {e}"))?
        .state
        .clone();
    let mut total = 0;
    let mut distinct = std::collections::HashSet::new();
    if state.messages > 0 {
        for seq in state.first_sequence..=state.last_sequence {
            let raw = stream
                .get_raw_message(seq)
                .await
                .map_err(|e| format!("message {seq}: {e}"))?;
            // The poison drill's undecodable events still travel as events.
            for event in projections::feed::message::decode(&raw.payload).unwrap_or_default() {
                total += 1;
                distinct.insert(event.message_id());
            }
        }
    }
    Ok((total, distinct.len() as u64))
}

enum ReadCheck {
    Customer {
        id: String,
        version: i64,
        token: String,
    },
    User {
        id: String,
        version: i64,
        token: String,
    },
    Photo {
        id: String,
        sha256: String,
        token: String,
        option2: bool,
    },
}

/// One GET with a consistency token; `Err` says what was wrong.
async fn read_back(
    http: &reqwest::Client,
    base: &str,
    target: &Target,
    check: &ReadCheck,
) -> Result<(), String> {
    let get = |path: String, token: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(&target.token)
            .header("x-consistency-token", token)
            .timeout(Duration::from_secs(30))
            .send()
    };
    match check {
        ReadCheck::Customer { id, version, token } => {
            let response = get(format!("/v1/customers/{id}"), token)
                .await
                .map_err(|e| format!("GET customer {id}: {e}"))?;
            let status = response.status().as_u16();
            let stale = response.headers().contains_key("x-consistency-stale");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status != 200 || stale {
                return Err(format!(
                    "GET customer {id} with its token: {status} stale={stale}"
                ));
            }
            let seen = body["version"].as_i64().unwrap_or(0);
            if seen < *version {
                return Err(format!(
                    "GET customer {id}: version {seen} < acknowledged {version}"
                ));
            }
            Ok(())
        }
        ReadCheck::User { id, version, token } => {
            let response = get(format!("/v1/users/{id}"), token)
                .await
                .map_err(|e| format!("GET user {id}: {e}"))?;
            let status = response.status().as_u16();
            let stale = response.headers().contains_key("x-consistency-stale");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let seen = body["version"].as_i64().unwrap_or(0);
            if status != 200 || stale || seen < *version {
                return Err(format!(
                    "GET user {id} with its token: {status} stale={stale} version {seen} (acknowledged {version})"
                ));
            }
            Ok(())
        }
        ReadCheck::Photo {
            id,
            sha256,
            token,
            option2,
        } => {
            let response = get(format!("/v1/photos/{id}"), token)
                .await
                .map_err(|e| format!("GET photo {id}: {e}"))?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await.map_err(|e| e.to_string())?;
            if status != 200 || sha256_hex(&bytes) != *sha256 {
                return Err(format!("GET photo {id}: {status}, bytes hash differently"));
            }
            if *option2 {
                let response = get(format!("/v1/photos/{id}/metadata"), token)
                    .await
                    .map_err(|e| format!("GET photo metadata {id}: {e}"))?;
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if body["status"] == "pending" {
                    return Err(format!("photo {id} was never settled by the policy"));
                }
            }
            Ok(())
        }
    }
}

/// Runs every check; fills `report` (figures, notes, failures).
pub async fn verify(
    stack: &Stack,
    nats_url: &str,
    target: &Target,
    outcome: &Outcome,
    expect: &Expect,
    report: &mut Report,
) -> Result<(), String> {
    let tally = &outcome.tally;
    report.acknowledged = outcome.acks.len();
    report.note(format!(
        "acknowledged: {} customer creates, {} updates, {} photo uploads, {} user creates",
        outcome.count(|a| matches!(a, Ack::Create { .. })),
        outcome.count(|a| matches!(a, Ack::Update { .. })),
        outcome.count(|a| matches!(a, Ack::Photo { .. })),
        outcome.count(|a| matches!(a, Ack::User { .. })),
    ));
    let (stall, stall_at) = outcome.longest_stall();
    report.stall = stall;
    report.note(format!(
        "longest stall (no write acknowledged): {:.1} s from {:.1} s",
        stall.as_secs_f64(),
        stall_at.as_secs_f64()
    ));
    report.s503 = tally.s503;
    report.other_5xx = tally.other_5xx;
    if tally.other_5xx > 0 {
        report.fail(format!(
            "{} answers were 5xx other than 503",
            tally.other_5xx
        ));
    }
    if tally.unexpected > 0 {
        report.fail(format!(
            "{} unexpected 4xx/malformed answers",
            tally.unexpected
        ));
    }
    for sample in &tally.samples {
        report.note(format!("e.g. {sample}"));
    }
    let pool = stack.pool().await?;
    match wait_caught_up(&pool, &expect.poisoned, Duration::from_secs(150)).await {
        Ok(took) => report.note(format!(
            "views caught up {:.1} s after the load",
            took.as_secs_f64()
        )),
        Err(e) => report.fail(e),
    }

    let events = events(&pool).await?;
    let mut by_id: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    let mut by_surname: HashMap<String, BTreeSet<&str>> = HashMap::new();
    let mut by_marker: HashMap<String, Vec<(&str, i64)>> = HashMap::new();
    let mut by_sha: HashMap<String, BTreeSet<&str>> = HashMap::new();
    let mut by_email: HashMap<String, BTreeSet<&str>> = HashMap::new();
    for event in &events {
        by_id.entry(&event.id).or_default().push(event);
        let body = event
            .payload
            .get(&event.event_type)
            .cloned()
            .unwrap_or(Value::Null);
        match event.event_type.as_str() {
            "CustomerRegistered" => {
                if let Some(surname) = text(&body["surname"]) {
                    by_surname.entry(surname).or_default().insert(&event.id);
                }
            }
            "CustomerDetailsChanged" => {
                if let Some(Some(notes)) = field_change(&body["change"]["notes"]) {
                    by_marker
                        .entry(notes)
                        .or_default()
                        .push((&event.id, event.sequence));
                }
            }
            "PhotoUploaded" => {
                if let Some(sha) = find_sha(&body) {
                    by_sha.entry(sha).or_default().insert(&event.id);
                }
            }
            "UserRegistered" => {
                if let Some(email) = text(&body["email"]) {
                    by_email.entry(email).or_default().insert(&event.id);
                }
            }
            _ => {}
        }
    }
    let rows = customer_rows(&pool).await?;
    let photo_rows: HashMap<String, i64> = sqlx::query("SELECT id, last_seq FROM photos")
        .fetch_all(&pool)
        .await
        .map_err(|e| format!("reading the photos view: {e}"))?
        .iter()
        .filter_map(|r| Some((r.try_get("id").ok()?, r.try_get("last_seq").ok()?)))
        .collect();
    let user_rows: HashMap<String, i64> = sqlx::query("SELECT id, last_seq FROM users")
        .fetch_all(&pool)
        .await
        .map_err(|e| format!("reading the users view: {e}"))?
        .iter()
        .filter_map(|r| Some((r.try_get("id").ok()?, r.try_get("last_seq").ok()?)))
        .collect();
    let mut view_by_surname: HashMap<&str, usize> = HashMap::new();
    for row in rows.values() {
        *view_by_surname.entry(row.surname.as_str()).or_default() += 1;
    }

    // Acknowledged writes: in the store once, in the views.
    let (mut lost, mut duplicated) = (0, 0);
    let mut examples: Vec<String> = vec![];
    let mut example = |text: String| {
        if examples.len() < 6 {
            examples.push(text);
        }
    };
    let mut reads = vec![];
    for ack in &outcome.acks {
        match ack {
            Ack::Create {
                key,
                id,
                version,
                token,
            } => {
                let stored = by_surname.get(key.as_str());
                let in_store = stored.is_some_and(|ids| ids.contains(id.as_str()));
                let in_view = rows.get(id).is_some_and(|r| r.last_seq >= *version);
                if !in_store || !in_view {
                    lost += 1;
                    example(format!(
                        "create {key} ({id}): store={in_store} view={in_view}"
                    ));
                }
                let copies = stored.map_or(0, BTreeSet::len);
                let view_copies = view_by_surname.get(key.as_str()).copied().unwrap_or(0);
                if copies > 1 || view_copies > 1 {
                    duplicated += 1;
                    example(format!(
                        "create {key}: {copies} customers in the store, {view_copies} in the view"
                    ));
                }
                reads.push(ReadCheck::Customer {
                    id: id.clone(),
                    version: *version,
                    token: token.clone(),
                });
            }
            Ack::Update {
                id,
                marker,
                version,
                token,
                inferred,
            } => {
                let found = by_marker.get(marker.as_str()).cloned().unwrap_or_default();
                let in_view = rows.get(id).is_some_and(|r| r.last_seq >= *version);
                if found.is_empty() || !in_view {
                    lost += 1;
                    example(format!(
                        "update {marker} of {id}: store={} view={in_view}",
                        found.len()
                    ));
                }
                if found.len() > 1 {
                    duplicated += 1;
                    example(format!("update {marker}: {} events", found.len()));
                }
                if let [(at_id, sequence)] = found.as_slice() {
                    if *at_id != id.as_str() || (*sequence != *version && !inferred) {
                        report.fail(format!(
                            "update {marker}: acknowledged as {id} v{version}, stored as {at_id} v{sequence}"
                        ));
                    }
                }
                if let Some(token) = token {
                    reads.push(ReadCheck::Customer {
                        id: id.clone(),
                        version: *version,
                        token: token.clone(),
                    });
                }
            }
            Ack::Photo {
                key,
                id,
                sha256,
                for_customer,
                token,
            } => {
                let stored = by_sha.get(sha256.as_str());
                let in_store = stored.is_some_and(|ids| ids.contains(id.as_str()));
                let in_view = photo_rows.contains_key(id);
                if !in_store || !in_view {
                    lost += 1;
                    example(format!(
                        "photo {key} ({id}): store={in_store} view={in_view}"
                    ));
                }
                if stored.map_or(0, BTreeSet::len) > 1 {
                    duplicated += 1;
                    example(format!(
                        "photo {key}: uploaded {} times",
                        stored.map_or(0, BTreeSet::len)
                    ));
                }
                reads.push(ReadCheck::Photo {
                    id: id.clone(),
                    sha256: sha256.clone(),
                    token: token.clone(),
                    option2: for_customer.is_some(),
                });
            }
            Ack::User {
                key,
                id,
                email,
                version,
                token,
            } => {
                let stored = by_email.get(email.as_str());
                let in_store = stored.is_some_and(|ids| ids.contains(id.as_str()));
                let in_view = user_rows.get(id).is_some_and(|seq| seq >= version);
                if !in_store || !in_view {
                    lost += 1;
                    example(format!(
                        "user {key} ({id}): store={in_store} view={in_view}"
                    ));
                }
                if stored.map_or(0, BTreeSet::len) > 1 {
                    duplicated += 1;
                    example(format!(
                        "user {key}: registered {} times",
                        stored.map_or(0, BTreeSet::len)
                    ));
                }
                reads.push(ReadCheck::User {
                    id: id.clone(),
                    version: *version,
                    token: token.clone(),
                });
            }
        }
    }
    report.lost = lost;
    report.duplicated = duplicated;
    if lost > 0 {
        report.fail(format!("{lost} acknowledged writes lost"));
    }
    if duplicated > 0 {
        report.fail(format!("{duplicated} acknowledged writes duplicated"));
    }
    for text in examples {
        report.note(text);
    }

    // The customers view equals the fold of the store, row for row.
    let mut diverging = vec![];
    let mut customers_in_store = 0;
    for (id, stream) in &by_id {
        if stream[0].aggregate_type != "customer" || expect.poisoned.contains(*id) {
            continue;
        }
        customers_in_store += 1;
        let folded = match fold(stream) {
            Ok(folded) => folded,
            Err(e) => {
                diverging.push(format!("{id}: unreadable events: {e}"));
                continue;
            }
        };
        match rows.get(*id) {
            Some(row) if *row == folded => {}
            Some(row) => diverging.push(format!("{id}: view {row:?} != store {folded:?}")),
            None => diverging.push(format!("{id}: in the store, not in the view")),
        }
    }
    for id in rows.keys() {
        if !by_id.contains_key(id.as_str()) {
            diverging.push(format!("{id}: in the view, not in the store"));
        }
    }
    for id in &expect.extra_customers {
        if !rows.contains_key(id) {
            report.fail(format!(
                "customer {id}, written behind the API, never reached the view"
            ));
        }
    }
    if diverging.is_empty() {
        report.note(format!(
            "customers view = fold of the store ({customers_in_store} customers)"
        ));
    } else {
        report.fail(format!(
            "{} customers differ between the view and the store, e.g. {}",
            diverging.len(),
            diverging[0]
        ));
    }

    // Reads with each write's consistency token.
    let base = stack.bases().first().cloned().unwrap_or_default();
    let http = reqwest::Client::new();
    let failures: Vec<String> = futures::stream::iter(reads.iter())
        .map(|check| read_back(&http, &base, target, check))
        .buffer_unordered(8)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if !failures.is_empty() {
        report.fail(format!(
            "{} of {} reads with a consistency token failed, e.g. {}",
            failures.len(),
            reads.len(),
            failures[0]
        ));
    }

    // The bus: every event exactly once.
    let (in_store,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    match stream_events(nats_url, &stack.stream).await {
        Ok((on_bus, distinct)) if on_bus as i64 == in_store && distinct == on_bus => {
            report.note(format!("bus: {on_bus} events = {in_store} in the store"))
        }
        Ok((on_bus, distinct)) => report.fail(format!(
            "bus: {on_bus} events ({distinct} distinct) for {in_store} in the store"
        )),
        Err(e) => report.fail(format!("bus: {e}")),
    }

    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    if parked as usize != expect.parked {
        report.fail(format!(
            "{parked} parked events (expected {})",
            expect.parked
        ));
    }

    if tally.timeouts + tally.transport_errors > 0 {
        report.note(format!(
            "client timeouts {}, connection errors {}, retries {}",
            tally.timeouts, tally.transport_errors, tally.retries
        ));
    }
    if tally.unresolved + tally.indeterminate > 0 {
        report.note(format!(
            "never answered: {} creates/uploads, {} updates (not acknowledged, not counted)",
            tally.unresolved, tally.indeterminate
        ));
    }
    if tally.stale_replies > 0 {
        report.note(format!(
            "{} write replies were sent before the views showed them (X-Consistency-Stale)",
            tally.stale_replies
        ));
    }
    pool.close().await;
    Ok(())
}
