//! The REST layer (axum): the HTTP contract that `docs/API.md` describes.
//!
//! The life of a request: middleware gives it a request id, a trace span,
//! metrics, CORS and size/time limits; the [`caller::Caller`] extractor verifies
//! the token and is the only source of the company id; a handler in
//! [`routes`] validates the body into domain values, runs commands through
//! `commands::Commands` (writes) or queries the read models in
//! `projections::read` (reads); every error leaves as problem+json through
//! [`error::ApiError`].
//!
//! The OpenAPI document is generated from the same handler list that builds
//! the router ([`routes::router`]), so the spec and the router cannot drift.

pub mod api_keys;
pub mod auth;
pub mod backpressure;
pub mod caller;
pub mod console;
pub mod cors;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod imports;
pub mod middleware;
pub mod photo_urls;
pub mod ratelimit;
pub mod routes;
pub mod secrets;
pub mod serve;
pub mod sessions;
pub mod spec;
pub mod state;
pub mod validate;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::time::Duration;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3.1 document of every route.
pub fn openapi() -> OpenApi {
    let (_, spec) = routes::router(0).split_for_parts();
    decorate(spec)
}

fn decorate(mut spec: OpenApi) -> OpenApi {
    spec::complete(&mut spec);
    spec.info.title = "CRM API".into();
    spec.info.version = env!("CARGO_PKG_VERSION").into();
    // The document describes this project, not the generator's own package.
    spec.info.contact = None;
    let mut license = utoipa::openapi::License::new("MIT");
    license.identifier = Some("MIT".into());
    spec.info.license = Some(license);
    spec.info.description = Some(
        "Multi-tenant CRM: companies, users, customers and their photos.\n\n\
         Writes answer from their own events, without waiting for the read models. \
         To see a write in a later read, send its `X-Consistency-Token` back on that read: \
         the read waits (at most 5 s) until the read models include it. Without the token, \
         a read may miss a write, but never by more than the lag bound: past it, writes answer \
         `503` with `Retry-After` and a detail naming the lagging view."
            .into(),
    );
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    spec
}

/// HTTP settings the router needs beyond the state.
pub struct HttpSettings {
    pub cors_origins: cors::CorsOrigins,
    /// Body limit of JSON routes.
    pub body_limit: usize,
    /// Body limit of the photo upload (a rejected oversized upload is read
    /// up to this much so the client sees its 413).
    pub upload_body_limit: usize,
    pub request_timeout: Duration,
}

/// The whole application: routes, docs, fallbacks and middleware.
pub fn app(state: AppState, http: &HttpSettings) -> Router {
    let (router, spec) = routes::router(http.upload_body_limit).split_for_parts();
    let spec = decorate(spec);
    let router = router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            backpressure::refuse_writes_past_lag,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::limit_requests,
        ))
        .with_state(state);
    middleware::wrap(
        router,
        http,
        cors::layer(&http.cors_origins),
        DefaultBodyLimit::max(http.body_limit),
    )
}
