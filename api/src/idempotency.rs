//! `Idempotency-Key` without a side table: the key, scoped to the company,
//! determines the id of what the request creates (UUIDv5). A repeat, even a
//! concurrent one, targets the same aggregate; the event store lets only the
//! first creation happen, and the repeat answers with what it created.
//!
//! The request's digest is stored with the created events, so a repeat of
//! the key with a different request is told apart from a retry: `422`.
use domain::CompanyId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Our namespace for derived ids (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_7a0d_43b2_4f6e_9a51_0c8d_2e7f_b361);

/// The id a keyed create gives its aggregate of type `A`: the same key in
/// the same company derives the same id; another company or another type of
/// aggregate, another.
pub fn derived_id<A: domain::Identified>(company: CompanyId, key: &str) -> A::Id {
    derived_uuid(company, A::TYPE, key).into()
}

/// The id a keyed create of a `kind` of record gives it (see [`derived_id`]).
pub fn derived_uuid(company: CompanyId, kind: &str, key: &str) -> Uuid {
    let name = format!("{company}/{kind}/{key}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// A digest of what a keyed request asks for. Secrets (passwords) must be
/// left out of `request` by its type: the digest is stored in the log.
pub fn digest(request: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// A digest of an uploaded file and what it is uploaded for.
pub fn digest_bytes(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// `Ok` when the aggregate that `key` created was created by a request with
/// this `digest` (or before digests were stored); `422` naming the key
/// otherwise.
pub async fn same_request<A: domain::Tenanted>(
    state: &AppState,
    id: &str,
    digest: Option<&str>,
) -> Result<(), ApiError> {
    let Some(digest) = digest else {
        return Ok(());
    };
    let events = commands::events::read_stream(state.commands.db(), A::TYPE, id).await?;
    let first = events
        .first()
        .and_then(|event| event.meta(commands::context::META_REQUEST_DIGEST));
    match first {
        Some(stored) if stored != digest => Err(ApiError::field(
            "Idempotency-Key",
            "this key was already used for a different request; use a new key for a new request",
        )),
        _ => Ok(()),
    }
}

/// A repeat of the request that created aggregate `id` with this `digest`
/// ([`same_request`]): the aggregate and version to answer with as the first
/// time, `None` if the caller's company holds no such aggregate.
pub async fn first_result<A>(
    state: &AppState,
    company: CompanyId,
    id: &str,
    digest: Option<&str>,
) -> Result<Option<(A, u64)>, ApiError>
where
    A: domain::Tenanted<Services = ()>,
    A::Error: commands::error::Classified,
{
    same_request::<A>(state, id, digest).await?;
    Ok(state.commands.load::<A>(id, company).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::customer::Customer;
    use domain::photo::Photo;

    #[test]
    fn the_same_key_in_another_company_derives_another_id() {
        let a = CompanyId(Uuid::from_u128(1));
        let b = CompanyId(Uuid::from_u128(2));
        let customer = |company, key| derived_id::<Customer>(company, key).as_uuid();
        assert_eq!(customer(a, "k"), customer(a, "k"));
        assert_ne!(customer(a, "k"), customer(b, "k"));
        assert_ne!(customer(a, "k"), derived_id::<Photo>(a, "k").as_uuid());
    }
}
