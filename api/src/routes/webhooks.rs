//! Webhooks (admins only): endpoints that receive the company's public
//! events, signed the Standard Webhooks way; their secrets, and the
//! delivery log. Delivery itself is `projections::webhooks`.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use projections::public::EventType;
use projections::webhooks::store::{self, DeliveryRow, NewWebhook, WebhookChange, WebhookRow};
use projections::webhooks::{sign, target};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{found, timestamp, PageParams, Reply};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{nullable, Json, Path, Query};
use crate::state::AppState;
use crate::validate::Fields;

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);
pub const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Serialize, ToSchema)]
pub struct WebhookDto {
    #[schema(format = Uuid)]
    id: String,
    url: String,
    /// Public event types it receives; empty = all.
    event_types: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// Why the server disabled it (e.g. the endpoint answered `410 Gone`).
    disabled_reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The signing secret (`whsec_…`): only in the reply that creates the webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<WebhookRow> for WebhookDto {
    fn from(row: WebhookRow) -> Self {
        Self {
            event_types: row.event_types(),
            id: row.id,
            url: row.url,
            description: row.description,
            enabled: row.enabled != 0,
            disabled_reason: row.disabled_reason,
            created_at: timestamp(&row.created_at),
            updated_at: timestamp(&row.updated_at),
            secret: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookPage {
    items: Vec<WebhookDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (`http` only where the operator allows it); not resolving to a loopback, private or link-local address.
    #[schema(schema_with = crate::spec::webhook_url, required = true)]
    url: Option<String>,
    /// Public event types to receive; empty or absent = all.
    #[serde(default)]
    #[schema(inline)]
    event_types: Option<Vec<String>>,
    /// At most 500 characters.
    description: Option<String>,
    /// Default `true`.
    enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct SecretDto {
    /// The new signing secret (`whsec_…`).
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDto {
    #[schema(format = Uuid)]
    id: String,
    /// The public event's id: the `webhook-id` header of every attempt.
    #[schema(format = Uuid)]
    event_id: String,
    event_type: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    attempts: i64,
    last_response_status: Option<i64>,
    /// Why the last attempt got no response (timeout, refused target, …).
    last_error: Option<String>,
    last_latency_ms: Option<i64>,
    #[schema(format = DateTime)]
    last_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<DeliveryRow> for DeliveryDto {
    fn from(row: DeliveryRow) -> Self {
        let settled = row.status != "pending";
        Self {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            last_response_status: row.last_response_status,
            last_error: row.last_error,
            last_latency_ms: row.last_latency_ms,
            last_attempt_at: row.last_attempt_at.as_deref().map(timestamp),
            next_attempt_at: if settled {
                None
            } else {
                row.next_attempt_at.as_deref().map(timestamp)
            },
            created_at: timestamp(&row.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryDto>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PingDto {
    /// The test delivery, in the delivery log.
    #[schema(format = Uuid)]
    delivery_id: String,
}

/// The URL, checked for syntax, scheme and (unless allowed) internal targets.
async fn checked_url(state: &AppState, fields: &mut Fields, raw: &str) -> Option<String> {
    let policy = state.settings.webhook_targets;
    let url = match target::parse(raw.trim(), policy) {
        Ok(url) => url,
        Err(error) => {
            fields.error("url", error.to_string());
            return None;
        }
    };
    match target::check(&url, policy).await {
        Ok(()) => Some(url.to_string()),
        Err(error) => {
            fields.error("url", error.to_string());
            None
        }
    }
}

fn checked_types(fields: &mut Fields, raw: Vec<String>) -> Vec<String> {
    let mut types = Vec::new();
    for t in raw {
        match EventType::parse(&t) {
            Some(t) if !types.contains(&t.as_str().to_owned()) => types.push(t.as_str().to_owned()),
            Some(_) => {}
            None => fields.error("event_types", format!("unknown event type {t:?}")),
        }
    }
    types
}

fn checked_description(fields: &mut Fields, raw: Option<String>) -> Option<String> {
    let raw = raw?;
    if raw.chars().count() > MAX_DESCRIPTION_CHARS || raw.chars().any(char::is_control) {
        fields.error(
            "description",
            "at most 500 characters, without control characters",
        );
        return None;
    }
    Some(raw)
}

/// Registers a webhook (admins only). The reply is the only one that shows its secret.
///
/// Each matching public event is delivered as `POST <url>` with the event as its JSON
/// body and the Standard Webhooks headers `webhook-id` (the event id, the same on every
/// attempt), `webhook-timestamp` (Unix seconds) and `webhook-signature`: `v1,` + base64
/// of HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>`, keyed with the
/// base64-decoded part of the secret after `whsec_`; during the 24 hours after a
/// rotation, two space-separated signatures (one per secret). Any `2xx` within 10 s is
/// success; `410` disables the webhook; anything else is retried after 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h and 10 h (a longer `Retry-After` on `429`/`503` is
/// honoured), then the delivery has failed (and the webhook is disabled if nothing
/// reached it in all that time).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = CreateWebhook,
    responses(
        (status = 201, body = WebhookDto),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 422, body = Problem, description = "Invalid URL (not https, or resolving to an internal address), unknown event type or description too long")))]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateWebhook>,
) -> ApiResult<Reply<WebhookDto>> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    let url = match body.url.as_deref() {
        None => {
            fields.error("url", "is required");
            None
        }
        Some(raw) => checked_url(&state, &mut fields, raw).await,
    };
    let event_types = checked_types(&mut fields, body.event_types.unwrap_or_default());
    let description = checked_description(&mut fields, body.description);
    let url = fields.finish_with(url)?;
    let secret = sign::new_secret();
    let row = store::create(
        state.pool(),
        caller.company_id,
        NewWebhook {
            url,
            event_types,
            description,
            enabled: body.enabled.unwrap_or(true),
            secret: secret.clone(),
        },
    )
    .await?;
    let location = format!("/v1/webhooks/{}", row.id);
    let mut dto = WebhookDto::from(row);
    dto.secret = Some(secret);
    Ok(Reply::ok(dto)
        .status(StatusCode::CREATED)
        .location(location))
}

/// The company's webhooks, oldest first (admins only).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = WebhookPage), (status = 403, body = Problem, description = "Only admins may do this")))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> ApiResult<Reply<WebhookPage>> {
    caller.require_admin()?;
    let scope = format!("{}/webhooks", caller.company_id);
    let key = &state.settings.cursor_key;
    let after = match page.cursor.as_deref() {
        Some(cursor) => Some(crate::cursor::decode(key, &scope, cursor)?),
        None => None,
    };
    let (rows, next) = store::list(
        state.pool(),
        caller.company_id,
        after.as_ref(),
        page.limit()?,
    )
    .await?;
    Ok(Reply::ok(WebhookPage {
        items: rows.into_iter().map(WebhookDto::from).collect(),
        next_cursor: next.map(|k| crate::cursor::encode(key, &scope, &k)),
    }))
}

/// One webhook (admins only).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookDto), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company")))]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<WebhookDto>> {
    caller.require_admin()?;
    let row = found(store::get(state.pool(), caller.company_id, &id.to_string()).await?)?;
    Ok(Reply::ok(row.into()))
}

/// Changes a webhook (admins only); enabling it again clears `disabled_reason`.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = WebhookDto), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company"), (status = 422, body = Problem)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateWebhook>,
) -> ApiResult<Reply<WebhookDto>> {
    caller.require_admin()?;
    let id = id.to_string();
    found(store::get(state.pool(), caller.company_id, &id).await?)?;
    let mut fields = Fields::default();
    let url = match body.url.as_deref() {
        Some(raw) => checked_url(&state, &mut fields, raw).await,
        None => None,
    };
    let event_types = body.event_types.map(|t| checked_types(&mut fields, t));
    let description = body
        .description
        .map(|d| checked_description(&mut fields, d));
    fields.finish()?;
    let change = WebhookChange {
        url,
        event_types,
        description,
        enabled: body.enabled,
    };
    let row = found(store::update(state.pool(), caller.company_id, &id, change).await?)?;
    Ok(Reply::ok(row.into()))
}

/// Deletes a webhook and its delivery log (admins only).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company")))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if !store::delete(state.pool(), caller.company_id, &id.to_string()).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Replaces the signing secret (admins only); the old one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = SecretDto), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<SecretDto>> {
    caller.require_admin()?;
    let secret = sign::new_secret();
    let until = chrono::Utc::now() + ROTATION_OVERLAP;
    if !store::rotate_secret(
        state.pool(),
        caller.company_id,
        &id.to_string(),
        &secret,
        until,
    )
    .await?
    {
        return Err(ApiError::not_found());
    }
    Ok(Reply::ok(SecretDto { secret }))
}

/// A webhook's deliveries, newest first (admins only).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = DeliveryPage), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company")))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> ApiResult<Reply<DeliveryPage>> {
    caller.require_admin()?;
    let id = id.to_string();
    found(store::get(state.pool(), caller.company_id, &id).await?)?;
    let scope = format!("{}/webhooks/{id}/deliveries", caller.company_id);
    let key = &state.settings.cursor_key;
    let after = match page.cursor.as_deref() {
        Some(cursor) => Some(crate::cursor::decode(key, &scope, cursor)?),
        None => None,
    };
    let (rows, next) = store::deliveries(
        state.pool(),
        caller.company_id,
        &id,
        after.as_ref(),
        page.limit()?,
    )
    .await?;
    Ok(Reply::ok(DeliveryPage {
        items: rows.into_iter().map(DeliveryDto::from).collect(),
        next_cursor: next.map(|k| crate::cursor::encode(key, &scope, &k)),
    }))
}

/// Sends a delivery again now, whatever became of it (admins only).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 202, description = "Queued"), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such delivery of this webhook in the caller's company")))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let queued = store::retry(
        state.pool(),
        caller.company_id,
        &id.to_string(),
        &delivery.to_string(),
    )
    .await?;
    if !queued {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Sends a `webhook.test` event to the webhook (admins only), whatever its filter.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202, body = PingDto), (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such webhook in the caller's company")))]
pub async fn ping_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<PingDto>> {
    caller.require_admin()?;
    let delivery = store::ping(
        state.pool(),
        caller.company_id,
        &id.to_string(),
        &caller.user_id.to_string(),
    )
    .await?;
    let delivery_id = found(delivery)?;
    Ok(Reply::ok(PingDto { delivery_id }).status(StatusCode::ACCEPTED))
}
