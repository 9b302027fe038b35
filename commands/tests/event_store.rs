//! The command side against real event stores: every scenario runs on
//! Postgres (a fresh database per test) and on SQLite (a fresh file).
//!
//! Postgres must be reachable at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the tests fail when it is not.
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use commands::accounts::{self, AccountError};
use commands::context::{META_COMPANY_ID, META_CORRELATION_ID, META_OCCURRED_AT, META_USER_ID};
use commands::error::Classified;
use commands::events::{self, Checkpoint, StoredEvent};
use commands::{passwords, CommandContext, CommandError, Commands, Db, Expect};
use cqrs_es::{Aggregate, DomainEvent};
use domain::company::{Company, CompanyError};
use domain::customer::DetailsChange;
use domain::customer::{Customer, CustomerCommand, CustomerDetails, CustomerError, CustomerEvent};
use domain::email_claim::{EmailClaim, EmailClaimError, EmailClaimEvent};
use domain::user::{User, UserCommand, UserEvent};
use domain::values::{
    CompanyName, Email, FieldChange, Notes, PasswordHash, PersonName, Phone, Role,
};
use domain::{CompanyId, CustomerId, DomainErrorKind, PhotoId, UserId};
use futures::future::join_all;
use serde::de::DeserializeOwned;
use tokio::sync::Barrier;
use uuid::Uuid;

/// Two wrappers per scenario: `<scenario>::postgres` and `<scenario>::sqlite`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                crate::support::on_postgres(super::$scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                crate::support::on_sqlite(super::$scenario).await;
            }
        }
    )*};
}

on_both_backends!(
    command_round_trip,
    concurrent_updates_keep_one_contiguous_stream,
    concurrent_signups_with_one_email,
    concurrent_mutual_demotion,
    concurrent_mutual_removal,
    tenancy_on_the_write_path,
    commit_order_reader_follows_commits,
);

// ---------------------------------------------------------------- helpers

fn ctx(company: CompanyId, user: UserId) -> CommandContext {
    CommandContext::new(company, user, Uuid::now_v7())
}

fn new_company() -> CompanyId {
    CompanyId(Uuid::now_v7())
}

fn new_user() -> UserId {
    UserId(Uuid::now_v7())
}

fn new_customer() -> CustomerId {
    CustomerId(Uuid::now_v7())
}

fn name(raw: &str) -> PersonName {
    PersonName::parse(raw).expect("valid name")
}

fn notes(raw: &str) -> Notes {
    Notes::parse(raw).expect("valid notes")
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn register_customer(id: CustomerId, company: CompanyId, by: UserId) -> CustomerCommand {
    CustomerCommand::Register {
        customer_id: id,
        company_id: company,
        details: CustomerDetails {
            name: name("Ada"),
            surname: name("Lovelace"),
            email: Some(email("ada@example.com")),
            phone: None,
            notes: Some(notes("first notes")),
            external_id: None,
        },
        photo: None,
        by,
    }
}

fn set_notes(text: &str, by: UserId) -> CustomerCommand {
    CustomerCommand::ChangeDetails {
        change: DetailsChange {
            notes: Some(FieldChange::Set(notes(text))),
            ..DetailsChange::default()
        },
        by,
    }
}

/// Decodes a stored payload as the aggregate's event, checking that the
/// stored type and version are the event's own.
fn decode<A: Aggregate>(stored: &StoredEvent) -> A::Event
where
    A::Event: DeserializeOwned,
{
    let event: A::Event = serde_json::from_value(stored.payload.clone()).unwrap_or_else(|e| {
        panic!(
            "payload of {} does not decode: {e}: {}",
            stored.message_id(),
            stored.payload
        )
    });
    assert_eq!(event.event_type(), stored.event_type);
    assert_eq!(event.event_version(), stored.event_version);
    event
}

/// One aggregate's stored events, checked to be the contiguous sequence 1..=N.
async fn stream<A: Aggregate>(db: &Db, id: &str) -> Vec<(StoredEvent, A::Event)>
where
    A::Event: DeserializeOwned,
{
    let stored = events::read_stream(db, A::TYPE, id)
        .await
        .expect("read the stream");
    let sequences: Vec<i64> = stored.iter().map(|e| e.sequence).collect();
    let expected: Vec<i64> = (1..=stored.len() as i64).collect();
    assert_eq!(
        sequences,
        expected,
        "stream {}/{id} must be 1..=N without gaps or duplicates",
        A::TYPE
    );
    for event in &stored {
        assert_eq!(event.aggregate_type, A::TYPE);
        assert_eq!(event.aggregate_id, id);
    }
    stored
        .into_iter()
        .map(|e| {
            let event = decode::<A>(&e);
            (e, event)
        })
        .collect()
}

/// The state the stored events make, by the aggregate's own `apply`.
fn fold<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}

