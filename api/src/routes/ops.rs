//! Health, readiness and metrics for operators.
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    event_store: bool,
    bus: bool,
    object_store: bool,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Ready only when the event store, the bus and the object store answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Problem, description = "Not ready: the detail names what is down")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (event_store, bus, object_store) =
        tokio::join!(state.commands.db().ping(), (state.bus_ready)(), async {
            state.objects.ping().await.is_ok()
        });
    let down: Vec<&str> = [
        ("event store", event_store),
        ("bus", bus),
        ("object store", object_store),
    ]
    .into_iter()
    .filter(|(_, up)| !up)
    .map(|(name, _)| name)
    .collect();
    if down.is_empty() {
        axum::Json(Readiness {
            status: "ready",
            event_store,
            bus,
            object_store,
        })
        .into_response()
    } else {
        ApiError::Unavailable {
            detail: format!("not ready: {} down", down.join(", ")),
            retry_after: 5,
        }
        .into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
