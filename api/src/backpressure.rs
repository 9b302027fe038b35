//! Writes are refused while a view lags past the configured bound: replies
//! no longer wait for the views, so without this a burst could leave them
//! behind for good. A refused write changes nothing; the client retries.
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Whether a request may write events (logins and token refreshes do not).
fn writes(request: &Request) -> bool {
    !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && !request.uri().path().starts_with("/v1/auth/")
}

pub async fn refuse_writes_past_lag(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if writes(&request) {
        if let Some(lag) = state.lag.beyond(state.settings.lag_bound) {
            metrics::counter!("crm_writes_refused_total", "view" => lag.view).increment(1);
            let wait = lag.seconds.clamp(1.0, 30.0).ceil() as u64;
            return ApiError::Unavailable {
                detail: format!(
                    "the {} view is {} events ({:.1} s) behind the writes; retry once it catches up",
                    lag.view, lag.events, lag.seconds
                ),
                retry_after: wait,
            }
            .into_response();
        }
    }
    next.run(request).await
}
