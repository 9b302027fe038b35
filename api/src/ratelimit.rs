//! A small fixed-window limiter for login attempts, keyed by email and by
//! client address, so password guessing is slowed down (429 + Retry-After).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl RateLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds)` to wait when `key` is blocked now.
    pub fn blocked_for(&self, key: &str) -> Option<u64> {
        let failures = self.failures.lock().ok()?;
        let (count, since) = failures.get(key)?;
        let elapsed = since.elapsed();
        (*count >= self.max_failures && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    pub fn record_failure(&self, key: &str) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() > 100_000 {
            // Bounded memory: forget expired windows.
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn reset(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_within_the_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        limiter.record_failure("a");
        assert_eq!(limiter.blocked_for("a"), None);
        limiter.record_failure("a");
        assert!(limiter.blocked_for("a").is_some());
        assert_eq!(limiter.blocked_for("b"), None);
        limiter.reset("a");
        assert_eq!(limiter.blocked_for("a"), None);
    }
}