async fn event_count(db: &Db) -> i64 {
    events::head(db).await.expect("head").0
}

async fn password() -> PasswordHash {
    passwords::hash("correct horse battery".into())
        .await
        .expect("hash a password")
}

fn register_user(
    user: UserId,
    company: CompanyId,
    address: &Email,
    role: Role,
    hash: &PasswordHash,
) -> UserCommand {
    UserCommand::Register {
        user_id: user,
        company_id: company,
        email: address.clone(),
        name: name("Grace"),
        surname: Some(name("Hopper")),
        title: None,
        role,
        password_hash: hash.clone(),
    }
}

/// A company with two admins, A (who signed up) and B (created by A).
async fn company_with_two_admins(
    commands: &Commands,
    hash: &PasswordHash,
) -> (CompanyId, UserId, UserId) {
    let company = new_company();
    let (a, b) = (new_user(), new_user());
    let email_a = email(&format!("a-{}@example.com", Uuid::new_v4().simple()));
    let email_b = email(&format!("b-{}@example.com", Uuid::new_v4().simple()));
    accounts::sign_up(
        commands,
        &ctx(company, a),
        CompanyName::parse("Two Admins Ltd").unwrap(),
        register_user(a, company, &email_a, Role::Admin, hash),
        &email_a,
    )
    .await
    .expect("sign up A");
    accounts::create_user(
        commands,
        &ctx(company, a),
        b,
        register_user(b, company, &email_b, Role::Admin, hash),
        &email_b,
        Role::Admin,
    )
    .await
    .expect("create admin B");
    let (roster, _) = load::<Company>(commands, &company.to_string(), company).await;
    assert_eq!(roster.admins, BTreeSet::from([a, b]));
    (company, a, b)
}

async fn load<A>(commands: &Commands, id: &str, company: CompanyId) -> (A, u64)
where
    A: domain::Tenanted<Services = ()>,
    A::Error: std::fmt::Debug,
{
    commands
        .load::<A>(id, company)
        .await
        .expect("load")
        .unwrap_or_else(|| panic!("{} {id} should exist in company {company}", A::TYPE))
}

fn is_last_admin(error: &CommandError<AccountError>) -> bool {
    match error {
        CommandError::Domain(e @ AccountError::Company(CompanyError::LastAdmin)) => {
            // A refusal the API answers with 409.
            assert_eq!(e.kind(), DomainErrorKind::Conflict);
            true
        }
        _ => false,
    }
}

// ---------------------------------------------------------------- scenarios

