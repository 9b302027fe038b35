//! `POST /v1/customers/batch`: up to 100 creates, updates and deletes in one
//! request, each answered on its own. Every operation goes through the same
//! handler as its single-resource route, so the rules, checks and events are
//! those of one request per operation; they run in order and one failing
//! does not undo or stop the others.
use axum::extract::State;
use axum::response::Response;
use commands::Expect;
use projections::consistency::ConsistencyToken;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::customers::{create_customer, delete_customer, update_customer, CustomerDto};
use super::Reply;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{parse_if_match, IdempotencyKey, IfMatch, Json, Path};
use crate::state::AppState;

/// The most operations in one batch.
pub const MAX_OPERATIONS: usize = 100;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 operations, run in order.
    #[schema(min_items = 1, max_items = 100)]
    operations: Vec<BatchOperation>,
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchOp {
    Create,
    Update,
    Delete,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOperation {
    op: BatchOp,
    /// The customer: required to update or delete; to create, an id the client chose.
    id: Option<Uuid>,
    /// As the `If-Match` header of the single route, e.g. `"3"`.
    if_match: Option<String>,
    /// The body of the single route: `POST /v1/customers` to create,
    /// `PATCH /v1/customers/{id}` to update; none to delete.
    data: Option<serde_json::Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// The status the single route would have answered.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    id: Option<String>,
    /// The customer's new ETag after a create or update.
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
    /// What a later read waits for to see this operation.
    #[serde(skip)]
    token: Option<ConsistencyToken>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per operation, in the operations' order.
    results: Vec<BatchResult>,
}

/// Runs up to 100 customer creates, updates and deletes; each has its own result.
#[utoipa::path(post, path = "/v1/customers/batch", tag = "customers", security(("bearer" = [])), request_body = BatchRequest,
    responses((status = 200, body = BatchResponse, description = "Every operation ran; see each result's status"),
        (status = 422, body = Problem, description = "No operations, more than 100, or a malformed batch")))]
pub async fn customers_batch(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<BatchRequest>,
) -> ApiResult<Reply<BatchResponse>> {
    if body.operations.is_empty() || body.operations.len() > MAX_OPERATIONS {
        return Err(ApiError::field(
            "operations",
            format!("must hold 1 to {MAX_OPERATIONS} operations"),
        ));
    }
    let mut results = Vec::with_capacity(body.operations.len());
    let mut token: Option<ConsistencyToken> = None;
    for (index, operation) in body.operations.into_iter().enumerate() {
        let mut result = run(&state, &caller, index, operation)
            .await
            .unwrap_or_else(BatchResult::failed);
        if let Some(written) = result.token.take() {
            token = Some(match token {
                Some(token) => token.and(written),
                None => written,
            });
        }
        results.push(result);
    }
    // One token covering every write of the batch.
    let reply = Reply::ok(BatchResponse { results });
    Ok(match token {
        Some(token) => reply.token(token),
        None => reply,
    })
}

async fn run(
    state: &AppState,
    caller: &Caller,
    index: usize,
    operation: BatchOperation,
) -> ApiResult<BatchResult> {
    let field = |name: &str| format!("operations[{index}].{name}");
    let expected = match operation.if_match.as_deref() {
        Some(raw) => parse_if_match(raw)
            .map_err(|_| ApiError::field(&field("if_match"), "must be an ETag like \"3\""))?,
        None => Expect::Any,
    };
    let id = operation
        .id
        .ok_or_else(|| ApiError::field(&field("id"), "is required"));
    let data_field = field("data");
    let (state, caller) = (State(state.clone()), caller.clone());
    let reply = match operation.op {
        BatchOp::Create => {
            let body = body_of(operation.into_body(), &data_field)?;
            create_customer(state, caller, IdempotencyKey(None), Json(body)).await?
        }
        BatchOp::Update => {
            let body = body_of(operation.into_body(), &data_field)?;
            update_customer(state, caller, IfMatch(expected), Path(id?), Json(body)).await?
        }
        BatchOp::Delete => {
            let id = id?;
            if operation.data.is_some() {
                return Err(ApiError::field(&data_field, "a delete takes no data"));
            }
            let response = delete_customer(state, caller, IfMatch(expected), Path(id)).await?;
            return Ok(BatchResult::deleted(id, &response));
        }
    };
    Ok(BatchResult::written(reply))
}

impl BatchOperation {
    /// The single route's body; a create's `id` goes in it. No data is a
    /// problem of the operation (`null` is no body), not an empty change.
    fn into_body(self) -> Value {
        self.data.map_or(Value::Null, |mut data| {
            if let (BatchOp::Create, Some(id)) = (self.op, self.id) {
                data.entry("id")
                    .or_insert_with(|| Value::String(id.to_string()));
            }
            Value::Object(data)
        })
    }
}

impl BatchResult {
    fn written(reply: Reply<CustomerDto>) -> Self {
        Self {
            status: reply.status.as_u16(),
            id: Some(reply.body.id.clone()),
            etag: reply.version.map(|v| format!("\"{v}\"")),
            problem: None,
            token: reply.token,
        }
    }

    fn deleted(id: Uuid, response: &Response) -> Self {
        let token = response
            .headers()
            .get(super::CONSISTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ConsistencyToken::decode);
        Self {
            status: response.status().as_u16(),
            id: Some(id.to_string()),
            etag: None,
            problem: None,
            token,
        }
    }

    fn failed(error: ApiError) -> Self {
        Self {
            status: error.status().as_u16(),
            id: None,
            etag: None,
            problem: Some(error.problem()),
            token: None,
        }
    }
}

/// The single route's body, read with the same rules (unknown fields, wrong
/// types), its problems named under this operation.
fn body_of<T: serde::de::DeserializeOwned>(data: Value, field: &str) -> ApiResult<T> {
    serde_json::from_value(data).map_err(|e| ApiError::field(field, e.to_string()))
}
