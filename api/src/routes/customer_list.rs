//! `GET /v1/customers`: search, sort, filters and keyset pages. The export
//! reads with the same parameters.
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::values::ExternalId;
use projections::read::customers::{CustomerSort, Deleted, ListFilters, ListQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::customers::CustomerDto;
use super::{PageParams, Reply};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Query, WaitFor};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct CustomerPage {
    items: Vec<CustomerDto>,
    next_cursor: Option<String>,
}

/// The orders of the customer list.
#[derive(Clone, Copy, Deserialize, ToSchema)]
pub enum SortParam {
    #[serde(rename = "created_at")]
    CreatedAt,
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
    #[serde(rename = "surname")]
    Surname,
    #[serde(rename = "-surname")]
    SurnameDesc,
}

impl SortParam {
    fn as_str(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::CreatedAtDesc => "-created_at",
            Self::Surname => "surname",
            Self::SurnameDesc => "-surname",
        }
    }
}

/// Deleted customers in a list.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeletedParam {
    /// Only deleted customers.
    Only,
    /// Deleted and live customers.
    Include,
    /// The same as `only` (kept for older clients).
    True,
    /// Live customers only (the default).
    False,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerListParams {
    /// Matches the start of any word of name, surname or email (case- and accent-insensitive); at most 200 characters.
    q: Option<String>,
    /// `created_at`, `-created_at` (default), `surname` or `-surname`.
    #[param(inline)]
    sort: Option<SortParam>,
    /// `only` lists deleted customers, `include` lists both; live ones only by default.
    #[param(inline)]
    deleted: Option<DeletedParam>,
    /// Created by this user (or API key).
    created_by: Option<Uuid>,
    /// Last changed by this user (or API key).
    updated_by: Option<Uuid>,
    /// Customers with (`true`) or without (`false`) a photo.
    has_photo: Option<bool>,
    /// Created strictly after this time (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created strictly before this time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Last changed strictly after this time (RFC 3339).
    updated_after: Option<DateTime<Utc>>,
    /// Last changed strictly before this time (RFC 3339).
    updated_before: Option<DateTime<Utc>>,
    /// The customer with exactly this external id (trimmed; at most 200 characters).
    #[param(max_length = 200)]
    external_id: Option<String>,
}

/// A time as the views store it, so that it compares as text.
fn stored(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl CustomerListParams {
    /// The query these parameters ask for, and the scope its cursors are
    /// signed for (a cursor only continues the list it came from).
    pub fn query(
        self,
        caller: &Caller,
        after_cursor: Option<&str>,
        cursor_key: &[u8],
        limit: i64,
    ) -> ApiResult<(ListQuery, String)> {
        let sort_text = self.sort.unwrap_or(SortParam::CreatedAtDesc).as_str();
        let sort = CustomerSort::parse(sort_text).ok_or_else(|| {
            ApiError::bad_request("sort must be created_at, -created_at, surname or -surname")
        })?;
        if self
            .q
            .as_ref()
            .is_some_and(|q| q.chars().count() > crate::validate::MAX_QUERY_CHARS)
        {
            return Err(ApiError::bad_request("q must be at most 200 characters"));
        }
        let search = self.q.filter(|q| !q.trim().is_empty());
        let external_id = self
            .external_id
            .map(|raw| ExternalId::parse(&raw))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("external_id {e}")))?;
        let filters = ListFilters {
            deleted: match self.deleted {
                None | Some(DeletedParam::False) => Deleted::Exclude,
                Some(DeletedParam::Only | DeletedParam::True) => Deleted::Only,
                Some(DeletedParam::Include) => Deleted::Include,
            },
            created_by: self.created_by.map(|id| id.to_string()),
            updated_by: self.updated_by.map(|id| id.to_string()),
            has_photo: self.has_photo,
            created_after: stored(self.created_after),
            created_before: stored(self.created_before),
            updated_after: stored(self.updated_after),
            updated_before: stored(self.updated_before),
            external_id: external_id.map(|e| e.as_str().to_owned()),
        };
        let scope = format!(
            "{}/customers/{sort_text}/{filters:?}/{}",
            caller.company_id,
            search.as_deref().unwrap_or("")
        );
        let after = after_cursor
            .map(|c| crate::cursor::decode(cursor_key, &scope, c))
            .transpose()?;
        Ok((
            ListQuery {
                sort,
                filters,
                search,
                after,
                limit,
            },
            scope,
        ))
    }
}

/// A page of customers.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", security(("bearer" = [])),
    params(PageParams, CustomerListParams, ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = CustomerPage)))]
pub async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
    Query(page): Query<PageParams>,
    Query(params): Query<CustomerListParams>,
) -> ApiResult<Reply<CustomerPage>> {
    let (query, scope) = params.query(
        &caller,
        page.cursor.as_deref(),
        &state.settings.cursor_key,
        page.limit()?,
    )?;
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let (rows, next) =
        projections::read::customers::list(state.pool(), caller.company_id, &query).await?;
    Ok(Reply::ok(CustomerPage {
        items: rows
            .into_iter()
            .map(|row| CustomerDto::new(row, &state.settings.photo_urls))
            .collect(),
        next_cursor: next.map(|k| crate::cursor::encode(&state.settings.cursor_key, &scope, &k)),
    })
    .stale(stale))
}
