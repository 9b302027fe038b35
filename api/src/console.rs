//! The web console: a static single-page app under `/app` that uses only the
//! public REST API, as any frontend would. Its files are compiled into the
//! binary (no build step, nothing fetched from elsewhere), so both run modes
//! serve it without extra files on disk.
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// Where the console lives; `/` redirects here.
pub const PATH: &str = "/app";

/// The console's own policy: its scripts, styles and images come from this
/// origin only (no inline scripts), it talks only to this API, and the signed
/// photo URLs it shows are same-origin. Previews of a chosen file are
/// `blob:` URLs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../console/index.html");

/// (file name, content type, body) of every asset besides the page itself.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
    ("main.js", JS, include_str!("../console/main.js")),
    ("api.js", JS, include_str!("../console/api.js")),
    ("ui.js", JS, include_str!("../console/ui.js")),
    ("auth.js", JS, include_str!("../console/auth.js")),
    ("customers.js", JS, include_str!("../console/customers.js")),
    ("customer.js", JS, include_str!("../console/customer.js")),
    ("users.js", JS, include_str!("../console/users.js")),
    ("operator.js", JS, include_str!("../console/operator.js")),
    ("history.js", JS, include_str!("../console/history.js")),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../console/icon.svg"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

/// `/`, `/app`, `/app/` and `/app/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(PATH) }))
        .route(PATH, get(index))
        .route("/app/", get(index))
        .route("/app/{file}", get(asset))
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, body),
        None => ApiError::NotFound("no such console file").into_response(),
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidate on each load: a new binary may ship new files.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
