//! `customers` (one row per customer, deleted ones flagged) and
//! `customer_words` (the folded words search matches by prefix).
use domain::customer::CustomerEvent;
use domain::values::{fold_text, search_words, FieldChange};

use super::rows::{int, text, Cell, Cells, Column};
use super::{Change, Fold};

/// A row of the customers view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub surname: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub notes: Option<String>,
    pub external_id: Option<String>,
    pub photo_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_by: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    pub last_seq: i64,
}

impl Customer {
    /// The key the surname sort uses (folded: case and accents ignored).
    pub fn surname_key(&self) -> String {
        fold_text(&self.surname)
    }

    /// The words a search matches by prefix, sorted and distinct.
    pub fn search_words(&self) -> Vec<String> {
        let mut words = search_words(&self.name);
        words.extend(search_words(&self.surname));
        if let Some(email) = &self.email {
            words.extend(search_words(email));
            // The whole address too, so "ada.l@exa" finds it.
            words.push(fold_text(email));
        }
        words.sort();
        words.dedup();
        words
    }
}

fn shown<T>(change: FieldChange<T>, show: impl Fn(&T) -> &str) -> Option<String> {
    change.into_option().map(|v| show(&v).to_owned())
}

pub struct Customers;

impl Fold for Customers {
    type Event = CustomerEvent;
    type Row = Customer;
    const NAME: &'static str = "customers";
    type Aggregate = domain::customer::Customer;
    const TABLE: &'static str = "customers";
    const WORDS: Option<&'static str> = Some("customer_words");
    const COLUMNS: &'static [Column] = &[
        text("id"),
        text("company_id"),
        text("name"),
        text("surname"),
        text("surname_key"),
        text("email"),
        text("phone"),
        text("notes"),
        text("external_id"),
        text("photo_id"),
        text("created_by"),
        text("created_at"),
        text("updated_by"),
        text("updated_at"),
        int("deleted"),
        text("deleted_at"),
        int("last_seq"),
    ];

    fn evolve(
        row: Option<Customer>,
        change: Change<'_, CustomerEvent>,
    ) -> Result<Customer, String> {
        let at = change.at.to_owned();
        let mut row = match (change.event, row) {
            (
                CustomerEvent::CustomerRegistered {
                    company_id,
                    name,
                    surname,
                    email,
                    phone,
                    notes,
                    external_id,
                    by,
                },
                None,
            ) => {
                return Ok(Customer {
                    id: change.id.to_owned(),
                    company_id: company_id.to_string(),
                    name: name.as_str().to_owned(),
                    surname: surname.as_str().to_owned(),
                    email: email.map(|e| e.as_str().to_owned()),
                    phone: phone.map(|p| p.as_str().to_owned()),
                    notes: notes.map(|n| n.as_str().to_owned()),
                    external_id: external_id.map(|e| e.as_str().to_owned()),
                    photo_id: None,
                    created_by: by.to_string(),
                    created_at: at.clone(),
                    updated_by: by.to_string(),
                    updated_at: at,
                    deleted_at: None,
                    last_seq: change.sequence,
                })
            }
            (CustomerEvent::CustomerRegistered { .. }, Some(_)) => {
                return Err("the customer is registered already".into())
            }
            (_, None) => return Err("no customer to change".into()),
            (
                CustomerEvent::CustomerDetailsChanged {
                    change: details,
                    by,
                },
                Some(mut row),
            ) => {
                if let Some(name) = details.name {
                    row.name = name.as_str().to_owned();
                }
                if let Some(surname) = details.surname {
                    row.surname = surname.as_str().to_owned();
                }
                if let Some(email) = details.email {
                    row.email = shown(email, |e| e.as_str());
                }
                if let Some(phone) = details.phone {
                    row.phone = shown(phone, |p| p.as_str());
                }
                if let Some(notes) = details.notes {
                    row.notes = shown(notes, |n| n.as_str());
                }
                if let Some(external_id) = details.external_id {
                    row.external_id = shown(external_id, |e| e.as_str());
                }
                row.updated_by = by.to_string();
                row
            }
            (CustomerEvent::CustomerPhotoAttached { photo_id, by, .. }, Some(mut row)) => {
                row.photo_id = Some(photo_id.to_string());
                row.updated_by = by.to_string();
                row
            }
            (CustomerEvent::CustomerPhotoDetached { by, .. }, Some(mut row)) => {
                row.photo_id = None;
                row.updated_by = by.to_string();
                row
            }
            (CustomerEvent::CustomerDeleted { by }, Some(mut row)) => {
                row.deleted_at = Some(at.clone());
                row.updated_by = by.to_string();
                row
            }
            (CustomerEvent::CustomerRestored { by }, Some(mut row)) => {
                row.deleted_at = None;
                row.updated_by = by.to_string();
                row
            }
        };
        row.updated_at = at;
        row.last_seq = change.sequence;
        Ok(row)
    }

    fn last_seq(row: &Customer) -> i64 {
        row.last_seq
    }

    fn cells(row: &Customer) -> Vec<Cell> {
        vec![
            row.id.clone().into(),
            row.company_id.clone().into(),
            row.name.clone().into(),
            row.surname.clone().into(),
            row.surname_key().into(),
            row.email.clone().into(),
            row.phone.clone().into(),
            row.notes.clone().into(),
            row.external_id.clone().into(),
            row.photo_id.clone().into(),
            row.created_by.clone().into(),
            row.created_at.clone().into(),
            row.updated_by.clone().into(),
            row.updated_at.clone().into(),
            i64::from(row.deleted_at.is_some()).into(),
            row.deleted_at.clone().into(),
            row.last_seq.into(),
        ]
    }

    fn from_cells(mut cells: Cells) -> Result<Customer, sqlx::Error> {
        let id = cells.text()?;
        let company_id = cells.text()?;
        let name = cells.text()?;
        let surname = cells.text()?;
        let _surname_key = cells.text()?;
        let email = cells.opt_text()?;
        let phone = cells.opt_text()?;
        let notes = cells.opt_text()?;
        let external_id = cells.opt_text()?;
        let photo_id = cells.opt_text()?;
        let created_by = cells.text()?;
        let created_at = cells.text()?;
        let updated_by = cells.text()?;
        let updated_at = cells.text()?;
        let _deleted = cells.int()?;
        let deleted_at = cells.opt_text()?;
        let last_seq = cells.int()?;
        Ok(Customer {
            id,
            company_id,
            name,
            surname,
            email,
            phone,
            notes,
            external_id,
            photo_id,
            created_by,
            created_at,
            updated_by,
            updated_at,
            deleted_at,
            last_seq,
        })
    }

    fn words(row: &Customer) -> Option<(String, Vec<String>)> {
        Some((row.company_id.clone(), row.search_words()))
    }
}

#[cfg(test)]
#[path = "customers_tests.rs"]
mod tests;
