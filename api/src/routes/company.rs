//! The caller's company.
use axum::extract::State;
use domain::company::{Company, CompanyCommand};
use domain::values::CompanyName;
use domain::CompanyId;
use projections::consistency::ConsistencyToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{found, timestamp, Reply};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::{IfMatch, Json, WaitFor};
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Clone, Serialize, ToSchema)]
pub struct CompanyDto {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCompany {
    name: Option<String>,
}

pub async fn load_company(state: &AppState, company: CompanyId) -> ApiResult<(CompanyDto, i64)> {
    let row = found(projections::read::companies::get(state.pool(), company).await?)?;
    Ok((
        CompanyDto {
            id: row.id,
            name: row.name,
            created_at: timestamp(&row.created_at),
        },
        row.last_seq,
    ))
}

/// The caller's company.
#[utoipa::path(get, path = "/v1/company", tag = "company", security(("bearer" = [])),
    responses((status = 200, body = CompanyDto), (status = 401, body = Problem)))]
pub async fn get_company(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
) -> ApiResult<Reply<CompanyDto>> {
    let stale = state.await_token(wait.as_ref()).await;
    let (company, version) = load_company(&state, caller.company_id).await?;
    Ok(Reply::ok(company).version(version).stale(stale))
}

/// Renames the company (admins only).
#[utoipa::path(patch, path = "/v1/company", tag = "company", security(("bearer" = [])), request_body = RenameCompany,
    responses((status = 200, body = CompanyDto), (status = 403, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn rename_company(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Json(body): Json<RenameCompany>,
) -> ApiResult<Reply<CompanyDto>> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    let name = fields.required("name", body.name.as_deref(), CompanyName::parse);
    fields.finish()?;
    let Some(name) = name else {
        return Err(crate::error::ApiError::internal("validated name missing"));
    };
    let outcome = state
        .commands
        .execute::<Company>(
            &caller.company_id.to_string(),
            CompanyCommand::Rename { name },
            &caller.context(),
            super::users::expect(expected),
        )
        .await?;
    let token = ConsistencyToken::applied("company", caller.company_id, outcome.version);
    state.await_token(Some(&token)).await;
    let (company, _) = load_company(&state, caller.company_id).await?;
    Ok(Reply::ok(company)
        .version(outcome.version as i64)
        .token(token))
}
