//! `GET /v1/events`: the caller's company's public events in commit order,
//! cursor-paginated, with an optional long-poll. The same events, ids and
//! payloads webhooks deliver (see `projections::public`).
use axum::extract::State;
use commands::events::{read_committed_matching, Checkpoint, EventFilter, StoredEvent};
use domain::CompanyId;
use projections::public::{self, EventType};
use projections::read::Keyset;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

use super::Reply;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::state::AppState;

/// The longest long-poll a client may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// The longest the server holds a request: under the HTTP layer's 30 s
/// request limit, so a full wait answers with an empty page, not a timeout.
const WAIT_CAP: Duration = Duration::from_secs(28);
/// How often a waiting request looks again when no commit of this process
/// wakes it (other processes' commits only show by looking).
const POLL: Duration = Duration::from_millis(200);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFeedParams {
    /// The `next_cursor` of the previous page; absent: from the first event.
    after: Option<String>,
    /// Comma-separated public event types (e.g. `customer.created,customer.updated`); absent: all.
    types: Option<String>,
    /// 1 to 200, default 50; larger values are clamped to 200.
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Seconds (0 to 30) to wait for an event when there is none yet.
    #[param(minimum = 0, maximum = 30)]
    wait: Option<u64>,
}

/// A public event: the same body a webhook delivery carries.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PublicEventSchema {
    /// Stable: a redelivery of the same change carries the same id (the `webhook-id` of deliveries).
    #[schema(format = Uuid)]
    id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = crate::spec::public_event_type)]
    event_type: String,
    #[schema(format = DateTime)]
    occurred_at: String,
    #[schema(format = Uuid)]
    company_id: String,
    actor: ActorSchema,
    /// The resource as the change left it, as its own GET shows it (customer, user, photo metadata or company).
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// On `customer.updated` and `user.updated`: the fields of `data` the change touched.
    changed_fields: Option<Vec<String>>,
}

/// Who made the change.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ActorSchema {
    #[schema(format = Uuid)]
    user_id: Option<String>,
    #[schema(format = Uuid)]
    api_key_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<PublicEventSchema>)]
    items: Vec<public::PublicEvent>,
    /// Where to go on from; always present, also on an empty page.
    next_cursor: String,
}

fn scope(company: CompanyId) -> String {
    format!("{company}/events")
}

/// The cursor is a signed commit-order checkpoint of the caller's company.
fn encode_cursor(state: &AppState, company: CompanyId, at: Checkpoint) -> String {
    let keyset = Keyset {
        key: at.transaction_id.to_string(),
        id: at.position.to_string(),
    };
    crate::cursor::encode(&state.settings.cursor_key, &scope(company), &keyset)
}

fn decode_cursor(state: &AppState, company: CompanyId, raw: &str) -> ApiResult<Checkpoint> {
    let keyset = crate::cursor::decode(&state.settings.cursor_key, &scope(company), raw)?;
    let invalid = || ApiError::bad_request("the cursor is not valid for this list");
    Ok(Checkpoint {
        transaction_id: keyset.key.parse().map_err(|_| invalid())?,
        position: keyset.id.parse().map_err(|_| invalid())?,
    })
}

fn parse_types(raw: Option<&str>) -> ApiResult<Vec<EventType>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            EventType::parse(t)
                .ok_or_else(|| ApiError::bad_request(format!("unknown event type {t:?}")))
        })
        .collect()
}

impl EventFeedParams {
    /// The page size and the long-poll wait, each within its bounds.
    fn bounds(&self) -> ApiResult<(i64, Duration)> {
        let limit = match self.limit {
            None => 50,
            Some(n) if n < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => n.min(200),
        };
        let wait = match self.wait {
            Some(w) if w > MAX_WAIT_SECS => {
                return Err(ApiError::bad_request("wait is at most 30 seconds"))
            }
            w => Duration::from_secs(w.unwrap_or(0)).min(WAIT_CAP),
        };
        Ok((limit, wait))
    }
}

/// The matching events after `after`, waiting up to `wait` for the first
/// one to be committed (woken by this process's commits, polling for
/// others').
async fn next_events(
    state: &AppState,
    after: Checkpoint,
    limit: i64,
    filter: EventFilter<'_>,
    wait: Duration,
) -> ApiResult<Vec<StoredEvent>> {
    let deadline = tokio::time::Instant::now() + wait;
    let commits = state.commands.commit_signal();
    loop {
        // Listening before the read, so a commit during it is not missed.
        let mut committed = std::pin::pin!(commits.notified());
        committed.as_mut().enable();
        let events = if filter.event_types.is_empty() {
            Vec::new()
        } else {
            read_committed_matching(state.commands.db(), after, limit, filter).await?
        };
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(events);
        }
        let look_again = deadline.min(tokio::time::Instant::now() + POLL);
        let _ = tokio::time::timeout_at(look_again, committed).await;
    }
}

/// The company's public events after a cursor (admins only).
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    params(EventFeedParams),
    responses(
        (status = 200, body = EventPage),
        (status = 403, body = Problem, description = "Only admins may do this")))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<EventFeedParams>,
) -> ApiResult<Reply<EventPage>> {
    caller.require_admin()?;
    let (limit, wait) = params.bounds()?;
    let types = parse_types(params.types.as_deref())?;
    let after = match params.after.as_deref() {
        Some(raw) => decode_cursor(&state, caller.company_id, raw)?,
        None => Checkpoint::default(),
    };
    let stored_types = EventType::stored_types(&types);
    let company = caller.company_id.to_string();
    let filter = EventFilter {
        company_id: &company,
        event_types: &stored_types,
    };
    let events = next_events(&state, after, limit, filter, wait).await?;
    let next = events.last().map_or(after, |e| e.checkpoint());
    let items = public::render(state.commands.db(), &events).await?;
    Ok(Reply::ok(EventPage {
        items,
        next_cursor: encode_cursor(&state, caller.company_id, next),
    }))
}
