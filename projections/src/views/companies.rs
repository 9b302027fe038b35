//! `companies`: the tenant's name and dates.
use async_trait::async_trait;
use commands::events::StoredEvent;
use domain::company::CompanyEvent;
use sqlx::AnyConnection;

use crate::view::{event_time, typed, Projection, ProjectionError};

pub struct CompaniesView {
    table: String,
}

impl CompaniesView {
    pub fn new(suffix: &str) -> Self {
        Self {
            table: format!("companies{suffix}"),
        }
    }
}

#[async_trait]
impl Projection for CompaniesView {
    fn name(&self) -> &'static str {
        "companies"
    }

    fn aggregate_type(&self) -> &'static str {
        "company"
    }

    fn table(&self) -> &str {
        &self.table
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn with_suffix(&self, suffix: &str) -> Box<dyn Projection> {
        Box::new(Self::new(suffix))
    }

    async fn write(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<u64, ProjectionError> {
        let at = event_time(event)?;
        let table = &self.table;
        let insert = format!(
            "INSERT INTO {table} (id, name, created_at, updated_at, last_seq) \
             VALUES ($1, $2, $3, $3, $4) ON CONFLICT (id) DO NOTHING"
        );
        let rename = format!(
            "UPDATE {table} SET name = $1, updated_at = $2, last_seq = $3 WHERE id = $4 AND last_seq = $5"
        );
        let advance = format!("UPDATE {table} SET last_seq = $1 WHERE id = $2 AND last_seq = $3");
        let query = match typed::<CompanyEvent>(event)? {
            CompanyEvent::CompanyRegistered { name, .. } => sqlx::query(&insert)
                .bind(event.aggregate_id.as_str())
                .bind(name.as_str().to_owned())
                .bind(at)
                .bind(event.sequence),
            CompanyEvent::CompanyRenamed { name } => sqlx::query(&rename)
                .bind(name.as_str().to_owned())
                .bind(at)
                .bind(event.sequence)
                .bind(event.aggregate_id.as_str())
                .bind(event.sequence - 1),
            // The roster is the write side's business; the view only advances.
            CompanyEvent::AdminGranted { .. } | CompanyEvent::AdminRevoked { .. } => {
                sqlx::query(&advance)
                    .bind(event.sequence)
                    .bind(event.aggregate_id.as_str())
                    .bind(event.sequence - 1)
            }
        };
        Ok(query.execute(&mut *conn).await?.rows_affected())
    }
}
