//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on
//! the blocking pool, never on the async worker threads.
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use domain::values::PasswordHash;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A PHC hash that matches no password, verified when an email is unknown so
/// that a wrong email costs as much time as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$9N0Qrj1Ur7WfM4gRZr1R3M4a0bKqN0mW3mXl1l3b1DQ";

pub async fn hash(password: String) -> Result<PasswordHash, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| e.to_string())?
            .to_string();
        PasswordHash::from_phc(phc).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches `phc`; with `None` it spends the same effort on
/// a decoy and answers `false`.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DECOY_HASH.to_owned());
        let Ok(parsed) = argon2::PasswordHash::new(&phc) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}
