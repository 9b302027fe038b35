//! What can go wrong running a command, in terms a caller can act on.
use cqrs_es::AggregateError;
use domain::DomainErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// No such aggregate in the caller's company (another company's is the same).
    #[error("not found")]
    NotFound,
    /// The caller's expected version is not the current one.
    #[error("the resource changed: current version is {current}")]
    Stale { current: u64 },
    /// Lost the race to concurrent writers more times than we retry.
    #[error("the resource is being changed concurrently; retry")]
    Contended,
    /// The event store cannot be reached, or timed out; the text says which
    /// ([`unavailable_reason`]).
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Domain errors that can say what kind of refusal they are.
pub trait Classified {
    fn kind(&self) -> DomainErrorKind;
}

macro_rules! classified {
    ($($t:ty),*) => {$(
        impl Classified for $t {
            fn kind(&self) -> DomainErrorKind {
                <$t>::kind(self)
            }
        }
    )*};
}
classified!(
    domain::company::CompanyError,
    domain::user::UserError,
    domain::customer::CustomerError,
    domain::photo::PhotoError,
    domain::email_claim::EmailClaimError,
    domain::external_id_claim::ExternalIdClaimError
);

impl<E: std::error::Error> CommandError<E> {
    /// Changes the domain error type, keeping every other case.
    pub fn map_domain<F: std::error::Error>(self, f: impl FnOnce(E) -> F) -> CommandError<F> {
        match self {
            Self::Domain(e) => CommandError::Domain(f(e)),
            Self::NotFound => CommandError::NotFound,
            Self::Stale { current } => CommandError::Stale { current },
            Self::Contended => CommandError::Contended,
            Self::Unavailable(m) => CommandError::Unavailable(m),
            Self::Internal(m) => CommandError::Internal(m),
        }
    }
}

/// Whether a database error means "cannot reach it" rather than a bug.
pub fn is_connection_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(sqlx_error) = e.downcast_ref::<sqlx::Error>() {
            return match sqlx_error {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // admin shutdown, cannot connect now, statement/lock timeouts, sqlite busy
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("57")
                        || code.starts_with("08")
                        || code == "55P03"
                        || code == "5"
                }),
                _ => false,
            };
        }
        cause = e.source();
    }
    let text = error.to_string();
    text.contains("pool timed out") || text.contains("database is locked")
}

/// What an "unavailable" database error was, in words a client can act on:
/// a timeout says it is one (a lock held by another session, a statement
/// running too long, no free connection), not just "unavailable".
pub fn unavailable_reason(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(sqlx_error) = e.downcast_ref::<sqlx::Error>() {
            return match sqlx_error {
                sqlx::Error::PoolTimedOut => "timed out waiting for a free database connection",
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    Some("55P03") => "timed out waiting for a lock held by another session",
                    Some("57014") => "a statement timed out",
                    Some("57P01" | "57P02" | "57P03") => "the database is restarting",
                    Some("5") => "the database is locked by another writer",
                    _ => "the database connection failed",
                },
                _ => "the database connection failed",
            };
        }
        cause = e.source();
    }
    if error.to_string().contains("pool timed out") {
        "timed out waiting for a free database connection"
    } else {
        "the database connection failed"
    }
}

/// [`CommandError::Unavailable`] with the reason a client is told; the
/// error itself goes to the log.
fn unavailable<E: std::error::Error>(
    error: &(dyn std::error::Error + Send + Sync + 'static),
) -> CommandError<E> {
    tracing::warn!(%error, "the event store is unavailable");
    CommandError::Unavailable(unavailable_reason(error).to_owned())
}

/// Maps what cqrs-es reports; `None` means an optimistic-lock conflict.
pub(crate) fn from_aggregate_error<E: std::error::Error>(
    error: AggregateError<E>,
) -> Option<CommandError<E>> {
    Some(match error {
        AggregateError::UserError(e) => CommandError::Domain(e),
        AggregateError::AggregateConflict => return None,
        AggregateError::DatabaseConnectionError(e) => unavailable(e.as_ref()),
        AggregateError::UnexpectedError(e) if is_connection_error(e.as_ref()) => {
            unavailable(e.as_ref())
        }
        AggregateError::UnexpectedError(e) => CommandError::Internal(e.to_string()),
        AggregateError::DeserializationError(e) => CommandError::Internal(e.to_string()),
    })
}
