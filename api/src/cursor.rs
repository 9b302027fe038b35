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

/// The longest cursor accepted. Must cover the longest one [`encode`] can
/// issue: a scope with a 200-character search and a key of a 200-character
/// surname, folded (see the test below). A smaller limit once refused the
/// server's own cursors for long non-Latin surnames.
pub const MAX_CURSOR_LEN: usize = 16 * 1024;

pub fn decode(secret: &[u8], scope: &str, cursor: &str) -> Result<Keyset, ApiError> {
    let invalid = || ApiError::bad_request("the cursor is not valid for this list");
    if cursor.len() > MAX_CURSOR_LEN {
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

    /// The longest surname key and search scope the server can put in a cursor.
    fn worst_case() -> (String, String) {
        // The character whose folded form is longest once JSON-escaped.
        let widest = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| !c.is_control())
            .max_by_key(|c| {
                serde_json::to_string(&domain::values::fold_text(&c.to_string()))
                    .map(|s| s.len())
                    .unwrap_or(0)
            })
            .expect("a character");
        let surname = widest
            .to_string()
            .repeat(domain::values::PersonName::MAX_CHARS);
        assert!(domain::values::PersonName::parse(&surname).is_ok());
        let key = domain::values::fold_text(&surname);
        // A search of 200 characters that each escape to six bytes.
        let q = "\u{1}".repeat(200);
        let scope = format!("{}/customers/-created_at/false/{q}", uuid::Uuid::now_v7());
        (scope, key)
    }

    #[test]
    fn the_longest_cursor_the_server_issues_is_accepted() {
        // Regression: with a 2,048-byte limit, a list sorted by surname whose
        // page ended on a 200-character Hangul surname ("각" folds to three
        // 3-byte jamo) got a next_cursor that the next request refused.
        let (scope, key) = worst_case();
        let keyset = Keyset {
            key,
            id: uuid::Uuid::now_v7().to_string(),
        };
        let cursor = encode(b"secret", &scope, &keyset);
        assert!(cursor.len() <= MAX_CURSOR_LEN, "{} bytes", cursor.len());
        assert_eq!(decode(b"secret", &scope, &cursor).unwrap(), keyset);
        let hangul = Keyset {
            key: domain::values::fold_text(&"각".repeat(200)),
            id: uuid::Uuid::now_v7().to_string(),
        };
        let cursor = encode(b"secret", "company/customers/surname/false/", &hangul);
        assert!(cursor.len() > 2048);
        assert_eq!(
            decode(b"secret", "company/customers/surname/false/", &cursor).unwrap(),
            hangul
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
        let huge = "A".repeat(MAX_CURSOR_LEN + 1);
        assert!(decode(b"secret", "company-a/customers", &huge).is_err());
    }
}
