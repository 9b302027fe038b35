//! The caller's company.
use domain::CompanyId;
use sqlx::{AnyPool, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct CompanyRow {
    #[sqlx(try_from = "String")]
    pub id: CompanyId,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_seq: i64,
}

pub async fn get(pool: &AnyPool, company: CompanyId) -> Result<Option<CompanyRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, created_at, updated_at, last_seq FROM companies WHERE id = $1")
        .bind(company.to_string())
        .fetch_optional(pool)
        .await
}
