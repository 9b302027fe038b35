//! `/v1/api-keys`: admins create, list and delete their company's keys.
use axum::extract::State;
use axum::http::StatusCode;
use domain::values::Title;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{timestamp, PageParams, Reply};
use crate::api_keys::{self, ApiKeyRow};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "billing sync": not blank, at most 200 characters.
    #[schema(schema_with = crate::spec::person_name, required = true)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyDto {
    #[schema(value_type = Uuid)]
    id: String,
    name: String,
    created_at: String,
    /// Within a minute of the latest request made with the key.
    last_used_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewApiKeyDto {
    #[schema(value_type = Uuid)]
    id: String,
    name: String,
    /// The key: send it as `Authorization: Bearer <key>`. Shown only here.
    key: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyPage {
    items: Vec<ApiKeyDto>,
    next_cursor: Option<String>,
}

impl From<ApiKeyRow> for ApiKeyDto {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: timestamp(&row.created_at),
            last_used_at: row.last_used_at.as_deref().map(timestamp),
        }
    }
}

/// Creates an API key: a server-to-server client with an admin's rights in
/// this company (admins only).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])), request_body = CreateApiKey,
    responses(
        (status = 201, body = NewApiKeyDto),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 422, body = Problem)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateApiKey>,
) -> ApiResult<Reply<NewApiKeyDto>> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    let name = fields.required("name", body.name.as_deref(), Title::parse);
    let name = fields.finish_with(name)?;
    let (row, key) = api_keys::create(
        state.pool(),
        caller.company_id,
        caller.user_id.0,
        name.as_str(),
    )
    .await?;
    let location = format!("/v1/api-keys/{}", row.id);
    Ok(Reply::ok(NewApiKeyDto {
        id: row.id,
        name: row.name,
        key,
        created_at: timestamp(&row.created_at),
    })
    .status(StatusCode::CREATED)
    .location(location))
}

/// The company's API keys, oldest first (never the keys themselves).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = ApiKeyPage), (status = 403, body = Problem, description = "Only admins may do this")))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> ApiResult<Reply<ApiKeyPage>> {
    caller.require_admin()?;
    let scope = format!("{}/api-keys", caller.company_id);
    let after = page
        .cursor
        .as_deref()
        .map(|c| crate::cursor::decode(&state.settings.cursor_key, &scope, c))
        .transpose()?;
    let (rows, next) = api_keys::list(
        state.pool(),
        caller.company_id,
        after.as_ref(),
        page.limit()?,
    )
    .await?;
    Ok(Reply::ok(ApiKeyPage {
        items: rows.into_iter().map(ApiKeyDto::from).collect(),
        next_cursor: next.map(|k| crate::cursor::encode(&state.settings.cursor_key, &scope, &k)),
    }))
}

/// Deletes an API key: requests with it are refused from now on.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such key in the caller's company")))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if api_keys::delete(state.pool(), caller.company_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
