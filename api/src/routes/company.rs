//! The caller's company.
use axum::extract::State;
use domain::company::{Company, CompanyCommand};
use domain::values::CompanyName;
use domain::CompanyId;
use projections::consistency::ConsistencyToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{found, timestamp, Reply};
use crate::caller::Caller;
use crate::error::{ApiResult, Problem};
use crate::extract::{IfMatch, Json, WaitFor};
use crate::state::AppState;
use crate::validate::Fields;

#[derive(Clone, Serialize, ToSchema)]
pub struct CompanyDto {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCompany {
    #[schema(schema_with = crate::spec::company_name, required = true)]
    name: Option<String>,
}

pub async fn load_company(state: &AppState, company: CompanyId) -> ApiResult<(CompanyDto, i64)> {
    let row = found(projections::read::companies::get(state.pool(), company).await?)?;
    Ok((
        CompanyDto {
            id: row.id.to_string(),
            name: row.name,
            created_at: timestamp(&row.created_at),
        },
        row.last_seq,
    ))
}

/// The company as its events leave it: a write's reply, which never waits
/// for the view.
pub async fn company_from_store(state: &AppState, company: CompanyId) -> ApiResult<CompanyDto> {
    let events =
        commands::events::read_stream(state.commands.db(), "company", &company.to_string()).await?;
    let row = found(
        projections::views::fold_events::<projections::views::companies::Companies>(&events)
            .map_err(crate::error::ApiError::internal)?,
    )?;
    Ok(CompanyDto {
        id: row.id,
        name: row.name,
        created_at: timestamp(&row.created_at),
    })
}

/// The caller's company.
#[utoipa::path(get, path = "/v1/company", tag = "company", security(("bearer" = [])),
    params(("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = CompanyDto)))]
pub async fn get_company(
    State(state): State<AppState>,
    caller: Caller,
    WaitFor(wait): WaitFor,
) -> ApiResult<Reply<CompanyDto>> {
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let (company, version) = load_company(&state, caller.company_id).await?;
    Ok(Reply::ok(company).version(version).stale(stale))
}

/// Renames the company (admins only).
#[utoipa::path(patch, path = "/v1/company", tag = "company", security(("bearer" = [])), request_body = RenameCompany,
    params(("If-Match" = Option<String>, Header)),
    responses(
        (status = 200, body = CompanyDto),
        (status = 403, body = Problem, description = "Only admins may do this"),
        (status = 409, body = Problem, description = "Changed concurrently; retry"),
        (status = 412, body = Problem, description = "The If-Match version is stale"),
        (status = 422, body = Problem)))]
pub async fn rename_company(
    State(state): State<AppState>,
    caller: Caller,
    IfMatch(expected): IfMatch,
    Json(body): Json<RenameCompany>,
) -> ApiResult<Reply<CompanyDto>> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    let name = fields.required("name", body.name.as_deref(), CompanyName::parse);
    let name = fields.finish_with(name)?;
    let outcome = state
        .commands
        .execute::<Company>(
            &caller.company_id.to_string(),
            CompanyCommand::Rename { name },
            &caller.context(),
            expected,
        )
        .await?;
    let token = ConsistencyToken::applied::<Company>(caller.company_id, outcome.version);
    let company = company_from_store(&state, caller.company_id).await?;
    Ok(Reply::ok(company)
        .version(outcome.version as i64)
        .token(token))
}
