//! Photos of the caller's company.
use domain::{CompanyId, PhotoId};
use sqlx::{AnyPool, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct PhotoRow {
    #[sqlx(try_from = "String")]
    pub id: PhotoId,
    #[sqlx(try_from = "String")]
    pub company_id: CompanyId,
    pub object_key: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub for_customer: Option<String>,
    pub customer_id: Option<String>,
    pub status: String,
    pub rejected_reason: Option<String>,
    pub created_at: String,
    pub last_seq: i64,
}

pub async fn get(
    pool: &AnyPool,
    company: CompanyId,
    id: PhotoId,
) -> Result<Option<PhotoRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, company_id, object_key, content_type, size, sha256, for_customer, customer_id, \
         status, rejected_reason, created_at, last_seq FROM photos WHERE company_id = $1 AND id = $2",
    )
    .bind(company.to_string())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
}

/// Every photo of the company that was ever uploaded for or shown on
/// `customer`, oldest first.
pub async fn of_customer(
    pool: &AnyPool,
    company: CompanyId,
    customer: domain::CustomerId,
) -> Result<Vec<PhotoRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, company_id, object_key, content_type, size, sha256, for_customer, customer_id, \
         status, rejected_reason, created_at, last_seq FROM photos \
         WHERE company_id = $1 AND (customer_id = $2 OR for_customer = $2) ORDER BY created_at, id",
    )
    .bind(company.to_string())
    .bind(customer.to_string())
    .fetch_all(pool)
    .await
}
