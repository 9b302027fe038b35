//! Commands that span several aggregates, run as short sagas: each step is
//! one aggregate's own transaction, ordered so that a failure leaves nothing
//! a user could trip over (the email is claimed first; a failed step later
//! releases it).
//!
//! The invariants live in single aggregates: email uniqueness in the
//! `EmailClaim` stream of the address, "at least one admin" in the company's
//! roster. A crash between steps can leave a claimed email without a user or
//! a revoked roster entry whose user still says admin; both are visible in
//! the event store and repaired by retrying the request.
use domain::company::{Company, CompanyCommand, CompanyError};
use domain::email_claim::{EmailClaim, EmailClaimCommand, EmailClaimError};
use domain::user::{User, UserCommand, UserError};
use domain::values::{Email, FieldChange, PersonName, Role, Title};
use domain::{CompanyId, UserId};

use crate::{CommandContext, CommandError, Commands, Expect, Outcome};

/// Any refusal along an account saga.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Company(#[from] CompanyError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Email(#[from] EmailClaimError),
}

pub type AccountResult<T> = Result<T, CommandError<AccountError>>;

impl crate::error::Classified for AccountError {
    fn kind(&self) -> domain::DomainErrorKind {
        match self {
            Self::Company(e) => e.kind(),
            Self::User(e) => e.kind(),
            Self::Email(e) => e.kind(),
        }
    }
}

fn lift<E: std::error::Error + Into<AccountError>>(
    error: CommandError<E>,
) -> CommandError<AccountError> {
    error.map_domain(Into::into)
}

async fn claim_email(
    commands: &Commands,
    email: &Email,
    user: UserId,
    ctx: &CommandContext,
) -> AccountResult<()> {
    commands
        .execute::<EmailClaim>(
            &email.normalized(),
            EmailClaimCommand::Claim { user_id: user },
            ctx,
            Expect::Any,
        )
        .await
        .map(drop)
        .map_err(lift)
}

async fn release_email(commands: &Commands, email: &Email, user: UserId, ctx: &CommandContext) {
    let release = EmailClaimCommand::Release { user_id: user };
    if let Err(error) = commands
        .execute::<EmailClaim>(&email.normalized(), release, ctx, Expect::Any)
        .await
    {
        tracing::warn!(%error, "could not release an email claim; it stays reserved");
    }
}

/// Registers a company and its first admin. `ctx` names the new company and user.
pub async fn sign_up(
    commands: &Commands,
    ctx: &CommandContext,
    company_name: domain::values::CompanyName,
    register_user: UserCommand,
    email: &Email,
) -> AccountResult<(Outcome<Company>, Outcome<User>)> {
    claim_email(commands, email, ctx.user_id, ctx).await?;
    let register_company = CompanyCommand::Register {
        company_id: ctx.company_id,
        name: company_name,
        founding_admin: ctx.user_id,
    };
    let company = match commands
        .execute::<Company>(
            &ctx.company_id.to_string(),
            register_company,
            ctx,
            Expect::Any,
        )
        .await
    {
        Ok(company) => company,
        Err(error) => {
            release_email(commands, email, ctx.user_id, ctx).await;
            return Err(lift(error));
        }
    };
    let user = create_user_after_claim(commands, ctx, ctx.user_id, register_user, email).await?;
    Ok((company, user))
}

async fn create_user_after_claim(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    register: UserCommand,
    email: &Email,
) -> AccountResult<Outcome<User>> {
    match commands
        .execute::<User>(&user_id.to_string(), register, ctx, Expect::Any)
        .await
    {
        Ok(user) => Ok(user),
        Err(error) => {
            // An idempotent replay finds its own user: keep the claim.
            if !matches!(error, CommandError::Domain(UserError::AlreadyExists)) {
                release_email(commands, email, user_id, ctx).await;
            }
            Err(lift(error))
        }
    }
}

/// Adds a user to the caller's company; admins also join the roster.
pub async fn create_user(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    register: UserCommand,
    email: &Email,
    role: Role,
) -> AccountResult<Outcome<User>> {
    claim_email(commands, email, user_id, ctx).await?;
    if role == Role::Admin {
        grant_admin(commands, ctx, ctx.company_id, user_id).await?;
    }
    create_user_after_claim(commands, ctx, user_id, register, email).await
}

async fn grant_admin(
    commands: &Commands,
    ctx: &CommandContext,
    company: CompanyId,
    user: UserId,
) -> AccountResult<()> {
    commands
        .execute::<Company>(
            &company.to_string(),
            CompanyCommand::GrantAdmin { user_id: user },
            ctx,
            Expect::Any,
        )
        .await
        .map(drop)
        .map_err(lift)
}