/// A registered and changed customer reads back identically through the
/// executor and the raw stream, with its metadata on every event.
async fn command_round_trip(db: Db) {
    let commands = Commands::new(db.clone());
    let (company, user, customer) = (new_company(), new_user(), new_customer());
    let id = customer.to_string();

    let register_ctx = ctx(company, user);
    let registered = commands
        .execute::<Customer>(
            &id,
            register_customer(customer, company, user),
            &register_ctx,
            Expect::Version(0),
        )
        .await
        .expect("register");
    assert_eq!(registered.version, 1);
    assert_eq!(registered.events.len(), 1);
    assert_eq!(registered.state.company_id, Some(company));

    let change = DetailsChange {
        name: Some(name("Augusta Ada")),
        phone: Some(FieldChange::Set(Phone::parse("+44 20 7946 0000").unwrap())),
        notes: Some(FieldChange::Cleared),
        ..DetailsChange::default()
    };
    let change_ctx = ctx(company, user);
    let changed = commands
        .execute::<Customer>(
            &id,
            CustomerCommand::ChangeDetails {
                change: change.clone(),
                by: user,
            },
            &change_ctx,
            Expect::Version(1),
        )
        .await
        .expect("change details");
    assert_eq!(changed.version, 2);
    assert_eq!(changed.events.len(), 1);

    // The same change again changes nothing: no event, same version.
    let unchanged = commands
        .execute::<Customer>(
            &id,
            CustomerCommand::ChangeDetails { change, by: user },
            &ctx(company, user),
            Expect::Any,
        )
        .await
        .expect("repeat the change");
    assert_eq!(unchanged.version, 2);
    assert!(unchanged.events.is_empty());

    let (state, version) = load::<Customer>(&commands, &id, company).await;
    assert_eq!(version, 2);
    assert_eq!(state, changed.state);
    let details = state.details.clone().expect("details");
    assert_eq!(details.name.as_str(), "Augusta Ada");
    assert_eq!(details.surname.as_str(), "Lovelace");
    assert_eq!(details.phone.unwrap().as_str(), "+44 20 7946 0000");
    assert_eq!(details.notes, None);
    assert!(!state.deleted);
    assert!(commands
        .load::<Customer>(&id, new_company())
        .await
        .expect("load")
        .is_none());

    let stored = stream::<Customer>(&db, &id).await;
    assert_eq!(stored.len(), 2);
    for ((event, _), context) in stored.iter().zip([&register_ctx, &change_ctx]) {
        assert_eq!(
            event.meta(META_COMPANY_ID),
            Some(company.to_string().as_str())
        );
        assert_eq!(event.meta(META_USER_ID), Some(user.to_string().as_str()));
        assert_eq!(
            event.meta(META_CORRELATION_ID),
            Some(context.correlation_id.to_string().as_str())
        );
        let occurred_at = event.meta(META_OCCURRED_AT).expect("occurred_at");
        DateTime::parse_from_rfc3339(occurred_at).expect("occurred_at is RFC 3339");
        assert_eq!(
            occurred_at,
            context
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }
    assert!(stored[0].0.position < stored[1].0.position);
    assert_eq!(stored[0].0.event_type, "CustomerRegistered");
    assert_eq!(stored[0].0.event_version, "2.0");
    assert_eq!(stored[1].0.event_type, "CustomerDetailsChanged");

    let decoded: Vec<CustomerEvent> = stored.into_iter().map(|(_, e)| e).collect();
    let emitted: Vec<CustomerEvent> = [registered.events, changed.events].concat();
    assert_eq!(decoded, emitted);
    assert!(matches!(
        &decoded[0],
        CustomerEvent::CustomerRegistered { company_id, by, .. }
            if *company_id == company && *by == user
    ));
    assert_eq!(fold::<Customer>(decoded), state);
}

/// Racing writers of one customer: an `If-Match` race has one winner and
/// stale losers; unconditional writers are all retried to success. The
/// stream stays 1..=N and the loaded state is the fold of what is stored.
async fn concurrent_updates_keep_one_contiguous_stream(db: Db) {
    const WRITERS: usize = 20;
    let commands = Commands::new(db.clone());
    let (company, user, customer) = (new_company(), new_user(), new_customer());
    let id = customer.to_string();
    commands
        .execute::<Customer>(
            &id,
            register_customer(customer, company, user),
            &ctx(company, user),
            Expect::Any,
        )
        .await
        .expect("register");

    // Everyone read version 1 and says so.
    let barrier = Arc::new(Barrier::new(WRITERS));
    let conditional = join_all((0..WRITERS).map(|i| {
        let (commands, id, barrier) = (commands.clone(), id.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            commands
                .execute::<Customer>(
                    &id,
                    set_notes(&format!("v{i}"), user),
                    &ctx(company, user),
                    Expect::Version(1),
                )
                .await
        })
    }))
    .await;
    let mut winners = 0;
    for result in conditional {
        match result.expect("task") {
            Ok(outcome) => {
                winners += 1;
                assert_eq!(outcome.version, 2);
            }
            Err(CommandError::Stale { current }) => assert_eq!(current, 2),
            Err(other) => panic!("a conditional update failed with {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one If-Match writer wins");

    // Unconditional writers: each is retried against fresh state.
    let barrier = Arc::new(Barrier::new(WRITERS));
    let unconditional = join_all((0..WRITERS).map(|i| {
        let (commands, id, barrier) = (commands.clone(), id.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            commands
                .execute::<Customer>(
                    &id,
                    set_notes(&format!("n{i}"), user),
                    &ctx(company, user),
                    Expect::Any,
                )
                .await
        })
    }))
    .await;
    let mut versions = BTreeSet::new();
    for (i, result) in unconditional.into_iter().enumerate() {
        let outcome = result
            .expect("task")
            .unwrap_or_else(|e| panic!("unconditional update {i} failed: {e:?}"));
        assert_eq!(outcome.events.len(), 1);
        assert!(
            versions.insert(outcome.version),
            "two writers got one version"
        );
    }
    let total = (2 + WRITERS) as u64;
    assert_eq!(versions, (3..=total).collect::<BTreeSet<u64>>());

    let stored = stream::<Customer>(&db, &id).await;
    assert_eq!(stored.len() as u64, total);
    let notes_written: BTreeSet<String> = stored
        .iter()
        .filter_map(|(_, event)| match event {
            CustomerEvent::CustomerDetailsChanged { change, .. } => change
                .notes
                .clone()
                .and_then(FieldChange::into_option)
                .map(|n| n.as_str().to_owned()),
            _ => None,
        })
        .filter(|n| n.starts_with('n'))
        .collect();
    assert_eq!(
        notes_written.len(),
        WRITERS,
        "every unconditional write is stored once"
    );

    let folded = fold::<Customer>(stored.iter().map(|(_, e)| e.clone()));
    let (state, version) = load::<Customer>(&commands, &id, company).await;
    assert_eq!(version, total);
    assert_eq!(state, folded);
    let last_notes = match &stored.last().unwrap().1 {
        CustomerEvent::CustomerDetailsChanged { change, .. } => change.notes.clone(),
        other => panic!("unexpected last event {other:?}"),
    };
    assert_eq!(
        state.details.unwrap().notes,
        last_notes.and_then(FieldChange::into_option)
    );
}

/// Ten signups with one address in different letter cases: one account.
async fn concurrent_signups_with_one_email(db: Db) {
    let commands = Commands::new(db.clone());
    let hash = password().await;
    let spellings = [
        "Ada@X.com",
        "ada@x.com",
        "ADA@X.COM",
        "aDa@x.Com",
        "Ada@x.com",
        "ada@X.com",
        "ADA@x.com",
        "ada@X.COM",
        "AdA@X.cOm",
        "aDA@x.COM",
    ];
    let barrier = Arc::new(Barrier::new(spellings.len()));
    let attempts = join_all(spellings.iter().map(|raw| {
        let (commands, hash, barrier) = (commands.clone(), hash.clone(), barrier.clone());
        let raw = raw.to_string();
        tokio::spawn(async move {
            let (company, user) = (new_company(), new_user());
            let address = email(&raw);
            barrier.wait().await;
            let result = accounts::sign_up(
                &commands,
                &ctx(company, user),
                CompanyName::parse("X Ltd").unwrap(),
                register_user(user, company, &address, Role::Admin, &hash),
                &address,
            )
            .await;
            (company, user, raw, result)
        })
    }))
    .await;

    let mut winner = None;
    for attempt in attempts {
        let (company, user, raw, result) = attempt.expect("task");
        match result {
            Ok((company_outcome, user_outcome)) => {
                assert!(winner.is_none(), "a second signup with one email succeeded");
                assert_eq!(company_outcome.state.admins, BTreeSet::from([user]));
                assert_eq!(user_outcome.state.email.as_ref().unwrap().as_str(), raw);
                winner = Some((company, user, raw));
            }
            Err(CommandError::Domain(AccountError::Email(EmailClaimError::Taken))) => {
                let user_found = commands
                    .load::<User>(&user.to_string(), company)
                    .await
                    .expect("load user");
                assert!(user_found.is_none(), "a refused signup left a user");
                let company_found = commands
                    .load::<Company>(&company.to_string(), company)
                    .await
                    .expect("load company");
                assert!(company_found.is_none(), "a refused signup left a company");
                assert!(stream::<User>(&db, &user.to_string()).await.is_empty());
                assert!(stream::<Company>(&db, &company.to_string())
                    .await
                    .is_empty());
            }
            Err(other) => panic!("signup as {raw} failed with {other:?}"),
        }
    }
    let (company, user, raw) = winner.expect("exactly one signup succeeds");

    let (account, _) = load::<User>(&commands, &user.to_string(), company).await;
    assert_eq!(account.email.unwrap().as_str(), raw);
    assert_eq!(account.role, Some(Role::Admin));
    let claims = stream::<EmailClaim>(&db, "ada@x.com").await;
    let claims: Vec<EmailClaimEvent> = claims.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        claims,
        vec![EmailClaimEvent::EmailClaimed { user_id: user }]
    );
    // The claim, the company and the user: the losers wrote nothing.
    assert_eq!(event_count(&db).await, 3);
}

