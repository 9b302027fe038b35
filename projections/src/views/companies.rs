//! `companies`: the tenant's name and dates.
use domain::company::CompanyEvent;

use super::rows::{int, text, Cell, Cells, Column};
use super::{Change, Fold};

/// A row of the companies view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_seq: i64,
}

pub struct Companies;

impl Fold for Companies {
    type Event = CompanyEvent;
    type Row = Company;
    const NAME: &'static str = "companies";
    type Aggregate = domain::company::Company;
    const TABLE: &'static str = "companies";
    const COLUMNS: &'static [Column] = &[
        text("id"),
        text("name"),
        text("created_at"),
        text("updated_at"),
        int("last_seq"),
    ];

    fn evolve(row: Option<Company>, change: Change<'_, CompanyEvent>) -> Result<Company, String> {
        let mut row = match (change.event, row) {
            (CompanyEvent::CompanyRegistered { name, .. }, None) => Company {
                id: change.id.to_owned(),
                name: name.as_str().to_owned(),
                created_at: change.at.to_owned(),
                updated_at: change.at.to_owned(),
                last_seq: change.sequence,
            },
            (CompanyEvent::CompanyRegistered { .. }, Some(_)) => {
                return Err("the company is registered already".into())
            }
            (_, None) => return Err("no company to change".into()),
            (CompanyEvent::CompanyRenamed { name }, Some(mut row)) => {
                row.name = name.as_str().to_owned();
                row.updated_at = change.at.to_owned();
                row
            }
            // The roster is the write side's business; the view only advances.
            (CompanyEvent::AdminGranted { .. } | CompanyEvent::AdminRevoked { .. }, Some(row)) => {
                row
            }
        };
        row.last_seq = change.sequence;
        Ok(row)
    }

    fn last_seq(row: &Company) -> i64 {
        row.last_seq
    }

    fn cells(row: &Company) -> Vec<Cell> {
        vec![
            row.id.clone().into(),
            row.name.clone().into(),
            row.created_at.clone().into(),
            row.updated_at.clone().into(),
            row.last_seq.into(),
        ]
    }

    fn from_cells(mut cells: Cells) -> Result<Company, sqlx::Error> {
        Ok(Company {
            id: cells.text()?,
            name: cells.text()?,
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
    use domain::values::CompanyName;
    use domain::{CompanyId, UserId};
    use uuid::Uuid;

    #[test]
    fn rename_changes_the_name_and_roster_changes_only_advance() {
        let events = [
            stored(
                "company",
                1,
                &CompanyEvent::CompanyRegistered {
                    company_id: CompanyId(Uuid::from_u128(1)),
                    name: CompanyName::parse("Acme").unwrap(),
                    founding_admin: UserId(Uuid::from_u128(2)),
                },
            ),
            stored(
                "company",
                2,
                &CompanyEvent::CompanyRenamed {
                    name: CompanyName::parse("Acme Ltd").unwrap(),
                },
            ),
            stored(
                "company",
                3,
                &CompanyEvent::AdminGranted {
                    user_id: UserId(Uuid::from_u128(3)),
                },
            ),
        ];
        let row = fold_events::<Companies>(&events).unwrap().unwrap();
        assert_eq!(row.name, "Acme Ltd");
        assert_eq!(row.updated_at, "2026-01-01T00:00:02.000000Z");
        assert_eq!(row.created_at, "2026-01-01T00:00:01.000000Z");
        assert_eq!(row.last_seq, 3);
    }
}
