//! One module per resource, each a set of handlers registered here with
//! their OpenAPI descriptions, so the served spec and the router are built
//! from the same list.
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use projections::consistency::{wait_for_signalled, ConsistencyToken};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use domain::CompanyId;

use crate::error::ApiResult;
use crate::state::AppState;

pub mod api_keys;
pub mod auth;
pub mod company;
pub mod customer_imports;
pub mod customer_list;
pub mod customer_subject;
pub mod customers;
pub mod customers_batch;
pub mod customers_export;
pub mod events;
pub mod ops;
pub mod photos;
pub mod users;
pub mod webhooks;

/// The most uploads read at once; the others wait (within the request time
/// limit). Each holds up to the upload limit in memory while it is judged and
/// stored, so this bounds upload memory to `MAX_CONCURRENT_UPLOADS` × limit.
pub const MAX_CONCURRENT_UPLOADS: usize = 16;

/// Every route; `upload_limit` is the body limit of the photo upload, the
/// only route that takes more than a small JSON body.
pub fn router(upload_limit: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(photos::upload_photo))
        .layer(axum::extract::DefaultBodyLimit::max(upload_limit))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_UPLOADS,
        ));
    OpenApiRouter::new()
        .routes(routes!(auth::signup))
        .routes(routes!(auth::token))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::delete_api_key))
        .routes(routes!(company::get_company, company::rename_company))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::change_role))
        .routes(routes!(
            customer_list::list_customers,
            customers::create_customer
        ))
        .routes(routes!(
            customers::get_customer,
            customers::update_customer,
            customers::delete_customer
        ))
        .routes(routes!(customers::restore_customer))
        .routes(routes!(customers_batch::customers_batch))
        .routes(routes!(customer_imports::start_import))
        .routes(routes!(customer_imports::get_import))
        .routes(routes!(customer_imports::cancel_import))
        .routes(routes!(customer_imports::import_errors))
        .routes(routes!(customers_export::export_customers))
        .routes(routes!(customers::set_photo, customers::remove_photo))
        .routes(routes!(customers::customer_history))
        .routes(routes!(customer_subject::export_customer))
        .routes(routes!(events::list_events))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(webhooks::ping_webhook))
        .merge(uploads)
        .routes(routes!(photos::get_photo))
        .routes(routes!(photos::photo_metadata))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

pub const CONSISTENCY_HEADER: &str = "x-consistency-token";
/// Set on a read that waited for a consistency token and gave up.
pub const STALE_HEADER: &str = "x-consistency-stale";

/// A JSON response with the headers of the contract.
pub struct Reply<T> {
    pub status: StatusCode,
    pub body: T,
    pub version: Option<i64>,
    pub token: Option<ConsistencyToken>,
    pub location: Option<String>,
    pub stale: bool,
}

impl<T: Serialize> Reply<T> {
    pub fn ok(body: T) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            version: None,
            token: None,
            location: None,
            stale: false,
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    pub fn token(mut self, token: ConsistencyToken) -> Self {
        self.token = Some(token);
        self
    }

    pub fn location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    pub fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }
}

pub fn write_headers(
    headers: &mut HeaderMap,
    version: Option<i64>,
    token: Option<&ConsistencyToken>,
    stale: bool,
) {
    if let Some(version) = version {
        if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
            headers.insert(header::ETAG, value);
        }
    }
    if let Some(token) = token {
        if let Ok(value) = HeaderValue::from_str(&token.encode()) {
            headers.insert(CONSISTENCY_HEADER, value);
        }
    }
    if stale {
        headers.insert(STALE_HEADER, HeaderValue::from_static("true"));
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        write_headers(headers, self.version, self.token.as_ref(), self.stale);
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

/// `204 No Content` for a write, with its consistency token.
pub fn no_content(token: ConsistencyToken) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    write_headers(response.headers_mut(), None, Some(&token), false);
    response
}

impl AppState {
    /// Waits for a read's token, looking only at `company`'s rows; `true`
    /// when the read may be stale.
    pub async fn await_token(&self, company: CompanyId, token: Option<&ConsistencyToken>) -> bool {
        match token {
            Some(token) => {
                !wait_for_signalled(
                    self.pool(),
                    &company.to_string(),
                    token,
                    self.settings.consistency_wait,
                    Some(self.commands.applied()),
                )
                .await
            }
            None => false,
        }
    }
}

/// Stored timestamps carry microseconds; the API shows milliseconds (the
/// public events show them the same way).
pub fn timestamp(stored: &str) -> String {
    projections::public::api_time(stored)
}

/// `?limit=` and `?cursor=` of every list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50; larger values are clamped to 200.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> ApiResult<i64> {
        match self.limit {
            None => Ok(50),
            Some(n) if n < 1 => Err(crate::error::ApiError::bad_request(
                "limit must be at least 1",
            )),
            Some(n) => Ok(n.min(200)),
        }
    }
}

/// Maps a read-model row's absence to `404`.
pub fn found<T>(row: Option<T>) -> ApiResult<T> {
    row.ok_or_else(crate::error::ApiError::not_found)
}