/// Two admins demoting each other at once: the roster lets one through.
async fn concurrent_mutual_demotion(db: Db) {
    let commands = Commands::new(db.clone());
    let hash = password().await;
    for round in 0..10 {
        let (company, a, b) = company_with_two_admins(&commands, &hash).await;
        let barrier = Arc::new(Barrier::new(2));
        let demote = |caller: UserId, target: UserId| {
            let (commands, barrier) = (commands.clone(), barrier.clone());
            tokio::spawn(async move {
                let caller_ctx = ctx(company, caller);
                barrier.wait().await;
                accounts::change_role(&commands, &caller_ctx, target, Role::User, Expect::Any).await
            })
        };
        let (a_demotes_b, b_demotes_a) = (demote(a, b), demote(b, a));
        let (a_demotes_b, b_demotes_a) = (
            a_demotes_b.await.expect("task"),
            b_demotes_a.await.expect("task"),
        );
        let (admin, demoted) = match (&a_demotes_b, &b_demotes_a) {
            (Ok(outcome), Err(error)) if is_last_admin(error) => {
                assert_eq!(outcome.state.role, Some(Role::User));
                (a, b)
            }
            (Err(error), Ok(outcome)) if is_last_admin(error) => {
                assert_eq!(outcome.state.role, Some(Role::User));
                (b, a)
            }
            other => panic!("round {round}: expected one success and one LastAdmin, got {other:?}"),
        };
        let (roster, _) = load::<Company>(&commands, &company.to_string(), company).await;
        assert_eq!(roster.admins, BTreeSet::from([admin]), "round {round}");
        let (admin_user, _) = load::<User>(&commands, &admin.to_string(), company).await;
        let (demoted_user, _) = load::<User>(&commands, &demoted.to_string(), company).await;
        assert_eq!(admin_user.role, Some(Role::Admin), "round {round}");
        assert_eq!(demoted_user.role, Some(Role::User), "round {round}");
        let folded = fold::<Company>(
            stream::<Company>(&db, &company.to_string())
                .await
                .into_iter()
                .map(|(_, e)| e),
        );
        assert_eq!(folded, roster);
    }
}

