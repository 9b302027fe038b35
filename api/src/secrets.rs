//! Opaque bearer secrets (refresh tokens, API keys): random, shown to the
//! client once, stored only as a SHA-256 digest. They carry 256 random bits,
//! so a fast digest is enough (no password hashing needed to resist guessing).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A new secret: `prefix` + 43 characters of base64url.
pub fn generate(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database keeps of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_stored_as_digests() {
        let (a, b) = (generate("crmr_"), generate("crmr_"));
        assert_ne!(a, b);
        assert!(a.starts_with("crmr_") && a.len() == 5 + 43);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
        assert!(!digest(&a).contains(&a[5..]));
    }
}
