//! In-process limits: failed logins, and requests per token.
//!
//! Failed logins are counted three ways, so guessing is slowed without
//! giving anyone a lever to lock others out:
//! - per account and address pair: `429` after a few failures, which stops
//!   one client guessing one account but leaves the owner (elsewhere) and
//!   other users behind the same address untouched;
//! - per address: `429` only after many failures (guessing across accounts);
//! - per account: a growing delay before the answer (never a refusal), so a
//!   distributed guesser is slowed while the owner can still log in.
//!
//! Counters live in this process: with several API processes each keeps its
//! own (the limits are then per process, which the docs state).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fixed-window counters by key, with bounded memory.
struct Windows {
    window: Duration,
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Windows {
    fn new(window: Duration) -> Self {
        Self {
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The key's count in its current window and the time left in it.
    fn get(&self, key: &str) -> (u32, Duration) {
        let Ok(counts) = self.counts.lock() else {
            return (0, self.window);
        };
        match counts.get(key) {
            Some((count, since)) if since.elapsed() < self.window => {
                (*count, self.window - since.elapsed())
            }
            _ => (0, self.window),
        }
    }

    /// Counts one more for `key`; returns the new count and the time left.
    fn add(&self, key: &str) -> (u32, Duration) {
        let Ok(mut counts) = self.counts.lock() else {
            return (0, self.window);
        };
        if counts.len() > 100_000 {
            let window = self.window;
            counts.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        (entry.0, self.window.saturating_sub(entry.1.elapsed()))
    }

    fn reset(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.remove(key);
        }
    }
}

/// Failures before the pair is refused, and before the address is.
const PAIR_FAILURES: u32 = 5;
const ADDRESS_FAILURES: u32 = 100;
/// Failures of an account before its answers are delayed, and the cap.
const ACCOUNT_FREE_FAILURES: u32 = 3;
const MAX_ACCOUNT_DELAY: Duration = Duration::from_secs(8);

pub struct LoginThrottle {
    pairs: Windows,
    addresses: Windows,
    accounts: Windows,
}

/// What a login attempt must do before its password is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    /// Go ahead after this delay (zero when the account has few failures).
    Proceed(Duration),
    /// Refuse with `429`; retry after this many seconds.
    Refuse(u64),
}

impl LoginThrottle {
    pub fn new(window: Duration) -> Self {
        Self {
            pairs: Windows::new(window),
            addresses: Windows::new(window),
            accounts: Windows::new(window),
        }
    }

    pub fn gate(&self, account: &str, address: &str) -> LoginGate {
        let (pair, pair_left) = self.pairs.get(&format!("{account}|{address}"));
        let (by_address, address_left) = self.addresses.get(address);
        if pair >= PAIR_FAILURES {
            return LoginGate::Refuse(pair_left.as_secs().max(1));
        }
        if by_address >= ADDRESS_FAILURES {
            return LoginGate::Refuse(address_left.as_secs().max(1));
        }
        let (failures, _) = self.accounts.get(account);
        LoginGate::Proceed(account_delay(failures))
    }

    pub fn failed(&self, account: &str, address: &str) {
        self.pairs.add(&format!("{account}|{address}"));
        self.addresses.add(address);
        self.accounts.add(account);
    }

    pub fn succeeded(&self, account: &str, address: &str) {
        self.pairs.reset(&format!("{account}|{address}"));
        self.accounts.reset(account);
    }
}

/// 0 for the first failures, then 250 ms doubling per failure, capped.
fn account_delay(failures: u32) -> Duration {
    match failures.checked_sub(ACCOUNT_FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => {
            Duration::from_millis(250u64.saturating_mul(1 << extra.min(10))).min(MAX_ACCOUNT_DELAY)
        }
    }
}

/// Requests per token in fixed windows.
pub struct RequestLimiter {
    pub limit: u32,
    windows: Windows,
}

/// The state of a caller's window after counting a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
    pub window_secs: u64,
}

impl RequestLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            windows: Windows::new(window),
        }
    }

    /// Counts a request of `key`.
    pub fn hit(&self, key: &str) -> (Quota, bool) {
        let (count, left) = self.windows.add(key);
        let quota = Quota {
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs: left.as_secs().max(1),
            window_secs: self.windows.window.as_secs(),
        };
        (quota, count > self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guessed_pair_is_refused_but_the_owner_elsewhere_is_only_delayed() {
        let throttle = LoginThrottle::new(Duration::from_secs(60));
        for _ in 0..PAIR_FAILURES {
            assert!(matches!(
                throttle.gate("ada@x", "10.0.0.9"),
                LoginGate::Proceed(_)
            ));
            throttle.failed("ada@x", "10.0.0.9");
        }
        assert!(matches!(
            throttle.gate("ada@x", "10.0.0.9"),
            LoginGate::Refuse(_)
        ));
        // The owner from another address: slowed, not refused.
        match throttle.gate("ada@x", "10.0.0.1") {
            LoginGate::Proceed(delay) => assert!(delay > Duration::ZERO),
            refused => panic!("the owner was locked out: {refused:?}"),
        }
        // Another user behind the guesser's address: untouched.
        assert_eq!(
            throttle.gate("bob@x", "10.0.0.9"),
            LoginGate::Proceed(Duration::ZERO)
        );
        throttle.succeeded("ada@x", "10.0.0.1");
        assert_eq!(
            throttle.gate("ada@x", "10.0.0.1"),
            LoginGate::Proceed(Duration::ZERO)
        );
    }

    #[test]
    fn an_address_guessing_many_accounts_is_refused() {
        let throttle = LoginThrottle::new(Duration::from_secs(60));
        for n in 0..ADDRESS_FAILURES {
            throttle.failed(&format!("user{n}@x"), "10.0.0.9");
        }
        assert!(matches!(
            throttle.gate("new@x", "10.0.0.9"),
            LoginGate::Refuse(_)
        ));
        assert!(matches!(
            throttle.gate("new@x", "10.0.0.1"),
            LoginGate::Proceed(_)
        ));
    }

    #[test]
    fn the_account_delay_grows_and_is_capped() {
        assert_eq!(account_delay(0), Duration::ZERO);
        assert_eq!(account_delay(ACCOUNT_FREE_FAILURES - 1), Duration::ZERO);
        assert_eq!(
            account_delay(ACCOUNT_FREE_FAILURES),
            Duration::from_millis(250)
        );
        assert_eq!(
            account_delay(ACCOUNT_FREE_FAILURES + 1),
            Duration::from_millis(500)
        );
        assert_eq!(account_delay(1_000), MAX_ACCOUNT_DELAY);
    }

    #[test]
    fn requests_past_the_limit_are_over() {
        let limiter = RequestLimiter::new(2, Duration::from_secs(60));
        let (first, over) = limiter.hit("t");
        assert!(!over);
        assert_eq!(first.remaining, 1);
        assert!(!limiter.hit("t").1);
        let (third, over) = limiter.hit("t");
        assert!(over);
        assert_eq!(third.remaining, 0);
        assert!(!limiter.hit("other").1);
    }
}