/// Two admins removing each other at once: one of them stays, as admin.
async fn concurrent_mutual_removal(db: Db) {
    let commands = Commands::new(db.clone());
    let hash = password().await;
    for round in 0..10 {
        let (company, a, b) = company_with_two_admins(&commands, &hash).await;
        let (email_a, _) = load::<User>(&commands, &a.to_string(), company).await;
        let (email_b, _) = load::<User>(&commands, &b.to_string(), company).await;
        let (email_a, email_b) = (email_a.email.unwrap(), email_b.email.unwrap());
        let barrier = Arc::new(Barrier::new(2));
        let remove = |caller: UserId, target: UserId| {
            let (commands, barrier) = (commands.clone(), barrier.clone());
            tokio::spawn(async move {
                let caller_ctx = ctx(company, caller);
                barrier.wait().await;
                accounts::remove_user(&commands, &caller_ctx, target, Expect::Any).await
            })
        };
        let (a_removes_b, b_removes_a) = (remove(a, b), remove(b, a));
        let (a_removes_b, b_removes_a) = (
            a_removes_b.await.expect("task"),
            b_removes_a.await.expect("task"),
        );
        let (survivor, removed, survivor_email, removed_email) = match (&a_removes_b, &b_removes_a)
        {
            (Ok(outcome), Err(error)) if is_last_admin(error) => {
                assert!(outcome.state.removed);
                (a, b, &email_a, &email_b)
            }
            (Err(error), Ok(outcome)) if is_last_admin(error) => {
                assert!(outcome.state.removed);
                (b, a, &email_b, &email_a)
            }
            other => {
                panic!("round {round}: expected one success and one LastAdmin, got {other:?}")
            }
        };
        let (roster, _) = load::<Company>(&commands, &company.to_string(), company).await;
        assert_eq!(roster.admins, BTreeSet::from([survivor]), "round {round}");
        let (kept, _) = load::<User>(&commands, &survivor.to_string(), company).await;
        assert!(!kept.removed, "round {round}");
        assert_eq!(kept.role, Some(Role::Admin), "round {round}");
        let (gone, _) = load::<User>(&commands, &removed.to_string(), company).await;
        assert!(gone.removed, "round {round}");
        let removed_events = stream::<User>(&db, &removed.to_string()).await;
        assert!(matches!(
            removed_events.last().map(|(_, e)| e),
            Some(UserEvent::UserRemoved)
        ));

        // The removed user's email is free again; the survivor's is still held.
        let claim = |address: &Email| {
            let db = db.clone();
            let key = address.normalized();
            async move {
                fold::<EmailClaim>(
                    stream::<EmailClaim>(&db, &key)
                        .await
                        .into_iter()
                        .map(|(_, e)| e),
                )
            }
        };
        assert_eq!(claim(removed_email).await.holder, None, "round {round}");
        assert_eq!(
            claim(survivor_email).await.holder,
            Some(survivor),
            "round {round}"
        );
    }
}

