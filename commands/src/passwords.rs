//! Password hashing with argon2id. Hashing is deliberately slow and
//! memory-hard (19 MiB each), so it runs on a small pool of its own threads,
//! never on the async workers nor on tokio's blocking pool: at most
//! [`hashing_threads`] hashes run at once and the others queue. It ran on the
//! blocking pool before, unbounded: a burst of logins (all past the rate
//! limiter before the first failure is counted) ran up to 512 hashes at once
//! (~10 GiB), and every blocking thread that ever hashed kept its own malloc
//! arena of hashing memory. Each of these threads keeps one buffer of
//! hashing memory and reuses it (allocating 19 MiB per hash left the
//! process's memory growing by that much per login for a while, malloc
//! keeping the freed blocks), so hashing memory stays at threads x 19 MiB
//! while logins come in; a thread idle for [`IDLE_RELEASE`] gives its buffer
//! back to the system, so a server at rest does not hold it.
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use domain::values::PasswordHash;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long a hashing thread keeps its buffer after its last hash.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// How many threads hash passwords: the CPUs, at least 2, at most 8.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue. A condvar rather than a channel behind a
/// mutex: each idle thread waits on its own timeout, so every one of them
/// notices it is idle and frees its memory.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    queued: Condvar,
}

impl Queue {
    fn next_job(&self) -> Option<Job> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = jobs.pop_front() {
                return Some(job);
            }
            let (waited, timeout) = self
                .queued
                .wait_timeout(jobs, IDLE_RELEASE)
                .unwrap_or_else(PoisonError::into_inner);
            jobs = waited;
            if timeout.timed_out() && jobs.is_empty() {
                return None;
            }
        }
    }

    fn work(&self) {
        let mut holds_memory = false;
        loop {
            match self.next_job() {
                Some(job) => {
                    job();
                    holds_memory = true;
                }
                None if holds_memory => {
                    release_blocks();
                    holds_memory = false;
                }
                None => {}
            }
        }
    }
}

/// The queue, and how many threads started on it.
fn pool() -> &'static (Arc<Queue>, usize) {
    static POOL: OnceLock<(Arc<Queue>, usize)> = OnceLock::new();
    POOL.get_or_init(|| {
        let queue = Arc::new(Queue::default());
        let mut started = 0;
        for n in 0..hashing_threads() {
            let worker = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("crm-argon2-{n}"))
                .spawn(move || worker.work());
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "cannot start a password hashing thread"),
            }
        }
        (queue, started)
    })
}

/// Runs `work` on the hashing threads; `None` if they are gone. A job whose
/// caller went away (a request that timed out) is skipped, not computed.
pub async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        if !reply.is_closed() {
            let _ = reply.send(work());
        }
    });
    let (queue, started) = pool();
    if *started == 0 {
        return None;
    }
    queue
        .jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(job);
    queue.queued.notify_one();
    // A thread that panicked drops its job's reply: the caller gets `None`.
    answer.await.ok()
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A PHC hash that matches no password, verified when an email is unknown so
/// that a wrong email costs as much time as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$9N0Qrj1Ur7WfM4gRZr1R3M4a0bKqN0mW3mXl1l3b1DQ";

thread_local! {
    /// The hashing memory of this thread, reused by every hash it computes.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` on this thread's hashing memory. Parameters larger than four
/// times the default get a buffer of their own.
fn with_blocks<T>(count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > 4 * Params::DEFAULT_M_COST as usize {
        return work(&mut vec![Block::default(); count]);
    }
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        work(&mut blocks[..count])
    })
}

