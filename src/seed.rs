//! `crm seed`: bulk-loads companies, their admins and their customers as real
//! events, then projects them. For benchmarks and demos at scale.
//!
//! Every event is the one the executor would have written for the same
//! requests (a signup: `EmailClaimed`, `CompanyRegistered`, `UserRegistered`;
//! then one `CustomerRegistered` per customer), serialized the same way
//! (payload = the domain event enum as JSON, type and version from
//! `DomainEvent`, metadata from [`CommandContext::metadata`]). They are
//! appended in large batches through the command side's bulk append
//! ([`commands::append::load`]: `COPY` on Postgres, multi-row `INSERT`s on
//! SQLite), then every view is rebuilt from the store.
//!
//! Seeded history is projected here, not replayed through the feeds: when the
//! relay (or the embedded feed) had caught up before the seed, its checkpoint
//! moves past the seeded events, so a server started afterwards does not
//! deliver a million events its views already hold.
//!
//! Company `n` (from 0) has one admin, `admin<n>@seed.example.com`, whose
//! password is [`PASSWORD`]; the password is hashed once and the hash reused.
use anyhow::{bail, Context};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use commands::append::{self, NewEvent};
use commands::events::committed_head;
use commands::{CommandContext, Db};
use cqrs_es::Aggregate;
use domain::company::{Company, CompanyEvent};
use domain::customer::{Customer, CustomerEvent};
use domain::email_claim::{EmailClaim, EmailClaimEvent};
use domain::user::{User, UserEvent};
use domain::values::{CompanyName, Email, Notes, PersonName, Phone, Role};
use domain::{CompanyId, UserId};
use projections::feed;
use std::time::Instant;
use uuid::Uuid;

use crate::config::Config;

/// The password of every seeded admin.
pub const PASSWORD: &str = "seed-password-1";
/// Events written per transaction.
const BATCH_EVENTS: usize = 20_000;

/// The login of seeded company `n`'s admin.
pub fn admin_email(n: u32) -> String {
    format!("admin{n}@seed.example.com")
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "José",
    "María",
    "Zoë",
    "Łukasz",
    "Søren",
    "Chloé",
    "Noah",
    "Emma",
    "Liam",
    "Olivia",
    "Mateo",
    "Sofía",
    "Lucas",
    "Mia",
    "Hugo",
    "Inès",
    "Leo",
    "Amélie",
    "Björn",
    "Jürgen",
    "Renée",
    "François",
    "Anaïs",
    "Hannah",
    "Oskar",
    "Elena",
    "Marco",
    "Giulia",
    "Ivan",
    "Olga",
    "Yuki",
    "Kenji",
    "Aiko",
    "Priya",
    "Ravi",
    "Fatima",
    "Omar",
    "Layla",
    "Tariq",
    "Nia",
    "Kwame",
    "Amara",
    "Diego",
    "Lucía",
    "Pablo",
    "Carmen",
    "Teresa",
];

const SURNAME_STEMS: &[&str] = &[
    "Álvarez",
    "García",
    "Müller",
    "Nowak",
    "Lovelace",
    "Turing",
    "Hopper",
    "Dubois",
    "Rossi",
    "Kowalski",
    "Novák",
    "Sørensen",
    "Öztürk",
    "Smith",
    "Johnson",
    "Brown",
    "Martín",
    "Fernández",
    "López",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Bernard",
    "Moreau",
    "Lefèvre",
    "Bianchi",
    "Romano",
    "Ivanov",
    "Petrov",
    "Tanaka",
    "Suzuki",
    "Sato",
    "Kim",
    "Park",
    "Nguyen",
    "Tran",
    "Singh",
    "Patel",
    "Khan",
];

const SURNAME_SUFFIXES: &[&str] = &["", "", "", "-Ruiz", " Díaz", "son", "berg", "ová"];

/// A small deterministic generator (xorshift64*): the same seed gives the
/// same data, so runs are comparable.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Appends events in batches, each batch in one transaction.
struct Writer<'a> {
    db: &'a Db,
    pending: Vec<NewEvent>,
    written: u64,
}

