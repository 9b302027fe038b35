//! `GET /v1/customers/{id}/export`: everything held about one customer (the
//! right of access): the customer as it is now, its full history and the
//! photos uploaded for it or shown on it.
use axum::extract::State;
use domain::CustomerId;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::customers::{customer_history, CustomerDto, History};
use super::photos::PhotoMetadata;
use super::{found, Reply};
use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::Path;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct SubjectExport {
    /// The customer now (a deleted one too).
    customer: CustomerDto,
    /// Every change, oldest first, as `GET /v1/customers/{id}/history` shows it.
    history: History,
    /// Every photo uploaded for or shown on the customer (the bytes are at each `url`).
    photos: Vec<PhotoMetadata>,
}

/// Everything held about a customer, as JSON (admins only).
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = SubjectExport),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 404, body = Problem, description = "No such customer in the caller's company")))]
pub async fn export_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<SubjectExport>> {
    caller.require_admin()?;
    let customer = CustomerId(id);
    let row =
        found(projections::read::customers::get(state.pool(), caller.company_id, customer).await?)?;
    let history = customer_history(State(state.clone()), caller.clone(), Path(id))
        .await?
        .body;
    let photos = projections::read::photos::of_customer(state.pool(), caller.company_id, customer)
        .await?
        .into_iter()
        .map(|row| PhotoMetadata::new(row, &state.settings.photo_urls))
        .collect();
    Ok(Reply::ok(SubjectExport {
        customer: CustomerDto::new(row, &state.settings.photo_urls),
        history,
        photos,
    }))
}