async fn revoke_admin(
    commands: &Commands,
    ctx: &CommandContext,
    user: UserId,
) -> AccountResult<()> {
    commands
        .execute::<Company>(
            &ctx.company_id.to_string(),
            CompanyCommand::RevokeAdmin { user_id: user },
            ctx,
            Expect::Any,
        )
        .await
        .map(drop)
        .map_err(lift)
}

/// The user, unless it is missing, removed or of another company.
async fn existing_user(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
) -> AccountResult<(User, u64)> {
    match commands
        .load_existing::<User>(&user_id.to_string(), ctx.company_id)
        .await
        .map_err(lift)?
    {
        (user, _) if user.removed => Err(CommandError::NotFound),
        found => Ok(found),
    }
}

/// Changes a user's role. The roster decides first, so the last admin can
/// never be demoted, even by two admins demoting each other at once.
pub async fn change_role(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    role: Role,
    expect: Expect,
) -> AccountResult<Outcome<User>> {
    // Check the user belongs to the caller's company before touching the roster.
    existing_user(commands, ctx, user_id).await?;
    match role {
        Role::Admin => grant_admin(commands, ctx, ctx.company_id, user_id).await?,
        Role::User => revoke_admin(commands, ctx, user_id).await?,
    }
    commands
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::ChangeRole { role },
            ctx,
            expect,
        )
        .await
        .map_err(lift)
}

/// Removes a user: off the roster (never the last admin), then removed, then
/// its email is free again.
pub async fn remove_user(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    expect: Expect,
) -> AccountResult<Outcome<User>> {
    let (user, _) = existing_user(commands, ctx, user_id).await?;
    revoke_admin(commands, ctx, user_id).await?;
    let outcome = commands
        .execute::<User>(&user_id.to_string(), UserCommand::Remove, ctx, expect)
        .await
        .map_err(lift)?;
    if let Some(email) = &user.email {
        release_email(commands, email, user_id, ctx).await;
    }
    Ok(outcome)
}

/// Moves a user to a new email: claim the new one, switch, release the old.
async fn change_email(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    old: Option<Email>,
    new: Email,
    expect: Expect,
) -> AccountResult<Outcome<User>> {
    claim_email(commands, &new, user_id, ctx).await?;
    let outcome = commands
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::ChangeEmail { email: new.clone() },
            ctx,
            expect,
        )
        .await;
    match outcome {
        Ok(outcome) => {
            if let Some(old) = old.filter(|old| old.normalized() != new.normalized()) {
                release_email(commands, &old, user_id, ctx).await;
            }
            Ok(outcome)
        }
        Err(error) => {
            release_email(commands, &new, user_id, ctx).await;
            Err(lift(error))
        }
    }
}

/// What a user update changes; `None` leaves that part as it is.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub name: Option<PersonName>,
    pub surname: Option<FieldChange<PersonName>>,
    pub title: Option<FieldChange<Title>>,
    pub email: Option<Email>,
    /// The new password in plain text; hashed here, before any step runs.
    pub password: Option<String>,
}

/// Updates a user's profile, then its email, then its password, each its
/// own command. `expect` guards the first of them (or, with nothing to
/// change, is checked against the user), so a stale `If-Match` changes
/// nothing; the later steps follow on the version the first one left.
/// Returns the user's version after the last step.
pub async fn update_user(
    commands: &Commands,
    ctx: &CommandContext,
    user_id: UserId,
    update: UserUpdate,
    expect: Expect,
) -> AccountResult<u64> {
    let password_hash = match update.password {
        Some(password) => Some(
            crate::passwords::hash(password)
                .await
                .map_err(CommandError::Internal)?,
        ),
        None => None,
    };
    let id = user_id.to_string();
    let (current, mut version) = existing_user(commands, ctx, user_id).await?;
    if !expect.admits(version) {
        return Err(CommandError::Stale { current: version });
    }
    // The first step carries the caller's expectation; the later ones follow
    // the version the step before left.
    let mut expect = Some(expect);
    let mut step_expect = || expect.take().unwrap_or(Expect::Any);
    if update.name.is_some() || update.surname.is_some() || update.title.is_some() {
        let change = UserCommand::ChangeProfile {
            name: update.name,
            surname: update.surname,
            title: update.title,
        };
        version = commands
            .execute::<User>(&id, change, ctx, step_expect())
            .await
            .map_err(lift)?
            .version;
    }
    if let Some(email) = update.email {
        version = change_email(commands, ctx, user_id, current.email, email, step_expect())
            .await?
            .version;
    }
    if let Some(password_hash) = password_hash {
        let change = UserCommand::ChangePassword { password_hash };
        version = commands
            .execute::<User>(&id, change, ctx, step_expect())
            .await
            .map_err(lift)?
            .version;
    }
    Ok(version)
}
