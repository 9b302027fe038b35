//! Opaque list cursors: the keyset of the last row plus what the list was
//! (company, sort, filter), signed with HMAC so a tampered or foreign cursor
//! is refused with `400` before it reaches SQL.
use base64::Engine;
use hmac::{Hmac, Mac};
use projections::read::Keyset;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// What the cursor belongs to: company, list name, sort, filters.
    scope: String,
    key: String,
    id: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn mac(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes()[..16].to_vec()
}

pub fn encode(secret: &[u8], scope: &str, keyset: &Keyset) -> String {
    let payload = Payload {
        scope: scope.to_owned(),
        key: keyset.key.clone(),
        id: keyset.id.clone(),
    };
    let json = serde_json::to_vec(&payload).unwrap_or_default();
    format!("{}.{}", B64.encode(&json), B64.encode(mac(secret, &json)))
}

pub fn decode(secret: &[u8], scope: &str, cursor: &str) -> Result<Keyset, ApiError> {
    let invalid = || ApiError::bad_request("the cursor is not valid for this list");
    if cursor.len() > 2048 {
        return Err(invalid());
    }
    let (body, signature) = cursor.split_once('.').ok_or_else(invalid)?;
    let json = B64.decode(body).map_err(|_| invalid())?;
    let signature = B64.decode(signature).map_err(|_| invalid())?;
    let mut check = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| invalid())?;
    check.update(&json);
    check
        .verify_truncated_left(&signature)
        .map_err(|_| invalid())?;
    let payload: Payload = serde_json::from_slice(&json).map_err(|_| invalid())?;
    if payload.scope != scope {
        return Err(invalid());
    }
    Ok(Keyset {
        key: payload.key,
        id: payload.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyset() -> Keyset {
        Keyset {
            key: "2026-01-01".into(),
            id: "abc".into(),
        }
    }

    #[test]
    fn a_cursor_round_trips_in_its_scope() {
        let cursor = encode(b"secret", "company-a/customers", &keyset());
        assert_eq!(
            decode(b"secret", "company-a/customers", &cursor).unwrap(),
            keyset()
        );
    }

    #[test]
    fn foreign_and_tampered_cursors_are_refused() {
        let cursor = encode(b"secret", "company-a/customers", &keyset());
        assert!(decode(b"secret", "company-b/customers", &cursor).is_err());
        assert!(decode(b"other", "company-a/customers", &cursor).is_err());
        let mut tampered = cursor.clone();
        tampered.replace_range(0..1, if cursor.starts_with('A') { "B" } else { "A" });
        assert!(decode(b"secret", "company-a/customers", &tampered).is_err());
        assert!(decode(b"secret", "company-a/customers", "garbage").is_err());
        assert!(decode(b"secret", "company-a/customers", "").is_err());
    }
}
