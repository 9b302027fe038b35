//! The layers around every route: request ids, tracing, metrics, CORS, body
//! and time limits, security headers, the per-credential request limit, and
//! a panic guard that still answers problem+json.
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::HttpSettings;

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Ends a request that takes longer than the limit (a slow client sending
/// its body, or a stuck store) with a problem+json `503` and `Retry-After`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable {
            detail: format!("the request took longer than {} s; retry", limit.as_secs()),
            retry_after: 5,
        }
        .into_response(),
    }
}

/// Headers every response carries. The API answers JSON (and photos) to
/// programs, never pages to browsers: nothing may be sniffed, framed, cached
/// by shared caches or leak a Referer. The docs page keeps its own policy
/// (it needs its scripts and styles); the console has its own, strict one.
async fn security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let docs = path.starts_with("/docs");
    let console = path == crate::console::PATH || path.starts_with("/app/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A route may widen it (signed photo URLs are embedded cross-origin).
    headers
        .entry("cross-origin-resource-policy")
        .or_insert(HeaderValue::from_static("same-origin"));
    if console {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::console::CONTENT_SECURITY_POLICY),
        );
    } else if !docs {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        // Responses about a caller's data must not be stored by any cache;
        // the photo route sets its own (private) policy.
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

/// `If-None-Match` on a read whose `ETag` it names answers `304` without a
/// body, so a client revalidating a cached copy does not download it again.
/// Weak comparison (RFC 9110 13.1.2): `W/"3"` matches `"3"`.
async fn not_modified(request: Request, next: Next) -> Response {
    let conditional = matches!(request.method(), &Method::GET | &Method::HEAD)
        .then(|| request.headers().get(header::IF_NONE_MATCH).cloned())
        .flatten();
    let response = next.run(request).await;
    let Some(condition) = conditional else {
        return response;
    };
    let current = response.headers().get(header::ETAG);
    let matches = match (condition.to_str(), current.and_then(|v| v.to_str().ok())) {
        (Ok(condition), Some(current)) if response.status() == StatusCode::OK => {
            etag_listed(condition, current)
        }
        _ => false,
    };
    if !matches {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut unchanged = Response::new(axum::body::Body::empty());
    *unchanged.status_mut() = StatusCode::NOT_MODIFIED;
    // The validators and caching headers of the full answer (RFC 9110 15.4.5).
    for name in [
        header::ETAG,
        header::CACHE_CONTROL,
        header::VARY,
        header::CONTENT_LOCATION,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            unchanged.headers_mut().insert(name, value.clone());
        }
    }
    unchanged
}

/// Whether an `If-None-Match` list names `etag` (or is `*`).
fn etag_listed(condition: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    condition
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == etag)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}

pub fn wrap(
    router: Router,
    http: &HttpSettings,
    cors: CorsLayer,
    body_limit: DefaultBodyLimit,
) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    router
        .layer(body_limit)
        .layer(axum::middleware::from_fn(not_modified))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            http.request_timeout,
            time_limit,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(cors)
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", request_id = %id, method = %request.method(), uri = %request.uri())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Counts each request that carries a bearer credential against that
/// credential's window, answers `429` past it, and tells the client where it
/// stands (`RateLimit`, `RateLimit-Policy`: draft-ietf-httpapi-ratelimit-headers).
/// Requests without one (login, signup) are not counted here.
pub async fn limit_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limiter = &state.request_limiter;
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|_| limiter.limit > 0)
        .map(crate::secrets::digest);
    let Some(credential) = credential else {
        return next.run(request).await;
    };
    let (quota, over) = limiter.hit(&credential);
    let mut response = if over {
        ApiError::RateLimited {
            detail: format!(
                "more than {} requests in {} s with this credential; retry later",
                quota.limit, quota.window_secs
            ),
            retry_after: quota.reset_secs,
        }
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    let values = [
        (
            "ratelimit-policy",
            format!("{};w={}", quota.limit, quota.window_secs),
        ),
        (
            "ratelimit",
            format!(
                "limit={}, remaining={}, reset={}",
                quota.limit, quota.remaining, quota.reset_secs
            ),
        ),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::etag_listed;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        assert!(etag_listed("\"3\"", "\"3\""));
        assert!(etag_listed("W/\"3\"", "\"3\""));
        assert!(etag_listed("\"1\", \"3\"", "\"3\""));
        assert!(etag_listed("*", "\"3\""));
        assert!(!etag_listed("\"4\"", "\"3\""));
        assert!(!etag_listed("\"33\"", "\"3\""));
    }
}