/// Another company's customer is invisible to writes, and its id cannot be
/// registered again.
async fn tenancy_on_the_write_path(db: Db) {
    let commands = Commands::new(db.clone());
    let (company_a, user_a, company_b, user_b) =
        (new_company(), new_user(), new_company(), new_user());
    let customer = new_customer();
    let id = customer.to_string();
    commands
        .execute::<Customer>(
            &id,
            register_customer(customer, company_a, user_a),
            &ctx(company_a, user_a),
            Expect::Version(0),
        )
        .await
        .expect("register in A");
    let (before, _) = load::<Customer>(&commands, &id, company_a).await;
    let stored_before = events::read_stream(&db, "customer", &id).await.unwrap();
    let count_before = event_count(&db).await;

    let foreign = ctx(company_b, user_b);
    let commands_from_b = [
        set_notes("from B", user_b),
        CustomerCommand::AttachPhoto {
            photo_id: PhotoId(Uuid::now_v7()),
            by: user_b,
        },
        CustomerCommand::DetachPhoto { by: user_b },
        CustomerCommand::Delete { by: user_b },
        CustomerCommand::Restore { by: user_b },
    ];
    for command in commands_from_b {
        // Neither the current nor a wrong version tells B the customer exists.
        for expect in [Expect::Any, Expect::Version(1), Expect::Version(7)] {
            let result = commands
                .execute::<Customer>(&id, command.clone(), &foreign, expect)
                .await;
            assert!(
                matches!(result, Err(CommandError::NotFound)),
                "{command:?} with {expect:?} from B: {result:?}"
            );
        }
    }

    // Ids are global: B cannot register a customer under A's id.
    for expect in [Expect::Any, Expect::Version(0)] {
        let result = commands
            .execute::<Customer>(
                &id,
                register_customer(customer, company_b, user_b),
                &foreign,
                expect,
            )
            .await;
        assert!(
            matches!(
                result,
                Err(CommandError::Domain(CustomerError::AlreadyExists))
                    | Err(CommandError::Stale { current: 1 })
            ),
            "register A's id from B with {expect:?}: {result:?}"
        );
    }
    let result = commands
        .execute::<Customer>(
            &id,
            register_customer(customer, company_b, user_b),
            &foreign,
            Expect::Any,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::Domain(CustomerError::AlreadyExists))
        ),
        "{result:?}"
    );

    // Nothing was written, and A's customer is as it was.
    assert_eq!(event_count(&db).await, count_before);
    assert_eq!(
        events::read_stream(&db, "customer", &id).await.unwrap(),
        stored_before
    );
    assert_eq!(
        load::<Customer>(&commands, &id, company_a).await,
        (before, 1)
    );
    assert!(commands
        .load::<Customer>(&id, company_b)
        .await
        .expect("load")
        .is_none());
}