impl Writer<'_> {
    /// Queues `event` of aggregate `id` (type `A`) at `sequence`, as the
    /// command in `ctx` would have committed it.
    async fn push<A: Aggregate>(
        &mut self,
        id: String,
        sequence: i64,
        event: &A::Event,
        ctx: &CommandContext,
    ) -> anyhow::Result<()> {
        self.pending.push(NewEvent::new::<A>(
            id,
            sequence,
            event,
            append::metadata(&ctx.metadata())?,
        )?);
        if self.pending.len() >= BATCH_EVENTS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        commands::append::load(self.db, &self.pending).await?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

fn ascii_key(text: &str) -> String {
    domain::values::search_words(text).join("")
}

pub async fn run(config: Config, companies: u32, customers_per_company: u32) -> anyhow::Result<()> {
    let db = crate::runtime::open_db(&config).await?;
    let taken = sqlx::query("SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
        .bind(EmailClaim::TYPE)
        .bind(admin_email(0))
        .fetch_optional(&db.any)
        .await?;
    if taken.is_some() {
        bail!(
            "this store is already seeded ({} exists): seed an empty database",
            admin_email(0)
        );
    }
    let before = committed_head(&db).await?;
    let caught_up = feed::default_checkpoint(&db).await? >= before;

    let started = Instant::now();
    let password_hash = commands::passwords::hash(PASSWORD.to_owned())
        .await
        .map_err(anyhow::Error::msg)
        .context("hashing the seed password")?;
    let total = u64::from(companies) * (3 + u64::from(customers_per_company));
    // Event times in the past, one millisecond apart, in commit order.
    let mut clock: DateTime<Utc> = Utc::now() - TimeDelta::milliseconds(total as i64 + 60_000);
    let mut tick = || {
        clock += TimeDelta::milliseconds(1);
        clock
    };
    let mut dice = Dice(0x5EED_CAFE_F00D_u64);
    let mut writer = Writer {
        db: &db,
        pending: Vec::with_capacity(BATCH_EVENTS),
        written: 0,
    };
    for n in 0..companies {
        let company = CompanyId(Uuid::now_v7());
        let admin = UserId(Uuid::now_v7());
        let email = Email::parse(&admin_email(n))?;
        let signup = CommandContext {
            company_id: company,
            user_id: admin,
            correlation_id: Uuid::now_v7(),
            occurred_at: tick(),
            request_digest: None,
            api_key: false,
        };
        let claimed = EmailClaimEvent::EmailClaimed { user_id: admin };
        writer
            .push::<EmailClaim>(email.normalized(), 1, &claimed, &signup)
            .await?;
        let registered = CompanyEvent::CompanyRegistered {
            company_id: company,
            name: CompanyName::parse(&format!("Seed Company {n:04}"))?,
            founding_admin: admin,
        };
        writer
            .push::<Company>(company.to_string(), 1, &registered, &signup)
            .await?;
        let user = UserEvent::UserRegistered {
            company_id: company,
            email,
            name: PersonName::parse(&format!("Admin {n}"))?,
            surname: None,
            title: None,
            role: Role::Admin,
            password_hash: password_hash.clone(),
        };
        writer
            .push::<User>(admin.to_string(), 1, &user, &signup)
            .await?;
        for k in 0..customers_per_company {
            let first = dice.pick(FIRST_NAMES);
            let surname = format!(
                "{}{}",
                dice.pick(SURNAME_STEMS),
                dice.pick(SURNAME_SUFFIXES)
            );
            let email = Email::parse(&format!(
                "{}.{}{k}@company{n}.example.com",
                ascii_key(first),
                ascii_key(&surname)
            ))?;
            let phone = if dice.chance(60) {
                Some(Phone::parse(&format!(
                    "+34 6{:02} {:03} {:03}",
                    dice.next() % 100,
                    dice.next() % 1000,
                    dice.next() % 1000
                ))?)
            } else {
                None
            };
            let notes = if dice.chance(20) {
                Some(Notes::parse("Met at the trade fair; prefers email.")?)
            } else {
                None
            };
            let ctx = CommandContext {
                company_id: company,
                user_id: admin,
                correlation_id: Uuid::now_v7(),
                occurred_at: tick(),
                request_digest: None,
                api_key: false,
            };
            let event = CustomerEvent::CustomerRegistered {
                company_id: company,
                name: PersonName::parse(first)?,
                surname: PersonName::parse(&surname)?,
                email: Some(email),
                phone,
                notes,
                external_id: None,
                by: admin,
            };
            writer
                .push::<Customer>(Uuid::now_v7().to_string(), 1, &event, &ctx)
                .await?;
        }
    }
    writer.flush().await?;
    // Fresh statistics, as autovacuum would gather after such a load: the
    // planner needs them to read the events back along their key.
    sqlx::query("ANALYZE events").execute(&db.any).await?;
    let written = writer.written;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "seeded {companies} companies, {} customers: {written} events in {elapsed:.2}s ({:.0} events/s)",
        u64::from(companies) * u64::from(customers_per_company),
        written as f64 / elapsed.max(1e-9)
    );

    for view in projections::views::all() {
        let report = projections::rebuild::rebuild(&db, view.as_ref(), false).await?;
        println!(
            "projected {}: {} events in {:.2}s ({:.0} events/s)",
            report.view,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_second()
        );
    }
    if caught_up {
        feed::skip_default_to(&db, committed_head(&db).await?).await?;
    } else {
        println!("the feed was behind before the seed: it will deliver the seeded events too");
    }
    println!(
        "admins: {} .. {} (password {PASSWORD})",
        admin_email(0),
        admin_email(companies.saturating_sub(1))
    );
    Ok(())
}
