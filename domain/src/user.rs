//! A user: a person of one company who logs in. Its role mirrors the company's
//! admin roster (the roster decides; this stream records the user's side).
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::{emit, DomainErrorKind, Tenanted};
use crate::values::{Email, FieldChange, PasswordHash, PersonName, Role, Title};
use crate::{CompanyId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub enum UserCommand {
    Register {
        user_id: UserId,
        company_id: CompanyId,
        email: Email,
        name: PersonName,
        surname: Option<PersonName>,
        title: Option<Title>,
        role: Role,
        password_hash: PasswordHash,
    },
    ChangeProfile {
        name: Option<PersonName>,
        surname: Option<FieldChange<PersonName>>,
        title: Option<FieldChange<Title>>,
    },
    ChangeEmail {
        email: Email,
    },
    ChangePassword {
        password_hash: PasswordHash,
    },
    ChangeRole {
        role: Role,
    },
    Remove,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        company_id: CompanyId,
        email: Email,
        name: PersonName,
        surname: Option<PersonName>,
        title: Option<Title>,
        role: Role,
        password_hash: PasswordHash,
    },
    UserProfileChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<PersonName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        surname: Option<FieldChange<PersonName>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<FieldChange<Title>>,
    },
    UserEmailChanged {
        email: Email,
    },
    UserPasswordChanged {
        password_hash: PasswordHash,
    },
    UserRoleChanged {
        role: Role,
    },
    UserRemoved,
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::UserProfileChanged { .. } => "UserProfileChanged",
            Self::UserEmailChanged { .. } => "UserEmailChanged",
            Self::UserPasswordChanged { .. } => "UserPasswordChanged",
            Self::UserRoleChanged { .. } => "UserRoleChanged",
            Self::UserRemoved => "UserRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

impl UserEvent {
    /// Whether tokens issued before this event must stop working: the user's
    /// password, role or existence changed, so a session that predates it
    /// speaks for someone who no longer is.
    pub fn revokes_sessions(&self) -> bool {
        match self {
            Self::UserPasswordChanged { .. } | Self::UserRoleChanged { .. } | Self::UserRemoved => {
                true
            }
            Self::UserRegistered { .. }
            | Self::UserProfileChanged { .. }
            | Self::UserEmailChanged { .. } => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("a user with this id already exists")]
    AlreadyExists,
    #[error("user not found")]
    NotFound,
}

impl UserError {
    pub fn kind(&self) -> DomainErrorKind {
        match self {
            Self::NotFound => DomainErrorKind::NotFound,
            Self::AlreadyExists => DomainErrorKind::Conflict,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub company_id: Option<CompanyId>,
    pub email: Option<Email>,
    pub name: Option<PersonName>,
    pub surname: Option<PersonName>,
    pub title: Option<Title>,
    pub role: Option<Role>,
    pub password_hash: Option<PasswordHash>,
    pub removed: bool,
}

impl User {
    fn exists(&self) -> bool {
        self.company_id.is_some() && !self.removed
    }

    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        use UserCommand as C;
        use UserEvent as E;
        if let C::Register {
            company_id,
            email,
            name,
            surname,
            title,
            role,
            password_hash,
            ..
        } = command
        {
            if self.company_id.is_some() {
                return Err(UserError::AlreadyExists);
            }
            return Ok(vec![E::UserRegistered {
                company_id,
                email,
                name,
                surname,
                title,
                role,
                password_hash,
            }]);
        }
        if !self.exists() {
            return Err(UserError::NotFound);
        }
        Ok(match command {
            C::Register { .. } => unreachable!("handled above"),
            C::ChangeProfile {
                name,
                surname,
                title,
            } => {
                let name = name.filter(|n| Some(n) != self.name.as_ref());
                let surname = surname.filter(|s| s.clone().into_option() != self.surname);
                let title = title.filter(|t| t.clone().into_option() != self.title);
                if name.is_none() && surname.is_none() && title.is_none() {
                    vec![]
                } else {
                    vec![E::UserProfileChanged {
                        name,
                        surname,
                        title,
                    }]
                }
            }
            C::ChangeEmail { email } if Some(&email) == self.email.as_ref() => vec![],
            C::ChangeEmail { email } => vec![E::UserEmailChanged { email }],
            C::ChangePassword { password_hash } => vec![E::UserPasswordChanged { password_hash }],
            C::ChangeRole { role } if Some(role) == self.role => vec![],
            C::ChangeRole { role } => vec![E::UserRoleChanged { role }],
            C::Remove => vec![E::UserRemoved],
        })
    }
}

impl Tenanted for User {
    fn company_id(&self) -> Option<CompanyId> {
        self.company_id
    }

    fn registers(command: &UserCommand) -> bool {
        matches!(command, UserCommand::Register { .. })
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        emit(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserRegistered {
                company_id,
                email,
                name,
                surname,
                title,
                role,
                password_hash,
            } => {
                self.company_id = Some(company_id);
                self.email = Some(email);
                self.name = Some(name);
                self.surname = surname;
                self.title = title;
                self.role = Some(role);
                self.password_hash = Some(password_hash);
            }
            UserEvent::UserProfileChanged {
                name,
                surname,
                title,
            } => {
                if let Some(name) = name {
                    self.name = Some(name);
                }
                if let Some(surname) = surname {
                    self.surname = surname.into_option();
                }
                if let Some(title) = title {
                    self.title = title.into_option();
                }
            }
            UserEvent::UserEmailChanged { email } => self.email = Some(email),
            UserEvent::UserPasswordChanged { password_hash } => {
                self.password_hash = Some(password_hash)
            }
            UserEvent::UserRoleChanged { role } => self.role = Some(role),
            UserEvent::UserRemoved => self.removed = true,
        }
    }
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