/// Events written through the executor come back from the commit-order
/// reader in commit order, and its checkpoints resume after what was read.
async fn commit_order_reader_follows_commits(db: Db) {
    let commands = Commands::new(db.clone());
    let (company, user) = (new_company(), new_user());
    let mut written = Vec::new();
    for _ in 0..3 {
        let customer = new_customer();
        commands
            .execute::<Customer>(
                &customer.to_string(),
                register_customer(customer, company, user),
                &ctx(company, user),
                Expect::Any,
            )
            .await
            .expect("register");
        written.push(customer.to_string());
    }
    let all = read_until(&db, Checkpoint::default(), written.len()).await;
    let ids: Vec<&str> = all.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, written);
    assert!(all
        .windows(2)
        .all(|w| w[0].checkpoint() < w[1].checkpoint()));

    let rest = events::read_committed_after(&db, all[0].checkpoint(), 100)
        .await
        .unwrap();
    assert_eq!(rest, all[1..]);
    let first = events::read_committed_after(&db, Checkpoint::default(), 1)
        .await
        .unwrap();
    assert_eq!(first, all[..1]);
    let none = events::read_committed_after(&db, all[2].checkpoint(), 100)
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Reads from `after` until `n` events are visible. On Postgres the reader
/// stops below the oldest transaction running anywhere on the server, and
/// other tests share the server, so visibility can lag a moment.
async fn read_until(db: &Db, after: Checkpoint, n: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = events::read_committed_after(db, after, 100).await.unwrap();
        if read.len() >= n || Instant::now() > deadline {
            assert_eq!(read.len(), n, "events visible to the commit-order reader");
            return read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- Postgres only

/// The gap-safe reader never passes a transaction still in flight: an event
/// committed by a later transaction waits until the earlier one commits, and
/// then both come in (transaction_id, global_position) order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_safe_reader_waits_for_transactions_in_flight() {
    support::on_postgres(gap_safe_reader).await;
}

async fn gap_safe_reader(db: Db) {
    const INSERT: &str = "INSERT INTO events \
        (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
        VALUES ('probe', $1, $2, 'Probed', '1.0', '{}'::jsonb, '{}'::jsonb) \
        RETURNING global_position, transaction_id::text";
    let pool = support::pg_pool(&db);
    let insert = |id: &'static str, sequence: i64| {
        sqlx::query_as::<_, (i64, String)>(INSERT)
            .bind(id)
            .bind(sequence)
    };

    // The earlier transaction writes an event and stays open.
    let mut early = pool.begin().await.unwrap();
    let (early_1, early_xid) = insert("early", 1).fetch_one(&mut *early).await.unwrap();

    // A later transaction commits an event.
    let (late, late_xid) = insert("late", 1).fetch_one(&pool).await.unwrap();
    let (early_xid, late_xid): (u64, u64) = (early_xid.parse().unwrap(), late_xid.parse().unwrap());
    assert!(early_xid < late_xid);

    // The early transaction writes again, after the late one's event.
    let (early_2, _) = insert("early", 2).fetch_one(&mut *early).await.unwrap();
    assert!(early_1 < late && late < early_2);

    // While the early transaction is open, the committed late event is held back.
    for _ in 0..3 {
        let read = events::read_committed_after(&db, Checkpoint::default(), 100)
            .await
            .unwrap();
        assert!(
            read.iter().all(|e| e.aggregate_id != "late"),
            "the reader passed a transaction in flight: {read:?}"
        );
        assert!(read.is_empty(), "{read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    early.commit().await.unwrap();
    let read = read_until(&db, Checkpoint::default(), 3).await;
    let order: Vec<(u64, i64, &str, i64)> = read
        .iter()
        .map(|e| {
            (
                e.transaction_id,
                e.position,
                e.aggregate_id.as_str(),
                e.sequence,
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (early_xid, early_1, "early", 1),
            (early_xid, early_2, "early", 2),
            (late_xid, late, "late", 1),
        ],
        "commit order is (transaction_id, global_position), not global_position"
    );

    // A checkpoint inside the early transaction resumes after it.
    let rest = events::read_committed_after(&db, read[0].checkpoint(), 100)
        .await
        .unwrap();
    assert_eq!(rest, read[1..]);
    let rest = events::read_committed_after(&db, read[1].checkpoint(), 100)
        .await
        .unwrap();
    assert_eq!(rest, read[2..]);
}
