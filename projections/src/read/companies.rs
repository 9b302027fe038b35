//! The caller's company.
use domain::CompanyId;
use sqlx::{AnyPool, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct CompanyRow {
    pub id: String,
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

/// The company as its own events say: the row the companies view will hold
/// once it has caught up (see [`super::customers::from_events`]).
pub fn from_events(
    events: &[commands::events::StoredEvent],
) -> Result<Option<CompanyRow>, crate::view::ProjectionError> {
    use crate::view::{event_time, typed};
    use domain::company::CompanyEvent as E;
    let mut company: Option<CompanyRow> = None;
    for event in events {
        let at = event_time(event)?;
        match (typed::<E>(event)?, company.as_mut()) {
            (E::CompanyRegistered { name, .. }, _) => {
                company = Some(CompanyRow {
                    id: event.aggregate_id.clone(),
                    name: name.as_str().to_owned(),
                    created_at: at.clone(),
                    updated_at: at,
                    last_seq: event.sequence,
                });
            }
            (_, None) => {}
            (E::CompanyRenamed { name }, Some(row)) => {
                row.name = name.as_str().to_owned();
                row.updated_at = at;
                row.last_seq = event.sequence;
            }
            // The roster is the write side's business; the view only advances.
            (_, Some(row)) => row.last_seq = event.sequence,
        }
    }
    Ok(company)
}
