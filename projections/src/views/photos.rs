//! `photos`: stored images, their owner company and whether they are
//! pending (option 2, waiting for the policy), attached, detached or rejected.
use domain::photo::PhotoEvent;

use super::rows::{int, text, Cell, Cells, Column};
use super::{Change, Fold};

/// A row of the photos view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Photo {
    pub id: String,
    pub company_id: String,
    pub object_key: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub for_customer: Option<String>,
    pub customer_id: Option<String>,
    /// The customer's version that shows this photo (the policy's outcome).
    pub customer_version: Option<i64>,
    /// `uploaded`, `pending`, `attached`, `detached` or `rejected`.
    pub status: String,
    pub rejected_reason: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_seq: i64,
}

pub struct Photos;

impl Fold for Photos {
    type Event = PhotoEvent;
    type Row = Photo;
    const NAME: &'static str = "photos";
    type Aggregate = domain::photo::Photo;
    const TABLE: &'static str = "photos";
    const COLUMNS: &'static [Column] = &[
        text("id"),
        text("company_id"),
        text("object_key"),
        text("content_type"),
        int("size"),
        text("sha256"),
        text("for_customer"),
        text("customer_id"),
        int("customer_version"),
        text("status"),
        text("rejected_reason"),
        text("created_by"),
        text("created_at"),
        text("updated_at"),
        int("last_seq"),
    ];

    fn evolve(row: Option<Photo>, change: Change<'_, PhotoEvent>) -> Result<Photo, String> {
        let mut row = match (change.event, row) {
            (
                PhotoEvent::PhotoUploaded {
                    company_id,
                    image,
                    for_customer,
                    by,
                },
                None,
            ) => Photo {
                id: change.id.to_owned(),
                company_id: company_id.to_string(),
                object_key: image.object_key.as_str().to_owned(),
                content_type: image.content_type.mime().to_owned(),
                size: i64::try_from(image.size).unwrap_or(i64::MAX),
                sha256: image.sha256.as_str().to_owned(),
                status: if for_customer.is_some() {
                    "pending"
                } else {
                    "uploaded"
                }
                .to_owned(),
                for_customer: for_customer.map(|c| c.to_string()),
                customer_id: None,
                customer_version: None,
                rejected_reason: None,
                created_by: by.to_string(),
                created_at: change.at.to_owned(),
                updated_at: change.at.to_owned(),
                last_seq: change.sequence,
            },
            (PhotoEvent::PhotoUploaded { .. }, Some(_)) => {
                return Err("the photo is uploaded already".into())
            }
            (_, None) => return Err("no photo to change".into()),
            (
                PhotoEvent::PhotoAttached {
                    customer_id,
                    customer_version,
                },
                Some(mut row),
            ) => {
                row.status = "attached".to_owned();
                row.customer_id = Some(customer_id.to_string());
                row.customer_version = Some(i64::try_from(customer_version).unwrap_or(i64::MAX));
                row
            }
            (PhotoEvent::PhotoDetached { .. }, Some(mut row)) => {
                row.status = "detached".to_owned();
                row.customer_id = None;
                row
            }
            (PhotoEvent::PhotoRejected { reason }, Some(mut row)) => {
                row.status = "rejected".to_owned();
                row.rejected_reason = Some(reason);
                row
            }
        };
        row.updated_at = change.at.to_owned();
        row.last_seq = change.sequence;
        Ok(row)
    }

    fn last_seq(row: &Photo) -> i64 {
        row.last_seq
    }

    fn cells(row: &Photo) -> Vec<Cell> {
        vec![
            row.id.clone().into(),
            row.company_id.clone().into(),
            row.object_key.clone().into(),
            row.content_type.clone().into(),
            row.size.into(),
            row.sha256.clone().into(),
            row.for_customer.clone().into(),
            row.customer_id.clone().into(),
            row.customer_version.into(),
            row.status.clone().into(),
            row.rejected_reason.clone().into(),
            row.created_by.clone().into(),
            row.created_at.clone().into(),
            row.updated_at.clone().into(),
            row.last_seq.into(),
        ]
    }

    fn from_cells(mut cells: Cells) -> Result<Photo, sqlx::Error> {
        Ok(Photo {
            id: cells.text()?,
            company_id: cells.text()?,
            object_key: cells.text()?,
            content_type: cells.text()?,
            size: cells.int()?,
            sha256: cells.text()?,
            for_customer: cells.opt_text()?,
            customer_id: cells.opt_text()?,
            customer_version: cells.opt_int()?,
            status: cells.text()?,
            rejected_reason: cells.opt_text()?,
            created_by: cells.text()?,
            created_at: cells.text()?,
            updated_at: cells.text()?,
            last_seq: cells.int()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::fold::fold_events;
    use crate::views::test_support::stored;
    use domain::photo::StoredImage;
    use domain::values::{ImageType, ObjectKey, Sha256Hex};
    use domain::{CompanyId, CustomerId, PhotoId, UserId};
    use uuid::Uuid;

    fn uploaded(for_customer: Option<CustomerId>) -> PhotoEvent {
        let company = CompanyId(Uuid::from_u128(1));
        PhotoEvent::PhotoUploaded {
            company_id: company,
            image: StoredImage {
                object_key: ObjectKey::for_photo(company, PhotoId(Uuid::from_u128(9))),
                content_type: ImageType::Png,
                size: 42,
                sha256: Sha256Hex::parse(&"a".repeat(64)).unwrap(),
            },
            for_customer,
            by: UserId(Uuid::from_u128(2)),
        }
    }

    fn given(events: Vec<PhotoEvent>) -> Photo {
        let stored: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| stored("photo", i as i64 + 1, e))
            .collect();
        fold_events::<Photos>(&stored).unwrap().unwrap()
    }

    #[test]
    fn an_upload_for_a_customer_is_pending_until_the_policy_attaches_it() {
        let customer = CustomerId(Uuid::from_u128(5));
        assert_eq!(given(vec![uploaded(Some(customer))]).status, "pending");
        assert_eq!(given(vec![uploaded(None)]).status, "uploaded");
        let attached = PhotoEvent::PhotoAttached {
            customer_id: customer,
            customer_version: 3,
        };
        let row = given(vec![uploaded(Some(customer)), attached.clone()]);
        assert_eq!(row.status, "attached");
        assert_eq!(row.customer_version, Some(3));
        let detached = PhotoEvent::PhotoDetached {
            customer_id: customer,
        };
        let row = given(vec![uploaded(Some(customer)), attached, detached]);
        assert_eq!((row.status.as_str(), row.customer_id), ("detached", None));
    }

    #[test]
    fn a_rejection_keeps_its_reason() {
        let rejected = PhotoEvent::PhotoRejected {
            reason: "the customer is deleted".into(),
        };
        let row = given(vec![uploaded(None), rejected]);
        assert_eq!(row.status, "rejected");
        assert_eq!(
            row.rejected_reason.as_deref(),
            Some("the customer is deleted")
        );
    }
}
