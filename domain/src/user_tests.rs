use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

type UserTest = TestFramework<User>;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
const OTHER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI";

fn user_id() -> UserId {
    UserId(Uuid::from_u128(1))
}

fn company_id() -> CompanyId {
    CompanyId(Uuid::from_u128(100))
}

fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}

fn person(raw: &str) -> PersonName {
    PersonName::parse(raw).unwrap()
}

fn title(raw: &str) -> Title {
    Title::parse(raw).unwrap()
}

fn hash(phc: &str) -> PasswordHash {
    PasswordHash::from_phc(phc.to_owned()).unwrap()
}

fn register() -> UserCommand {
    UserCommand::Register {
        user_id: user_id(),
        company_id: company_id(),
        email: email("ada@example.com"),
        name: person("Ada"),
        surname: Some(person("Lovelace")),
        title: None,
        role: Role::User,
        password_hash: hash(HASH),
    }
}

fn registered() -> UserEvent {
    UserEvent::UserRegistered {
        company_id: company_id(),
        email: email("ada@example.com"),
        name: person("Ada"),
        surname: Some(person("Lovelace")),
        title: None,
        role: Role::User,
        password_hash: hash(HASH),
    }
}

/// Every command but `Register`, for the "user must exist" rule.
fn commands_on_an_existing_user() -> Vec<UserCommand> {
    vec![
        UserCommand::ChangeProfile {
            name: Some(person("Grace")),
            surname: None,
            title: None,
        },
        UserCommand::ChangeEmail {
            email: email("grace@example.com"),
        },
        UserCommand::ChangePassword {
            password_hash: hash(OTHER_HASH),
        },
        UserCommand::ChangeRole { role: Role::Admin },
        UserCommand::Remove,
    ]
}

#[test]
fn registering_a_user_records_all_its_details() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register())
        .then_expect_events(vec![registered()]);
}

#[test]
fn an_existing_user_cannot_be_registered_again() {
    UserTest::with(())
        .given(vec![registered()])
        .when(register())
        .then_expect_error(UserError::AlreadyExists);
}

#[test]
fn a_removed_users_id_cannot_be_registered_again() {
    UserTest::with(())
        .given(vec![registered(), UserEvent::UserRemoved])
        .when(register())
        .then_expect_error(UserError::AlreadyExists);
}

#[test]
fn an_unknown_user_is_not_found_for_every_other_command() {
    for command in commands_on_an_existing_user() {
        UserTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(UserError::NotFound);
    }
}

#[test]
fn a_removed_user_is_not_found_for_every_other_command() {
    for command in commands_on_an_existing_user() {
        UserTest::with(())
            .given(vec![registered(), UserEvent::UserRemoved])
            .when(command)
            .then_expect_error(UserError::NotFound);
    }
}

#[test]
fn changing_the_name_records_it() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: Some(person("Augusta")),
            surname: None,
            title: None,
        })
        .then_expect_events(vec![UserEvent::UserProfileChanged {
            name: Some(person("Augusta")),
            surname: None,
            title: None,
        }]);
}

#[test]
fn setting_a_title_records_it() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: None,
            surname: None,
            title: Some(FieldChange::Set(title("Analyst"))),
        })
        .then_expect_events(vec![UserEvent::UserProfileChanged {
            name: None,
            surname: None,
            title: Some(FieldChange::Set(title("Analyst"))),
        }]);
}

#[test]
fn clearing_the_surname_records_cleared() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: None,
            surname: Some(FieldChange::Cleared),
            title: None,
        })
        .then_expect_events(vec![UserEvent::UserProfileChanged {
            name: None,
            surname: Some(FieldChange::Cleared),
            title: None,
        }]);
}

#[test]
fn clearing_a_title_that_is_already_empty_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: None,
            surname: None,
            title: Some(FieldChange::Cleared),
        })
        .then_expect_events(vec![]);
}

#[test]
fn profile_change_keeps_only_real_changes() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: Some(person("Ada")),
            surname: Some(FieldChange::Set(person("Byron"))),
            title: Some(FieldChange::Cleared),
        })
        .then_expect_events(vec![UserEvent::UserProfileChanged {
            name: None,
            surname: Some(FieldChange::Set(person("Byron"))),
            title: None,
        }]);
}

#[test]
fn profile_change_to_the_current_values_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: Some(person("Ada")),
            surname: Some(FieldChange::Set(person("Lovelace"))),
            title: Some(FieldChange::Cleared),
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_empty_profile_change_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeProfile {
            name: None,
            surname: None,
            title: None,
        })
        .then_expect_events(vec![]);
}

#[test]
fn profile_change_is_judged_against_earlier_changes() {
    UserTest::with(())
        .given(vec![
            registered(),
            UserEvent::UserProfileChanged {
                name: None,
                surname: Some(FieldChange::Cleared),
                title: Some(FieldChange::Set(title("Analyst"))),
            },
        ])
        .when(UserCommand::ChangeProfile {
            name: None,
            surname: Some(FieldChange::Cleared),
            title: Some(FieldChange::Set(title("Analyst"))),
        })
        .then_expect_events(vec![]);
}

#[test]
fn changing_the_email_records_the_new_address() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeEmail {
            email: email("ada@lovelace.org"),
        })
        .then_expect_events(vec![UserEvent::UserEmailChanged {
            email: email("ada@lovelace.org"),
        }]);
}

#[test]
fn changing_the_email_to_the_same_address_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeEmail {
            email: email("ada@example.com"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn changing_the_password_records_the_new_hash() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangePassword {
            password_hash: hash(OTHER_HASH),
        })
        .then_expect_events(vec![UserEvent::UserPasswordChanged {
            password_hash: hash(OTHER_HASH),
        }]);
}

#[test]
fn promoting_a_user_records_the_new_role() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeRole { role: Role::Admin })
        .then_expect_events(vec![UserEvent::UserRoleChanged { role: Role::Admin }]);
}

#[test]
fn demoting_an_admin_records_the_new_role() {
    UserTest::with(())
        .given(vec![
            registered(),
            UserEvent::UserRoleChanged { role: Role::Admin },
        ])
        .when(UserCommand::ChangeRole { role: Role::User })
        .then_expect_events(vec![UserEvent::UserRoleChanged { role: Role::User }]);
}

#[test]
fn changing_to_the_current_role_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeRole { role: Role::User })
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_user_records_it() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::Remove)
        .then_expect_events(vec![UserEvent::UserRemoved]);
}

#[test]
fn user_errors_are_classified_for_callers() {
    assert_eq!(UserError::NotFound.kind(), DomainErrorKind::NotFound);
    assert_eq!(UserError::AlreadyExists.kind(), DomainErrorKind::Conflict);
}

#[test]
fn password_role_and_removal_revoke_sessions_profile_and_email_do_not() {
    let revoking = [
        UserEvent::UserPasswordChanged {
            password_hash: hash(OTHER_HASH),
        },
        UserEvent::UserRoleChanged { role: Role::Admin },
        UserEvent::UserRemoved,
    ];
    assert!(revoking.iter().all(UserEvent::revokes_sessions));
    let keeping = [
        registered(),
        UserEvent::UserProfileChanged {
            name: Some(person("Grace")),
            surname: None,
            title: None,
        },
        UserEvent::UserEmailChanged {
            email: email("grace@example.com"),
        },
    ];
    assert!(!keeping.iter().any(UserEvent::revokes_sessions));
}
