//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on
//! the blocking pool, never on the async worker threads, and deliberately
//! memory-hard (19 MiB each), so only a few run at once: the others wait
//! their turn. Without the bound, a burst of logins (or signups) ran up to
//! the blocking pool's 512 threads at once, ~10 GiB of hashing memory.
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use domain::values::PasswordHash;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// The most hashes computed at once: twice the CPUs, at most 16.
pub fn max_concurrent_hashes() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 16)
}

/// The permits a hash or a verification holds while it runs (on the blocking
/// thread itself, so a request that gives up does not free its permit
/// before the work it started is done).
pub fn hashing_permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(max_concurrent_hashes())))
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A PHC hash that matches no password, verified when an email is unknown so
/// that a wrong email costs as much time as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$9N0Qrj1Ur7WfM4gRZr1R3M4a0bKqN0mW3mXl1l3b1DQ";

pub async fn hash(password: String) -> Result<PasswordHash, String> {
    let permit = hashing_permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
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
    let Ok(permit) = hashing_permits().clone().acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn hashing_waits_for_a_permit() {
        // Regression: nothing bounded concurrent argon2 runs (19 MiB each).
        let all = hashing_permits()
            .clone()
            .acquire_many_owned(max_concurrent_hashes() as u32)
            .await
            .expect("permits");
        let waiting =
            tokio::time::timeout(Duration::from_millis(300), verify("password".into(), None)).await;
        assert!(waiting.is_err(), "a verification ran without a permit");
        drop(all);
        assert!(!verify("password".into(), None).await);
        let hash = hash("correct horse".into()).await.expect("hash");
        assert!(verify("correct horse".into(), Some(hash.as_str().to_owned())).await);
    }
}
