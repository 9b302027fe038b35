//! `users`: profiles for the API and what login needs (email key, password
//! hash, security stamp). The stamp moves with every event the domain says
//! revokes sessions, so tokens issued before it stop working.
use domain::user::UserEvent;
use domain::values::FieldChange;

use super::rows::{int, text, Cell, Cells, Column};
use super::{Change, Fold};

/// A row of the users view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub company_id: String,
    pub email: String,
    /// The normalized email login looks up.
    pub email_key: String,
    pub name: String,
    pub surname: Option<String>,
    pub title: Option<String>,
    pub role: String,
    pub password_hash: String,
    pub security_stamp: i64,
    pub removed: bool,
    pub created_at: String,
    pub updated_at: String,
    pub last_seq: i64,
}

fn shown<T>(change: FieldChange<T>, show: impl Fn(&T) -> &str) -> Option<String> {
    change.into_option().map(|v| show(&v).to_owned())
}

pub struct Users;

impl Fold for Users {
    type Event = UserEvent;
    type Row = User;
    const NAME: &'static str = "users";
    type Aggregate = domain::user::User;
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [Column] = &[
        text("id"),
        text("company_id"),
        text("email"),
        text("email_key"),
        text("name"),
        text("surname"),
        text("title"),
        text("role"),
        text("password_hash"),
        int("security_stamp"),
        int("removed"),
        text("created_at"),
        text("updated_at"),
        int("last_seq"),
    ];

    fn evolve(row: Option<User>, change: Change<'_, UserEvent>) -> Result<User, String> {
        let revokes = change.event.revokes_sessions();
        let mut row = match (change.event, row) {
            (
                UserEvent::UserRegistered {
                    company_id,
                    email,
                    name,
                    surname,
                    title,
                    role,
                    password_hash,
                },
                None,
            ) => {
                return Ok(User {
                    id: change.id.to_owned(),
                    company_id: company_id.to_string(),
                    email: email.as_str().to_owned(),
                    email_key: email.normalized(),
                    name: name.as_str().to_owned(),
                    surname: surname.map(|s| s.as_str().to_owned()),
                    title: title.map(|t| t.as_str().to_owned()),
                    role: role.as_str().to_owned(),
                    password_hash: password_hash.as_str().to_owned(),
                    security_stamp: 0,
                    removed: false,
                    created_at: change.at.to_owned(),
                    updated_at: change.at.to_owned(),
                    last_seq: change.sequence,
                })
            }
            (UserEvent::UserRegistered { .. }, Some(_)) => {
                return Err("the user is registered already".into())
            }
            (_, None) => return Err("no user to change".into()),
            (
                UserEvent::UserProfileChanged {
                    name,
                    surname,
                    title,
                },
                Some(mut row),
            ) => {
                if let Some(name) = name {
                    row.name = name.as_str().to_owned();
                }
                if let Some(surname) = surname {
                    row.surname = shown(surname, |s| s.as_str());
                }
                if let Some(title) = title {
                    row.title = shown(title, |t| t.as_str());
                }
                row
            }
            (UserEvent::UserEmailChanged { email }, Some(mut row)) => {
                row.email = email.as_str().to_owned();
                row.email_key = email.normalized();
                row
            }
            (UserEvent::UserPasswordChanged { password_hash }, Some(mut row)) => {
                row.password_hash = password_hash.as_str().to_owned();
                row
            }
            (UserEvent::UserRoleChanged { role }, Some(mut row)) => {
                row.role = role.as_str().to_owned();
                row
            }
            (UserEvent::UserRemoved, Some(mut row)) => {
                row.removed = true;
                row
            }
        };
        if revokes {
            row.security_stamp += 1;
        }
        row.updated_at = change.at.to_owned();
        row.last_seq = change.sequence;
        Ok(row)
    }

    fn last_seq(row: &User) -> i64 {
        row.last_seq
    }

    fn cells(row: &User) -> Vec<Cell> {
        vec![
            row.id.clone().into(),
            row.company_id.clone().into(),
            row.email.clone().into(),
            row.email_key.clone().into(),
            row.name.clone().into(),
            row.surname.clone().into(),
            row.title.clone().into(),
            row.role.clone().into(),
            row.password_hash.clone().into(),
            row.security_stamp.into(),
            i64::from(row.removed).into(),
            row.created_at.clone().into(),
            row.updated_at.clone().into(),
            row.last_seq.into(),
        ]
    }

    fn from_cells(mut cells: Cells) -> Result<User, sqlx::Error> {
        Ok(User {
            id: cells.text()?,
            company_id: cells.text()?,
            email: cells.text()?,
            email_key: cells.text()?,
            name: cells.text()?,
            surname: cells.opt_text()?,
            title: cells.opt_text()?,
            role: cells.text()?,
            password_hash: cells.text()?,
            security_stamp: cells.int()?,
            removed: cells.int()? != 0,
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
    use crate::views::rows::Cells;
    use crate::views::test_support::stored;
    use domain::values::{Email, PasswordHash, PersonName, Role};
    use domain::CompanyId;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    fn registered() -> UserEvent {
        UserEvent::UserRegistered {
            company_id: CompanyId(uuid::Uuid::from_u128(100)),
            email: Email::parse("Ada@Example.com").unwrap(),
            name: PersonName::parse("Ada").unwrap(),
            surname: None,
            title: None,
            role: Role::User,
            password_hash: PasswordHash::from_phc(HASH.to_owned()).unwrap(),
        }
    }

    fn given(events: Vec<UserEvent>) -> User {
        let stored: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| stored("user", i as i64 + 1, e))
            .collect();
        fold_events::<Users>(&stored).unwrap().unwrap()
    }

    #[test]
    fn registration_keeps_the_login_key_and_starts_the_stamp_at_zero() {
        let row = given(vec![registered()]);
        assert_eq!(row.email, "Ada@Example.com");
        assert_eq!(row.email_key, "ada@example.com");
        assert_eq!(row.role, "user");
        assert_eq!(row.security_stamp, 0);
        assert!(!row.removed);
    }

    #[test]
    fn role_change_and_removal_move_the_stamp_profile_change_does_not() {
        let promoted = UserEvent::UserRoleChanged { role: Role::Admin };
        let profile = UserEvent::UserProfileChanged {
            name: Some(PersonName::parse("Augusta").unwrap()),
            surname: None,
            title: None,
        };
        let row = given(vec![registered(), profile.clone()]);
        assert_eq!((row.name.as_str(), row.security_stamp), ("Augusta", 0));
        let row = given(vec![
            registered(),
            profile,
            promoted,
            UserEvent::UserRemoved,
        ]);
        assert_eq!(row.role, "admin");
        assert_eq!(row.security_stamp, 2);
        assert!(row.removed);
        assert_eq!(row.last_seq, 4);
    }

    #[test]
    fn cells_round_trip() {
        let row = given(vec![registered(), UserEvent::UserRemoved]);
        let cells = Cells::for_tests(Users::cells(&row));
        assert_eq!(Users::from_cells(cells).unwrap(), row);
    }
}
