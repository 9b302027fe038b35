//! `Idempotency-Key` without a side table: the key, scoped to the company,
//! determines the id of what the request creates (UUIDv5). A repeat, even a
//! concurrent one, targets the same aggregate; the event store lets only the
//! first creation happen, and the repeat answers with what it created.
use domain::CompanyId;
use uuid::Uuid;

/// Our namespace for derived ids (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_7a0d_43b2_4f6e_9a51_0c8d_2e7f_b361);

pub fn derived_id(company: CompanyId, kind: &str, key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{company}/{kind}/{key}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_in_another_company_derives_another_id() {
        let a = CompanyId(Uuid::from_u128(1));
        let b = CompanyId(Uuid::from_u128(2));
        assert_eq!(
            derived_id(a, "customer", "k"),
            derived_id(a, "customer", "k")
        );
        assert_ne!(
            derived_id(a, "customer", "k"),
            derived_id(b, "customer", "k")
        );
        assert_ne!(derived_id(a, "customer", "k"), derived_id(a, "photo", "k"));
    }
}
