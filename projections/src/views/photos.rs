//! `photos`: stored images, their owner company and whether they are
//! pending (option 2, waiting for the policy), attached, detached or rejected.
use async_trait::async_trait;
use commands::events::StoredEvent;
use domain::photo::PhotoEvent;
use sqlx::AnyConnection;

use crate::view::{event_time, typed, Projection, ProjectionError};

pub struct PhotosView {
    table: String,
}

impl PhotosView {
    pub fn new(suffix: &str) -> Self {
        Self {
            table: format!("photos{suffix}"),
        }
    }
}

#[async_trait]
impl Projection for PhotosView {
    fn name(&self) -> &'static str {
        "photos"
    }

    fn aggregate_type(&self) -> &'static str {
        "photo"
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
        let id = event.aggregate_id.as_str();
        let seq = event.sequence;
        // $1 = updated_at, $2 = last_seq, $3 = id, $4 = expected last_seq
        let guarded = |set: &str| {
            format!("UPDATE {table} SET {set}, updated_at = $1, last_seq = $2 WHERE id = $3 AND last_seq = $4")
        };
        let changed = match typed::<PhotoEvent>(event)? {
            PhotoEvent::PhotoUploaded {
                company_id,
                image,
                for_customer,
                by,
            } => {
                let status = if for_customer.is_some() {
                    "pending"
                } else {
                    "uploaded"
                };
                sqlx::query(&format!(
                    "INSERT INTO {table} (id, company_id, object_key, content_type, size, sha256, for_customer, \
                     status, created_by, created_at, updated_at, last_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(id)
                .bind(company_id.to_string())
                .bind(image.object_key.as_str().to_owned())
                .bind(image.content_type.mime())
                .bind(image.size as i64)
                .bind(image.sha256.as_str().to_owned())
                .bind(for_customer.map(|c| c.to_string()))
                .bind(status)
                .bind(by.to_string())
                .bind(&at)
                .bind(seq)
                .execute(&mut *conn)
                .await?
                .rows_affected()
            }
            PhotoEvent::PhotoAttached {
                customer_id,
                customer_version,
            } => sqlx::query(&guarded(
                "status = 'attached', customer_id = $5, customer_version = $6",
            ))
            .bind(&at)
            .bind(seq)
            .bind(id)
            .bind(seq - 1)
            .bind(customer_id.to_string())
            .bind(customer_version as i64)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            PhotoEvent::PhotoDetached { .. } => {
                sqlx::query(&guarded("status = 'detached', customer_id = NULL"))
                    .bind(&at)
                    .bind(seq)
                    .bind(id)
                    .bind(seq - 1)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            PhotoEvent::PhotoRejected { reason } => {
                sqlx::query(&guarded("status = 'rejected', rejected_reason = $5"))
                    .bind(&at)
                    .bind(seq)
                    .bind(id)
                    .bind(seq - 1)
                    .bind(reason)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        Ok(changed)
    }
}
