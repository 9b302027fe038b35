//! Read-your-writes. A write answers with a token naming the events it wrote;
//! a read that sends it back waits (bounded) until the read models have
//! applied them. Checking is exact: each view row remembers its last sequence.
use base64::Engine;
use commands::applied::AppliedHub;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// One thing a read must see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Requirement {
    /// Aggregate `id` of type `t` applied up to sequence `s`.
    #[serde(rename = "a")]
    Applied { t: String, id: String, s: i64 },
    /// A photo uploaded for a customer is settled by the policy (attached or
    /// rejected), and the customer view shows the outcome.
    #[serde(rename = "p")]
    PhotoSettled { id: String },
}

/// The opaque `X-Consistency-Token`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyToken(pub Vec<Requirement>);

/// The longest `X-Consistency-Token` accepted (the server issues tokens of
/// a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// The most requirements a token may carry.
pub const MAX_REQUIREMENTS: usize = 16;

impl ConsistencyToken {
    /// Requires the write of aggregate `id` (of type `A`) at `sequence`.
    pub fn applied<A: domain::Identified>(id: A::Id, sequence: u64) -> Self {
        Self(vec![Requirement::Applied {
            t: A::TYPE.to_owned(),
            id: id.to_string(),
            s: sequence as i64,
        }])
    }

    pub fn and(mut self, other: ConsistencyToken) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&self.0).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// `None` for anything this server did not issue in this shape.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_TOKEN_LEN {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()?;
        let requirements: Vec<Requirement> = serde_json::from_slice(&bytes).ok()?;
        (requirements.len() <= MAX_REQUIREMENTS).then_some(Self(requirements))
    }
}

/// The view of an aggregate type, and the column that holds its company.
fn table_of(aggregate_type: &str) -> Option<(&'static str, &'static str)> {
    Some(match aggregate_type {
        "company" => ("companies", "id"),
        "user" => ("users", "company_id"),
        "customer" => ("customers", "company_id"),
        "photo" => ("photos", "company_id"),
        _ => return None,
    })
}

/// The last sequence applied to `id`'s row, `0` if there is none in
/// `company`: a token naming another company's row never holds, so a read's
/// timing and `X-Consistency-Stale` say nothing about other companies.
async fn last_seq(
    pool: &AnyPool,
    (table, company_column): (&str, &str),
    company: &str,
    id: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT last_seq FROM {table} WHERE id = $1 AND {company_column} = $2"
    ))
    .bind(id)
    .bind(company)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => 0,
    })
}

async fn satisfied(
    pool: &AnyPool,
    company: &str,
    requirement: &Requirement,
) -> Result<bool, sqlx::Error> {
    match requirement {
        Requirement::Applied { t, id, s } => match table_of(t) {
            Some(table) => Ok(last_seq(pool, table, company, id).await? >= *s),
            None => Ok(true),
        },
        Requirement::PhotoSettled { id } => {
            let row = sqlx::query(
                "SELECT status, customer_id, customer_version FROM photos \
                 WHERE id = $1 AND company_id = $2",
            )
            .bind(id.as_str())
            .bind(company)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(false) };
            let status: String = row.try_get("status")?;
            if status == "pending" {
                return Ok(false);
            }
            let customer: Option<String> = row.try_get("customer_id")?;
            let version: Option<i64> = row.try_get("customer_version")?;
            match (customer, version) {
                (Some(customer), Some(version)) => {
                    Ok(
                        last_seq(pool, ("customers", "company_id"), company, &customer).await?
                            >= version,
                    )
                }
                _ => Ok(true),
            }
        }
    }
}

/// Waits until every requirement holds or `timeout` passes; `true` if they
/// all hold (the read is fresh), `false` if it gave up (the read may be stale).
/// Only rows of `company` (the caller's) can satisfy a requirement.
pub async fn wait_for(
    pool: &AnyPool,
    company: &str,
    token: &ConsistencyToken,
    timeout: Duration,
) -> bool {
    wait_for_signalled(pool, company, token, timeout, None).await
}

/// [`wait_for`] that also listens to what the views of this process apply
/// (`applied`): a requirement met there needs no further read of the views.
/// The views are still polled, for events applied by other processes: as
/// [`wait_for`] does when no view of that type runs here, less often when
/// one does.
pub async fn wait_for_signalled(
    pool: &AnyPool,
    company: &str,
    token: &ConsistencyToken,
    timeout: Duration,
    applied: Option<&AppliedHub>,
) -> bool {
    let deadline = Instant::now() + timeout;
    for requirement in &token.0 {
        // Subscribed before the first read, so nothing applied after it is missed.
        let mut heard = applied.map(AppliedHub::subscribe);
        if let Ok(true) = satisfied(pool, company, requirement).await {
            continue;
        }
        let served = match requirement {
            Requirement::Applied { t, .. } => applied.is_some_and(|hub| hub.serves(t)),
            Requirement::PhotoSettled { .. } => false,
        };
        let mut pause = Duration::from_millis(if served { 10 } else { 2 });
        let mut next_poll = Instant::now() + pause;
        loop {
            if next_poll > deadline {
                return false;
            }
            let news = async {
                match heard.as_mut() {
                    Some(heard) => heard.recv().await,
                    None => std::future::pending().await,
                }
            };
            let look = tokio::select! {
                news = news => match (news, requirement) {
                    (Ok(batch), Requirement::Applied { t, id, s }) => {
                        if batch.iter().any(|e| {
                            e.aggregate_type == *t
                                && e.aggregate_id == *id
                                && e.company_id == company
                                && e.sequence >= *s
                        }) {
                            break;
                        }
                        false
                    }
                    // Any application may settle a photo: look.
                    (Ok(_), Requirement::PhotoSettled { .. }) => true,
                    (Err(RecvError::Lagged(_)), _) => true,
                    (Err(RecvError::Closed), _) => {
                        heard = None;
                        true
                    }
                },
                _ = tokio::time::sleep_until(next_poll.into()) => {
                    pause = (pause * 2).min(Duration::from_millis(25));
                    next_poll = Instant::now() + pause;
                    true
                }
            };
            if look {
                if let Ok(true) = satisfied(pool, company, requirement).await {
                    break;
                }
            }
        }
    }
    true
}
