//! What every handler shares.
use commands::objects::ObjectStore;
use commands::Commands;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use crate::api_keys::UsageRecorder;
use crate::auth::TokenKeys;
use crate::ratelimit::{LoginThrottle, RequestLimiter};

/// Answers whether the event bus is reachable (always `true` embedded).
pub type BusProbe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

pub struct Settings {
    pub signup_enabled: bool,
    pub token_ttl: Duration,
    /// How long a refresh token (one login's rotating chain) stays usable.
    pub refresh_ttl: Duration,
    pub max_upload_bytes: usize,
    /// How long a read waits for an `X-Consistency-Token`, and a write for its own views.
    pub consistency_wait: Duration,
    /// Signs list cursors.
    pub cursor_key: Vec<u8>,
    /// Signs the photo URLs that work without a token.
    pub photo_urls: crate::photo_urls::PhotoUrls,
    /// Past this lag of any view, writes answer `503`.
    pub lag_bound: projections::lag::LagBound,
    /// Which webhook URLs may be registered.
    pub webhook_targets: projections::webhooks::TargetPolicy,
}

pub struct Inner {
    pub commands: Commands,
    pub objects: Arc<dyn ObjectStore>,
    pub tokens: TokenKeys,
    pub settings: Settings,
    pub bus_ready: BusProbe,
    pub login_throttle: LoginThrottle,
    /// Requests per bearer token (access token or API key).
    pub request_limiter: RequestLimiter,
    pub api_key_usage: UsageRecorder,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The views' latest sampled lag.
    pub lag: projections::lag::LagWatch,
    /// Customer imports: their uploads and the slots they run in.
    pub imports: crate::imports::Imports,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.commands.db().any
    }
}