/// Frees this thread's hashing memory and hands it back to the system:
/// glibc keeps a freed block of this size in the thread's arena (its mmap
/// threshold rises to the largest block freed), so it has to be trimmed.
fn release_blocks() {
    BLOCKS.with(|blocks| *blocks.borrow_mut() = Vec::new());
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no memory in use and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Argon2 of `password` with these settings, in this thread's buffer: what
/// `PasswordHasher::hash_password` computes, without allocating the memory.
fn compute<'a>(
    password: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
) -> argon2::password_hash::Result<argon2::PasswordHash<'a>> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let output = with_blocks(params.block_count(), |blocks| {
        Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, blocks)?)
        })
    })?;
    Ok(argon2::PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

pub async fn hash(password: String) -> Result<PasswordHash, String> {
    on_hashing_thread(move || {
        let salt = SaltString::generate(&mut OsRng);
        let phc = compute(
            password.as_bytes(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
            salt.as_salt(),
        )
        .map_err(|e| e.to_string())?
        .to_string();
        PasswordHash::from_phc(phc).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|| Err("the password hashing threads are gone".to_owned()))
}

/// Whether `password` matches the PHC string `phc` (constant-time compare).
fn matches(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    compute(password, algorithm, version, params, salt)
        .is_ok_and(|computed| computed.hash.as_ref() == Some(&expected))
}

/// Whether `password` matches `phc`; with `None` it spends the same effort on
/// a decoy and answers `false`.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    on_hashing_thread(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DECOY_HASH.to_owned());
        known & matches(password.as_bytes(), &phc)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Serialises the tests that use the hashing threads: one test's hashes
    /// would keep memory in the threads another test watches go idle.
    static POOL_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The hashing memory held by the threads that run these jobs.
    async fn memory_held() -> Vec<usize> {
        let jobs = (0..hashing_threads()).map(|_| {
            on_hashing_thread(|| {
                std::thread::sleep(Duration::from_millis(50));
                BLOCKS.with(|blocks| blocks.borrow().capacity())
            })
        });
        let held = futures::future::join_all(jobs).await;
        held.into_iter()
            .map(|held| held.unwrap_or(usize::MAX))
            .collect()
    }

    #[tokio::test]
    async fn idle_threads_give_their_hashing_memory_back() {
        let _serial = POOL_TESTS.lock().await;
        let hashes = (0..hashing_threads()).map(|_| hash("correct horse".to_owned()));
        for hashed in futures::future::join_all(hashes).await {
            assert!(hashed.is_ok());
        }
        assert!(memory_held().await.iter().any(|&held| held > 0));
        tokio::time::sleep(IDLE_RELEASE * 2 + Duration::from_millis(500)).await;
        assert_eq!(memory_held().await, vec![0; hashing_threads()]);
    }

    #[tokio::test]
    async fn at_most_hashing_threads_run_at_once() {
        let _serial = POOL_TESTS.lock().await;
        // Regression: hashing ran on the blocking pool with no bound.
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static PEAK: AtomicUsize = AtomicUsize::new(0);
        let jobs = (0..hashing_threads() * 3).map(|_| {
            on_hashing_thread(|| {
                let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                PEAK.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                RUNNING.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for done in futures::future::join_all(jobs).await {
            assert!(done.is_some());
        }
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(peak >= 1 && peak <= hashing_threads(), "peak {peak}");
    }

    #[test]
    fn the_buffer_computes_what_the_argon2_crate_computes() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let ours = compute(
            b"correct horse",
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
            salt.as_salt(),
        )
        .expect("hash")
        .to_string();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert_eq!(ours, theirs);
        let parsed = argon2::PasswordHash::new(&theirs).expect("phc");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(matches(b"correct horse", &theirs));
        assert!(!matches(b"correct horsf", &theirs));
        assert!(!matches(b"correct horse", "$argon2id$v=19$garbage"));
        // Other parameters still verify (a bigger buffer, then reuse).
        let params = Params::new(2 * Params::DEFAULT_M_COST, 1, 1, None).expect("params");
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .expect("hash")
            .to_string();
        assert!(matches(b"pw", &other));
        assert!(matches(b"correct horse", &theirs));
    }

    #[tokio::test]
    async fn hashes_verify() {
        let _serial = POOL_TESTS.lock().await;
        assert!(!verify("password".into(), None).await);
        let hash = hash("correct horse".into()).await.expect("hash");
        assert!(verify("correct horse".into(), Some(hash.as_str().to_owned())).await);
        assert!(!verify("wrong horse".into(), Some(hash.as_str().to_owned())).await);
    }
}
